"""Job lifecycle: create, update, terminate, delete, and the consequences of task completion.

States (BatchJobState): ``active`` schedules tasks; ``terminating`` waits for running tasks to
be killed, then ``completed`` (final); ``deleting`` waits for running tasks to be killed, then
the job and its tasks are gone. ``disabling`` starts no task and waits until its running
tasks are dealt with (killed and requeued, killed and completed, or left to finish, per the
``disableTasks`` option), then ``disabled``; enable passes through ``enabling`` to ``active``
within the command (nothing to wait for) and queues the job's active tasks again.

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from collections import deque

from hybatch.core import job_release
from hybatch.core.attempts import (
    KILL_DELETE,
    KILL_JOB_TERMINATE,
    KILL_REQUEUE,
    KILL_TERMINATE,
    kill_attempt,
)
from hybatch.core.commands import (
    CreateJob,
    DeleteJob,
    DisableJob,
    EnableJob,
    TerminateJob,
    UpdateJob,
)
from hybatch.core.context import Ctx, check_precondition
from hybatch.core.effects import DeleteTaskFiles
from hybatch.core.errors import DomainError, conflict, exists, not_found
from hybatch.core.job_specs import check_job_tasks
from hybatch.core.records import JobNodeRecord, JobRecord
from hybatch.core.validation import check_id, check_range, unsupported
from hybatch.schema import BatchJobCreateOptions

UPDATABLE_FIELDS = {
    # wire name -> attribute of the job's spec model: what PATCH/PUT may change
    "priority": "priority", "maxParallelTasks": "max_parallel_tasks",
    "allowTaskPreemption": "allow_task_preemption", "onAllTasksComplete": "on_all_tasks_complete",
    "constraints": "constraints", "poolInfo": "pool_info", "metadata": "metadata",
}
DISABLE_OPTIONS = ("requeue", "terminate", "wait")


def set_job_state(ctx: Ctx, job: JobRecord, new_state: str) -> None:
    if job.state == new_state:
        return
    job.previous_state = job.state
    job.previous_state_transition_time = job.state_transition_time
    job.state = new_state
    job.state_transition_time = ctx.now
    ctx.state.touch(job, ctx.now)


def validate_job_spec(spec: BatchJobCreateOptions) -> None:
    check_id(spec.id)
    if spec.priority is not None:
        check_range("priority", spec.priority, -1000, 1000)
    if spec.max_parallel_tasks is not None and spec.max_parallel_tasks != -1:
        check_range("maxParallelTasks", spec.max_parallel_tasks, 1, 1_000_000)
    info = spec.pool_info
    if info is None or (not info.pool_id and info.auto_pool_specification is None):
        raise DomainError("MissingRequiredProperty", "The job must name a pool.",
                          details={"PropertyName": "poolInfo"})
    if info.auto_pool_specification is not None:
        raise unsupported("Auto pools", "poolInfo.autoPoolSpecification")
    check_job_tasks(spec.job_manager_task, spec.job_preparation_task, spec.job_release_task)


def _check_pool_info(info: object) -> None:
    """A job's poolInfo must name an existing-style pool id; auto pools are not built."""
    if getattr(info, "auto_pool_specification", None) is not None:
        raise unsupported("Auto pools", "poolInfo.autoPoolSpecification")
    if not getattr(info, "pool_id", None):
        raise DomainError("MissingRequiredProperty", "The job must name a pool.",
                          details={"PropertyName": "poolInfo.poolId"})


def create_job(ctx: Ctx, cmd: CreateJob) -> JobRecord:
    job = open_job(ctx, cmd)
    check_all_complete(ctx, job)
    return job


def open_job(ctx: Ctx, cmd: CreateJob) -> JobRecord:
    """Validate and add the job (its first tasks, if any, are added by the caller before
    ``check_all_complete``)."""
    spec = cmd.spec
    validate_job_spec(spec)
    if spec.id.lower() in ctx.state.jobs:
        raise exists("Job", spec.id)
    if spec.id.lower() in ctx.state.job_schedules:
        raise DomainError("JobScheduleWithSameIdExists", "A job schedule with the same id as "
                          "the specified job already exists.", details={"JobId": spec.id})
    ctx.state.job_seq += 1
    job = JobRecord(id=spec.id, spec=spec, creation_time=ctx.now, seq=ctx.state.job_seq,
                    state="active", state_transition_time=ctx.now, start_time=ctx.now)
    ctx.state.add_job(job, ctx.now)
    return job


def get_job(ctx: Ctx, job_id: str) -> JobRecord:
    job = ctx.state.jobs.get(job_id.lower())
    if job is None:
        raise not_found("Job", job_id)
    return job


def _state_conflict(job: JobRecord) -> DomainError:
    """The 409 for a job that is being deleted, terminated or is completed."""
    if job.state == "deleting":
        return conflict("JobBeingDeleted", "The specified job is being deleted.")
    if job.state == "terminating":
        return conflict("JobBeingTerminated", "The specified job is being terminated.")
    if job.state == "completed":
        return conflict("JobCompleted", "The specified job is already in a completed state.")
    return conflict("JobNotActive", "The specified job is not in active state.")


