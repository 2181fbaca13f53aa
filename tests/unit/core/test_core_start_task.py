"""The pool's start task in the core: node states, retries, startTaskInfo, restarts."""

from __future__ import annotations

from hybatch.core.commands import (
    CreatePool,
    DisableNodeScheduling,
    NodeAction,
    UpdatePool,
)
from hybatch.core.events import NodeReady
from hybatch.core.present import present_node
from tests.unit.core.core_sim import BASE_URL, Sim, pool_spec
from tests.unit.core.node_task_sim import finish, last_node_task, node_tasks

START = {"commandLine": "/bin/sh -c 'echo hi'",
         "environmentSettings": [{"name": "GREETING", "value": "hello"}]}


def _node(sim: Sim) -> str:
    return sim.nodes()[0].id


def test_waiting_for_the_start_task_then_idle(sim: Sim) -> None:
    sim.pool(startTask=START)
    node = sim.nodes()[0]
    assert node.state == "waitingforstarttask"
    launch = last_node_task(sim, "starttask")
    assert (launch.node_id, launch.job_id, launch.task_id, launch.attempt) == (node.id, "", "", 1)
    assert launch.environment == (("GREETING", "hello"),)
    assert launch.command_line == START["commandLine"]
    sim.job()
    sim.tasks("j", "t1")
    assert sim.task("j", "t1").state == "active" and not sim.task("j", "t1").offered
    finish(sim, launch, 0)
    assert node.state == "running"  # idle, then the waiting task was offered and started
    assert sim.task("j", "t1").state == "running"
    info = node.start_task_info
    assert info is not None
    assert (info.state, info.result, info.exit_code, info.retry_count) == (
        "completed", "success", 0, 0)
    sim.check()


def test_retries_then_starttaskfailed(sim: Sim) -> None:
    sim.pool(startTask={**START, "maxTaskRetryCount": 2})
    node = sim.nodes()[0]
    for attempt in (1, 2, 3):
        launch = last_node_task(sim, "starttask")
        assert launch.attempt == attempt
        assert node.state == "waitingforstarttask"
        sim.advance()
        finish(sim, launch, 3)
    assert node.state == "starttaskfailed"
    info = node.start_task_info
    assert info is not None and info.failure_info is not None
    assert (info.state, info.result, info.exit_code, info.retry_count) == (
        "completed", "failure", 3, 2)
    assert info.failure_info.code == "FailureExitCode"
    assert info.last_retry_time is not None
    sim.job()
    sim.tasks("j", "t1")
    assert not sim.task("j", "t1").offered  # a starttaskfailed node takes no task
    assert len(node_tasks(sim, "starttask")) == 3


def test_a_launch_failure_is_not_retried(sim: Sim) -> None:
    from hybatch.core.records import FailureInfoRecord
    sim.pool(startTask={**START, "maxTaskRetryCount": -1})
    launch = last_node_task(sim, "starttask")
    finish(sim, launch, None, failure=FailureInfoRecord("usererror", "CommandProgramNotFound",
                                                        "no such program"))
    node = sim.nodes()[0]
    assert node.state == "starttaskfailed"
    assert node.start_task_info is not None and node.start_task_info.failure_info is not None
    assert node.start_task_info.failure_info.code == "CommandProgramNotFound"


def test_without_wait_for_success_the_node_is_idle_at_once(sim: Sim) -> None:
    sim.pool(startTask={**START, "waitForSuccess": False})
    node = sim.nodes()[0]
    assert node.state == "idle"
    sim.job()
    sim.tasks("j", "t1")
    assert sim.task("j", "t1").state == "running"
    finish(sim, last_node_task(sim, "starttask"), 1)
    assert node.state == "running"  # a failure is only recorded
    assert node.start_task_info is not None and node.start_task_info.result == "failure"


def test_reboot_reruns_the_start_task_and_ignores_the_killed_one(sim: Sim) -> None:
    sim.pool(startTask=START)
    first = last_node_task(sim, "starttask")
    finish(sim, first, 0)
    node_id = _node(sim)
    sim.send(NodeAction("p", node_id, "reboot"))
    node = sim.get_node(node_id)
    again = last_node_task(sim, "starttask")
    assert again.attempt == 2 and node.state == "waitingforstarttask"
    assert node.start_task_info is not None and node.start_task_info.state == "running"
    finish(sim, first, 0)  # a stale report of the earlier run: ignored
    assert node.state == "waitingforstarttask"
    finish(sim, again, 0)
    assert node.state == "idle"


