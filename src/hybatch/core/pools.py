"""Pools and their nodes: create, resize, stop resize, remove nodes, delete, and node events.

``allocationState`` is ``resizing`` from a target change until every node to add has reported
ready and every node to remove has been released; ``stopping`` after stopresize until the
same; then ``steady``. Nodes go creating -> idle <-> running, and leavingpool when removed.

Imports: standard library, core modules, wire models.
"""

from __future__ import annotations

from datetime import timedelta

from hybatch.core import nodes as node_rules
from hybatch.core import stats, usage
from hybatch.core import tasks as task_rules
from hybatch.core.attempts import KILL_REQUEUE, KILL_TERMINATE, kill_attempt
from hybatch.core.commands import CreatePool, DeletePool, RemoveNodes, ResizePool, StopPoolResize
from hybatch.core.context import Ctx, check_precondition, seconds
from hybatch.core.effects import ProvisionNode, ReleaseNode
from hybatch.core.errors import DomainError, conflict, exists, not_found
from hybatch.core.events import NodeLost, NodeReady, NodeReleased
from hybatch.core.job_specs import check_start_task
from hybatch.core.records import NodeRecord, PoolRecord, ResizeErrorRecord
from hybatch.core.sizes import check_node_agent_sku, check_vm_size
from hybatch.core.validation import check_id, check_range, unsupported

DEFAULT_RESIZE_TIMEOUT_S = 15 * 60.0
MAX_NODES_PER_POOL = 1000
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")


def get_pool(ctx: Ctx, pool_id: str) -> PoolRecord:
    pool = ctx.state.pools.get(pool_id.lower())
    if pool is None:
        raise not_found("Pool", pool_id)
    return pool


def _resize_timeout(value: timedelta | None) -> float:
    """resizeTimeout in seconds (default 15 minutes); a negative duration is refused."""
    if value is not None and value.total_seconds() < 0:
        raise DomainError("InvalidPropertyValue", "resizeTimeout must not be negative.",
                          details={"PropertyName": "resizeTimeout", "PropertyValue": str(value)})
    return seconds(value) or DEFAULT_RESIZE_TIMEOUT_S


def _set_allocation(ctx: Ctx, pool: PoolRecord, state: str) -> None:
    if pool.allocation_state != state:
        pool.allocation_state = state
        pool.allocation_state_transition_time = ctx.now
        ctx.state.touch(pool, ctx.now)


def create_pool(ctx: Ctx, cmd: CreatePool) -> PoolRecord:
    spec = cmd.spec
    check_id(spec.id)
    if spec.id.lower() in ctx.state.pools:
        raise exists("Pool", spec.id)
    if spec.enable_auto_scale:
        raise unsupported("Autoscale", "enableAutoScale")
    if spec.start_task is not None:
        check_start_task(spec.start_task)
    if spec.mount_configuration:
        raise unsupported("Mount configuration", "mountConfiguration")
    facts = check_vm_size(ctx.offer, spec.vm_size)
    vm_config = spec.virtual_machine_configuration
    check_node_agent_sku(ctx.offer, vm_config.node_agent_sku_id if vm_config else None)
    default_slots = facts.slots if facts is not None else 1
    slots = spec.task_slots_per_node if spec.task_slots_per_node is not None else default_slots
    check_range("taskSlotsPerNode", slots, 1, 256)
    dedicated = spec.target_dedicated_nodes or 0
    low = spec.target_low_priority_nodes or 0
    check_range("targetDedicatedNodes", dedicated, 0, MAX_NODES_PER_POOL)
    check_range("targetLowPriorityNodes", low, 0, MAX_NODES_PER_POOL)
    timeout_s = _resize_timeout(spec.resize_timeout)
    policy = spec.task_scheduling_policy
    fill = str(policy.node_fill_type) if policy is not None else "spread"
    pool = PoolRecord(id=spec.id, spec=spec, creation_time=ctx.now, state="active",
                      state_transition_time=ctx.now, allocation_state="steady",
                      allocation_state_transition_time=ctx.now, task_slots_per_node=slots,
                      node_fill_type=fill)
    ctx.state.add_pool(pool, ctx.now)
    usage.roll(ctx, pool)  # opens the pool's first usage interval
    _resize(ctx, pool, dedicated, low, timeout_s, "requeue")
    return pool


def resize_pool(ctx: Ctx, cmd: ResizePool) -> PoolRecord:
    pool = get_pool(ctx, cmd.pool_id)
    check_precondition(pool.etag, pool.last_modified, cmd.precondition)
    _check_resizable(pool)
    dedicated = (cmd.target_dedicated_nodes if cmd.target_dedicated_nodes is not None
                 else pool.target_dedicated_nodes)
    low = (cmd.target_low_priority_nodes if cmd.target_low_priority_nodes is not None
           else pool.target_low_priority_nodes)
    check_range("targetDedicatedNodes", dedicated, 0, MAX_NODES_PER_POOL)
    check_range("targetLowPriorityNodes", low, 0, MAX_NODES_PER_POOL)
    _resize(ctx, pool, dedicated, low, _resize_timeout(cmd.resize_timeout),
            _deallocation(cmd.node_deallocation_option))
    return pool


