"""Runtime records: the service's own view of pools, nodes, jobs, job schedules and tasks.

A record embeds the user's create body (the generated wire model) as ``spec`` and adds the
runtime fields the service owns (state, timestamps, etag, counters). Records are plain mutable
dataclasses owned by :class:`hybatch.core.cluster.ClusterState`; only the core mutates them, and
every mutation goes through ``touch`` so the etag and the dirty set stay right.

Imports: standard library, pydantic wire models. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hybatch.schema import (
    BatchJobCreateOptions,
    BatchJobScheduleCreateOptions,
    BatchPoolCreateOptions,
    BatchStartTask,
    BatchTaskCreateOptions,
)

JsonObject = dict[str, object]


def etag_for(version: int, when: datetime) -> str:
    """A bare opaque etag in the service's ``0x8D...`` style, unique per (record, version)."""
    ticks = int(when.timestamp() * 10_000_000) + 621_355_968_000_000_000
    return f"0x{ticks + version:X}"


def task_key(job_id: str, task_id: str) -> tuple[str, str]:
    """The lookup key of a task: ids are unique case-insensitively (Batch rule)."""
    return (job_id.lower(), task_id.lower())


@dataclass(slots=True)
class ResizeErrorRecord:
    code: str
    message: str


@dataclass(slots=True)
class FailureInfoRecord:
    category: str  # "usererror" | "servererror"
    code: str
    message: str
    details: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """What a node measured for one attempt's process tree when it reaped it (``wait4``
    rusage): CPU seconds in user and kernel mode, and bytes read from / written to storage
    (``ru_inblock``/``ru_oublock`` are 512-byte units on Linux)."""

    user_cpu_s: float = 0.0
    kernel_cpu_s: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0


@dataclass(slots=True)
class PoolStatsRecord:
    """Lifetime totals behind a pool's ``$expand=stats`` (core.stats keeps them)."""

    user_cpu_s: float = 0.0
    kernel_cpu_s: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0
    departed_core_s: float = 0.0
    """Core-seconds (a node's cores are its task slots) of nodes that have left the pool."""
    departed_dedicated_core_s: float = 0.0


@dataclass(slots=True)
class JobStatsRecord:
    """Lifetime totals behind a job's ``$expand=stats`` (core.stats keeps them).

    Wall clock of attempts still running is not summed here: ``running_attempts`` and
    ``running_start_offset_s`` (their start times, as seconds after the job's creation) let
    the presentation add it up to the moment it is asked."""

    wall_clock_s: float = 0.0
    user_cpu_s: float = 0.0
    kernel_cpu_s: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0
    wait_s: float = 0.0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    running_attempts: int = 0
    running_start_offset_s: float = 0.0


@dataclass(slots=True)
class TaskStatsRecord:
    """A task's ``$expand=stats`` totals over its attempts (absent until one started)."""

    wall_clock_s: float = 0.0
    wait_s: float = 0.0
    user_cpu_s: float = 0.0
    kernel_cpu_s: float = 0.0
    read_bytes: int = 0
    write_bytes: int = 0


@dataclass(slots=True)
class PrepReleaseRunRecord:
    """One run of a node task: a job preparation or release task on one node (BatchJob
    Preparation/ReleaseTaskExecutionInfo) or a pool's start task (BatchStartTaskInfo).
    ``state``: ``running`` | ``completed``; ``retry_count`` counts the retries of this run."""

    state: str
    start_time: datetime
    end_time: datetime | None = None
    exit_code: int | None = None
    result: str | None = None  # "success" | "failure"
    failure_info: FailureInfoRecord | None = None
    retry_count: int = 0
    last_retry_time: datetime | None = None