def _writable(job: JobRecord) -> None:
    if job.state in ("deleting", "terminating", "completed"):
        raise _state_conflict(job)


def update_job(ctx: Ctx, cmd: UpdateJob) -> JobRecord:
    """PATCH merges the fields sent; PUT (``replace``) resets every updatable field it does
    not send to its default (priority 0, no parallel-task cap, no constraints, no metadata,
    allowTaskPreemption false, onAllTasksComplete noaction unless it is already
    terminatejob, which cannot be turned off). The pool may change only while the job is
    disabled; onAllTasksComplete never goes back from terminatejob to noaction."""
    job = get_job(ctx, cmd.job_id)
    check_precondition(job.etag, job.last_modified, cmd.precondition)
    _writable(job)
    sent = dict(cmd.fields)
    fields = dict(sent)
    if cmd.replace:
        # PUT: absent updatable fields return to their defaults
        for name in ("priority", "maxParallelTasks", "allowTaskPreemption",
                     "onAllTasksComplete", "constraints", "metadata"):
            fields.setdefault(name, None)
    update: dict[str, object] = {}
    for name, value in fields.items():
        if name not in UPDATABLE_FIELDS:
            raise DomainError("InvalidPropertyValue", f"{name} cannot be updated.",
                              details={"PropertyName": name})
        if name == "priority" and value is not None:
            check_range("priority", int(str(value)), -1000, 1000)
        if name == "maxParallelTasks" and value is not None and value != -1:
            check_range("maxParallelTasks", int(str(value)), 1, 1_000_000)  # as at creation
        if name == "poolInfo" and value is None:
            continue
        if name == "poolInfo":
            _check_pool_info(value)
            _check_pool_change(job, value)
        if name == "onAllTasksComplete":
            value = _all_complete_mode(job, value, explicit=name in sent)
        update[UPDATABLE_FIELDS[name]] = value
    job.spec = job.spec.model_copy(update=update)
    ctx.state.touch(job, ctx.now)
    if job.pool_id:
        ctx.state.pools_to_place.add(job.pool_id.lower())
    check_all_complete(ctx, job)
    return job


def _check_pool_change(job: JobRecord, info: object) -> None:
    """Moving a job to another pool is allowed only while it is disabled (Batch rule)."""
    new_pool = str(getattr(info, "pool_id", "") or "")
    if new_pool.lower() != job.pool_id.lower() and job.state != "disabled":
        raise DomainError("OperationInvalidForCurrentState",
                          "The pool of a job can be changed only while the job is disabled.",
                          details={"PropertyName": "poolInfo", "JobState": job.state})


def _all_complete_mode(job: JobRecord, value: object, *, explicit: bool) -> object:
    """onAllTasksComplete may go from noaction to terminatejob, never back."""
    if str(job.spec.on_all_tasks_complete or "noaction") != "terminatejob":
        return value
    if str(value or "noaction") == "terminatejob":
        return value
    if not explicit:
        return job.spec.on_all_tasks_complete  # PUT leaves out what cannot be reset
    raise DomainError("InvalidPropertyValue", "onAllTasksComplete cannot be changed from "
                      "terminatejob to noaction.",
                      details={"PropertyName": "onAllTasksComplete",
                               "PropertyValue": str(value or "noaction")})


def disable_job(ctx: Ctx, cmd: DisableJob) -> JobRecord:
    """Stop scheduling the job's tasks; running ones are requeued (killed, back to active),
    terminated (killed, completed with TaskEnded) or left to finish. Attempts offered to a
    node and not started yet are taken back whatever the option (they are still active)."""
    job = get_job(ctx, cmd.job_id)
    check_precondition(job.etag, job.last_modified, cmd.precondition)
    option = cmd.disable_tasks
    if option not in DISABLE_OPTIONS:
        raise DomainError("InvalidPropertyValue", "disableTasks must be requeue, terminate "
                          "or wait.", details={"PropertyName": "disableTasks",
                                               "PropertyValue": option})
    if job.state in ("disabling", "disabled"):
        return job  # Batch accepts a repeated disable
    if job.state != "active":
        raise _state_conflict(job)
    set_job_state(ctx, job, "disabling")
    ctx.state.ready[job.key] = deque()  # re-queued in order on enable
    kill_for = {"requeue": KILL_REQUEUE, "terminate": KILL_TERMINATE}.get(option)
    for key in sorted(ctx.state.running.get(job.key, ())):
        task = ctx.state.tasks.get(key)
        if task is None:
            continue
        if task.offered:
            kill_attempt(ctx, task, KILL_REQUEUE)
        elif kill_for is not None:
            kill_attempt(ctx, task, kill_for)
    settle_disable(ctx, job)
    return job


