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

    @property
    def key(self) -> str:
        return self.id.lower()


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
        """Slots that may still be offered: one round of look-ahead beyond the node's slots,
        so the node starts its next task the moment one ends, without a service round trip."""
        return 2 * self.slots - self.running_task_slots - self.offered_slots


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
    job_schedule_id: str | None = None
    """The job schedule that created this job (None for jobs created directly)."""
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
    :func:`hybatch.core.schedules.next_run_time`); ``recent_job_id`` names the latest job the
    schedule created."""

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
    version: int = 0
    etag: str = ""

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass(slots=True)
class FailureInfoRecord:
    category: str  # "usererror" | "servererror"
    code: str
    message: str
    details: list[tuple[str, str]] = field(default_factory=list)


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
