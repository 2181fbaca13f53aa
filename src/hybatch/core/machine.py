"""BatchCore: the single writer. ``handle(message, now)`` applies one command or event to the
cluster state and returns the effects to execute and the command's result.

The core is synchronous and deterministic: it reads no clock (``now`` is passed in), does no
I/O and draws node ids from the injected ``NodeIds``. A command that raises ``DomainError``
leaves the state untouched (handlers validate before mutating). After every message the
placement pass runs for pools whose capacity or demand changed.

Imports: standard library, core modules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hybatch.core import (
    dependencies,
    job_tasks,
    jobs,
    multi_instance,
    node_tasks,
    nodes,
    pool_update,
    pools,
    schedule_timer,
    schedules,
    tasks,
    usage,
)
from hybatch.core.cluster import ChangeSet, ClusterState
from hybatch.core.commands import (
    AddTasks,
    Command,
    CreateJob,
    CreateJobSchedule,
    CreateNodeUser,
    CreatePool,
    DeleteJob,
    DeleteJobSchedule,
    DeleteNodeUser,
    DeletePool,
    DeleteTask,
    DisableJob,
    DisableJobSchedule,
    DisableNodeScheduling,
    EnableJob,
    EnableJobSchedule,
    EnableNodeScheduling,
    NodeAction,
    ReactivateTask,
    RemoveNodes,
    ReplaceNodeUser,
    ResizePool,
    StopPoolResize,
    TerminateJob,
    TerminateJobSchedule,
    TerminateTask,
    UpdateJob,
    UpdateJobSchedule,
    UpdatePool,
    UpdateTaskConstraints,
)
from hybatch.core.context import Ctx, NodeIds
from hybatch.core.effects import Effect
from hybatch.core.events import (
    Event,
    InstanceExited,
    InstanceStarted,
    NodeLost,
    NodeReady,
    NodeReleased,
    NodeTaskExited,
    TaskExited,
    TaskLost,
    TaskStarted,
    Tick,
)
from hybatch.core.placement import place_tasks
from hybatch.core.records import JobRecord, JobScheduleRecord, NodeRecord, PoolRecord, TaskRecord
from hybatch.core.sizes import Offer
from hybatch.core.tokens import TaskTokens

Message = Command | Event


@dataclass(slots=True)
class Outcome:
    effects: list[Effect] = field(default_factory=list)
    result: object = None


def _update_job(ctx: Ctx, cmd: UpdateJob) -> object:
    """Update a job; metadata that turns on hybatch.failBlockedDependents fails the tasks
    already blocked (core.dependencies)."""
    job = jobs.update_job(ctx, cmd)
    dependencies.fail_blocked(ctx, job, tasks.DEPENDENCY_HOOKS)
    return job


def _tick(ctx: Ctx, event: Tick) -> None:
    """Time-based checks: close ended usage intervals, create due scheduled jobs, re-run
    placement."""
    usage.roll_all(ctx)
    ctx.state.save_ticked_pools()
    schedule_timer.run_due(ctx)
    ctx.state.pools_to_place.update(ctx.state.pools)


_HANDLERS: dict[type, Callable[[Ctx, Any], object]] = {
    CreatePool: pools.create_pool,
    ResizePool: pools.resize_pool,
    StopPoolResize: pools.stop_resize,
    RemoveNodes: pools.remove_nodes,
    DeletePool: pools.delete_pool,
    UpdatePool: pool_update.update_pool,
    NodeAction: nodes.node_action,
    DisableNodeScheduling: nodes.disable_scheduling,
    EnableNodeScheduling: nodes.enable_scheduling,
    CreateNodeUser: nodes.create_user,
    ReplaceNodeUser: nodes.replace_user,
    DeleteNodeUser: nodes.delete_user,
    CreateJob: job_tasks.create_job,
    UpdateJob: _update_job,
    TerminateJob: jobs.terminate_job,
    DeleteJob: jobs.delete_job,
    DisableJob: jobs.disable_job,
    EnableJob: jobs.enable_job,
    CreateJobSchedule: schedules.create_job_schedule,
    UpdateJobSchedule: schedules.update_job_schedule,
    DisableJobSchedule: schedules.disable_job_schedule,
    EnableJobSchedule: schedules.enable_job_schedule,
    TerminateJobSchedule: schedules.terminate_job_schedule,
    DeleteJobSchedule: schedules.delete_job_schedule,
    AddTasks: tasks.add_tasks,
    TerminateTask: tasks.terminate_task,
    ReactivateTask: tasks.reactivate_task,
    DeleteTask: tasks.delete_task,
    UpdateTaskConstraints: tasks.update_constraints,
    NodeReady: node_tasks.on_node_ready,
    NodeReleased: node_tasks.on_node_released,
    NodeLost: node_tasks.on_node_lost,
    NodeTaskExited: node_tasks.on_node_task_exited,
    TaskStarted: tasks.on_task_started,
    TaskExited: tasks.on_task_exited,
    TaskLost: tasks.on_task_lost,
    InstanceStarted: multi_instance.on_instance_started,
    InstanceExited: multi_instance.on_instance_exited,
    Tick: _tick,
}


class BatchCore:
    """Owns the ClusterState; ``handle`` is its only mutator (plus ``restore``/``adopt``)."""

    def __init__(self, ids: NodeIds, offer: Offer | None = None,
                 tokens: TaskTokens | None = None) -> None:
        self.state = ClusterState()
        self._ids = ids
        self._offer = offer
        self._tokens = tokens

    def handle(self, message: Message, now: datetime) -> Outcome:
        ctx = Ctx(state=self.state, now=now, ids=self._ids, offer=self._offer,
                  tokens=self._tokens)
        result = _HANDLERS[type(message)](ctx, message)
        if self.state.withheld_kills:
            job_tasks.settle_withheld(ctx)
        if self.state.schedules_to_settle:
            schedules.settle_all(ctx)
        place_tasks(ctx)
        return Outcome(effects=ctx.effects, result=result)

    def restore(self, pool_records: Iterable[PoolRecord], node_records: Iterable[NodeRecord],
                job_records: Iterable[JobRecord], task_records: Iterable[TaskRecord],
                schedule_records: Iterable[JobScheduleRecord] = ()) -> None:
        """Load stored records at start-up (unfinished tasks only). No changes are recorded."""
        state = self.state
        for schedule in schedule_records:
            state.job_schedules[schedule.key] = schedule
            if schedule.state in ("terminating", "deleting"):
                state.schedules_to_settle.add(schedule.key)
        for pool in pool_records:
            state.pools[pool.key] = pool
        for node in node_records:
            node.task_keys = []
            node.running_tasks = 0
            node.running_task_slots = 0
            node.offered_slots = 0
            node.held_by_gang = False
            state.nodes[node.key] = node
        for job in job_records:
            state.jobs[job.key] = job
            state.ready.setdefault(job.key, deque())
            state.running.setdefault(job.key, set())
            state.job_seq = max(state.job_seq, job.seq)
        for task in sorted(task_records, key=lambda t: (t.job_id.lower(), t.seq)):
            state.tasks[task.key] = task
            owner = state.jobs.get(task.key[0])
            if owner is None:
                continue
            if task.in_flight and task.instances is not None:
                multi_instance.restore_accounting(state, task)
                state.running[owner.key].add(task.key)
            elif task.in_flight:
                host = state.nodes.get((task.node_id or "").lower())
                if host is not None:
                    host.task_keys.append(task.key)
                    if task.offered:
                        host.offered_slots += task.required_slots
                    else:
                        host.running_tasks += 1
                        host.running_task_slots += task.required_slots
                state.running[owner.key].add(task.key)
            elif task.state == "active" and owner.state == "active":
                state.ready[owner.key].append(task.key)
        dependencies.rebuild(state)  # waiting tasks leave the ready queues
        state.pools_to_place.update(state.pools)

    def reset(self) -> None:
        """Forget everything (before ``restore``): used when a turn could not be committed."""
        self.state = ClusterState()

    def adopt(self, stored: Iterable[TaskRecord]) -> None:
        """Make stored (completed) tasks visible to the next command of this turn."""
        for task in stored:
            self.state.adopt_task(task)

    def take_changes(self) -> ChangeSet:
        return self.state.take_changes()
