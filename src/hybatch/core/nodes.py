"""Compute node operations: reboot, reimage, deallocate, start, scheduling, node users.

State changes (BatchNodeState):

* reboot / reimage / deallocate (node ``idle``, ``running``, ``offline``,
  ``waitingforstarttask`` or ``starttaskfailed``: a start task running there is stopped with
  the node, and runs again when it is back, see core.start_task): the node enters
  ``rebooting`` / ``reimaging`` / ``deallocating`` at once and takes no new task. Attempts
  queued on it go back to their jobs; running ones follow the option: ``requeue`` kills them
  and requeues them (``requeueCount``, not ``retryCount``), ``terminate`` kills them and
  completes them with failure, ``taskcompletion`` and ``retaineddata`` let them finish
  (``retaineddata`` does not also wait for retention periods). Once the node holds no
  attempt (``settle``) a reboot or reimage emits ``RestartNode`` and the node comes back
  ``idle`` (``offline`` if its scheduling is disabled) on its next NodeReady; a reimage also
  wipes its files and its users. A deallocation ends in ``deallocated`` (no backend action:
  a drained local node holds nothing but its directory, which is kept).
* start (node ``deallocated``): ``starting`` and a ``RestartNode``; NodeReady -> ``idle``.
* disable scheduling: ``schedulingState`` disabled, placement skips the node; attempts are
  drained as above (``requeue`` / ``terminate`` / ``taskcompletion``); the node shows
  ``running`` while tasks remain, then ``offline``. Enable: ``offline`` -> ``idle``.

Node users are records on the node (no OS account is created); a reimage removes them.

Imports: standard library, core modules.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta

from hybatch.core import usage
from hybatch.core.attempts import KILL_REQUEUE, KILL_TERMINATE, kill_attempt
from hybatch.core.commands import (
    CreateNodeUser,
    DeleteNodeUser,
    DisableNodeScheduling,
    EnableNodeScheduling,
    NodeAction,
    ReplaceNodeUser,
)
from hybatch.core.context import Ctx
from hybatch.core.effects import RestartNode
from hybatch.core.errors import DomainError, conflict, invalid_property, not_found
from hybatch.core.records import NodeRecord, NodeUserRecord, PoolRecord

NODE_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
SCHEDULING_OPTIONS = ("requeue", "terminate", "taskcompletion")
ACTION_STATES = {"reboot": "rebooting", "reimage": "reimaging", "deallocate": "deallocating"}
RESTART_STATES = frozenset({"rebooting", "reimaging", "starting"})
OPERABLE_STATES = frozenset({"idle", "running", "offline", "waitingforstarttask",
                             "starttaskfailed"})
_STATE_CONFLICTS = {
    "creating": "NodeBeingCreated",
    "starting": "NodeBeingStarted",
    "waitingforstarttask": "NodeBeingStarted",
    "rebooting": "NodeBeingRebooted",
    "reimaging": "NodeBeingReimaged",
    "unusable": "NodeStateUnusable",
    "unknown": "NodeStateUnusable",
}
DEFAULT_USER_EXPIRY = timedelta(days=1)
MAX_USERS_PER_NODE = 32
MAX_SSH_KEY_CHARS = 8192
MAX_PASSWORD_CHARS = 256
_USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


def get_node(ctx: Ctx, pool_id: str, node_id: str) -> tuple[PoolRecord, NodeRecord]:
    pool = ctx.state.pools.get(pool_id.lower())
    if pool is None:
        raise not_found("Pool", pool_id)
    node = ctx.state.nodes.get(node_id.lower())
    if node is None or node.pool_id.lower() != pool.key:
        raise not_found("Node", node_id)
    return pool, node


def _set_state(ctx: Ctx, node: NodeRecord, state: str) -> None:
    if node.state != state:
        node.state = state
        node.state_transition_time = ctx.now
    ctx.state.touch(node, ctx.now)


def _option(value: str | None, allowed: tuple[str, ...], prop: str) -> str:
    option = (value or "requeue").lower()
    if option not in allowed:
        raise invalid_property(prop, value, f"The value must be one of {', '.join(allowed)}.")
    return option


def _check_operable(node: NodeRecord) -> None:
    """Reboot, reimage, deallocate and user changes need a node that is up and not leaving."""
    if node.removing or node.state not in OPERABLE_STATES:
        code = _STATE_CONFLICTS.get(node.state, "OperationInvalidForCurrentState")
        if node.removing:
            code = "OperationInvalidForCurrentState"
        raise conflict(code, f"The operation is not allowed while the node is {node.state}.")


def _drain(ctx: Ctx, node: NodeRecord, option: str) -> None:
    """Queued attempts go back to their jobs; running ones are requeued, terminated or left
    to finish, as the option says."""
    running_reason = {"requeue": KILL_REQUEUE, "terminate": KILL_TERMINATE}.get(option)
    for key in list(node.task_keys):
        task = ctx.state.tasks.get(key)
        if task is None:
            continue
        if task.offered:
            kill_attempt(ctx, task, KILL_REQUEUE)
        elif running_reason is not None:
            kill_attempt(ctx, task, running_reason)


def _idle_state(node: NodeRecord) -> str:
    return "offline" if node.scheduling_state == "disabled" else "idle"


def settle(ctx: Ctx, node: NodeRecord) -> None:
    """After the node's attempts changed: start a pending reboot/reimage/deallocation once
    nothing is left on it; a node whose last task ended is idle (or offline)."""
    if node.pending_action is not None:
        if node.task_keys or node.state not in ("rebooting", "reimaging", "deallocating"):
            return
        action = node.pending_action
        node.pending_action = None
        if action == "deallocate":
            usage.accrue(ctx, node)  # its allocated time ends here
            _set_state(ctx, node, "deallocated")
            return
        if action == "reimage":
            node.users = []
        ctx.state.touch(node, ctx.now)
        ctx.effects.append(RestartNode(pool_id=node.pool_id, node_id=node.id,
                                       reimage=action == "reimage"))
        return
    if node.running_tasks == 0 and node.state == "running":
        node.state = _idle_state(node)
        node.state_transition_time = ctx.now


def on_node_back(ctx: Ctx, node: NodeRecord) -> bool:
    """NodeReady after a restart (reboot, reimage, start): the node is up again. False when
    the event is not about a restart (the caller handles it)."""
    if node.state not in RESTART_STATES or node.pending_action is not None:
        return False
    node.last_boot_time = ctx.now
    _set_state(ctx, node, _idle_state(node))
    ctx.state.pools_to_place.add(node.pool_id.lower())
    return True


# ------------------------------------------------------------------ commands


def node_action(ctx: Ctx, cmd: NodeAction) -> NodeRecord:
    """Reboot, reimage, deallocate or start a node."""
    _, node = get_node(ctx, cmd.pool_id, cmd.node_id)
    if cmd.action == "start":
        if node.state != "deallocated":
            code = "NodeBeingStarted" if node.state == "starting" else \
                "OperationInvalidForCurrentState"
            raise conflict(code, "A node can be started only when it is deallocated.")
        usage.accrue(ctx, node)  # no time while deallocated: its allocated time starts now
        _set_state(ctx, node, "starting")
        ctx.effects.append(RestartNode(pool_id=node.pool_id, node_id=node.id))
        return node
    state = ACTION_STATES.get(cmd.action)
    if state is None:
        raise DomainError("InvalidPropertyValue", f"Unknown node action {cmd.action}.")
    prop = {"reboot": "nodeRebootOption", "reimage": "nodeReimageOption",
            "deallocate": "nodeDeallocateOption"}[cmd.action]
    option = _option(cmd.option, NODE_OPTIONS, prop)
    _check_operable(node)
    node.pending_action = cmd.action
    _set_state(ctx, node, state)
    _drain(ctx, node, option)
    settle(ctx, node)
    return node


def disable_scheduling(ctx: Ctx, cmd: DisableNodeScheduling) -> NodeRecord:
    _, node = get_node(ctx, cmd.pool_id, cmd.node_id)
    option = _option(cmd.option, SCHEDULING_OPTIONS, "nodeDisableSchedulingOption")
    if node.scheduling_state == "disabled":
        raise conflict("NodeAlreadyInTargetSchedulingState",
                       "Task scheduling is already disabled on the node.")
    if node.removing:
        raise conflict("OperationInvalidForCurrentState", "The node is leaving the pool.")
    node.scheduling_state = "disabled"
    _drain(ctx, node, option)
    if node.state == "idle" or (node.state == "running" and node.running_tasks == 0):
        node.state = "offline"
        node.state_transition_time = ctx.now
    ctx.state.touch(node, ctx.now)
    return node


def enable_scheduling(ctx: Ctx, cmd: EnableNodeScheduling) -> NodeRecord:
    _, node = get_node(ctx, cmd.pool_id, cmd.node_id)
    if node.scheduling_state == "enabled":
        raise conflict("NodeAlreadyInTargetSchedulingState",
                       "Task scheduling is already enabled on the node.")
    node.scheduling_state = "enabled"
    if node.state == "offline":
        node.state = "running" if node.running_tasks else "idle"
        node.state_transition_time = ctx.now
    ctx.state.touch(node, ctx.now)
    ctx.state.pools_to_place.add(node.pool_id.lower())
    return node


# ------------------------------------------------------------------ users


def _find_user(node: NodeRecord, name: str) -> NodeUserRecord | None:
    folded = name.lower()
    return next((u for u in node.users if u.name.lower() == folded), None)


def _check_secret_fields(password: str | None, ssh_public_key: str | None) -> None:
    if password is not None and len(password) > MAX_PASSWORD_CHARS:
        raise invalid_property("password", "(hidden)",
                               f"The password may hold at most {MAX_PASSWORD_CHARS} characters.")
    if ssh_public_key is not None:
        check_ssh_public_key(ssh_public_key)


def check_ssh_public_key(key: str) -> None:
    """An OpenSSH public key line: ``<type> <base64 blob> [comment]``, the blob naming the
    same type."""
    def bad(reason: str) -> DomainError:
        return invalid_property("sshPublicKey", key[:64], reason)

    if len(key) > MAX_SSH_KEY_CHARS:
        raise bad(f"The key may hold at most {MAX_SSH_KEY_CHARS} characters.")
    parts = key.split()
    if len(parts) < 2:
        raise bad("The key must be in OpenSSH format: '<type> <base64 key> [comment]'.")
    kind, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as error:
        raise bad("The key is not valid base64.") from error
    if len(raw) < 4:
        raise bad("The key is too short.")
    length = int.from_bytes(raw[:4], "big")
    if raw[4:4 + length].decode("ascii", "replace") != kind:
        raise bad("The key's type does not match its data.")


def _expiry(ctx: Ctx, value: datetime | None) -> datetime:
    return value if value is not None else ctx.now + DEFAULT_USER_EXPIRY


def create_user(ctx: Ctx, cmd: CreateNodeUser) -> NodeRecord:
    _, node = get_node(ctx, cmd.pool_id, cmd.node_id)
    if not _USER_NAME.match(cmd.name):
        raise invalid_property("name", cmd.name, "A user name has 1 to 32 letters, digits, "
                               "'_', '.' or '-', and does not start with '.' or '-'.")
    _check_secret_fields(cmd.password, cmd.ssh_public_key)
    _check_operable(node)
    if _find_user(node, cmd.name) is not None:
        raise DomainError("NodeUserExists", "The specified node user already exists.",
                          details={"UserName": cmd.name})
    if len(node.users) >= MAX_USERS_PER_NODE:
        raise conflict("OperationInvalidForCurrentState",
                       f"A node holds at most {MAX_USERS_PER_NODE} users.")
    node.users = [*node.users, NodeUserRecord(
        name=cmd.name, is_admin=cmd.is_admin, expiry_time=_expiry(ctx, cmd.expiry_time),
        has_password=bool(cmd.password), ssh_public_key=cmd.ssh_public_key)]
    ctx.state.touch(node, ctx.now)
    return node


def replace_user(ctx: Ctx, cmd: ReplaceNodeUser) -> NodeRecord:
    """Full replace: an omitted password or key is removed, an omitted expiry is reset."""
    _, node = get_node(ctx, cmd.pool_id, cmd.node_id)
    _check_secret_fields(cmd.password, cmd.ssh_public_key)
    _check_operable(node)
    user = _find_user(node, cmd.name)
    if user is None:
        raise not_user(cmd.name)
    replaced = NodeUserRecord(name=user.name, is_admin=user.is_admin,
                              expiry_time=_expiry(ctx, cmd.expiry_time),
                              has_password=bool(cmd.password), ssh_public_key=cmd.ssh_public_key)
    node.users = [replaced if u is user else u for u in node.users]
    ctx.state.touch(node, ctx.now)
    return node


def delete_user(ctx: Ctx, cmd: DeleteNodeUser) -> NodeRecord:
    _, node = get_node(ctx, cmd.pool_id, cmd.node_id)
    _check_operable(node)
    user = _find_user(node, cmd.name)
    if user is None:
        raise not_user(cmd.name)
    node.users = [u for u in node.users if u is not user]
    ctx.state.touch(node, ctx.now)
    return node


def not_user(name: str) -> DomainError:
    return DomainError("NodeUserNotFound", "The specified node user does not exist.",
                       details={"UserName": name})
