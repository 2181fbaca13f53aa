"""ClusterState: every record the core holds, its indexes, and the set of changed records.

Memory holds pools, nodes, jobs, job schedules and every task that is not completed. A task
that completes stays in memory only until the end of the loop turn (``take_changes``), so the
store is the home of finished tasks. ``touch`` is the only way a record is marked changed; it
bumps the version and etag and records the modification time.

Invariants (checked by ``validate``):
- a node's ``running_task_slots`` / ``offered_slots`` equal the slots of the tasks running on
  it / offered to it and not started;
- a task in flight (offered or running) is placed on an existing node;
- job counters equal the number of in-memory tasks per state (plus completed ones stored).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from hybatch.core.dependency_index import JobDependencies
from hybatch.core.records import (
    JobRecord,
    JobScheduleRecord,
    NodeRecord,
    PoolRecord,
    TaskRecord,
    UsageRecord,
    etag_for,
)

AnyRecord = PoolRecord | NodeRecord | JobRecord | JobScheduleRecord | TaskRecord


@dataclass(slots=True)
class ChangeSet:
    """Records changed during the current turn, by identity, plus deleted keys."""

    pools: dict[str, PoolRecord] = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    tasks: dict[tuple[str, str], TaskRecord] = field(default_factory=dict)
    job_schedules: dict[str, JobScheduleRecord] = field(default_factory=dict)
    deleted_pools: set[str] = field(default_factory=set)
    deleted_nodes: set[str] = field(default_factory=set)
    deleted_jobs: set[str] = field(default_factory=set)
    deleted_tasks: set[tuple[str, str]] = field(default_factory=set)
    usage: list[UsageRecord] = field(default_factory=list)
    """Closed usage intervals (append-only: each is written once)."""
    deleted_job_schedules: set[str] = field(default_factory=set)


class ClusterState:
    """The core's records. Mutated only by the core's handlers through the helpers here."""

    def __init__(self) -> None:
        self.pools: dict[str, PoolRecord] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.tasks: dict[tuple[str, str], TaskRecord] = {}
        self.job_schedules: dict[str, JobScheduleRecord] = {}
        # keys of job schedules terminating or deleting: settled after every message
        self.schedules_to_settle: set[str] = set()
        # per job: keys of active tasks waiting for a slot, in submission order
        self.ready: dict[str, deque[tuple[str, str]]] = {}
        # per job: keys of tasks with an attempt in flight (offered to a node or running)
        self.running: dict[str, set[tuple[str, str]]] = {}
        self.pools_to_place: set[str] = set()
        self.pools_to_save_on_tick: set[str] = set()
        """Pools whose statistics changed since the last Tick (see ``save_on_tick``)."""
        self.changes = ChangeSet()
        self.job_seq = 0
        # completed tasks loaded from the store for this turn's commands (evicted after it)
        self.adopted: set[tuple[str, str]] = set()
        # attempts killed while they waited for their job's preparation task, never sent to
        # a node: settled by the core after the message (core.job_tasks)
        self.withheld_kills: set[tuple[str, str]] = set()
        # per job using task dependencies: its waiting tasks and what they wait for
        self.dependencies: dict[str, JobDependencies] = {}

    # ------------------------------------------------------------------ lookups

    def nodes_of(self, pool_key: str) -> list[NodeRecord]:
        return [n for n in self.nodes.values() if n.pool_id.lower() == pool_key]

    def jobs_on(self, pool_key: str) -> list[JobRecord]:
        return [j for j in self.jobs.values() if j.pool_id.lower() == pool_key]

    def tasks_of(self, job_key: str) -> list[TaskRecord]:
        return [t for k, t in self.tasks.items() if k[0] == job_key]

    def jobs_of_schedule(self, schedule_key: str) -> list[JobRecord]:
        return [j for j in self.jobs.values()
                if j.job_schedule_id is not None and j.job_schedule_id.lower() == schedule_key]

    # ------------------------------------------------------------------ mutation

    def touch(self, record: AnyRecord, now: datetime) -> None:
        """Mark a record changed this turn: new version, etag and modification time."""
        record.version += 1
        record.etag = etag_for(record.version, now)
        if isinstance(record, PoolRecord):
            record.last_modified = now
            self.changes.pools[record.key] = record
        elif isinstance(record, NodeRecord):
            self.changes.nodes[record.key] = record
        elif isinstance(record, JobRecord):
            record.last_modified = now
            self.changes.jobs[record.key] = record
        elif isinstance(record, JobScheduleRecord):
            record.last_modified = now
            self.changes.job_schedules[record.key] = record
        else:
            record.last_modified = now
            self.changes.tasks[record.key] = record

    def save_counters(self, job: JobRecord) -> None:
        """Persist a job whose task counters changed, without a new version: Azure's job
        eTag changes with job-level data, not with every task state change."""
        self.changes.jobs[job.key] = job

    def save_quietly(self, record: PoolRecord | NodeRecord | TaskRecord) -> None:
        """Persist bookkeeping (usage accounting, a task's release by its parents) without a
        new version, etag or time: it is not a change of the resource a client sees."""
        if isinstance(record, PoolRecord):
            self.changes.pools[record.key] = record
        elif isinstance(record, TaskRecord):
            self.changes.tasks[record.key] = record
        else:
            self.changes.nodes[record.key] = record

    def save_on_tick(self, pool: PoolRecord) -> None:
        """Persist a pool's statistics with the next Tick rather than this turn: every task
        exit adds to them, and writing the pool row on every exit costs the writer more than
        the task itself. A crash loses at most one tick of pool statistics (task and job
        statistics are exact: those rows are written anyway)."""
        self.pools_to_save_on_tick.add(pool.key)

    def save_ticked_pools(self) -> None:
        for key in self.pools_to_save_on_tick:
            pool = self.pools.get(key)
            if pool is not None:
                self.save_quietly(pool)
        self.pools_to_save_on_tick.clear()

    def add_usage(self, record: UsageRecord) -> None:
        self.changes.usage.append(record)

    def add_pool(self, pool: PoolRecord, now: datetime) -> None:
        self.pools[pool.key] = pool
        self.changes.deleted_pools.discard(pool.key)
        self.touch(pool, now)

    def drop_pool(self, pool: PoolRecord) -> None:
        self.pools.pop(pool.key, None)
        self.changes.pools.pop(pool.key, None)
        self.changes.deleted_pools.add(pool.key)

    def add_node(self, node: NodeRecord, now: datetime) -> None:
        self.nodes[node.key] = node
        self.changes.deleted_nodes.discard(node.key)
        self.touch(node, now)

    def drop_node(self, node: NodeRecord) -> None:
        self.nodes.pop(node.key, None)
        self.changes.nodes.pop(node.key, None)
        self.changes.deleted_nodes.add(node.key)

    def add_job(self, job: JobRecord, now: datetime) -> None:
        # A job deleted earlier in this turn stays in ``deleted_jobs``: the store applies
        # deletions first, so the old job's stored tasks go before the new job is written.
        self.jobs[job.key] = job
        self.ready.setdefault(job.key, deque())
        self.running.setdefault(job.key, set())
        self.touch(job, now)

    def drop_job(self, job: JobRecord) -> None:
        key = job.key
        self.jobs.pop(key, None)
        self.ready.pop(key, None)
        self.running.pop(key, None)
        self.dependencies.pop(key, None)
        for tkey in [k for k in self.tasks if k[0] == key]:
            del self.tasks[tkey]
        for tkey in [k for k in self.changes.tasks if k[0] == key]:
            del self.changes.tasks[tkey]
        self.changes.deleted_tasks = {k for k in self.changes.deleted_tasks if k[0] != key}
        self.changes.jobs.pop(key, None)
        self.changes.deleted_jobs.add(key)

    def add_job_schedule(self, schedule: JobScheduleRecord, now: datetime) -> None:
        self.job_schedules[schedule.key] = schedule
        self.changes.deleted_job_schedules.discard(schedule.key)
        self.touch(schedule, now)

    def drop_job_schedule(self, schedule: JobScheduleRecord) -> None:
        """Forget a schedule (its jobs are dropped by the core before it)."""
        self.job_schedules.pop(schedule.key, None)
        self.schedules_to_settle.discard(schedule.key)
        self.changes.job_schedules.pop(schedule.key, None)
        self.changes.deleted_job_schedules.add(schedule.key)

    def add_task(self, task: TaskRecord, now: datetime) -> None:
        self.tasks[task.key] = task
        self.changes.deleted_tasks.discard(task.key)
        self.touch(task, now)

    def adopt_task(self, task: TaskRecord) -> None:
        """Hold a stored (completed) task for this turn so a command can act on it.

        Memory holds every unfinished task, so only completed ones are taken; nor one deleted
        earlier in this turn (the store still has the old row until the turn commits)."""
        key = task.key
        if (task.state != "completed" or key in self.changes.deleted_tasks
                or key[0] in self.changes.deleted_jobs):
            return
        if key not in self.tasks:
            self.tasks[key] = task
            self.adopted.add(key)

    def drop_task(self, task: TaskRecord) -> None:
        key = task.key
        self.tasks.pop(key, None)
        self.changes.tasks.pop(key, None)
        self.changes.deleted_tasks.add(key)
        ready = self.ready.get(key[0])
        if ready is not None and key in ready:
            ready.remove(key)
        self.running.get(key[0], set()).discard(key)

    def take_changes(self) -> ChangeSet:
        """Hand the turn's changes to the runtime and evict completed tasks from memory."""
        changes = self.changes
        self.changes = ChangeSet()
        # only tasks touched this turn can have completed (or been adopted for a command)
        for key in [k for k, t in changes.tasks.items() if t.state == "completed"]:
            self.tasks.pop(key, None)
        for key in self.adopted:
            task = self.tasks.get(key)
            if task is not None and task.state == "completed":
                del self.tasks[key]
        self.adopted.clear()
        return changes

    # ------------------------------------------------------------------ checks

    def validate(self) -> list[str]:
        """Invariant violations (empty when consistent). Used by tests, cheap enough for debug."""
        problems: list[str] = []
        running_slots: dict[str, int] = {}
        offered_slots: dict[str, int] = {}
        running: dict[str, int] = {}
        placed: dict[str, set[tuple[str, str]]] = {}
        for task in self.tasks.values():
            if task.offered and task.state not in ("active", "preparing"):
                problems.append(f"task {task.key} offered but {task.state}")
            if not task.in_flight:
                continue
            if task.instances is not None:  # a multi-instance task: one slot per instance
                for instance in task.instances:
                    if instance.state == "completed":
                        continue
                    ik = instance.node_id.lower()
                    if ik not in self.nodes:
                        problems.append(f"task {task.key} instance on missing node {ik}")
                        continue
                    placed.setdefault(ik, set()).add(task.key)
                    if instance.state == "offered":
                        offered_slots[ik] = offered_slots.get(ik, 0) + 1
                    else:
                        running_slots[ik] = running_slots.get(ik, 0) + 1
                        running[ik] = running.get(ik, 0) + 1
                if task.offered != all(i.state == "offered" for i in task.instances):
                    problems.append(f"task {task.key} offered flag disagrees with instances")
                continue
            if task.node_id is None or task.node_id.lower() not in self.nodes:
                problems.append(f"task {task.key} in flight on missing node {task.node_id}")
                continue
            nk = task.node_id.lower()
            placed.setdefault(nk, set()).add(task.key)
            if task.offered:
                offered_slots[nk] = offered_slots.get(nk, 0) + task.required_slots
            else:
                running_slots[nk] = running_slots.get(nk, 0) + task.required_slots
                running[nk] = running.get(nk, 0) + 1
        for node in self.nodes.values():
            if node.running_task_slots != running_slots.get(node.key, 0):
                problems.append(
                    f"node {node.id} counts {node.running_task_slots} running slots, "
                    f"tasks use {running_slots.get(node.key, 0)}"
                )
            if node.offered_slots != offered_slots.get(node.key, 0):
                problems.append(f"node {node.id} offered slots mismatch")
            if node.running_task_slots > node.slots:
                problems.append(f"node {node.id} over-committed")
            if node.running_tasks != running.get(node.key, 0):
                problems.append(f"node {node.id} running_tasks mismatch")
            if set(node.task_keys) != placed.get(node.key, set()):
                problems.append(f"node {node.id} task_keys mismatch")
        for job in self.jobs.values():
            tasks = self.tasks_of(job.key)
            active = sum(1 for t in tasks if t.state == "active")
            running_count = sum(1 for t in tasks if t.state in ("running", "preparing"))
            if job.counts.active != active:
                problems.append(f"job {job.id} active count {job.counts.active} != {active}")
            if job.counts.running != running_count:
                problems.append(
                    f"job {job.id} running count {job.counts.running} != {running_count}")
            in_flight = {t.key for t in tasks if t.in_flight}
            if self.running.get(job.key, set()) != in_flight:
                problems.append(f"job {job.id} in-flight set mismatch")
        return problems
