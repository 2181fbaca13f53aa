"""The pool's start task: runs on a node each time it joins the pool and each time it comes
back from a reboot, reimage or start (and again when a restarted server adopts a node whose
start task was running).

* The node copies the pool's ``startTask`` as it is at that moment (``node.start_task``).
* ``waitForSuccess`` (default true): the node is ``waitingforstarttask`` and takes no task
  until the start task exits 0; then ``idle`` (``offline`` if its scheduling is disabled).
  When its retries (``maxTaskRetryCount``, -1 = unlimited) are spent the node is
  ``starttaskfailed`` and takes no task until it is rebooted or reimaged.
* ``waitForSuccess`` false: the node is ``idle`` at once; the outcome is only recorded.
* ``startTaskInfo`` (``node.start_task_info``): ``running`` with the start of the latest try,
  then ``completed`` with its end, exit code, ``result`` and ``failureInfo``; ``retryCount``.

Every launch has a new ``node.start_task_attempt``: exits of earlier launches (killed by a
restart) are ignored, as is an exit while the node is restarting.

Imports: core modules, wire models.
"""

from __future__ import annotations

from hybatch.core.context import Ctx
from hybatch.core.effects import NodeTaskLaunch, RunNodeTask
from hybatch.core.events import NodeTaskExited
from hybatch.core.job_specs import environment
from hybatch.core.nodes import RESTART_STATES
from hybatch.core.records import FailureInfoRecord, NodeRecord, PrepReleaseRunRecord

KIND = "starttask"
_UP_STATES = frozenset({"idle", "running", "offline", "waitingforstarttask",
                        "starttaskfailed"})


def waits_for_success(node: NodeRecord) -> bool:
    spec = node.start_task
    return spec is not None and spec.wait_for_success is not False


def begin(ctx: Ctx, node: NodeRecord) -> None:
    """The node joined or came back: run the pool's current start task, if it has one."""
    pool = ctx.state.pools.get(node.pool_id.lower())
    spec = pool.spec.start_task if pool is not None else None
    node.start_task = spec
    node.start_task_info = None
    if spec is None:
        ctx.state.touch(node, ctx.now)
        return
    node.start_task_info = PrepReleaseRunRecord(state="running", start_time=ctx.now)
    if waits_for_success(node) and node.state in ("idle", "offline"):
        node.state = "waitingforstarttask"
        node.state_transition_time = ctx.now
    _launch(ctx, node)


def resume(ctx: Ctx, node: NodeRecord) -> None:
    """A restarted server adopted the node: a start task that was running there was stopped
    with the old server, so it runs again (its tries so far still count)."""
    info = node.start_task_info
    if info is None or info.state != "running" or node.start_task is None:
        return
    info.start_time = ctx.now
    _launch(ctx, node)


def _launch(ctx: Ctx, node: NodeRecord) -> None:
    spec = node.start_task
    assert spec is not None
    node.start_task_attempt += 1
    ctx.state.touch(node, ctx.now)
    ctx.effects.append(RunNodeTask(NodeTaskLaunch(
        pool_id=node.pool_id, node_id=node.id, kind=KIND, job_id="", task_id="",
        attempt=node.start_task_attempt, command_line=spec.command_line,
        environment=environment(spec.environment_settings), max_wall_clock_s=None)))


def on_exited(ctx: Ctx, event: NodeTaskExited) -> None:
    """A start task process ended: done, retried, or failed for good."""
    node = ctx.state.nodes.get(event.node_id.lower())
    if node is None or node.removing:
        return
    info = node.start_task_info
    if (info is None or info.state != "running" or node.start_task is None
            or event.attempt != node.start_task_attempt or node.state not in _UP_STATES):
        return  # stale, or stopped by the node's restart (it runs again when back)
    if node.state in RESTART_STATES:
        return
    if event.start_time is not None:
        info.start_time = event.start_time
    info.end_time = event.end_time
    info.exit_code = event.exit_code
    if event.exit_code == 0 and not event.timed_out and event.failure is None:
        info.state = "completed"
        info.result = "success"
        info.failure_info = None
        if node.state == "waitingforstarttask":
            node.state = "offline" if node.scheduling_state == "disabled" else "idle"
            node.state_transition_time = ctx.now
            ctx.state.pools_to_place.add(node.pool_id.lower())
        ctx.state.touch(node, ctx.now)
        return
    limit = node.start_task.max_task_retry_count or 0
    if event.exit_code is not None and (limit == -1 or info.retry_count < limit):
        info.retry_count += 1
        info.last_retry_time = ctx.now
        info.start_time = ctx.now
        info.end_time = None
        info.exit_code = None
        _launch(ctx, node)
        return
    info.state = "completed"
    info.result = "failure"
    info.failure_info = event.failure or FailureInfoRecord(
        category="usererror", code="FailureExitCode",
        message="The start task process exited with an unexpected exit code",
        details=[("Message", f"The start task process exited with an unexpected exit code: "
                             f"{event.exit_code}")])
    if node.state == "waitingforstarttask":
        node.state = "starttaskfailed"
        node.state_transition_time = ctx.now
    ctx.state.touch(node, ctx.now)
