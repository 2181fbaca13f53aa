"""A job's per-node runs of its preparation and release tasks (``JobRecord.nodes_run``), and
the release tasks that run when the job ends.

When a job that has a release task ends (terminated for any reason, or deleted), the release
task runs once on every node where the preparation task ran, as soon as none of the job's
attempts is in flight any more; a preparation task still running there is killed first. The
job stays ``terminating`` (or ``deleting``) until every release task has ended, whatever its
outcome. Nodes gone from the pool, or not up (rebooting, unusable, ...), are skipped.

Job-level bookkeeping here never changes the job's ETag (``save_counters``): Batch changes it
for job-level data only.

Imports: core modules, wire models. (core.jobs imports this module; it must not import
core.jobs or core.tasks.)
"""

from __future__ import annotations

from hybatch.core.context import Ctx
from hybatch.core.effects import DeleteTaskFiles, KillNodeTask, NodeTaskLaunch, RunNodeTask
from hybatch.core.job_specs import (
    environment,
    preparation_task_id,
    release_task_id,
    release_wall_clock_s,
)
from hybatch.core.records import (
    FailureInfoRecord,
    JobNodeRecord,
    JobRecord,
    NodeRecord,
    PrepReleaseRunRecord,
)

PREPARATION = "jobpreparation"
RELEASE = "jobrelease"
UP_STATES = frozenset({"idle", "running", "offline", "waitingforstarttask", "starttaskfailed"})
"""Node states in which a node runs job preparation and release tasks."""


def find(job: JobRecord, node_id: str) -> JobNodeRecord | None:
    folded = node_id.lower()
    for entry in job.nodes_run:
        if entry.node_id.lower() == folded:
            return entry
    return None


def preparation_state(job: JobRecord, node_id: str) -> str:
    """Where the job's preparation stands on a node, for placement: ``ready`` (no
    preparation task, it succeeded, or it need not succeed first), ``none`` (it has to run
    there first), ``running`` (tasks wait for it) or ``blocked`` (it failed, and must
    succeed: the node takes no task of the job)."""
    prep = job.spec.job_preparation_task
    if prep is None:
        return "ready"
    entry = find(job, node_id)
    run = entry.preparation if entry is not None else None
    if entry is None or run is None or entry.rerun:
        return "none"
    if prep.wait_for_success is False:
        return "ready"
    if run.state == "running":
        return "running"
    return "ready" if run.result == "success" else "blocked"


def entry_for(ctx: Ctx, job: JobRecord, node: NodeRecord) -> JobNodeRecord:
    entry = find(job, node.id)
    if entry is None:
        entry = JobNodeRecord(pool_id=node.pool_id, node_id=node.id)
        job.nodes_run.append(entry)
        ctx.state.save_counters(job)
    return entry


def launch(ctx: Ctx, job: JobRecord, entry: JobNodeRecord, kind: str) -> None:
    """Run the job's preparation or release task on the entry's node (a new attempt)."""
    entry.attempt += 1
    spec = job.spec
    common = spec.common_environment_settings
    if kind == PREPARATION:
        prep = spec.job_preparation_task
        assert prep is not None
        c = prep.constraints
        limit = c.max_wall_clock_time if c is not None else None
        nodetask = NodeTaskLaunch(
            pool_id=entry.pool_id, node_id=entry.node_id, kind=kind, job_id=job.id,
            task_id=preparation_task_id(prep), attempt=entry.attempt,
            command_line=prep.command_line,
            environment=environment(common, prep.environment_settings),
            max_wall_clock_s=limit.total_seconds() if limit is not None else None)
    else:
        release = spec.job_release_task
        assert release is not None
        nodetask = NodeTaskLaunch(
            pool_id=entry.pool_id, node_id=entry.node_id, kind=kind, job_id=job.id,
            task_id=release_task_id(release), attempt=entry.attempt,
            command_line=release.command_line,
            environment=environment(common, release.environment_settings),
            max_wall_clock_s=release_wall_clock_s(release))
    ctx.effects.append(RunNodeTask(nodetask))
    ctx.state.save_counters(job)


def stop_preparation(ctx: Ctx, job: JobRecord, entry: JobNodeRecord, category: str,
                     code: str, message: str) -> None:
    """End a running preparation run now (its process, if any, is killed; a late exit of it
    is ignored): completed with failure ``code``."""
    run = entry.preparation
    if run is None or run.state != "running":
        return
    ctx.effects.append(KillNodeTask(pool_id=entry.pool_id, node_id=entry.node_id,
                                    kind=PREPARATION, job_id=job.id, attempt=entry.attempt))
    entry.attempt += 1
    _fail(ctx, run, category, code, message)
    ctx.state.save_counters(job)


def stop_release(ctx: Ctx, job: JobRecord, entry: JobNodeRecord, category: str, code: str,
                 message: str) -> None:
    """End a running release run now (its node is gone or restarted): completed with
    failure ``code``; a late exit of it is ignored."""
    run = entry.release
    if run is None or run.state != "running":
        return
    entry.attempt += 1
    _fail(ctx, run, category, code, message)
    ctx.state.save_counters(job)


def _fail(ctx: Ctx, run: PrepReleaseRunRecord, category: str, code: str,
          message: str) -> None:
    run.state = "completed"
    run.end_time = ctx.now
    run.result = "failure"
    run.failure_info = FailureInfoRecord(category=category, code=code, message=message)


def pending(ctx: Ctx, job: JobRecord) -> bool:
    """The job has ended and none of its attempts is in flight: start the release tasks not
    started yet; True while one of them still runs (the job then waits)."""
    if not job.nodes_run:
        return False
    release = job.spec.job_release_task
    busy = False
    for entry in job.nodes_run:
        stop_preparation(ctx, job, entry, "usererror", "TaskEnded",
                         "The job ended while its preparation task was running.")
        if release is None or entry.preparation is None:
            continue
        if entry.release is None:
            node = ctx.state.nodes.get(entry.node_id.lower())
            if node is None or node.removing or node.state not in UP_STATES:
                continue  # the node is gone or down: no release there
            entry.release = PrepReleaseRunRecord(state="running", start_time=ctx.now)
            launch(ctx, job, entry, RELEASE)
        if entry.release.state == "running":
            busy = True
    return busy


def release_files(job: JobRecord) -> list[DeleteTaskFiles]:
    """Deleting the job removes its preparation and release task directories too."""
    prep, release = job.spec.job_preparation_task, job.spec.job_release_task
    out: list[DeleteTaskFiles] = []
    for entry in job.nodes_run:
        if prep is not None and entry.preparation is not None:
            out.append(DeleteTaskFiles(pool_id=entry.pool_id, node_id=entry.node_id,
                                       job_id=job.id, task_id=preparation_task_id(prep)))
        if release is not None and entry.release is not None:
            out.append(DeleteTaskFiles(pool_id=entry.pool_id, node_id=entry.node_id,
                                       job_id=job.id, task_id=release_task_id(release)))
    return out
