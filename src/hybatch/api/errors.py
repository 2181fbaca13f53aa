"""The one table mapping Batch error codes to HTTP statuses, and the error body builder."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from starlette.responses import Response

from hybatch.core.errors import DomainError

JSON_TYPE = "application/json;odata=minimalmetadata"

_STATUS_BY_CODE: dict[str, int] = {
    "ConditionNotMet": 412,
    "AuthenticationFailed": 403,
    "InsufficientAccountPermissions": 403,
    "RequestBodyTooLarge": 413,
    "InvalidRange": 416,
    "InternalError": 500,
    "NotImplemented": 501,
    "ServerBusy": 503,
    "UnsupportedHttpVerb": 405,
    "MissingContentLengthHeader": 411,
}
_STATUS_BY_SUFFIX: tuple[tuple[str, int], ...] = (
    ("NotFound", 404),
    ("NotRunOnNode", 404),
    ("Exists", 409),
    ("WithSameIdExists", 409),
)
_CONFLICT_CODES = frozenset({
    "PoolBeingCreated", "PoolBeingDeleted", "PoolBeingResized", "NodeBeingCreated",
    "NodeBeingStarted", "NodeBeingRebooted", "NodeBeingReimaged", "NodeStateUnusable",
    "NodeAlreadyInTargetSchedulingState", "JobBeingDeleted", "JobBeingTerminated",
    "JobCompleted", "JobDisabled", "JobNotActive", "JobScheduleBeingDeleted",
    "JobScheduleBeingTerminated", "JobScheduleCompleted", "JobScheduleDisabled",
    "TaskCompleted", "TaskNotCompleted", "TaskSucceeded", "TaskFilesUnavailable",
    "TaskFilesCleanedup", "TaskIdSameAsJobPreparationTask", "TaskIdSameAsJobReleaseTask",
    "JobPreparationTaskNotSpecified", "JobReleaseTaskNotSpecified",
    "ActiveJobAndScheduleQuotaReached", "PoolQuotaReached", "OperationInvalidForCurrentState",
    "OperationNotValidOnNode", "OperationNotValidOnPool", "InvalidApplicationPackageReferences",
})


def status_for(code: str) -> int:
    if code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code]
    if code in _CONFLICT_CODES:
        return 409
    for suffix, status in _STATUS_BY_SUFFIX:
        if code.endswith(suffix):
            return status
    return 400


def error_body(code: str, message: str, request_id: str,
               details: dict[str, str] | None = None) -> dict[str, object]:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body: dict[str, object] = {
        "odata.metadata": "$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors"
                          "/@Element",
        "code": code,
        "message": {"lang": "en-US", "value": f"{message}\nRequestId:{request_id}\nTime:{stamp}"},
    }
    if details:
        body["values"] = [{"key": k, "value": v} for k, v in details.items()]
    return body


def error_response(code: str, message: str, request_id: str, *,
                   details: dict[str, str] | None = None, status: int | None = None,
                   head: bool = False) -> Response:
    status = status or status_for(code)
    content = b"" if head else json.dumps(error_body(code, message, request_id, details)).encode()
    return Response(content, status_code=status, media_type=JSON_TYPE,
                    headers={"request-id": request_id})


def domain_error_response(error: DomainError, request_id: str, head: bool = False) -> Response:
    return error_response(error.code, error.message, request_id, details=error.details,
                          head=head)
