"""Pool update and compute node operation handlers: parse -> one service call -> respond."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response

from hybatch.api.handlers.common import endpoint
from hybatch.api.wire import Call, bad_query, parse_json, parse_model
from hybatch.core import commands as cmd
from hybatch.core.errors import DomainError
from hybatch.core.pool_update import UPDATABLE_FIELDS
from hybatch.core.validation import unsupported
from hybatch.odata.datetimes import parse_iso
from hybatch.runtime.service import BatchService
from hybatch.schema import (
    BatchNodeDeallocateOptions,
    BatchNodeDisableSchedulingOptions,
    BatchNodeRebootOptions,
    BatchNodeReimageOptions,
    BatchNodeUserCreateOptions,
    BatchNodeUserUpdateOptions,
    BatchPoolReplaceOptions,
    BatchPoolUpdateOptions,
    UploadBatchServiceLogsOptions,
)
from hybatch.schema.base import WireModel

MAX_CONTAINER_URL = 4096
REMOTE_LOGIN_METADATA = "Microsoft.Azure.Batch.Protocol.Entities.RemoteLoginSettings"
"""The ``odata.metadata`` entity of a remote login settings answer (Batch REST docs' example)."""
UPLOAD_LOGS_METADATA = "Microsoft.Azure.Batch.Protocol.Entities.UploadBatchServiceLogsResult"
"""Not documented: named like the remote login settings one after the spec's result model."""


def _opt(value: object) -> str | None:
    return str(value) if value is not None else None


async def _raw_body(call: Call) -> dict[str, Any]:
    raw = await call.request.body()
    if len(raw) > 4 * 1024 * 1024:
        raise DomainError("RequestBodyTooLarge", "The request body is too large.")
    data = parse_json(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise DomainError("InvalidRequestBody", "The request body must be a JSON object.")
    return data


def _sent_fields(body: WireModel) -> dict[str, object]:
    """The updatable wire fields the client sent, as wire JSON."""
    sent = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return {name: value for name, value in sent.items() if name in UPDATABLE_FIELDS}


# ------------------------------------------------------------------ pools


@endpoint
async def patch_pool(call: Call, service: BatchService, poolId: str) -> Response:
    body = await call.body(BatchPoolUpdateOptions)
    written = await service.update_pool(cmd.UpdatePool(
        poolId, tuple(_sent_fields(body).items()), replace=False,
        precondition=call.precondition()))
    return call.written(written, 200)


@endpoint
async def replace_pool_properties(call: Call, service: BatchService, poolId: str) -> Response:
    data = await _raw_body(call)
    # 15.x clients no longer send the retired certificateReferences the spec still requires
    data.setdefault("certificateReferences", [])
    body = parse_model(BatchPoolReplaceOptions, data)
    fields = _sent_fields(body)
    written = await service.update_pool(cmd.UpdatePool(
        poolId, tuple(fields.items()), replace=True, precondition=call.precondition()))
    return call.written(written, 204)


def _query_time(call: Call, name: str) -> datetime | None:
    raw = call.query.get(name)
    if raw is None:
        return None
    try:
        when = parse_iso(raw)
    except (OverflowError, ValueError):
        when = None
    if when is None:
        raise bad_query(name, raw, "not an ISO-8601 date-time")
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@endpoint
async def list_usage_metrics(call: Call, service: BatchService) -> Response:
    start = _query_time(call, "starttime")
    end = _query_time(call, "endtime")
    if start is not None and end is not None and end <= start:
        raise bad_query("endtime", call.query.get("endtime", ""),
                        "endtime must be later than startTime")
    listing = service.list_pool_usage(start, end, call.filter("pool_usage_metrics"),
                                      call.max_results(), call.token())
    return call.listing(listing, "poolusagemetrics")


# ------------------------------------------------------------------ node state


@endpoint
async def reboot_node(call: Call, service: BatchService, poolId: str, nodeId: str) -> Response:
    body = await call.body(BatchNodeRebootOptions)
    written = await service.node_command(cmd.NodeAction(
        poolId, nodeId, "reboot", _opt(body.node_reboot_option)))
    return call.written(written, 202)


@endpoint
async def reimage_node(call: Call, service: BatchService, poolId: str, nodeId: str) -> Response:
    body = await call.body(BatchNodeReimageOptions)
    written = await service.node_command(cmd.NodeAction(
        poolId, nodeId, "reimage", _opt(body.node_reimage_option)))
    return call.written(written, 202)


@endpoint
async def deallocate_node(call: Call, service: BatchService, poolId: str,
                          nodeId: str) -> Response:
    body = await call.body(BatchNodeDeallocateOptions)
    written = await service.node_command(cmd.NodeAction(
        poolId, nodeId, "deallocate", _opt(body.node_deallocate_option)))
    return call.written(written, 202)


@endpoint
async def start_node(call: Call, service: BatchService, poolId: str, nodeId: str) -> Response:
    written = await service.node_command(cmd.NodeAction(poolId, nodeId, "start"))
    return call.written(written, 202)


@endpoint
async def disable_scheduling(call: Call, service: BatchService, poolId: str,
                             nodeId: str) -> Response:
    body = await call.body(BatchNodeDisableSchedulingOptions)
    written = await service.node_command(cmd.DisableNodeScheduling(
        poolId, nodeId, _opt(body.node_disable_scheduling_option)))
    return call.written(written, 200)


@endpoint
async def enable_scheduling(call: Call, service: BatchService, poolId: str,
                            nodeId: str) -> Response:
    written = await service.node_command(cmd.EnableNodeScheduling(poolId, nodeId))
    return call.written(written, 200)


# ------------------------------------------------------------------ users


@endpoint
async def create_user(call: Call, service: BatchService, poolId: str, nodeId: str) -> Response:
    body = await call.body(BatchNodeUserCreateOptions)
    written = await service.node_command(cmd.CreateNodeUser(
        poolId, nodeId, body.name, is_admin=bool(body.is_admin), expiry_time=body.expiry_time,
        password=body.password, ssh_public_key=body.ssh_public_key))
    return call.written(written, 201)


@endpoint
async def replace_user(call: Call, service: BatchService, poolId: str, nodeId: str,
                       userName: str) -> Response:
    body = await call.body(BatchNodeUserUpdateOptions)
    written = await service.node_command(cmd.ReplaceNodeUser(
        poolId, nodeId, userName, expiry_time=body.expiry_time, password=body.password,
        ssh_public_key=body.ssh_public_key))
    return call.written(written, 200)


@endpoint
async def delete_user(call: Call, service: BatchService, poolId: str, nodeId: str,
                      userName: str) -> Response:
    await service.node_command(cmd.DeleteNodeUser(poolId, nodeId, userName))
    return call.empty(200)


# ------------------------------------------------------------------ reads and logs


@endpoint
async def remote_login_settings(call: Call, service: BatchService, poolId: str,
                                nodeId: str) -> Response:
    settings = service.remote_login_settings(poolId, nodeId)
    return call.json(settings.body, metadata=REMOTE_LOGIN_METADATA, etag=settings.etag)


@endpoint
async def list_extensions(call: Call, service: BatchService, poolId: str,
                          nodeId: str) -> Response:
    call.max_results()  # validated like every list
    return call.listing(service.node_extensions(poolId, nodeId), "extensions")


@endpoint
async def get_extension(call: Call, service: BatchService, poolId: str, nodeId: str,
                        extensionName: str) -> Response:
    found = service.node_extension(poolId, nodeId, extensionName)
    return call.json(found.body, metadata="extensions/@Element")


@endpoint
async def upload_logs(call: Call, service: BatchService, poolId: str, nodeId: str) -> Response:
    body = await call.body(UploadBatchServiceLogsOptions)
    if body.identity_reference is not None:
        raise unsupported("Managed identities", "identityReference")
    url = body.container_url.strip()
    try:
        parts = urlsplit(url) if len(url) <= MAX_CONTAINER_URL else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise DomainError("InvalidPropertyValue", "containerUrl must be an http(s) URL of a "
                          "blob container.", details={"PropertyName": "containerUrl"})
    if body.end_time is not None and body.end_time < body.start_time:
        raise DomainError("InvalidPropertyValue", "endTime must not be before startTime.",
                          details={"PropertyName": "endTime"})
    result = await service.upload_node_logs(poolId, nodeId, url, body.start_time,
                                            body.end_time)
    return call.json(result, metadata=UPLOAD_LOGS_METADATA)