def _check_resizable(pool: PoolRecord) -> None:
    if pool.state == "deleting":
        raise conflict("PoolBeingDeleted", "The specified pool is being deleted.")
    if pool.allocation_state != "steady":
        raise conflict("PoolBeingResized", "The specified pool is already being resized.")


def _deallocation(option: str | None) -> str:
    value = str(option) if option is not None else "requeue"
    if value not in DEALLOCATION_OPTIONS:
        raise DomainError("InvalidPropertyValue", f"Unknown nodeDeallocationOption {value}.",
                          details={"PropertyName": "nodeDeallocationOption"})
    return value


def _resize(ctx: Ctx, pool: PoolRecord, dedicated: int, low: int,
            timeout_s: float, option: str) -> None:
    """Record new targets, provision or remove nodes, and enter ``resizing`` if needed."""
    pool.target_dedicated_nodes = dedicated
    pool.target_low_priority_nodes = low
    pool.resize_timeout_s = timeout_s
    pool.resize_started = ctx.now
    pool.node_deallocation_option = option
    pool.resize_errors = []
    ctx.state.touch(pool, ctx.now)
    for is_dedicated, target in ((True, dedicated), (False, low)):
        members = [n for n in ctx.state.nodes_of(pool.key)
                   if n.is_dedicated == is_dedicated and not n.removing]
        for _ in range(target - len(members)):
            _add_node(ctx, pool, is_dedicated)
        surplus = len(members) - target
        if surplus > 0:
            # prefer idle nodes, then the least busy
            victims = sorted(members, key=lambda n: (len(n.task_keys), n.state != "idle", n.id))
            for node in victims[:surplus]:
                _remove_node(ctx, node, option)
    _settle_allocation(ctx, pool)


def _add_node(ctx: Ctx, pool: PoolRecord, is_dedicated: bool) -> None:
    facts = ctx.offer.sizes.get(pool.spec.vm_size.strip().lower()) if ctx.offer else None
    node = NodeRecord(id=ctx.ids.node_id(pool.id), pool_id=pool.id, is_dedicated=is_dedicated,
                      slots=pool.task_slots_per_node, creation_time=ctx.now, state="creating",
                      state_transition_time=ctx.now, allocation_time=ctx.now,
                      lookahead=facts.lookahead if facts is not None else 1)
    ctx.state.add_node(node, ctx.now)
    ctx.effects.append(ProvisionNode(pool_id=pool.id, node_id=node.id,
                                     slots=node.slots, is_dedicated=is_dedicated,
                                     vm_size=pool.spec.vm_size))


def _remove_node(ctx: Ctx, node: NodeRecord, option: str) -> None:
    """Start removing a node: attempts queued there go back to their jobs; running ones
    follow the deallocation option (requeue / terminate now, or let them finish)."""
    if node.removing:
        return
    node.removing = True
    node.pending_action = None  # leaving replaces a reboot/reimage/deallocation in waiting
    node.state = "leavingpool"
    node.state_transition_time = ctx.now
    ctx.state.touch(node, ctx.now)
    running_reason = {"requeue": KILL_REQUEUE, "terminate": KILL_TERMINATE}.get(option)
    for key in list(node.task_keys):
        task = ctx.state.tasks.get(key)
        if task is None:
            continue
        if task.offered:
            kill_attempt(ctx, task, KILL_REQUEUE)
        elif running_reason is not None:
            kill_attempt(ctx, task, running_reason)
    release_if_drained(ctx, node)


def release_if_drained(ctx: Ctx, node: NodeRecord) -> None:
    """A node being removed is released once no task runs on it."""
    if node.removing and not node.task_keys:
        ctx.effects.append(ReleaseNode(pool_id=node.pool_id, node_id=node.id))


def _settle_allocation(ctx: Ctx, pool: PoolRecord) -> None:
    """``steady`` once no node of the pool is being created or removed."""
    busy = any(n.state == "creating" or n.removing for n in ctx.state.nodes_of(pool.key))
    if busy:
        if pool.allocation_state == "steady":
            _set_allocation(ctx, pool, "resizing")
        return
    if pool.allocation_state != "steady":
        _set_allocation(ctx, pool, "steady")
    if pool.state == "deleting":
        usage.close_pool(ctx, pool)
        ctx.state.drop_pool(pool)


