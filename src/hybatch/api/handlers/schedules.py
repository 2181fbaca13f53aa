"""Job schedule handlers (and the jobs a schedule created): parse -> one service call ->
respond."""

from __future__ import annotations

from starlette.responses import Response

from hybatch.api.handlers.common import conditional, endpoint
from hybatch.api.wire import Call, parse_model
from hybatch.core import commands as cmd
from hybatch.core.errors import DomainError
from hybatch.runtime.service import BatchService
from hybatch.schema import (
    BatchJobSchedule,
    BatchJobScheduleCreateOptions,
    BatchJobScheduleUpdateOptions,
    BatchJobSpecification,
    BatchJobSpecificationUpdate,
    BatchMetadataItem,
)


@endpoint
async def create_job_schedule(call: Call, service: BatchService) -> Response:
    spec = await call.body(BatchJobScheduleCreateOptions)
    return call.written(await service.create_job_schedule(cmd.CreateJobSchedule(spec)), 201)


@endpoint
async def list_job_schedules(call: Call, service: BatchService) -> Response:
    listing = service.list_job_schedules(call.filter("job_schedules"), call.max_results(),
                                         call.token())
    return call.listing(listing, "jobschedules")


@endpoint
async def get_job_schedule(call: Call, service: BatchService, jobScheduleId: str) -> Response:
    schedule = service.get_job_schedule(jobScheduleId)
    return conditional(call, schedule.etag, schedule.last_modified) or call.json(
        schedule.body, metadata="jobschedules/@Element", etag=schedule.etag,
        last_modified=schedule.last_modified)


@endpoint
async def job_schedule_exists(call: Call, service: BatchService, jobScheduleId: str
                              ) -> Response:
    try:
        schedule = service.job_schedule_exists(jobScheduleId)
    except DomainError:
        return call.empty(404)
    return conditional(call, schedule.etag, schedule.last_modified) or Response(
        b"", 200, headers=call.headers(schedule.etag, schedule.last_modified))


def _metadata(items: list[BatchMetadataItem] | None) -> tuple[BatchMetadataItem, ...] | None:
    return tuple(items) if items is not None else None


def _specification(update: BatchJobSpecificationUpdate | None) -> BatchJobSpecification | None:
    """A PATCH replaces the whole job specification, so it must be a complete one (poolInfo
    included): re-read it as such, naming the property in errors."""
    if update is None:
        return None
    return parse_model(BatchJobSpecification, update.model_dump(by_alias=True, exclude_none=True),
                       prefix="jobSpecification")


@endpoint
async def patch_job_schedule(call: Call, service: BatchService, jobScheduleId: str
                             ) -> Response:
    body = await call.body(BatchJobScheduleUpdateOptions)
    written = await service.job_schedule_command(cmd.UpdateJobSchedule(
        jobScheduleId, body.schedule, _specification(body.job_specification),
        _metadata(body.metadata), replace=False, precondition=call.precondition()))
    return call.written(written, 200)


@endpoint
async def put_job_schedule(call: Call, service: BatchService, jobScheduleId: str) -> Response:
    body = await call.body(BatchJobSchedule)
    written = await service.job_schedule_command(cmd.UpdateJobSchedule(
        jobScheduleId, body.schedule, body.job_specification, _metadata(body.metadata),
        replace=True, precondition=call.precondition()))
    return call.written(written, 200)


@endpoint
async def disable_job_schedule(call: Call, service: BatchService, jobScheduleId: str
                               ) -> Response:
    written = await service.job_schedule_command(
        cmd.DisableJobSchedule(jobScheduleId, call.precondition()))
    return call.written(written, 204)


@endpoint
async def enable_job_schedule(call: Call, service: BatchService, jobScheduleId: str
                              ) -> Response:
    written = await service.job_schedule_command(
        cmd.EnableJobSchedule(jobScheduleId, call.precondition()))
    return call.written(written, 204)


@endpoint
async def terminate_job_schedule(call: Call, service: BatchService, jobScheduleId: str
                                 ) -> Response:
    written = await service.job_schedule_command(
        cmd.TerminateJobSchedule(jobScheduleId, call.precondition()))
    return call.written(written, 202)


@endpoint
async def delete_job_schedule(call: Call, service: BatchService, jobScheduleId: str
                              ) -> Response:
    await service.job_schedule_command(cmd.DeleteJobSchedule(jobScheduleId, call.precondition()))
    return call.empty(202)


@endpoint
async def list_jobs_from_schedule(call: Call, service: BatchService, jobScheduleId: str
                                  ) -> Response:
    listing = service.list_jobs_from_schedule(jobScheduleId, call.filter("jobs_from_schedule"),
                                              call.max_results(), call.token())
    return call.listing(listing, "jobs")