def test_exit_while_restarting_is_ignored(manual: Sim) -> None:
    manual.pool(startTask=START)
    manual.ready_nodes()
    launch = last_node_task(manual, "starttask")
    node_id = _node(manual)
    manual.send(NodeAction("p", node_id, "reboot"))  # allowed while waiting for it
    assert manual.get_node(node_id).state == "rebooting"
    finish(manual, launch, 137)  # killed by the restart
    assert manual.get_node(node_id).state == "rebooting"
    manual.restart_nodes()
    assert manual.get_node(node_id).state == "waitingforstarttask"
    assert last_node_task(manual, "starttask").attempt == 2


def test_reboot_recovers_a_starttaskfailed_node(sim: Sim) -> None:
    sim.pool(startTask=START)
    finish(sim, last_node_task(sim, "starttask"), 1)
    node_id = _node(sim)
    assert sim.get_node(node_id).state == "starttaskfailed"
    sim.send(NodeAction("p", node_id, "reimage"))
    node = sim.get_node(node_id)
    assert node.state == "waitingforstarttask"
    assert node.start_task_info is not None and node.start_task_info.retry_count == 0
    finish(sim, last_node_task(sim, "starttask"), 0)
    assert node.state == "idle"


def test_disabled_scheduling_ends_offline(sim: Sim) -> None:
    sim.pool(startTask=START)
    node_id = _node(sim)
    sim.send(DisableNodeScheduling("p", node_id))
    assert sim.get_node(node_id).state == "waitingforstarttask"
    finish(sim, last_node_task(sim, "starttask"), 0)
    assert sim.get_node(node_id).state == "offline"


def test_pool_update_applies_when_nodes_restart(sim: Sim) -> None:
    sim.pool()
    node_id = _node(sim)
    assert sim.get_node(node_id).state == "idle" and not node_tasks(sim)
    sim.send(UpdatePool("p", (("startTask", {"commandLine": "/bin/true"}),)))
    assert sim.get_node(node_id).state == "idle" and not node_tasks(sim)
    assert sim.pool_rec().spec.start_task is not None
    sim.send(NodeAction("p", node_id, "reboot"))
    assert sim.get_node(node_id).state == "waitingforstarttask"
    assert last_node_task(sim, "starttask").command_line == "/bin/true"
    sim.send(UpdatePool("p", (("startTask", None),), replace=True))
    sim.send(NodeAction("p", node_id, "reboot"))
    node = sim.get_node(node_id)
    assert node.state == "idle" and node.start_task is None and node.start_task_info is None


def test_adopted_node_reruns_a_start_task_that_was_running(sim: Sim) -> None:
    sim.pool(startTask=START)
    node_id = _node(sim)
    sim.send(NodeReady(node_id))  # a restarted server adopted the node
    assert last_node_task(sim, "starttask").attempt == 2
    assert sim.get_node(node_id).state == "waitingforstarttask"


def test_presented_on_the_node(sim: Sim) -> None:
    sim.pool(startTask={**START, "maxTaskRetryCount": 1})
    node = sim.nodes()[0]
    wire = present_node(node, sim.pool_rec(), BASE_URL)
    assert wire["state"] == "waitingforstarttask"
    assert wire["startTask"] == {**START, "maxTaskRetryCount": 1}
    info = wire["startTaskInfo"]
    assert isinstance(info, dict)
    assert info["state"] == "running" and info["retryCount"] == 0 and "startTime" in info
    assert "endTime" not in info and "result" not in info
    sim.advance()
    finish(sim, last_node_task(sim, "starttask"), 5)
    finish(sim, last_node_task(sim, "starttask"), 5)
    info = present_node(node, sim.pool_rec(), BASE_URL)["startTaskInfo"]
    assert isinstance(info, dict)
    assert (info["state"], info["result"], info["exitCode"], info["retryCount"]) == (
        "completed", "failure", 5, 1)
    assert info["failureInfo"]["code"] == "FailureExitCode"  # type: ignore[index]
    assert "lastRetryTime" in info


def test_invalid_start_tasks_are_refused(sim: Sim) -> None:
    sim.fails(CreatePool(pool_spec(startTask={"commandLine": "  "})), "InvalidPropertyValue")
    sim.fails(CreatePool(pool_spec(startTask={"commandLine": "x", "maxTaskRetryCount": 101})),
              "InvalidPropertyValue")
    sim.fails(CreatePool(pool_spec(startTask={
        "commandLine": "x", "environmentSettings": [{"name": "A=B", "value": "1"}]})),
        "InvalidPropertyValue")
    sim.fails(CreatePool(pool_spec(startTask={
        "commandLine": "x", "containerSettings": {"imageName": "ubuntu"}})),
        "UnsupportedProperty")
    assert sim.core.state.pools == {}
