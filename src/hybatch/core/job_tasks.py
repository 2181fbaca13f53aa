"""Job preparation tasks in placement, and the job manager's placement rules.

Job preparation (``jobPreparationTask``) runs once on a node before the first task of its
job placed there (``JobRecord.nodes_run`` keeps each node's run; core.job_release):

* With ``waitForSuccess`` (default true) the task placed on the node is assigned to it but
  not sent: it is ``preparing``, holding its slots, until the preparation task exits 0; then
  the node is told about it (it is ``running`` once the node starts it). While preparation
  runs there, more tasks of the job may be assigned to the node the same way.
* When the preparation task fails for good (``constraints.maxTaskRetryCount`` spent) those
  tasks go back to ``active`` (neither a retry nor a requeue: they never ran) and the node
  takes no more task of the job until it is reimaged.
* Without ``waitForSuccess`` tasks are sent at once; the outcome is only recorded.
* After a reboot it runs again if ``rerunOnNodeRebootAfterSuccess`` (default true) or if it
  had not succeeded; after a reimage always (core.node_tasks marks ``rerun``).

An attempt assigned but not sent that must stop (terminate, requeue, delete...) has no
process to kill: core.attempts records it in ``ClusterState.withheld_kills`` and
:func:`settle_withheld` ends it as a kill before start would have.

The job manager (core.job_manager) is created here with its job; placement keeps an
exclusive manager alone on its node (:func:`exclusive_nodes`, :func:`candidates`).

Imports: core modules.
"""

from __future__ import annotations

from hybatch.core import jobs as job_rules
from hybatch.core import tasks as task_rules
from hybatch.core.attempts import KILL_REQUEUE, kill_attempt
from hybatch.core.commands import CreateJob
from hybatch.core.context import Ctx
from hybatch.core.events import NodeTaskExited, TaskExited
from hybatch.core.job_manager import dedicated_only, is_manager, runs_exclusive, task_spec
from hybatch.core.job_release import (
    PREPARATION,
    entry_for,
    launch,
    preparation_state,
    stop_release,
)
from hybatch.core.nodes import RESTART_STATES
from hybatch.core.records import (
    FailureInfoRecord,
    JobNodeRecord,
    JobRecord,
    NodeRecord,
    PrepReleaseRunRecord,
    TaskRecord,
    task_key,
)

# ------------------------------------------------------------------ job creation


def create_job(ctx: Ctx, cmd: CreateJob) -> JobRecord:
    """Jobs_CreateJob: the job, then its manager task (first in its queue), then the
    onAllTasksComplete check (a job whose only task is its manager is not empty)."""
    job = job_rules.open_job(ctx, cmd)
    manager = job.spec.job_manager_task
    if manager is not None:
        task_rules.create_task(ctx, job, task_spec(manager))
    job_rules.check_all_complete(ctx, job)
    return job


# ------------------------------------------------------------------ placement


def has_rules(job: JobRecord) -> bool:
    """Whether placement must consult this module for the job's tasks."""
    spec = job.spec
    return spec.job_preparation_task is not None or spec.job_manager_task is not None


def exclusive_nodes(ctx: Ctx, jobs: list[JobRecord]) -> set[str]:
    """Keys of the nodes an exclusive job manager of one of ``jobs`` is in flight on: no
    other task is offered to them."""
    out: set[str] = set()
    for job in jobs:
        manager = job.spec.job_manager_task
        if manager is None or not runs_exclusive(job):
            continue
        task = ctx.state.tasks.get(task_key(job.id, manager.id))
        if task is not None and task.in_flight and task.node_id is not None:
            out.add(task.node_id.lower())
    return out


def candidates(job: JobRecord, task: TaskRecord, nodes: list[NodeRecord]) -> list[NodeRecord]:
    """The nodes that may take ``task``: not blocked by a failed preparation of its job; for
    an exclusive manager only empty nodes, for one that must not run on a low-priority node
    only dedicated ones."""
    out = nodes
    if job.spec.job_preparation_task is not None:
        out = [n for n in out if preparation_state(job, n.id) != "blocked"]
    if job.spec.job_manager_task is not None and is_manager(job, task):
        if runs_exclusive(job):
            out = [n for n in out if not n.task_keys]
        if dedicated_only(job):
            out = [n for n in out if n.is_dedicated]
    return out


def offer(ctx: Ctx, job: JobRecord, task: TaskRecord, node: NodeRecord) -> bool:
    """Offer (or assign, while the job's preparation runs there) an attempt of ``task`` to
    ``node``, starting the preparation first if it has to run. True when the node must take
    nothing more now (an exclusive manager went there)."""
    state = preparation_state(job, node.id)
    if state == "none":
        start_preparation(ctx, job, node)
        state = preparation_state(job, node.id)
    if state == "running":
        task_rules.offer_to_node(ctx, job, task, node, send=False)
        task.start_time = None  # it has not started; a previous attempt's start is history
        task_rules.set_task_state(ctx, job, task, "preparing")
    else:
        task_rules.offer_to_node(ctx, job, task, node)
    return job.spec.job_manager_task is not None and is_manager(job, task) and \
        runs_exclusive(job)


