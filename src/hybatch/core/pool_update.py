"""Pool PATCH (merge) and updateproperties (replace).

Both edit the pool's stored create body (``PoolRecord.spec``): the new values are laid over
the body's wire JSON and the result is validated as a create body again, so a pool never
holds a spec it could not have been created with. ``startTask``, ``metadata``,
``applicationPackageReferences``, ``certificateReferences`` and
``targetNodeCommunicationMode`` may change at any time (new values apply to nodes as they
join or restart: a new start task runs on a node when it next joins, reboots or is
reimaged); the other updatable fields (``displayName``, ``vmSize``, ``taskSlotsPerNode``,
...) only while the pool has no node (Batch rule). Features this server does not run
(application packages, mounts, start tasks' resource files or containers) are refused as at
creation.

Imports: standard library, pydantic, core modules, wire models.
"""

from __future__ import annotations

from pydantic import ValidationError

from hybatch.core.commands import UpdatePool
from hybatch.core.context import Ctx, check_precondition
from hybatch.core.errors import DomainError, conflict, invalid_property, not_found
from hybatch.core.job_specs import check_start_task
from hybatch.core.records import PoolRecord
from hybatch.core.sizes import check_node_agent_sku, check_vm_size
from hybatch.core.validation import check_range, unsupported
from hybatch.schema import BatchPoolCreateOptions

ANY_TIME_FIELDS = frozenset({
    "startTask", "metadata", "applicationPackageReferences", "certificateReferences",
    "targetNodeCommunicationMode",
})
EMPTY_POOL_FIELDS = frozenset({
    "displayName", "vmSize", "enableInterNodeCommunication", "virtualMachineConfiguration",
    "taskSlotsPerNode", "taskSchedulingPolicy", "networkConfiguration", "resourceTags",
    "userAccounts", "mountConfiguration", "upgradePolicy",
})
UPDATABLE_FIELDS = ANY_TIME_FIELDS | EMPTY_POOL_FIELDS
REPLACED_FIELDS = ("startTask", "metadata", "applicationPackageReferences",
                   "certificateReferences")
"""What updateproperties always sets (absent -> removed); targetNodeCommunicationMode is
replaced only when sent."""
MAX_DISPLAY_NAME = 1024
MAX_METADATA_ITEMS = 1000


def _check_value(name: str, value: object) -> None:
    """Features not run by this server, and values out of range."""
    if value is None:
        return
    if name == "applicationPackageReferences" and value:
        raise unsupported("Application packages", "applicationPackageReferences")
    if name == "mountConfiguration" and value:
        raise unsupported("Mount configuration", "mountConfiguration")
    if name == "taskSlotsPerNode" and isinstance(value, int):
        check_range("taskSlotsPerNode", value, 1, 256)
    if name == "vmSize" and isinstance(value, str) and not value.strip():
        raise invalid_property("vmSize", value, "The VM size must not be empty.")
    if name == "displayName" and isinstance(value, str) and len(value) > MAX_DISPLAY_NAME:
        raise invalid_property("displayName", value[:64], "The display name may hold at most "
                               f"{MAX_DISPLAY_NAME} characters.")
    if name == "metadata" and isinstance(value, list):
        if len(value) > MAX_METADATA_ITEMS:
            raise invalid_property("metadata", len(value), "Too many metadata items.")
        for item in value:
            if isinstance(item, dict) and not str(item.get("name") or "").strip():
                raise DomainError("EmptyMetadataKey", "A metadata item has an empty name.",
                                  details={"PropertyName": "metadata"})


def update_pool(ctx: Ctx, cmd: UpdatePool) -> PoolRecord:
    pool = ctx.state.pools.get(cmd.pool_id.lower())
    if pool is None:
        raise not_found("Pool", cmd.pool_id)
    check_precondition(pool.etag, pool.last_modified, cmd.precondition)
    if pool.state == "deleting":
        raise conflict("PoolBeingDeleted", "The specified pool is being deleted.")
    fields = dict(cmd.fields)
    if cmd.replace:
        for name in REPLACED_FIELDS:
            fields.setdefault(name, None)
    else:
        fields = {k: v for k, v in fields.items() if v is not None}  # null == not sent
    for name, value in fields.items():
        if name not in UPDATABLE_FIELDS:
            raise invalid_property(name, "", "The property cannot be updated.")
        _check_value(name, value)
        if name == "vmSize" and isinstance(value, str):
            check_vm_size(ctx.offer, value)
        if name == "virtualMachineConfiguration" and isinstance(value, dict):
            sku = value.get("nodeAgentSKUId")
            check_node_agent_sku(ctx.offer, sku if isinstance(sku, str) else None)
    empty_only = sorted(n for n in fields if n in EMPTY_POOL_FIELDS)
    if empty_only and ctx.state.nodes_of(pool.key):
        raise conflict("OperationInvalidForCurrentState",
                       f"{', '.join(empty_only)} can be updated only while the pool has no "
                       "compute nodes.")
    policy = fields.get("taskSchedulingPolicy")
    if isinstance(policy, dict) and policy.get("nodeFillType") is None:
        fields["taskSchedulingPolicy"] = {**policy, "nodeFillType": pool.node_fill_type}
    data = pool.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name, value in fields.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    try:
        spec = BatchPoolCreateOptions.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        prop = ".".join(str(p) for p in first["loc"])
        if first["type"] == "missing":
            raise DomainError("MissingRequiredProperty", "A required property was not "
                              "specified in the request body.",
                              details={"PropertyName": prop}) from error
        raise invalid_property(prop, "", str(first["msg"])) from error
    if spec.start_task is not None and "startTask" in fields:
        check_start_task(spec.start_task)
    pool.spec = spec
    if "taskSlotsPerNode" in fields:
        pool.task_slots_per_node = spec.task_slots_per_node or 1
    if "taskSchedulingPolicy" in fields:
        policy = spec.task_scheduling_policy
        pool.node_fill_type = str(policy.node_fill_type) if policy is not None else "spread"
    ctx.state.touch(pool, ctx.now)
    return pool
