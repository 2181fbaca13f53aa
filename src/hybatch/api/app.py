"""The ASGI application: routes for every spec operation, and the middleware that checks
api-version and credentials, assigns request ids and turns crashes into Batch errors.

Operations not built yet answer 501 ``NotImplemented`` with a Batch error body (listed in
docs/coverage.md).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybatch.api import auth
from hybatch.api.errors import error_response
from hybatch.api.handlers import certificates, files, jobs, nodes, pools, schedules
from hybatch.api.handlers.common import endpoint
from hybatch.api.wire import Call
from hybatch.core.errors import DomainError
from hybatch.core.tokens import TaskTokens
from hybatch.runtime.service import BatchService
from hybatch.schema import Operation
from hybatch.schema._generated.operations import OPERATIONS

log = logging.getLogger(__name__)

OLDEST_API_VERSION = date(2018, 12, 1)
NEWEST_API_VERSION = date(2025, 6, 1)
_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:\.\d+\.\d+)?$")

Endpoint = Callable[[Request], Awaitable[Response]]

IMPLEMENTED: dict[str, Endpoint] = {
    "Applications_ListApplications": pools.list_applications,
    "Applications_GetApplication": pools.get_application,
    "Pools_ListPools": pools.list_pools,
    "Pools_CreatePool": pools.create_pool,
    "Pools_GetPool": pools.get_pool,
    "Pools_PoolExists": pools.pool_exists,
    "Pools_DeletePool": pools.delete_pool,
    "Pools_ResizePool": pools.resize_pool,
    "Pools_StopPoolResize": pools.stop_resize,
    "Pools_RemoveNodes": pools.remove_nodes,
    "Pools_ListPoolNodeCounts": pools.node_counts,
    "Pools_ListSupportedImages": pools.supported_images,
    "Nodes_ListNodes": pools.list_nodes,
    "Nodes_GetNode": pools.get_node,
    "Jobs_ListJobs": jobs.list_jobs,
    "Jobs_CreateJob": jobs.create_job,
    "Jobs_GetJob": jobs.get_job,
    "Jobs_UpdateJob": jobs.patch_job,
    "Jobs_ReplaceJob": jobs.put_job,
    "Jobs_DeleteJob": jobs.delete_job,
    "Jobs_TerminateJob": jobs.terminate_job,
    "Jobs_DisableJob": jobs.disable_job,
    "Jobs_EnableJob": jobs.enable_job,
    "Jobs_ListJobPreparationAndReleaseTaskStatus": jobs.prep_release_status,
    "Jobs_GetJobTaskCounts": jobs.task_counts,
    "Tasks_CreateTask": jobs.create_task,
    "Tasks_CreateTaskCollection": jobs.add_task_collection,
    "Tasks_ListTasks": jobs.list_tasks,
    "Tasks_GetTask": jobs.get_task,
    "Tasks_ReplaceTask": jobs.put_task,
    "Tasks_DeleteTask": jobs.delete_task,
    "Tasks_TerminateTask": jobs.terminate_task,
    "Tasks_ReactivateTask": jobs.reactivate_task,
    "Tasks_ListSubTasks": jobs.list_subtasks,
    "Tasks_ListTaskFiles": files.list_task_files,
    "Tasks_GetTaskFile": files.get_task_file,
    "Tasks_GetTaskFileProperties": files.head_task_file,
    "Tasks_DeleteTaskFile": files.delete_task_file,
    "Nodes_ListNodeFiles": files.list_node_files,
    "Nodes_GetNodeFile": files.get_node_file,
    "Nodes_GetNodeFileProperties": files.head_node_file,
    "Nodes_DeleteNodeFile": files.delete_node_file,
    "Pools_UpdatePool": nodes.patch_pool,
    "Pools_ReplacePoolProperties": nodes.replace_pool_properties,
    "Pools_ListPoolUsageMetrics": nodes.list_usage_metrics,
    "Nodes_RebootNode": nodes.reboot_node,
    "Nodes_ReimageNode": nodes.reimage_node,
    "Nodes_StartNode": nodes.start_node,
    "Nodes_DeallocateNode": nodes.deallocate_node,
    "Nodes_DisableNodeScheduling": nodes.disable_scheduling,
    "Nodes_EnableNodeScheduling": nodes.enable_scheduling,
    "Nodes_CreateNodeUser": nodes.create_user,
    "Nodes_ReplaceNodeUser": nodes.replace_user,
    "Nodes_DeleteNodeUser": nodes.delete_user,
    "Nodes_GetNodeRemoteLoginSettings": nodes.remote_login_settings,
    "Nodes_UploadNodeLogs": nodes.upload_logs,
    "Nodes_ListNodeExtensions": nodes.list_extensions,
    "Nodes_GetNodeExtension": nodes.get_extension,
    "JobSchedules_CreateJobSchedule": schedules.create_job_schedule,
    "JobSchedules_ListJobSchedules": schedules.list_job_schedules,
    "JobSchedules_GetJobSchedule": schedules.get_job_schedule,
    "JobSchedules_JobScheduleExists": schedules.job_schedule_exists,
    "JobSchedules_UpdateJobSchedule": schedules.patch_job_schedule,
    "JobSchedules_ReplaceJobSchedule": schedules.put_job_schedule,
    "JobSchedules_DisableJobSchedule": schedules.disable_job_schedule,
    "JobSchedules_EnableJobSchedule": schedules.enable_job_schedule,
    "JobSchedules_TerminateJobSchedule": schedules.terminate_job_schedule,
    "JobSchedules_DeleteJobSchedule": schedules.delete_job_schedule,
    "Jobs_ListJobsFromSchedule": schedules.list_jobs_from_schedule,
}

RETIRED: dict[str, Callable[[], DomainError]] = dict.fromkeys(
    certificates.OPERATIONS, certificates.certificate_retired)
"""Operations of features Azure Batch has retired -> the error the service answers them with,
whatever the request carries. They are routed like implemented operations (the answer is
Azure's own) and listed as "retired" in docs/coverage.md; the replay tests expect exactly this
error (its HTTP status from the error table)."""


def _retired(refusal: Callable[[], DomainError]) -> Endpoint:
    @endpoint
    async def answer(call: Call, service: BatchService, **path: str) -> Response:
        raise refusal()

    return answer


IMPLEMENTED.update({op: _retired(refusal) for op, refusal in RETIRED.items()})


def _not_implemented(operation_id: str) -> Endpoint:
    async def answer(request: Request) -> Response:
        return error_response(
            "NotImplemented",
            f"The operation {operation_id} is not supported by this hybatch server "
            "(see docs/coverage.md).",
            request.scope.get("hybatch.request_id", ""),
            details={"OperationId": operation_id}, head=request.method == "HEAD")

    return answer


def _starlette_path(path: str) -> str:
    """Spec path template -> Starlette route path (file paths may contain '/')."""
    return path.replace("{filePath}", "{filePath:path}")


def _bound(operation: Operation, endpoint: Endpoint) -> Endpoint:
    """The endpoint with its spec operation in the scope (``Call.operation``), so what the
    operation accepts (OData options, conditional headers) comes from the spec's table."""

    async def run(request: Request) -> Response:
        request.scope["hybatch.operation"] = operation
        return await endpoint(request)

    return run


def build_routes() -> list[Route]:
    by_path: dict[str, dict[str, Endpoint]] = {}
    for op in OPERATIONS:
        endpoint = IMPLEMENTED.get(op.operation_id) or _not_implemented(op.operation_id)
        by_path.setdefault(_starlette_path(op.path), {})[op.method] = _bound(op, endpoint)
    routes: list[Route] = []
    # literal segments before parameters so /pools/{id}/nodes does not match a file route
    for path in sorted(by_path, key=lambda p: (p.count("{"), -len(p))):
        # HEAD first: a GET route answers HEAD too, but the spec gives HEAD its own operation
        for method, endpoint in sorted(by_path[path].items(), key=lambda kv: kv[0] != "HEAD"):
            routes.append(Route(path, endpoint, methods=[method]))
    return routes


def check_api_version(value: str | None) -> tuple[str, str] | None:
    """None when accepted, else (code, message)."""
    if value is None:
        return ("MissingRequiredQueryParameter",
                "A query parameter that's mandatory for this request is not specified: "
                "api-version.")
    match = _VERSION.match(value)
    if match is not None:
        try:
            when = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            when = None
        if when is not None and OLDEST_API_VERSION <= when <= NEWEST_API_VERSION:
            return None
    return ("UnsupportedRequestVersion",
            f"The specified api-version {value} is not supported; use 2018-12-01.8.0 through "
            "2025-06-01.")


def internal_error_response(request_id: str, head: bool) -> Response:
    return error_response("InternalError", "Server encountered an internal error. Please try "
                          "again after some time.", request_id, head=head)


class BatchMiddleware:
    """Pure ASGI: request ids, api-version, SharedKey or a task's bearer token, and a
    Batch-shaped 500 on crashes."""

    def __init__(self, app: ASGIApp, *, account_name: str, account_key: str,
                 allow_anonymous: bool = False,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.app = app
        self.account_name = account_name
        self.account_key = account_key
        self.allow_anonymous = allow_anonymous
        self.now = now
        self.tokens = TaskTokens(account_name, account_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope["hybatch.request_id"] = request_id
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        head = scope["method"] == "HEAD"
        client_request_id = headers.get("client-request-id")
        started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"request-id", request_id.encode())]
                if client_request_id:
                    extra.append((b"client-request-id", client_request_id.encode("latin-1")))
                existing = [h for h in message.get("headers", [])
                            if h[0].lower() not in (b"request-id", b"client-request-id")]
                message["headers"] = existing + extra
            await send(message)

        query_string = scope.get("query_string", b"").decode("latin-1")
        pairs = parse_qsl(query_string, keep_blank_values=True)
        version = next((v for k, v in pairs if k.lower() == "api-version"), None)
        problem = check_api_version(version)
        if problem is not None:
            await error_response(problem[0], problem[1], request_id, head=head,
                                 details={"QueryParameterName": "api-version",
                                          "QueryParameterValue": version or ""})(
                scope, receive, send_with_ids)
            return
        denied = self._authenticate(scope, headers, request_id, head)
        if denied is not None:
            await denied(scope, receive, send_with_ids)
            return
        try:
            await self.app(scope, receive, send_with_ids)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope.get("path"))
            if started:  # Starlette already answered (create_app: crashed); never answer twice
                return
            await internal_error_response(request_id, head)(scope, receive, send_with_ids)

    def _authenticate(self, scope: Scope, headers: dict[str, str], request_id: str,
                      head: bool) -> Response | None:
        authorization = headers.get("authorization")
        if authorization is None and self.allow_anonymous:
            return None
        token = auth.bearer_token(authorization)
        if token is not None:
            result = auth.verify_bearer(token, str(scope.get("path", "")), self.tokens,
                                        self.now())
        else:
            result = auth.verify_asgi(scope, self.account_name, self.account_key,
                                      now=self.now())
        if result.ok:
            return None
        response = error_response(result.code, result.message, request_id,
                                  status=result.status, head=head)
        if result.outcome == "bad_token":
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response