@dataclass(slots=True)
class JobNodeRecord:
    """What a job did on one node outside its tasks: the preparation and release task runs
    (listed by Jobs_ListJobPreparationAndReleaseTaskStatus; kept after the node leaves)."""

    pool_id: str
    node_id: str
    preparation: PrepReleaseRunRecord | None = None
    release: PrepReleaseRunRecord | None = None
    attempt: int = 0
    """Number of the latest preparation/release process launched there (stale exits of
    earlier launches are ignored)."""
    rerun: bool = False
    """The preparation task must run again before the job's next task there (the node
    restarted since it ran, see core.job_tasks)."""


@dataclass(slots=True)
class PoolRecord:
    """A pool. ``spec`` is the create body; targets live here because resize changes them."""

    id: str
    spec: BatchPoolCreateOptions
    creation_time: datetime
    state: str = "active"
    state_transition_time: datetime | None = None
    allocation_state: str = "steady"
    allocation_state_transition_time: datetime | None = None
    target_dedicated_nodes: int = 0
    target_low_priority_nodes: int = 0
    resize_timeout_s: float = 900.0
    resize_started: datetime | None = None
    node_deallocation_option: str = "requeue"
    resize_errors: list[ResizeErrorRecord] = field(default_factory=list)
    task_slots_per_node: int = 1
    node_fill_type: str = "spread"
    last_modified: datetime | None = None
    version: int = 0
    etag: str = ""
    # running totals for accounting (core-seconds of running tasks, tasks run)
    core_seconds: float = 0.0
    # usage accounting (core.usage): the open aggregation interval and the core-seconds
    # already accounted in it (nodes add theirs up to ``NodeRecord.accounted_until``)
    usage_interval_start: datetime | None = None
    usage_core_seconds: float = 0.0
    stats: PoolStatsRecord = field(default_factory=PoolStatsRecord)

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass(slots=True)
class NodeUserRecord:
    """A user account created through the API on a node (core.nodes). Only what the API
    needs is kept: no OS account exists, so the password itself is not stored."""

    name: str
    is_admin: bool = False
    expiry_time: datetime | None = None
    has_password: bool = False
    ssh_public_key: str | None = None


@dataclass(slots=True)
class UsageRecord:
    """Core-seconds a pool's nodes were allocated during one aggregation interval (written
    once, when the interval closes or the pool goes). ``pool_creation_time`` tells apart two
    pools of the same id within one interval."""

    pool_id: str
    pool_creation_time: datetime
    interval_start: datetime
    vm_size: str
    core_seconds: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.pool_id.lower(), self.interval_start.isoformat(),
                self.pool_creation_time.isoformat())


@dataclass(slots=True)
class NodeRecord:
    """A compute node of a pool. ``state`` follows the BatchNodeState values."""

    id: str
    pool_id: str
    is_dedicated: bool
    slots: int
    creation_time: datetime
    state: str = "creating"
    state_transition_time: datetime | None = None
    scheduling_state: str = "enabled"
    allocation_time: datetime | None = None
    last_boot_time: datetime | None = None
    running_tasks: int = 0
    running_task_slots: int = 0
    offered_slots: int = 0
    """Slots of attempts offered to the node and not started yet (its local queue)."""
    total_tasks_run: int = 0
    total_tasks_succeeded: int = 0
    # keys of tasks with an attempt on this node: offered (queued there) or running
    task_keys: list[tuple[str, str]] = field(default_factory=list)
    ip_address: str = "127.0.0.1"
    errors: list[ResizeErrorRecord] = field(default_factory=list)
    removing: bool = False
    held_by_gang: bool = False
    """An instance of a multi-instance task holds the whole node: nothing else is offered to
    it, not even look-ahead (core.multi_instance)."""
    pending_action: str | None = None
    """reboot / reimage / deallocate waiting for the node's tasks to drain (core.nodes)."""
    users: list[NodeUserRecord] = field(default_factory=list)
    accounted_until: datetime | None = None
    """Usage accounting: the node's allocated time up to here is in its pool's usage."""
    start_task: BatchStartTask | None = None
    """The pool's start task as it was when the node (re)started (core.start_task)."""
    start_task_info: PrepReleaseRunRecord | None = None
    start_task_attempt: int = 0
    """Number of the latest start task process launched (stale exits are ignored)."""
    lookahead: int = 1
    """Rounds of slots offered beyond the node's own for short tasks (its VM size's): nodes
    reached through a scheduler (Dask) need a deeper queue to hide the longer round trip."""
    version: int = 0
    etag: str = ""

    @property
    def key(self) -> str:
        return self.id.lower()

    @property
    def free_slots(self) -> int:
        """Slots neither running nor promised to an offered attempt (negative when the node
        has a queue beyond its slots)."""
        return self.slots - self.running_task_slots - self.offered_slots

    @property
    def queue_room(self) -> int:
        """Slots that may still be offered: ``lookahead`` rounds beyond the node's slots, so
        the node starts its next task the moment one ends, without a service round trip."""
        return (1 + self.lookahead) * self.slots - self.running_task_slots - self.offered_slots