def stop_resize(ctx: Ctx, cmd: StopPoolResize) -> PoolRecord:
    pool = get_pool(ctx, cmd.pool_id)
    check_precondition(pool.etag, pool.last_modified, cmd.precondition)
    if pool.allocation_state == "steady":
        return pool
    members = [n for n in ctx.state.nodes_of(pool.key) if not n.removing]
    pool.target_dedicated_nodes = sum(1 for n in members if n.is_dedicated)
    pool.target_low_priority_nodes = sum(1 for n in members if not n.is_dedicated)
    pool.resize_errors = [ResizeErrorRecord(code="ResizeStopped",
                                            message="Desired number of dedicated nodes could "
                                                    "not be allocated as the resize was stopped")]
    _set_allocation(ctx, pool, "stopping")
    ctx.state.touch(pool, ctx.now)
    _settle_allocation(ctx, pool)
    return pool


def remove_nodes(ctx: Ctx, cmd: RemoveNodes) -> PoolRecord:
    pool = get_pool(ctx, cmd.pool_id)
    check_precondition(pool.etag, pool.last_modified, cmd.precondition)
    _check_resizable(pool)
    if not cmd.node_ids or len(cmd.node_ids) > 100:
        raise DomainError("InvalidPropertyValue", "nodeList must hold 1 to 100 node ids.",
                          details={"PropertyName": "nodeList"})
    nodes = []
    for node_id in cmd.node_ids:
        node = ctx.state.nodes.get(node_id.lower())
        if node is None or node.pool_id.lower() != pool.key:
            raise not_found("Node", node_id)
        nodes.append(node)
    option = _deallocation(cmd.node_deallocation_option)
    timeout_s = _resize_timeout(cmd.resize_timeout)
    pool.resize_timeout_s = timeout_s
    pool.resize_started = ctx.now
    pool.resize_errors = []
    for node in nodes:
        if node.removing:
            continue
        if node.is_dedicated:
            pool.target_dedicated_nodes -= 1
        else:
            pool.target_low_priority_nodes -= 1
        _remove_node(ctx, node, option)
    ctx.state.touch(pool, ctx.now)
    _settle_allocation(ctx, pool)
    return pool


def delete_pool(ctx: Ctx, cmd: DeletePool) -> PoolRecord:
    pool = get_pool(ctx, cmd.pool_id)
    check_precondition(pool.etag, pool.last_modified, cmd.precondition)
    if pool.state == "deleting":
        return pool
    pool.state = "deleting"
    pool.state_transition_time = ctx.now
    pool.target_dedicated_nodes = 0
    pool.target_low_priority_nodes = 0
    ctx.state.touch(pool, ctx.now)
    for node in ctx.state.nodes_of(pool.key):
        _remove_node(ctx, node, "requeue")
    _settle_allocation(ctx, pool)
    return pool


# ------------------------------------------------------------------ node events


def on_node_ready(ctx: Ctx, event: NodeReady) -> None:
    node = ctx.state.nodes.get(event.node_id.lower())
    if node is not None and node_rules.on_node_back(ctx, node):
        return  # back from a reboot, reimage or start
    if node is None or node.state != "creating":
        return
    node.state = "idle"
    node.state_transition_time = ctx.now
    node.last_boot_time = ctx.now
    ctx.state.touch(node, ctx.now)
    ctx.state.pools_to_place.add(node.pool_id.lower())
    pool = ctx.state.pools.get(node.pool_id.lower())
    if pool is not None:
        _settle_allocation(ctx, pool)


def on_node_released(ctx: Ctx, event: NodeReleased) -> None:
    node = ctx.state.nodes.get(event.node_id.lower())
    if node is None:
        return
    _requeue_all(ctx, node)
    usage.accrue(ctx, node)  # its allocated time ends here
    stats.node_departed(ctx, node)
    ctx.state.drop_node(node)
    pool = ctx.state.pools.get(node.pool_id.lower())
    if pool is not None:
        _settle_allocation(ctx, pool)


def on_node_lost(ctx: Ctx, event: NodeLost) -> None:
    """The node is gone: its running tasks go back to active (requeue, not retry)."""
    node = ctx.state.nodes.get(event.node_id.lower())
    if node is None:
        return
    node.pending_action = None  # a reboot/reimage waiting for the node will not happen
    _requeue_all(ctx, node)
    node.state = "unusable"
    node.state_transition_time = ctx.now
    node.errors = [ResizeErrorRecord(code="NodeLost", message=event.reason)]
    ctx.state.touch(node, ctx.now)
    if node.removing:
        ctx.effects.append(ReleaseNode(pool_id=node.pool_id, node_id=node.id))
    pool = ctx.state.pools.get(node.pool_id.lower())
    if pool is not None:
        _settle_allocation(ctx, pool)  # a node lost while creating no longer holds a resize


def _requeue_all(ctx: Ctx, node: NodeRecord) -> None:
    """Put every task still placed on ``node`` back to active without an exit report."""
    for key in list(node.task_keys):
        task = ctx.state.tasks.get(key)
        if task is not None:
            task_rules.requeue_lost(ctx, task)