def settle_disable(ctx: Ctx, job: JobRecord) -> None:
    """A disabling job is disabled once none of its attempts is in flight."""
    if job.state == "disabling" and not ctx.state.running.get(job.key):
        set_job_state(ctx, job, "disabled")


def enable_job(ctx: Ctx, cmd: EnableJob) -> JobRecord:
    """Resume scheduling: every active task of the job is queued again, in submission order."""
    job = get_job(ctx, cmd.job_id)
    check_precondition(job.etag, job.last_modified, cmd.precondition)
    if job.state in ("deleting", "terminating", "completed"):
        raise _state_conflict(job)
    if job.state not in ("disabled", "enabling"):
        raise DomainError("OperationInvalidForCurrentState", "The specified job is not "
                          "disabled, so it cannot be enabled.", details={"JobState": job.state})
    set_job_state(ctx, job, "enabling")
    waiting = sorted((t for t in ctx.state.tasks_of(job.key)
                      if t.state == "active" and not t.offered and not t.waiting_on_parents),
                     key=lambda t: t.seq)
    ctx.state.ready[job.key] = deque(t.key for t in waiting)
    set_job_state(ctx, job, "active")
    if job.pool_id:
        ctx.state.pools_to_place.add(job.pool_id.lower())
    check_all_complete(ctx, job)
    return job


def terminate_job(ctx: Ctx, cmd: TerminateJob) -> JobRecord:
    job = get_job(ctx, cmd.job_id)
    check_precondition(job.etag, job.last_modified, cmd.precondition)
    if job.state == "deleting":
        raise conflict("JobBeingDeleted", "The specified job is being deleted.")
    if job.state in ("completed", "terminating"):
        raise conflict("JobCompleted" if job.state == "completed" else "JobBeingTerminated",
                       f"The specified job is already {job.state}.")
    begin_termination(ctx, job, cmd.reason or "UserTerminate")
    return job


def begin_termination(ctx: Ctx, job: JobRecord, reason: str) -> None:
    """Kill running tasks; the job completes once none is left running."""
    job.terminate_reason = reason
    set_job_state(ctx, job, "terminating")
    for key in list(ctx.state.running.get(job.key, ())):
        task = ctx.state.tasks.get(key)
        if task is not None:
            kill_attempt(ctx, task, KILL_JOB_TERMINATE)
    settle(ctx, job)


def delete_job(ctx: Ctx, cmd: DeleteJob) -> JobRecord:
    job = get_job(ctx, cmd.job_id)
    check_precondition(job.etag, job.last_modified, cmd.precondition)
    if job.state == "deleting":
        return job
    set_job_state(ctx, job, "deleting")
    for key in list(ctx.state.running.get(job.key, ())):
        task = ctx.state.tasks.get(key)
        if task is not None:
            kill_attempt(ctx, task, KILL_DELETE)
    settle(ctx, job)
    return job


def settle(ctx: Ctx, job: JobRecord) -> None:
    """Finish a terminating or deleting job once no attempt of it is still running."""
    if ctx.state.running.get(job.key):
        return
    if job.state in ("terminating", "deleting") and job_release.pending(ctx, job):
        return  # its release tasks run first
    if job.state == "terminating":
        job.end_time = ctx.now
        set_job_state(ctx, job, "completed")
    elif job.state == "deleting":
        for task in ctx.state.tasks_of(job.key):
            if task.node_id is not None:
                ctx.effects.append(DeleteTaskFiles(pool_id=task.pool_id or "",
                                                   node_id=task.node_id, job_id=task.job_id,
                                                   task_id=task.id))
        ctx.effects.extend(job_release.release_files(job))
        ctx.state.drop_job(job)


def on_task_completed(ctx: Ctx, job: JobRecord) -> None:
    """A task of ``job`` completed, went back to active or was removed: settle a
    terminating, deleting or disabling job, or auto-terminate an active one."""
    if job.state in ("terminating", "deleting"):
        settle(ctx, job)
        return
    if job.state == "disabling":
        settle_disable(ctx, job)
        return
    check_all_complete(ctx, job)


def check_all_complete(ctx: Ctx, job: JobRecord) -> None:
    """onAllTasksComplete=terminatejob: terminate once no task is active or running."""
    if job.state != "active":
        return
    if job.spec.on_all_tasks_complete != "terminatejob":
        return
    if job.counts.active == 0 and job.counts.running == 0:
        begin_termination(ctx, job, "AllTasksComplete")


def prep_release_nodes(job: JobRecord) -> list[JobNodeRecord]:
    """The nodes where the job's preparation/release tasks ran, in node id order. Batch
    answers 409 JobPreparationTaskNotSpecified for a job that has neither task."""
    if job.spec.job_preparation_task is None and job.spec.job_release_task is None:
        raise conflict("JobPreparationTaskNotSpecified",
                       "The specified job does not have a job preparation task.")
    return sorted(job.nodes_run, key=lambda entry: entry.node_id.lower())
