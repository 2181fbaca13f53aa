"""Jobs and tasks handlers: parse -> one service call -> respond."""

from __future__ import annotations

from starlette.responses import Response

from hybatch.api.errors import error_body
from hybatch.api.handlers.common import endpoint
from hybatch.api.wire import Call, parse_json, parse_model
from hybatch.core import commands as cmd
from hybatch.core.errors import DomainError
from hybatch.core.jobs import UPDATABLE_FIELDS
from hybatch.core.present import iso
from hybatch.runtime.service import BatchService
from hybatch.schema import (
    BatchJob,
    BatchJobCreateOptions,
    BatchJobDisableOptions,
    BatchJobTerminateOptions,
    BatchJobUpdateOptions,
    BatchTask,
    BatchTaskCreateOptions,
)

COLLECTION_LIMIT_BYTES = 1024 * 1024


@endpoint
async def create_job(call: Call, service: BatchService) -> Response:
    spec = await call.body(BatchJobCreateOptions)
    return call.written(await service.create_job(cmd.CreateJob(spec)), 201)


@endpoint
async def list_jobs(call: Call, service: BatchService) -> Response:
    listing = service.list_jobs(call.filter("jobs"), call.max_results(), call.token(),
                                stats=call.expand_stats())
    return call.listing(listing, "jobs")


@endpoint
async def get_job(call: Call, service: BatchService, jobId: str) -> Response:
    job = service.get_job(jobId, stats=call.expand_stats())
    return call.json(job.body, metadata="jobs/@Element", etag=job.etag,
                     last_modified=job.last_modified)


async def _update_job(call: Call, service: BatchService, job_id: str, replace: bool) -> Response:
    model = BatchJob if replace else BatchJobUpdateOptions
    body = await call.body(model)
    sent = body.model_dump(by_alias=True, exclude_unset=True)
    # PATCH: a property sent as null is left unchanged, like one left out
    parsed = {name: getattr(body, attribute) for name, attribute in UPDATABLE_FIELDS.items()
              if name in sent and (replace or sent[name] is not None)}
    written = await service.job_command(cmd.UpdateJob(
        job_id, tuple(parsed.items()), replace=replace, precondition=call.precondition()))
    return call.written(written, 200)


@endpoint
async def patch_job(call: Call, service: BatchService, jobId: str) -> Response:
    return await _update_job(call, service, jobId, replace=False)


@endpoint
async def put_job(call: Call, service: BatchService, jobId: str) -> Response:
    return await _update_job(call, service, jobId, replace=True)


@endpoint
async def delete_job(call: Call, service: BatchService, jobId: str) -> Response:
    await service.job_command(cmd.DeleteJob(jobId, call.precondition()))
    return call.empty(202)


@endpoint
async def terminate_job(call: Call, service: BatchService, jobId: str) -> Response:
    body = await call.body(BatchJobTerminateOptions)
    written = await service.job_command(cmd.TerminateJob(jobId, body.terminate_reason,
                                                         call.precondition()))
    return call.written(written, 202)


@endpoint
async def disable_job(call: Call, service: BatchService, jobId: str) -> Response:
    body = await call.body(BatchJobDisableOptions)
    written = await service.job_command(cmd.DisableJob(jobId, str(body.disable_tasks),
                                                       call.precondition()))
    return call.written(written, 202)


@endpoint
async def enable_job(call: Call, service: BatchService, jobId: str) -> Response:
    written = await service.job_command(cmd.EnableJob(jobId, call.precondition()))
    return call.written(written, 202)


@endpoint
async def prep_release_status(call: Call, service: BatchService, jobId: str) -> Response:
    listing = service.list_prep_release_status(jobId, call.filter("job_prep_release_status"),
                                               call.max_results(), call.token())
    return call.listing(listing, "jobpreparationandreleasetaskstatuslist")


@endpoint
async def task_counts(call: Call, service: BatchService, jobId: str) -> Response:
    return call.json(service.job_task_counts(jobId), metadata="taskcounts/@Element")


