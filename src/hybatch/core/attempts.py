"""Stopping a running attempt: the reason is recorded on the task and a KillTask effect is
emitted; the task's state changes only when the attempt's exit is reported.

Imports: core modules.
"""

from __future__ import annotations

from hybatch.core.context import Ctx
from hybatch.core.effects import KillTask
from hybatch.core.job_release import preparation_state
from hybatch.core.records import TaskRecord

KILL_TERMINATE = "terminate"
"""Task terminate: the attempt's exit completes the task with failure TaskEnded."""
KILL_REQUEUE = "requeue"
"""Requeue (node removal, job disable): the task goes back to active, requeueCount+1."""
KILL_JOB_TERMINATE = "jobterminate"
"""Job terminate: like terminate, with a message naming the job."""
KILL_DELETE = "delete"
"""Task or job delete: the record is gone; the exit report is ignored."""

_PRECEDENCE = {KILL_REQUEUE: 0, KILL_TERMINATE: 1, KILL_JOB_TERMINATE: 2, KILL_DELETE: 3}
"""A later kill never weakens an earlier one (a node removal must not requeue a task the user
terminated, nor resurrect one of a job being deleted)."""


def _withheld(ctx: Ctx, task: TaskRecord) -> bool:
    """The attempt waits for its job's preparation task on its node and was never sent to
    the node (core.job_tasks), so no exit will ever be reported for it."""
    job = ctx.state.jobs.get(task.key[0])
    return job is not None and preparation_state(job, task.node_id or "") != "ready"


def kill_attempt(ctx: Ctx, task: TaskRecord, reason: str) -> None:
    """Ask the node to kill the task's running attempt for ``reason``."""
    if not task.in_flight or task.node_id is None:
        return
    pending = task.kill_requested
    if pending is None or _PRECEDENCE[reason] >= _PRECEDENCE[pending]:
        task.kill_requested = reason
    ctx.state.touch(task, ctx.now)
    if task.instances is not None:  # a multi-instance task: every live instance
        for instance in task.instances:
            if instance.state in ("offered", "running"):
                ctx.effects.append(KillTask(pool_id=instance.pool_id, node_id=instance.node_id,
                                            job_id=task.job_id, task_id=task.id,
                                            attempt=task.attempt))
        return
    if task.state == "preparing" and task.offered and _withheld(ctx, task):
        ctx.state.withheld_kills.add(task.key)  # the node never had it: settled by the core
        return
    ctx.effects.append(KillTask(pool_id=task.pool_id or "", node_id=task.node_id,
                                job_id=task.job_id, task_id=task.id, attempt=task.attempt))
