"""Job schedule lifecycle: create, update (merge and replace), disable, enable, terminate,
delete, and the settling of terminating and deleting schedules.

States (BatchJobScheduleState): ``active`` may create jobs; ``disabled`` creates none until
enabled; ``terminating`` waits for the jobs it created to finish terminating, then
``completed`` (final, ``executionInfo.endTime`` set); ``deleting`` waits for its jobs to be
deleted (tasks killed, files removed), then the schedule is gone.

Transitions (anything else answers 409 with the code of the state it is in):

======================  =========================  ==========================================
command                 from                       to
======================  =========================  ==========================================
disable                 active, disabled           disabled (idempotent)
enable                  disabled, active           active (idempotent)
update (PATCH/PUT)      active, disabled           unchanged state, new spec
terminate               active, disabled           terminating -> completed
delete                  any                        deleting -> gone (idempotent while deleting)
======================  =========================  ==========================================

Refusals: ``JobScheduleBeingDeleted`` (deleting), ``JobScheduleBeingTerminated``
(terminating), ``JobScheduleCompleted`` (completed).

Creating jobs on the recurrence is the timer's work (:mod:`hybatch.core.schedule_timer`,
run on every Tick): this module sets ``next_run_time`` when the schedule is created or its
``schedule`` replaced (see :func:`next_run_time`), and the timer moves it along. Jobs a
schedule created carry ``JobRecord.job_schedule_id``; terminate and delete act on them.

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hybatch.core.commands import (
    CreateJobSchedule,
    DeleteJob,
    DeleteJobSchedule,
    DisableJobSchedule,
    EnableJobSchedule,
    TerminateJobSchedule,
    UpdateJobSchedule,
)
from hybatch.core.context import Ctx, check_precondition
from hybatch.core.errors import DomainError, invalid_property
from hybatch.core.job_specs import check_job_tasks
from hybatch.core.jobs import begin_termination, delete_job
from hybatch.core.records import JobScheduleRecord
from hybatch.core.validation import check_id, check_range, unsupported
from hybatch.schema import (
    BatchJobScheduleConfiguration,
    BatchJobSpecification,
    BatchMetadataItem,
    format_duration,
)

MIN_INTERVAL = timedelta(minutes=1)
"""The least ``startWindow`` and ``recurrenceInterval`` Batch accepts."""
MAX_DISPLAY_NAME = 1024
TERMINATE_REASON = "TerminateJobSchedule"
"""The ``terminateReason`` of the jobs a terminated schedule ends."""


# ------------------------------------------------------------------ errors


def schedule_not_found(schedule_id: str) -> DomainError:
    return DomainError("JobScheduleNotFound", "The specified job schedule does not exist.",
                       details={"JobScheduleId": schedule_id})


def schedule_exists(schedule_id: str) -> DomainError:
    return DomainError("JobScheduleExists", "The specified job schedule already exists.",
                       details={"JobScheduleId": schedule_id})


def job_with_same_id(schedule_id: str) -> DomainError:
    return DomainError("JobWithSameIdExists",
                       "A job with the same id as the specified job schedule already exists.",
                       details={"JobScheduleId": schedule_id})


_STATE_CONFLICTS = {
    "deleting": ("JobScheduleBeingDeleted", "The specified job schedule has been marked for "
                 "deletion and is being deleted."),
    "terminating": ("JobScheduleBeingTerminated", "The specified job schedule is being "
                    "terminated."),
    "completed": ("JobScheduleCompleted", "The specified job schedule is already in a "
                  "completed state."),
}


def _refuse_if(schedule: JobScheduleRecord, *states: str) -> None:
    if schedule.state in states:
        code, message = _STATE_CONFLICTS[schedule.state]
        raise DomainError(code, message, details={"JobScheduleId": schedule.id})


# ------------------------------------------------------------------ validation


def validate_configuration(config: BatchJobScheduleConfiguration,
                           prefix: str = "schedule") -> None:
    """``startWindow`` and ``recurrenceInterval``: at least one minute when given."""
    for name, value in (("startWindow", config.start_window),
                        ("recurrenceInterval", config.recurrence_interval)):
        if value is not None and value < MIN_INTERVAL:
            raise invalid_property(f"{prefix}.{name}", format_duration(value),
                                   "The value must be at least 1 minute.")


def _check_display_name(prop: str, value: str | None) -> None:
    if value is not None and len(value) > MAX_DISPLAY_NAME:
        raise invalid_property(prop, value[:64] + "...",
                               f"The value may be at most {MAX_DISPLAY_NAME} characters long.")


def validate_job_specification(spec: BatchJobSpecification,
                               prefix: str = "jobSpecification") -> None:
    """The template of the schedule's jobs, under the rules a job created from it must meet
    (the same features are unsupported as on Jobs_CreateJob)."""
    _check_display_name(f"{prefix}.displayName", spec.display_name)
    if spec.priority is not None:
        check_range(f"{prefix}.priority", spec.priority, -1000, 1000)
    if spec.max_parallel_tasks is not None and spec.max_parallel_tasks != -1:
        check_range(f"{prefix}.maxParallelTasks", spec.max_parallel_tasks, 1, 1_000_000)
    constraints = spec.constraints
    if constraints is not None:
        wall = constraints.max_wall_clock_time
        if wall is not None and wall < timedelta(0):
            raise invalid_property(f"{prefix}.constraints.maxWallClockTime",
                                   format_duration(wall), "The value must not be negative.")
        retries = constraints.max_task_retry_count
        if retries is not None:
            check_range(f"{prefix}.constraints.maxTaskRetryCount", retries, -1, 2**31 - 1)
    info = spec.pool_info
    if info.auto_pool_specification is not None:
        raise unsupported("Auto pools", f"{prefix}.poolInfo.autoPoolSpecification")
    if not info.pool_id:
        raise DomainError("MissingRequiredProperty", "The job specification must name a pool.",
                          details={"PropertyName": f"{prefix}.poolInfo.poolId"})
    check_job_tasks(spec.job_manager_task, spec.job_preparation_task, spec.job_release_task,
                    prefix)


# ------------------------------------------------------------------ timing (pure)


def next_run_time(config: BatchJobScheduleConfiguration, since: datetime) -> datetime | None:
    """When the first job of a schedule that has created none is due, counted from ``since``
    (the creation of the schedule, or the last change of its ``schedule``).

    That is ``doNotRunUntil`` when it is later than ``since``, else ``since`` itself (the
    schedule is ready at once); None when that moment is after ``doNotRunAfter`` (no job will
    ever be created). The recurrence only matters after a job was created: the timer
    (:mod:`hybatch.core.schedule_timer`) moves this forward on its grid.
    """
    due = since
    until = config.do_not_run_until
    if until is not None and until > since:
        due = until
    after = config.do_not_run_after
    if after is not None and due > after:
        return None
    return due


# ------------------------------------------------------------------ commands


def get_schedule(ctx: Ctx, schedule_id: str) -> JobScheduleRecord:
    schedule = ctx.state.job_schedules.get(schedule_id.lower())
    if schedule is None:
        raise schedule_not_found(schedule_id)
    return schedule


def set_schedule_state(ctx: Ctx, schedule: JobScheduleRecord, new_state: str) -> None:
    if schedule.state == new_state:
        return
    schedule.previous_state = schedule.state
    schedule.previous_state_transition_time = schedule.state_transition_time
    schedule.state = new_state
    schedule.state_transition_time = ctx.now
    ctx.state.touch(schedule, ctx.now)


def create_job_schedule(ctx: Ctx, cmd: CreateJobSchedule) -> JobScheduleRecord:
    spec = cmd.spec
    check_id(spec.id)
    _check_display_name("displayName", spec.display_name)
    validate_configuration(spec.schedule)
    validate_job_specification(spec.job_specification)
    key = spec.id.lower()
    if key in ctx.state.job_schedules:
        raise schedule_exists(spec.id)
    if key in ctx.state.jobs:
        raise job_with_same_id(spec.id)
    schedule = JobScheduleRecord(id=spec.id, spec=spec, creation_time=ctx.now,
                                 state="active", state_transition_time=ctx.now,
                                 next_run_time=next_run_time(spec.schedule, ctx.now))
    ctx.state.add_job_schedule(schedule, ctx.now)
    return schedule


def update_job_schedule(ctx: Ctx, cmd: UpdateJobSchedule) -> JobScheduleRecord:
    """PATCH replaces the elements given; PUT replaces all three (absent schedule: the empty
    schedule, absent metadata: none). Jobs already created keep their own specification."""
    schedule = get_schedule(ctx, cmd.job_schedule_id)
    check_precondition(schedule.etag, schedule.last_modified, cmd.precondition)
    _refuse_if(schedule, "deleting", "terminating", "completed")
    config = cmd.schedule
    job_spec = cmd.job_specification
    metadata: list[BatchMetadataItem] | None = (
        list(cmd.metadata) if cmd.metadata is not None else None)
    if cmd.replace:
        if job_spec is None:
            raise DomainError("MissingRequiredProperty",
                              "A required property was not specified in the request body.",
                              details={"PropertyName": "jobSpecification"})
        config = config if config is not None else BatchJobScheduleConfiguration()
    if config is not None:
        validate_configuration(config)
    if job_spec is not None:
        validate_job_specification(job_spec)
    update: dict[str, object] = {}
    if config is not None:
        update["schedule"] = config
    if job_spec is not None:
        update["job_specification"] = job_spec
    if metadata is not None or cmd.replace:
        update["metadata"] = metadata
    schedule.spec = schedule.spec.model_copy(update=update)
    if config is not None:
        schedule.next_run_time = next_run_time(config, ctx.now)
    ctx.state.touch(schedule, ctx.now)
    return schedule


def disable_job_schedule(ctx: Ctx, cmd: DisableJobSchedule) -> JobScheduleRecord:
    schedule = get_schedule(ctx, cmd.job_schedule_id)
    check_precondition(schedule.etag, schedule.last_modified, cmd.precondition)
    _refuse_if(schedule, "deleting", "terminating", "completed")
    set_schedule_state(ctx, schedule, "disabled")
    return schedule


def enable_job_schedule(ctx: Ctx, cmd: EnableJobSchedule) -> JobScheduleRecord:
    schedule = get_schedule(ctx, cmd.job_schedule_id)
    check_precondition(schedule.etag, schedule.last_modified, cmd.precondition)
    _refuse_if(schedule, "deleting", "terminating", "completed")
    set_schedule_state(ctx, schedule, "active")
    return schedule


def terminate_job_schedule(ctx: Ctx, cmd: TerminateJobSchedule) -> JobScheduleRecord:
    """Terminate the schedule's unfinished jobs (reason ``TerminateJobSchedule``); the
    schedule completes once none of them is still terminating."""
    schedule = get_schedule(ctx, cmd.job_schedule_id)
    check_precondition(schedule.etag, schedule.last_modified, cmd.precondition)
    _refuse_if(schedule, "deleting", "terminating", "completed")
    set_schedule_state(ctx, schedule, "terminating")
    for job in ctx.state.jobs_of_schedule(schedule.key):
        if job.state not in ("completed", "terminating", "deleting"):
            begin_termination(ctx, job, TERMINATE_REASON)
    ctx.state.schedules_to_settle.add(schedule.key)
    settle(ctx, schedule)
    return schedule


def delete_job_schedule(ctx: Ctx, cmd: DeleteJobSchedule) -> JobScheduleRecord:
    """Delete every job the schedule created (their running tasks are killed and their files
    removed); the schedule is gone once none of them is left."""
    schedule = get_schedule(ctx, cmd.job_schedule_id)
    check_precondition(schedule.etag, schedule.last_modified, cmd.precondition)
    if schedule.state == "deleting":
        return schedule
    set_schedule_state(ctx, schedule, "deleting")
    for job in ctx.state.jobs_of_schedule(schedule.key):
        delete_job(ctx, DeleteJob(job.id))
    ctx.state.schedules_to_settle.add(schedule.key)
    settle(ctx, schedule)
    return schedule


# ------------------------------------------------------------------ settling


def settle(ctx: Ctx, schedule: JobScheduleRecord) -> None:
    """Finish a terminating schedule whose jobs are all completed (or being deleted), or a
    deleting schedule with no job left."""
    jobs = ctx.state.jobs_of_schedule(schedule.key)
    if schedule.state == "terminating":
        if all(job.state in ("completed", "deleting") for job in jobs):
            schedule.end_time = ctx.now
            schedule.next_run_time = None
            set_schedule_state(ctx, schedule, "completed")
            ctx.state.schedules_to_settle.discard(schedule.key)
    elif schedule.state == "deleting":
        if not jobs:
            ctx.state.drop_job_schedule(schedule)
    else:
        ctx.state.schedules_to_settle.discard(schedule.key)


def settle_all(ctx: Ctx) -> None:
    """Run after every message: a job of a settling schedule may have finished meanwhile."""
    for key in sorted(ctx.state.schedules_to_settle):
        schedule = ctx.state.job_schedules.get(key)
        if schedule is None:
            ctx.state.schedules_to_settle.discard(key)
        else:
            settle(ctx, schedule)
