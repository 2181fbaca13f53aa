"""Stopping a running attempt: the reason is recorded on the task and a KillTask effect is
emitted; the task's state changes only when the attempt's exit is reported.

Imports: core modules.
"""

from __future__ import annotations

from hybatch.core.context import Ctx
from hybatch.core.effects import KillTask
from hybatch.core.records import TaskRecord

KILL_TERMINATE = "terminate"
"""Task terminate: the attempt's exit completes the task with failure TaskEnded."""
KILL_REQUEUE = "requeue"
"""Requeue (node removal, job disable): the task goes back to active, requeueCount+1."""
KILL_JOB_TERMINATE = "jobterminate"
"""Job terminate: like terminate, with a message naming the job."""
KILL_DELETE = "delete"
"""Task or job delete: the record is gone; the exit report is ignored."""


def kill_attempt(ctx: Ctx, task: TaskRecord, reason: str) -> None:
    """Ask the node to kill the task's running attempt for ``reason``."""
    if task.state not in ("running", "preparing") or task.node_id is None:
        return
    task.kill_requested = reason
    ctx.state.touch(task, ctx.now)
    ctx.effects.append(KillTask(pool_id=task.pool_id or "", node_id=task.node_id,
                                job_id=task.job_id, task_id=task.id, attempt=task.attempt))