def create_app(service: BatchService, *, account_name: str, account_key: str,
               allow_anonymous: bool = False, lifespan: Any = None) -> ASGIApp:
    app = Starlette(routes=build_routes(), lifespan=lifespan)
    app.state.service = service

    async def unknown(request: Request, exc: Exception) -> Response:
        return error_response("InvalidUri", "The requested URI does not represent any "
                              "resource on the server.",
                              request.scope.get("hybatch.request_id", ""),
                              head=request.method == "HEAD")

    async def bad_method(request: Request, exc: Exception) -> Response:
        return error_response("UnsupportedHttpVerb", "The resource doesn't support the "
                              "specified HTTP verb.",
                              request.scope.get("hybatch.request_id", ""), status=405,
                              head=request.method == "HEAD")

    async def crashed(request: Request, exc: Exception) -> Response:
        # Starlette's outermost middleware answers a crash with this, then re-raises it to
        # BatchMiddleware, which logs it; without it the answer would be plain text.
        return internal_error_response(request.scope.get("hybatch.request_id", ""),
                                       request.method == "HEAD")

    app.add_exception_handler(404, unknown)
    app.add_exception_handler(405, bad_method)
    app.add_exception_handler(Exception, crashed)
    return BatchMiddleware(app, account_name=account_name, account_key=account_key,
                           allow_anonymous=allow_anonymous)
