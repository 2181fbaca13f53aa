"""The wrapper every handler goes through: one ``Call``, the service, Batch-shaped errors, and
the parts of the wire contract that are the same for every operation (query options the
operation does not take, conditional headers of reads)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hybatch.api.errors import domain_error_response
from hybatch.api.wire import CONDITION_HEADERS, Call, bad_query
from hybatch.core.errors import DomainError
from hybatch.ports import InvalidContinuationToken
from hybatch.runtime.service import BatchService

Handler = Callable[..., Awaitable[Response]]


def condition_not_met() -> DomainError:
    return DomainError("ConditionNotMet",
                       "The condition specified using HTTP conditional header(s) is not met.")


def endpoint(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Adapt ``fn(call, service, **path_params)`` to a Starlette endpoint.

    Before ``fn``: the request's OData options and conditional headers are checked against
    what the operation declares. After ``fn``, for a GET or HEAD of an operation that declares
    conditional headers, the conditions are evaluated on the ETag and Last-Modified of the
    answer itself: 304 or 412 ``ConditionNotMet`` (§1.7). Every read is thereby conditional
    in the same way, whatever its handler does. Writes pass ``call.precondition()`` to their
    command, which the core checks atomically with the change.
    """

    @wraps(fn)
    async def run(request: Request) -> Response:
        call = Call(request)
        service: BatchService = request.app.state.service
        head = request.method == "HEAD"
        try:
            call.validate()
            params: dict[str, Any] = dict(request.path_params)
            response = await fn(call, service, **params)
            if request.method in ("GET", "HEAD") and _declares_conditions(call):
                response = _conditional_read(call, response)
            return response
        except DomainError as error:
            return domain_error_response(error, call.request_id, head=head)
        except InvalidContinuationToken as error:
            return domain_error_response(
                bad_query("$skiptoken", call.token() or "", str(error)), call.request_id,
                head=head)

    return run


def _declares_conditions(call: Call) -> bool:
    op = call.operation
    return op is None or any(h.lower() in CONDITION_HEADERS for h in op.header_params)


def _conditional_read(call: Call, response: Response) -> Response:
    if response.status_code != 200:
        return response
    etag = response.headers.get("etag")
    last_modified = response.headers.get("last-modified")
    stamp: datetime | None = None
    if last_modified:
        try:
            stamp = parsedate_to_datetime(last_modified)
        except (TypeError, ValueError):
            stamp = None
    status = call.read_condition_failed(etag or "", stamp)
    if status is None:
        return response
    if status == 304:
        return call.not_modified(etag, last_modified)
    raise condition_not_met()


def conditional(call: Call, etag: str, last_modified: Any) -> Response | None:
    """The 304/412 answer of a GET/HEAD whose condition is unmet, else None. Optional: the
    endpoint wrapper applies the same rule to every read's answer; a handler calls this to
    skip expensive work (reading a file) that would be thrown away."""
    status = call.read_condition_failed(etag, last_modified)
    if status is None:
        return None
    if status == 304:
        return call.not_modified(etag, None if last_modified is None else
                                 call.headers(last_modified=last_modified)["Last-Modified"])
    raise condition_not_met()
