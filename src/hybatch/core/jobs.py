"""Job lifecycle: create, update, terminate, delete, and the consequences of task completion.

States (BatchJobState): ``active`` schedules tasks; ``terminating`` waits for running tasks to
be killed, then ``completed`` (final); ``deleting`` waits for running tasks to be killed, then
the job and its tasks are gone. ``disabling``/``disabled``/``enabling`` belong to job disable
(not built yet).

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from hybatch.core.attempts import KILL_DELETE, KILL_JOB_TERMINATE, kill_attempt
from hybatch.core.commands import CreateJob, DeleteJob, TerminateJob, UpdateJob
from hybatch.core.context import Ctx, check_precondition
from hybatch.core.effects import DeleteTaskFiles
from hybatch.core.errors import DomainError, conflict, exists, not_found
from hybatch.core.records import JobRecord
from hybatch.core.validation import check_id, check_range, unsupported
from hybatch.schema import BatchJobCreateOptions

UPDATABLE_FIELDS = {
    # wire name -> attribute of the job's spec model: what PATCH/PUT may change
    "priority": "priority", "maxParallelTasks": "max_parallel_tasks",
    "allowTaskPreemption": "allow_task_preemption", "onAllTasksComplete": "on_all_tasks_complete",
    "constraints": "constraints", "poolInfo": "pool_info", "metadata": "metadata",
}


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
    if spec.job_manager_task is not None:
        raise unsupported("Job manager tasks", "jobManagerTask")
    if spec.job_preparation_task is not None:
        raise unsupported("Job preparation tasks", "jobPreparationTask")
    if spec.job_release_task is not None:
        raise unsupported("Job release tasks", "jobReleaseTask")
    if spec.uses_task_dependencies:
        raise unsupported("Task dependencies", "usesTaskDependencies")


def _check_pool_info(info: object) -> None:
    """A job's poolInfo must name an existing-style pool id; auto pools are not built."""
    if getattr(info, "auto_pool_specification", None) is not None:
        raise unsupported("Auto pools", "poolInfo.autoPoolSpecification")
    if not getattr(info, "pool_id", None):
        raise DomainError("MissingRequiredProperty", "The job must name a pool.",
                          details={"PropertyName": "poolInfo.poolId"})


def create_job(ctx: Ctx, cmd: CreateJob) -> JobRecord:
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
    check_all_complete(ctx, job)
    return job


def get_job(ctx: Ctx, job_id: str) -> JobRecord:
    job = ctx.state.jobs.get(job_id.lower())
    if job is None:
        raise not_found("Job", job_id)
    return job


def _writable(job: JobRecord) -> None:
    if job.state == "deleting":
        raise conflict("JobBeingDeleted", "The specified job is being deleted.")
    if job.state == "completed":
        raise conflict("JobCompleted", "The specified job is already in a completed state.")


def update_job(ctx: Ctx, cmd: UpdateJob) -> JobRecord:
    job = get_job(ctx, cmd.job_id)
    check_precondition(job.etag, job.last_modified, cmd.precondition)
    _writable(job)
    fields = dict(cmd.fields)
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
        update[UPDATABLE_FIELDS[name]] = value
    job.spec = job.spec.model_copy(update=update)
    ctx.state.touch(job, ctx.now)
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
    if job.state == "terminating":
        job.end_time = ctx.now
        set_job_state(ctx, job, "completed")
    elif job.state == "deleting":
        for task in ctx.state.tasks_of(job.key):
            if task.node_id is not None:
                ctx.effects.append(DeleteTaskFiles(pool_id=task.pool_id or "",
                                                   node_id=task.node_id, job_id=task.job_id,
                                                   task_id=task.id))
        ctx.state.drop_job(job)


def on_task_completed(ctx: Ctx, job: JobRecord) -> None:
    """A task of ``job`` completed or was removed: settle or auto-terminate the job."""
    if job.state in ("terminating", "deleting"):
        settle(ctx, job)
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