# ------------------------------------------------------------------ tasks


@endpoint
async def create_task(call: Call, service: BatchService, jobId: str) -> Response:
    spec = await call.body(BatchTaskCreateOptions)
    written = await service.add_task(cmd.AddTasks(jobId, (spec,), single=True))
    return call.written(written, 201)


@endpoint
async def add_task_collection(call: Call, service: BatchService, jobId: str) -> Response:
    raw = await call.request.body()
    if len(raw) > COLLECTION_LIMIT_BYTES:
        raise DomainError("RequestBodyTooLarge", "The request body is too large; a task "
                          "collection may be at most 1 MB.",
                          details={"MaxLimit": str(COLLECTION_LIMIT_BYTES)})
    data = parse_json(raw) if raw.strip() else {}
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DomainError("MissingRequiredProperty", "The task collection needs 'value'.",
                          details={"PropertyName": "value"})
    if len(items) > 100:
        raise DomainError("InvalidPropertyValue", "A task collection may hold at most 100 "
                          "tasks.", details={"PropertyName": "value", "Reason": "TooManyTasks"})
    specs = tuple(_task_item(item, i) for i, item in enumerate(items))
    results = await service.add_tasks(cmd.AddTasks(jobId, specs))
    value: list[dict[str, object]] = []
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, DomainError):
            value.append({"status": "clienterror", "taskId": spec.id,
                          "error": error_body(result.code, result.message, call.request_id,
                                              result.details)})
        else:
            value.append({"status": "success", "taskId": result.id, "eTag": result.etag,
                          "lastModified": iso(result.last_modified), "location": result.url})
    return call.json({"value": value}, metadata="taskaddresult")


def _task_item(item: object, index: int) -> BatchTaskCreateOptions:
    if not isinstance(item, dict):
        raise DomainError("InvalidPropertyValue", "Each task of a collection must be a JSON "
                          "object.", details={"PropertyName": f"value.{index}",
                                              "Reason": "Not an object"})
    return parse_model(BatchTaskCreateOptions, item, prefix=f"value.{index}")


@endpoint
async def list_tasks(call: Call, service: BatchService, jobId: str) -> Response:
    listing = service.list_tasks(jobId, call.filter("tasks"), call.max_results(), call.token(),
                                 stats=call.expand_stats())
    return call.listing(listing, "tasks")


@endpoint
async def get_task(call: Call, service: BatchService, jobId: str, taskId: str) -> Response:
    task = service.get_task(jobId, taskId, stats=call.expand_stats())
    return call.json(task.body, metadata="tasks/@Element", etag=task.etag,
                     last_modified=task.last_modified)


@endpoint
async def list_subtasks(call: Call, service: BatchService, jobId: str, taskId: str) -> Response:
    return call.listing(service.list_subtasks(jobId, taskId), "subtaskinfo")


@endpoint
async def put_task(call: Call, service: BatchService, jobId: str, taskId: str) -> Response:
    body = await call.body(BatchTask)
    c = body.constraints
    written = await service.task_command(cmd.UpdateTaskConstraints(
        jobId, taskId, c.max_wall_clock_time if c else None, c.retention_time if c else None,
        c.max_task_retry_count if c else None, call.precondition()))
    assert written is not None
    return call.written(written, 200)


@endpoint
async def delete_task(call: Call, service: BatchService, jobId: str, taskId: str) -> Response:
    await service.task_command(cmd.DeleteTask(jobId, taskId, call.precondition()))
    return call.empty(200)


@endpoint
async def terminate_task(call: Call, service: BatchService, jobId: str, taskId: str) -> Response:
    written = await service.task_command(cmd.TerminateTask(jobId, taskId, call.precondition()))
    assert written is not None
    return call.written(written, 204)


@endpoint
async def reactivate_task(call: Call, service: BatchService, jobId: str, taskId: str
                          ) -> Response:
    written = await service.task_command(cmd.ReactivateTask(jobId, taskId, call.precondition()))
    assert written is not None
    return call.written(written, 204)