@dataclass(slots=True)
class TaskCountsRecord:
    """Per-job task counters kept by the core; completed tasks are not in memory."""

    active: int = 0
    running: int = 0
    completed: int = 0
    succeeded: int = 0
    failed: int = 0
    active_slots: int = 0
    running_slots: int = 0
    completed_slots: int = 0
    succeeded_slots: int = 0
    failed_slots: int = 0


@dataclass(slots=True)
class DependencyBookRecord:
    """What a job that uses task dependencies must remember about tasks that are not in
    memory (completed or absent) so the readiness of its waiting tasks survives a restart
    (core.dependencies). Kept small: ids only while a waiting task names them, integer ids
    as runs.

    * ``absent`` / ``blocked`` / ``ghosts``: lower-cased ids named in ``dependsOn.taskIds`` of a
      waiting task, for which no task exists / whose task completed with dependencyAction
      block / whose satisfying task was deleted (it stays satisfied for those waiting).
    * ``satisfied_runs`` / ``blocked_runs``: inclusive ``[start, end]`` runs of the integer
      values of task ids that completed with dependencyAction satisfy / block (what
      ``taskIdRanges`` select), with ``*_extra`` counting values held by more than one task
      (``4`` and ``04``)."""

    absent: dict[str, int] = field(default_factory=dict)
    blocked: dict[str, int] = field(default_factory=dict)
    ghosts: dict[str, int] = field(default_factory=dict)
    satisfied_runs: list[list[int]] = field(default_factory=list)
    satisfied_extra: dict[str, int] = field(default_factory=dict)
    blocked_runs: list[list[int]] = field(default_factory=list)
    blocked_extra: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class JobRecord:
    """A job. ``spec`` is the create body; patchable fields (priority, constraints,
    onAllTasksComplete, poolInfo, maxParallelTasks, metadata) are updated in ``spec``."""

    id: str
    spec: BatchJobCreateOptions
    creation_time: datetime
    seq: int
    state: str = "active"
    state_transition_time: datetime | None = None
    previous_state: str | None = None
    previous_state_transition_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    terminate_reason: str | None = None
    last_modified: datetime | None = None
    counts: TaskCountsRecord = field(default_factory=TaskCountsRecord)
    mean_task_seconds: float | None = None
    """Moving average of this job's attempt run times (node clock); decides look-ahead."""
    next_task_seq: int = 0
    stats: JobStatsRecord = field(default_factory=JobStatsRecord)
    nodes_run: list[JobNodeRecord] = field(default_factory=list)
    """Per node: the job preparation/release task runs there (filled once those exist)."""
    job_schedule_id: str | None = None
    """The job schedule that created this job (None for jobs created directly)."""
    dependency_book: DependencyBookRecord | None = None
    """Task dependency bookkeeping (jobs with usesTaskDependencies; core.dependencies)."""
    version: int = 0
    etag: str = ""

    @property
    def key(self) -> str:
        return self.id.lower()

    @property
    def pool_id(self) -> str:
        info = self.spec.pool_info
        return (info.pool_id or "") if info is not None else ""

    @property
    def priority(self) -> int:
        return self.spec.priority or 0


