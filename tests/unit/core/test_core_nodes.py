"""Compute node operations in the pure core: reboot, reimage, deallocate, start, scheduling and
node users, with what each does to the tasks on the node."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from hybatch.core.commands import (
    CreateNodeUser,
    DeleteNodeUser,
    DisableNodeScheduling,
    EnableNodeScheduling,
    NodeAction,
    RemoveNodes,
    ReplaceNodeUser,
)
from hybatch.core.effects import KillTask, RestartNode
from hybatch.core.events import NodeLost, NodeReady
from hybatch.core.records import NodeRecord
from tests.unit.core.core_sim import Sim


def _key(kind: str = "ssh-ed25519") -> str:
    blob = len(kind).to_bytes(4, "big") + kind.encode() + bytes(36)
    return f"{kind} {base64.b64encode(blob).decode()} me@host"


def one_node(sim: Sim, *, slots: int = 1, nodes: int = 1) -> NodeRecord:
    sim.pool(nodes=nodes, slots=slots)
    sim.job()
    return sim.nodes()[0]


def restarts(sim: Sim) -> list[RestartNode]:
    return [e for e in sim.last if isinstance(e, RestartNode)]


# ------------------------------------------------------------------ reboot and reimage


def test_reboot_of_an_idle_node_restarts_it_and_it_comes_back_idle(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    node = manual.nodes()[0]
    manual.advance(60)
    manual.send(NodeAction("p", node.id, "reboot"))
    assert node.state == "rebooting"
    assert node.state_transition_time == manual.now
    assert restarts(manual) == [RestartNode("p", node.id, reimage=False)]
    manual.advance(5)
    manual.restart_nodes()
    assert node.state == "idle"
    assert node.last_boot_time == manual.now
    manual.check()


def test_reboot_requeues_running_tasks_then_restarts(sim: Sim) -> None:
    node = one_node(sim)
    sim.tasks("j", "t1", "t2")  # t2 waits for the only slot
    assert sim.task("j", "t1").state == "running"
    sim.send(NodeAction("p", node.id, "reboot", "requeue"))
    assert node.state == "rebooting"
    assert [(k.task_id) for k in sim.last if isinstance(k, KillTask)] == ["t1"]
    assert restarts(sim) == []  # not before the killed attempt has ended
    sim.exit_killed()
    t1 = sim.task("j", "t1")
    assert (t1.requeue_count, t1.retry_count) == (1, 0)
    # the node restarted (auto_nodes) and runs t2; the requeued t1 went behind it
    assert node.state == "running"
    assert node.last_boot_time == sim.now
    assert (sim.task("j", "t2").state, t1.state) == ("running", "active")
    sim.check()


def test_reboot_terminate_completes_running_tasks_with_failure(sim: Sim) -> None:
    node = one_node(sim)
    sim.tasks("j", "t1")
    sim.send(NodeAction("p", node.id, "reboot", "terminate"))
    sim.exit_killed()
    t1 = sim.task("j", "t1")
    assert t1.state == "completed" and t1.result == "failure"
    assert t1.failure_info is not None and t1.failure_info.code == "TaskEnded"
    assert t1.requeue_count == 0
    assert node.state == "idle"
    sim.check()


@pytest.mark.parametrize("option", ["taskcompletion", "retaineddata"])
def test_reboot_taskcompletion_lets_tasks_finish_and_places_nothing_new(
        sim: Sim, option: str) -> None:
    node = one_node(sim, slots=2)
    sim.tasks("j", "t1")
    sim.send(NodeAction("p", node.id, "reboot", option))
    assert node.state == "rebooting"
    assert sim.kinds()["KillTask"] == 0
    sim.tasks("j", "t2")
    assert sim.task("j", "t2").state == "active"  # the rebooting node takes nothing
    sim.exit("j", "t1", 0)
    assert sim.task("j", "t1").result == "success"
    assert [r.node_id for r in restarts(sim)] == [node.id]
    assert sim.task("j", "t2").state == "running"  # after the node came back
    sim.check()


def test_queued_attempts_go_back_to_their_job_at_once(manual: Sim) -> None:
    manual.auto_start = False
    manual.pool(nodes=1, slots=1)
    manual.ready_nodes()
    manual.job()
    manual.tasks("j", "t1")
    node = manual.nodes()[0]
    assert manual.task("j", "t1").offered
    manual.send(NodeAction("p", node.id, "reboot", "taskcompletion"))
    kills = [e for e in manual.last if isinstance(e, KillTask)]
    assert [k.task_id for k in kills] == ["t1"]  # offered, not started: always requeued
    manual.exit_killed()
    assert manual.task("j", "t1").state == "active"
    assert restarts(manual) == [RestartNode("p", node.id)]
    manual.check()


def test_reimage_wipes_node_and_removes_users(sim: Sim) -> None:
    node = one_node(sim)
    sim.send(CreateNodeUser("p", node.id, "alice", password="pw"))
    assert [u.name for u in node.users] == ["alice"]
    sim.send(NodeAction("p", node.id, "reimage"))
    assert restarts(sim) == [RestartNode("p", node.id, reimage=True)]
    assert node.users == []
    assert node.state == "idle"


def test_node_operation_refusals(manual: Sim) -> None:
    manual.pool(nodes=2)
    first, second = manual.nodes()
    manual.fails(NodeAction("p", first.id, "reboot"), "NodeBeingCreated")
    manual.ready_nodes()
    manual.fails(NodeAction("nope", first.id, "reboot"), "PoolNotFound")
    manual.fails(NodeAction("p", "tvm-nope", "reboot"), "NodeNotFound")
    manual.pool("q", nodes=0)
    manual.fails(NodeAction("q", first.id, "reboot"), "NodeNotFound")  # node of another pool
    manual.fails(NodeAction("p", first.id, "reboot", "later"), "InvalidPropertyValue")
    manual.fails(NodeAction("p", first.id, "start"), "OperationInvalidForCurrentState")
    manual.send(NodeAction("p", first.id, "reboot"))
    manual.fails(NodeAction("p", first.id, "reimage"), "NodeBeingRebooted")
    manual.fails(CreateNodeUser("p", first.id, "bob"), "NodeBeingRebooted")
    manual.send(NodeAction("p", second.id, "reimage"))
    manual.fails(NodeAction("p", second.id, "deallocate"), "NodeBeingReimaged")
    manual.send(NodeLost(second.id, "gone"))
    manual.fails(NodeAction("p", second.id, "reboot"), "NodeStateUnusable")


def test_node_lost_while_draining_for_a_reboot_never_restarts(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    manual.job()
    manual.tasks("j", "t1")
    node = manual.nodes()[0]
    manual.send(NodeAction("p", node.id, "reboot", "taskcompletion"))
    manual.send(NodeLost(node.id, "host died"))
    assert node.state == "unusable"
    assert restarts(manual) == []
    assert node.pending_action is None
    assert manual.task("j", "t1").state == "active"
    manual.check()


def test_removing_a_rebooting_node_releases_it(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    node = manual.nodes()[0]
    manual.send(NodeAction("p", node.id, "reboot"))
    manual.send(RemoveNodes("p", (node.id,), None, None))
    assert node.state == "leavingpool"
    manual.send(NodeReady(node.id))  # the restart finished meanwhile: ignored
    assert node.state == "leavingpool"
    manual.release_nodes()
    assert manual.nodes() == []
    assert manual.pool_rec().allocation_state == "steady"


def test_removing_a_node_draining_for_a_reboot_drops_the_reboot(sim: Sim) -> None:
    one_node(sim, nodes=2)
    sim.tasks("j", "t1")
    busy = next(n for n in sim.nodes() if n.task_keys)
    sim.send(NodeAction("p", busy.id, "reboot", "taskcompletion"))
    sim.send(RemoveNodes("p", (busy.id,), None, "taskcompletion"))
    assert (busy.state, busy.pending_action) == ("leavingpool", None)
    sim.exit("j", "t1", 0)
    assert restarts(sim) == []
    assert busy.id not in {n.id for n in sim.nodes()}  # released, never restarted
    sim.check()


# ------------------------------------------------------------------ deallocate and start


def test_deallocate_then_start(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    manual.job()
    manual.tasks("j", "t1")
    node = manual.nodes()[0]
    manual.send(NodeAction("p", node.id, "deallocate", "requeue"))
    assert node.state == "deallocating"
    manual.exit_killed()
    assert node.state == "deallocated"
    assert restarts(manual) == []  # nothing for the backend to do for a drained node
    assert manual.task("j", "t1").state == "active"  # requeued, and no node takes it
    manual.fails(NodeAction("p", node.id, "reboot"), "OperationInvalidForCurrentState")
    manual.send(NodeAction("p", node.id, "start"))
    assert node.state == "starting"
    assert restarts(manual) == [RestartNode("p", node.id)]
    manual.fails(NodeAction("p", node.id, "start"), "NodeBeingStarted")
    manual.restart_nodes()
    assert node.state == "running"  # back, and the waiting task was placed on it
    assert manual.task("j", "t1").requeue_count == 1
    manual.check()


# ------------------------------------------------------------------ scheduling


def test_disable_scheduling_requeues_to_another_node_and_goes_offline(sim: Sim) -> None:
    sim.pool(nodes=2, slots=1)
    sim.job()
    sim.tasks("j", "t1")
    busy = next(n for n in sim.nodes() if n.task_keys)
    other = next(n for n in sim.nodes() if n is not busy)
    sim.send(DisableNodeScheduling("p", busy.id))
    assert busy.scheduling_state == "disabled"
    sim.exit_killed()
    t1 = sim.task("j", "t1")
    assert (t1.state, t1.node_id, t1.requeue_count, t1.retry_count) == (
        "running", other.id, 1, 0)
    assert busy.state == "offline"
    sim.exit("j", "t1", 0)
    assert sim.task("j", "t1").result == "success"
    sim.check()


def test_disabled_node_takes_work_again_once_enabled(sim: Sim) -> None:
    node = one_node(sim)
    sim.tasks("j", "t1")
    sim.send(DisableNodeScheduling("p", node.id, "requeue"))
    sim.exit_killed()
    assert (node.state, sim.task("j", "t1").state) == ("offline", "active")
    sim.fails(DisableNodeScheduling("p", node.id), "NodeAlreadyInTargetSchedulingState")
    sim.send(EnableNodeScheduling("p", node.id))
    assert node.scheduling_state == "enabled"
    assert node.state == "running"
    sim.exit("j", "t1", 0)
    assert sim.task("j", "t1").result == "success"
    assert node.state == "idle"
    sim.fails(EnableNodeScheduling("p", node.id), "NodeAlreadyInTargetSchedulingState")
    sim.check()


def test_disable_with_taskcompletion_waits_then_offline(sim: Sim) -> None:
    node = one_node(sim, slots=2)
    sim.tasks("j", "t1")
    sim.send(DisableNodeScheduling("p", node.id, "taskcompletion"))
    assert sim.kinds()["KillTask"] == 0
    assert node.state == "running"
    sim.tasks("j", "t2")
    assert sim.task("j", "t2").state == "active"
    sim.exit("j", "t1", 0)
    assert node.state == "offline"
    assert sim.task("j", "t2").state == "active"


def test_disable_terminate_and_bad_option(sim: Sim) -> None:
    node = one_node(sim)
    sim.tasks("j", "t1")
    sim.fails(DisableNodeScheduling("p", node.id, "retaineddata"), "InvalidPropertyValue")
    sim.send(DisableNodeScheduling("p", node.id, "terminate"))
    sim.exit_killed()
    assert sim.task("j", "t1").failure_info is not None
    assert node.state == "offline"


def test_idle_node_goes_offline_at_once(sim: Sim) -> None:
    node = one_node(sim)
    sim.send(DisableNodeScheduling("p", node.id))
    assert node.state == "offline"
    sim.send(NodeAction("p", node.id, "reboot"))  # an offline node can be rebooted
    assert node.state == "offline"  # back, still disabled
    assert node.scheduling_state == "disabled"


# ------------------------------------------------------------------ users


def test_node_users(sim: Sim) -> None:
    node = one_node(sim)
    sim.send(CreateNodeUser("p", node.id, "alice", is_admin=True, password="s3cret",
                            ssh_public_key=_key()))
    user = node.users[0]
    assert (user.is_admin, user.has_password, user.expiry_time) == (
        True, True, sim.now + timedelta(days=1))
    assert "s3cret" not in repr(node)
    sim.fails(CreateNodeUser("p", node.id, "ALICE"), "NodeUserExists")
    later = sim.now + timedelta(days=3)
    sim.send(ReplaceNodeUser("p", node.id, "Alice", expiry_time=later))
    user = node.users[0]
    assert (user.name, user.is_admin, user.has_password, user.ssh_public_key,
            user.expiry_time) == ("alice", True, False, None, later)
    sim.fails(ReplaceNodeUser("p", node.id, "bob"), "NodeUserNotFound")
    sim.fails(DeleteNodeUser("p", node.id, "bob"), "NodeUserNotFound")
    sim.send(DeleteNodeUser("p", node.id, "alice"))
    assert node.users == []


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 33, "é"])
def test_bad_user_names(sim: Sim, name: str) -> None:
    node = one_node(sim)
    sim.fails(CreateNodeUser("p", node.id, name), "InvalidPropertyValue")


@pytest.mark.parametrize("key", ["ssh-rsa", "ssh-rsa not*base64", "ssh-rsa QUJD",
                                 _key("ssh-rsa").replace("ssh-rsa", "ssh-dss", 1),
                                 "ssh-rsa " + "A" * 9000])
def test_bad_ssh_keys(sim: Sim, key: str) -> None:
    node = one_node(sim)
    sim.fails(CreateNodeUser("p", node.id, "u", ssh_public_key=key), "InvalidPropertyValue")


def test_users_per_node_are_capped(sim: Sim) -> None:
    node = one_node(sim)
    for i in range(32):
        sim.send(CreateNodeUser("p", node.id, f"u{i}"))
    sim.fails(CreateNodeUser("p", node.id, "one-more"), "OperationInvalidForCurrentState")
