"""The job schedule timer: create each schedule's jobs when they are due, skip the runs that
missed their start window, and complete schedules that will create no more jobs.

Time comes in as ``ctx.now`` (the writer loop's Tick carries it); nothing here reads a clock.
The rules (Batch's, per the wire reference §4.5 and the REST documentation of
``BatchJobScheduleConfiguration``):

* Runs are due at ``doNotRunUntil`` (or at once), then every ``recurrenceInterval`` after that
  first due time: a fixed grid, so a job created late does not push the next run later.
* At most one active job per schedule: while the previous job is not completed, a due run
  waits. A run that cannot start within ``startWindow`` of its due time is skipped; without a
  window it may wait until the next run is due (a run is never carried into the next
  interval, so a window longer than the interval is the same as none).
* No job is created after ``doNotRunAfter``.
* A disabled schedule creates no job; its runs still pass (and are skipped) on the grid.
* A schedule that will create no more jobs (no recurrence and its run made or missed, or past
  ``doNotRunAfter``) completes once it has no active job: ``completed`` with
  ``executionInfo.endTime``. Its last job is left to finish, not terminated.

Jobs are created from the schedule's ``jobSpecification`` with Batch's ids,
``{scheduleId}:job-{n}`` (``n`` counts from 1 per schedule), and carry the schedule's id.

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hybatch.core import jobs as job_rules
from hybatch.core.context import Ctx
from hybatch.core.records import JobRecord, JobScheduleRecord
from hybatch.schema import BatchJobCreateOptions

FINISHED_JOB_STATES = ("completed", "deleting")
"""A job in these states no longer counts as the schedule's active job."""


def job_id_for(schedule: JobScheduleRecord, number: int) -> str:
    """Batch's id for the ``number``-th job of a schedule (the ``:`` is part of it)."""
    return f"{schedule.id}:job-{number}"


def run_due(ctx: Ctx) -> None:
    """Run every active or disabled schedule's timer at ``ctx.now`` (in id order)."""
    for key in sorted(ctx.state.job_schedules):
        schedule = ctx.state.job_schedules[key]
        if schedule.state in ("active", "disabled"):
            advance(ctx, schedule)


def _active_job(ctx: Ctx, schedule: JobScheduleRecord) -> JobRecord | None:
    for job in ctx.state.jobs_of_schedule(schedule.key):
        if job.state not in FINISHED_JOB_STATES:
            return job
    return None


def _deadline(due: datetime, window: timedelta | None,
              interval: timedelta | None) -> datetime | None:
    """The last moment a run due at ``due`` may start (None: no limit)."""
    limits = [limit for limit in (window, interval) if limit is not None]
    return due + min(limits) if limits else None


def _next_on_grid(due: datetime, interval: timedelta | None,
                  after: datetime | None) -> datetime | None:
    """The run after the one due at ``due`` (None: no more runs)."""
    if interval is None:
        return None
    following = due + interval
    if after is not None and following > after:
        return None
    return following


def advance(ctx: Ctx, schedule: JobScheduleRecord) -> None:
    """Bring one schedule up to ``ctx.now``: skip missed runs, create the due job, complete."""
    config = schedule.spec.schedule
    interval = config.recurrence_interval
    after = config.do_not_run_after
    now = ctx.now
    due = schedule.next_run_time
    changed = False
    if due is not None and after is not None and due > after:
        due, changed = None, True
    while due is not None and due <= now:
        deadline = _deadline(due, config.start_window, interval)
        if deadline is not None and now >= deadline:
            # missed: jump straight to the first run whose window has not closed
            due = _skip_to(due, now, interval, after)
            changed = True
            continue
        if after is not None and now > after:
            due, changed = None, True
            break
        if schedule.state != "active" or _active_job(ctx, schedule) is not None:
            break  # waits (within its window) for the schedule or the previous job
        create_job(ctx, schedule)
        due = _next_on_grid(due, interval, after)
        changed = True
        break  # the new job is active: nothing more can run now
    if changed:
        schedule.next_run_time = due
        ctx.state.touch(schedule, now)
    if due is None and _active_job(ctx, schedule) is None:
        _complete(ctx, schedule)


def _skip_to(due: datetime, now: datetime, interval: timedelta | None,
             after: datetime | None) -> datetime | None:
    """The first run on the grid after ``due`` that is not due yet or still in its window
    (arithmetic, not a loop per run: a server stopped for a week skips quickly)."""
    if interval is None:
        return None
    missed = (now - due) // interval  # whole intervals since ``due``
    candidate = due + interval * max(1, missed)
    if after is not None and candidate > after:
        return None
    return candidate


def create_job(ctx: Ctx, schedule: JobScheduleRecord) -> JobRecord:
    """A job from the schedule's ``jobSpecification``, active at once."""
    schedule.jobs_created += 1
    job_id = job_id_for(schedule, schedule.jobs_created)
    template = schedule.spec.job_specification.model_dump(by_alias=True, exclude_none=True)
    spec = BatchJobCreateOptions.model_validate({**template, "id": job_id})
    ctx.state.job_seq += 1
    job = JobRecord(id=job_id, spec=spec, creation_time=ctx.now, seq=ctx.state.job_seq,
                    state="active", state_transition_time=ctx.now, start_time=ctx.now,
                    job_schedule_id=schedule.id)
    ctx.state.add_job(job, ctx.now)
    schedule.recent_job_id = job_id
    ctx.state.touch(schedule, ctx.now)
    job_rules.check_all_complete(ctx, job)
    return job


def _complete(ctx: Ctx, schedule: JobScheduleRecord) -> None:
    """No more runs and no active job: the schedule is completed (final)."""
    schedule.next_run_time = None
    schedule.end_time = ctx.now
    schedule.previous_state = schedule.state
    schedule.previous_state_transition_time = schedule.state_transition_time
    schedule.state = "completed"
    schedule.state_transition_time = ctx.now
    ctx.state.touch(schedule, ctx.now)
