"""The wrapper every handler goes through: one ``Call``, the service, Batch-shaped errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hybatch.api.errors import domain_error_response
from hybatch.api.wire import Call, bad_query
from hybatch.core.errors import DomainError
from hybatch.ports import InvalidContinuationToken
from hybatch.runtime.service import BatchService

Handler = Callable[..., Awaitable[Response]]


def endpoint(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Adapt ``fn(call, service, **path_params)`` to a Starlette endpoint."""

    @wraps(fn)
    async def run(request: Request) -> Response:
        call = Call(request)
        service: BatchService = request.app.state.service
        try:
            params: dict[str, Any] = dict(request.path_params)
            return await fn(call, service, **params)
        except DomainError as error:
            return domain_error_response(error, call.request_id,
                                         head=request.method == "HEAD")
        except InvalidContinuationToken as error:
            return domain_error_response(
                bad_query("$skiptoken", call.token() or "", str(error)), call.request_id,
                head=request.method == "HEAD")

    return run


def conditional(call: Call, etag: str, last_modified: Any) -> Response | None:
    """The 304/412 answer of a GET/HEAD whose condition is unmet, else None."""
    status = call.read_condition_failed(etag, last_modified)
    if status is None:
        return None
    if status == 304:
        return call.empty(304)
    raise DomainError("ConditionNotMet",
                      "The condition specified using HTTP conditional header(s) is not met.")