@dataclass(slots=True)
class JobScheduleRecord:
    """A job schedule. ``spec`` is the create body; PATCH/PUT replace its ``schedule``,
    ``jobSpecification`` and ``metadata``. ``next_run_time`` is kept by the core (see
    :func:`hybatch.core.schedules.next_run_time` and :mod:`hybatch.core.schedule_timer`): the
    due time of the next run, which stays in the past while that run waits for the previous
    job; ``recent_job_id`` names the latest job the schedule created."""

    id: str
    spec: BatchJobScheduleCreateOptions
    creation_time: datetime
    state: str = "active"
    state_transition_time: datetime | None = None
    previous_state: str | None = None
    previous_state_transition_time: datetime | None = None
    last_modified: datetime | None = None
    next_run_time: datetime | None = None
    recent_job_id: str | None = None
    end_time: datetime | None = None
    jobs_created: int = 0
    """How many jobs the schedule has created: the ``n`` of the next ``{id}:job-{n}`` - 1."""
    version: int = 0
    etag: str = ""

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass(slots=True)
class InstanceRecord:
    """One instance of a multi-instance task's current (or last) attempt: 0 is the primary,
    1..N-1 the subtasks (core.multi_instance). ``state``: ``offered`` (queued on its node),
    ``running`` (its coordination command, or the primary's application command, runs),
    ``coordinated`` (its coordination command succeeded; it holds its node until the task
    ends), ``exited`` (its coordination command failed: the attempt is ending), ``completed``.
    """

    id: int
    node_id: str
    pool_id: str
    state: str = "offered"
    state_transition_time: datetime | None = None
    previous_state: str | None = None
    previous_state_transition_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    result: str | None = None  # "success" | "failure"
    failure_info: FailureInfoRecord | None = None


@dataclass(slots=True)
class TaskRecord:
    """A task. ``attempt`` increases on every start so stale exit reports are ignored."""

    job_id: str
    id: str
    spec: BatchTaskCreateOptions
    creation_time: datetime
    seq: int
    state: str = "active"
    state_transition_time: datetime | None = None
    previous_state: str | None = None
    previous_state_transition_time: datetime | None = None
    last_modified: datetime | None = None
    # execution info
    start_time: datetime | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    result: str | None = None  # "success" | "failure"
    failure_info: FailureInfoRecord | None = None
    retry_count: int = 0
    requeue_count: int = 0
    last_retry_time: datetime | None = None
    last_requeue_time: datetime | None = None
    # placement
    node_id: str | None = None
    pool_id: str | None = None
    attempt: int = 0
    offered: bool = False
    """The current attempt is offered to ``node_id`` and has not started (state active)."""
    kill_requested: str | None = None  # reason a KillTask was sent for the running attempt
    # constraints resolved at creation/update (seconds; None = unlimited)
    max_wall_clock_s: float | None = None
    retention_s: float = 7 * 24 * 3600.0
    max_task_retry_count: int = 0
    stats: TaskStatsRecord | None = None
    instances: list[InstanceRecord] | None = None
    """Multi-instance tasks: the instances of the current (or last) attempt, primary first;
    None for other tasks and before the first gang is placed."""
    waiting_on_parents: bool = False
    """A task with ``dependsOn`` whose parents have not all satisfied it yet: active but not
    queued for placement (core.dependencies releases it)."""
    dependency_action: str | None = None
    """The dependencyAction of its completion (``satisfy`` | ``block``), in jobs that use task
    dependencies; None while not completed."""
    version: int = 0
    etag: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return task_key(self.job_id, self.id)

    @property
    def required_slots(self) -> int:
        return self.spec.required_slots or 1

    @property
    def in_flight(self) -> bool:
        """An attempt exists on a node: offered (not started yet) or running."""
        return self.offered or self.state in ("running", "preparing")
