"""Pools, nodes and account-level handlers: parse -> one service call -> respond."""

from __future__ import annotations

from starlette.responses import Response

from hybatch.api.handlers.common import endpoint
from hybatch.api.wire import Call, bad_query
from hybatch.core import commands as cmd
from hybatch.core.errors import DomainError
from hybatch.runtime.service import BatchService, Listing
from hybatch.schema import (
    BatchNodeRemoveOptions,
    BatchPoolCreateOptions,
    BatchPoolResizeOptions,
)


@endpoint
async def create_pool(call: Call, service: BatchService) -> Response:
    spec = await call.body(BatchPoolCreateOptions)
    return call.written(await service.create_pool(cmd.CreatePool(spec)), 201)


@endpoint
async def list_pools(call: Call, service: BatchService) -> Response:
    listing = service.list_pools(call.filter("pools"), call.max_results(), call.token(),
                                 stats=call.expand_stats())
    return call.listing(listing, "pools")


@endpoint
async def get_pool(call: Call, service: BatchService, poolId: str) -> Response:
    pool = service.get_pool(poolId, stats=call.expand_stats())
    return call.json(pool.body, metadata="pools/@Element", etag=pool.etag,
                     last_modified=pool.last_modified)


@endpoint
async def pool_exists(call: Call, service: BatchService, poolId: str) -> Response:
    try:
        pool = service.pool_exists(poolId)
    except DomainError:
        return call.empty(404)
    return Response(b"", 200, headers=call.headers(pool.etag, pool.last_modified))


@endpoint
async def delete_pool(call: Call, service: BatchService, poolId: str) -> Response:
    await service.pool_command(cmd.DeletePool(poolId, call.precondition()))
    return call.empty(202)


@endpoint
async def resize_pool(call: Call, service: BatchService, poolId: str) -> Response:
    body = await call.body(BatchPoolResizeOptions)
    written = await service.pool_command(cmd.ResizePool(
        poolId, body.target_dedicated_nodes, body.target_low_priority_nodes,
        body.resize_timeout, _opt(body.node_deallocation_option), call.precondition()))
    return call.written(written, 202)


@endpoint
async def stop_resize(call: Call, service: BatchService, poolId: str) -> Response:
    written = await service.pool_command(cmd.StopPoolResize(poolId, call.precondition()))
    return call.written(written, 202)


@endpoint
async def remove_nodes(call: Call, service: BatchService, poolId: str) -> Response:
    body = await call.body(BatchNodeRemoveOptions)
    written = await service.pool_command(cmd.RemoveNodes(
        poolId, tuple(body.node_list), body.resize_timeout,
        _opt(body.node_deallocation_option), call.precondition()))
    return call.written(written, 202)


def _opt(value: object) -> str | None:
    return str(value) if value is not None else None


# ------------------------------------------------------------------ nodes


@endpoint
async def list_nodes(call: Call, service: BatchService, poolId: str) -> Response:
    listing = service.list_nodes(poolId, call.filter("nodes"), call.max_results(), call.token())
    return call.listing(listing, "nodes")


@endpoint
async def get_node(call: Call, service: BatchService, poolId: str, nodeId: str) -> Response:
    node = service.get_node(poolId, nodeId)
    return call.json(node.body, metadata="nodes/@Element", etag=node.etag,
                     last_modified=node.last_modified)


# ------------------------------------------------------------------ account


@endpoint
async def node_counts(call: Call, service: BatchService) -> Response:
    listing = service.pool_node_counts(call.max_results(10), call.token(),
                                       call.filter("pool_node_counts"))
    return call.listing(listing, "poolnodecounts")


@endpoint
async def supported_images(call: Call, service: BatchService) -> Response:
    flt = call.filter("supported_images")
    images = [image for image in service.supported_images() if flt is None or flt.matches(image)]
    limit = call.max_results()
    start = _offset(call.token())
    token = str(start + limit) if start + limit < len(images) else None
    return call.listing(Listing(images[start:start + limit], token), "supportedimages")


def _offset(token: str | None) -> int:
    """The position a continuation token of a fixed, in-memory listing stands for."""
    if token is None:
        return 0
    if not (token.isascii() and token.isdigit() and len(token) <= 9):
        raise bad_query("$skiptoken", token, "not a continuation token of this listing")
    return int(token)


@endpoint
async def list_applications(call: Call, service: BatchService) -> Response:
    return call.listing(Listing([], None), "applications")


@endpoint
async def get_application(call: Call, service: BatchService, applicationId: str) -> Response:
    raise DomainError("ApplicationNotFound", "The specified application does not exist.",
                      details={"ApplicationId": applicationId})