def start_preparation(ctx: Ctx, job: JobRecord, node: NodeRecord) -> None:
    entry = entry_for(ctx, job, node)
    entry.rerun = False
    entry.preparation = PrepReleaseRunRecord(state="running", start_time=ctx.now)
    launch(ctx, job, entry, PREPARATION)


def _waiting(ctx: Ctx, job: JobRecord, node: NodeRecord) -> list[TaskRecord]:
    """Tasks of ``job`` assigned to ``node`` and waiting for its preparation there."""
    out: list[TaskRecord] = []
    for key in node.task_keys:
        if key[0] != job.key:
            continue
        task = ctx.state.tasks.get(key)
        if task is not None and task.state == "preparing" and task.offered:
            out.append(task)
    return out


# ------------------------------------------------------------------ node task exits


def _restarting(ctx: Ctx, node_id: str) -> bool:
    """The node was restarted (its processes were killed with it)."""
    node = ctx.state.nodes.get(node_id.lower())
    return node is not None and node.state in RESTART_STATES and node.pending_action is None


def _record(run: PrepReleaseRunRecord, event: NodeTaskExited) -> bool:
    """Copy the exit into the run; True when it succeeded."""
    if event.start_time is not None:
        run.start_time = event.start_time
    run.end_time = event.end_time
    run.exit_code = event.exit_code
    return event.exit_code == 0 and not event.timed_out and event.failure is None


def _failure(event: NodeTaskExited, what: str) -> FailureInfoRecord:
    if event.failure is not None:
        return event.failure
    return FailureInfoRecord(
        category="usererror", code="FailureExitCode",
        message=f"The {what} process exited with an unexpected exit code",
        details=[("Message", f"The {what} process exited with an unexpected exit code: "
                             f"{event.exit_code}")])


def on_preparation_exited(ctx: Ctx, job: JobRecord, entry: JobNodeRecord,
                          event: NodeTaskExited) -> None:
    run = entry.preparation
    prep = job.spec.job_preparation_task
    if run is None or prep is None or run.state != "running" or event.attempt != entry.attempt:
        return
    if _restarting(ctx, entry.node_id):
        return  # killed by the node's restart: it runs again once the node is back
    node = ctx.state.nodes.get(entry.node_id.lower())
    ctx.state.save_counters(job)
    if _record(run, event):
        run.state = "completed"
        run.result = "success"
        run.failure_info = None
        if node is not None:
            for task in _waiting(ctx, job, node):
                task_rules.send_offer(ctx, job, task)
        return
    constraints = prep.constraints
    limit = (constraints.max_task_retry_count or 0) if constraints is not None else 0
    if event.exit_code is not None and (limit == -1 or run.retry_count < limit):
        run.retry_count += 1
        run.last_retry_time = ctx.now
        run.start_time = ctx.now
        run.end_time = None
        run.exit_code = None
        launch(ctx, job, entry, PREPARATION)
        return
    run.state = "completed"
    run.result = "failure"
    run.failure_info = _failure(event, "job preparation task")
    if node is not None:
        for task in _waiting(ctx, job, node):
            kill_attempt(ctx, task, KILL_REQUEUE)  # never sent: settled by settle_withheld
        ctx.state.pools_to_place.add(node.pool_id.lower())


def on_release_exited(ctx: Ctx, job: JobRecord, entry: JobNodeRecord,
                      event: NodeTaskExited) -> None:
    run = entry.release
    if run is None or run.state != "running" or event.attempt != entry.attempt:
        return
    if _restarting(ctx, entry.node_id):
        stop_release(ctx, job, entry, "servererror", "NodeRestarted",
                     "The node restarted while the job release task was running.")
    else:
        run.state = "completed"
        if _record(run, event):
            run.result = "success"
            run.failure_info = None
        else:
            run.result = "failure"
            run.failure_info = _failure(event, "job release task")
        ctx.state.save_counters(job)
    job_rules.settle(ctx, job)  # the job may finish now


# ------------------------------------------------------------------ withheld attempts


def settle_withheld(ctx: Ctx) -> None:
    """End every attempt killed while it waited for its job's preparation task (never sent
    to its node) as the node would report a kill before start."""
    pending = ctx.state.withheld_kills
    while pending:
        key = min(pending)
        pending.discard(key)
        task = ctx.state.tasks.get(key)
        if task is None or not task.offered or task.kill_requested is None:
            continue
        task_rules.on_task_exited(ctx, TaskExited(
            job_id=task.job_id, task_id=task.id, attempt=task.attempt, exit_code=None,
            start_time=None, end_time=ctx.now, failure=FailureInfoRecord(
                category="usererror", code="TaskEnded",
                message="The task was ended before its job preparation task completed.")))
