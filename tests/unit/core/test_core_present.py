"""``present_*``: records as wire dicts that the spec's response models accept, with canonical
(lower-case) enum values, ISO dates and canonical durations."""

from __future__ import annotations

from typing import Any

import pytest

from hybatch.core.commands import (
    DeletePool,
    ResizePool,
    StopPoolResize,
    TerminateJob,
    TerminateTask,
)
from hybatch.core.present import (
    UNLIMITED,
    duration,
    iso,
    present_job,
    present_node,
    present_node_counts,
    present_pool,
    present_task,
    present_task_counts,
)
from hybatch.schema import (
    BatchJob,
    BatchNode,
    BatchPool,
    BatchPoolNodeCounts,
    BatchTask,
    BatchTaskCountsResult,
)
from tests.unit.core.core_sim import BASE_URL, T0, Sim, task_spec

ENUM_FIELDS = ("state", "allocationState", "previousState", "schedulingState", "result",
               "category", "onAllTasksComplete", "onTaskFailure", "nodeFillType")


def enum_values(wire: Any, found: list[str] | None = None) -> list[str]:
    """Every value of an enum-typed field anywhere in ``wire``."""
    found = [] if found is None else found
    if isinstance(wire, dict):
        for key, value in wire.items():
            if key in ENUM_FIELDS and isinstance(value, str):
                found.append(value)
            else:
                enum_values(value, found)
    elif isinstance(wire, list):
        for item in wire:
            enum_values(item, found)
    return found


def assert_canonical(wire: dict[str, object]) -> None:
    values = enum_values(wire)
    assert values, "expected some enum fields"
    assert all(v == v.lower() for v in values), values


def test_duration_and_iso_formats() -> None:
    assert duration(None) == UNLIMITED
    assert duration(0) == "PT0S"
    assert duration(3600) == "PT1H"
    assert duration(7 * 86400) == "P7D"
    assert duration(90.5) == "PT1M30.5S"
    assert duration(86400 + 3661) == "P1DT1H1M1S"
    assert iso(None) is None
    assert iso(T0) == "2024-01-01T12:00:00.000000Z"


def test_pool_and_nodes_validate_and_track_state(manual: Sim) -> None:
    pool = manual.pool(nodes=2, low=1, slots=2, fill="Pack")
    wire = present_pool(pool, manual.nodes(), BASE_URL)
    model = BatchPool.model_validate(wire)
    assert model.id == "p"
    assert wire["url"] == f"{BASE_URL}/pools/p"
    assert wire["allocationState"] == "resizing"
    assert wire["taskSchedulingPolicy"] == {"nodeFillType": "pack"}
    assert (wire["currentDedicatedNodes"], wire["currentLowPriorityNodes"]) == (2, 1)
    assert wire["resizeTimeout"] == "PT15M"
    assert wire["eTag"] == pool.etag
    assert "resizeErrors" not in wire
    assert_canonical(wire)
    for node in manual.nodes():
        node_wire = present_node(node, pool, BASE_URL)
        BatchNode.model_validate(node_wire)
        assert node_wire["state"] == "creating"
        assert node_wire["vmSize"] == "standard_d2s_v3"
        assert node_wire["url"] == f"{BASE_URL}/pools/p/nodes/{node.id}"
        assert_canonical(node_wire)
    counts = present_node_counts(pool, manual.nodes())
    BatchPoolNodeCounts.model_validate(counts)
    dedicated, low = counts["dedicated"], counts["lowPriority"]
    assert isinstance(dedicated, dict) and isinstance(low, dict)
    assert (dedicated["creating"], low["total"]) == (2, 1)


def test_resize_errors_are_shown_only_when_steady(manual: Sim) -> None:
    pool = manual.pool(nodes=2)
    manual.send(StopPoolResize("p"))
    assert "resizeErrors" not in present_pool(pool, manual.nodes(), BASE_URL)
    manual.ready_nodes()
    wire = present_pool(pool, manual.nodes(), BASE_URL)
    BatchPool.model_validate(wire)
    assert wire["allocationState"] == "steady"
    assert wire["resizeErrors"] == [{"code": "ResizeStopped", "message": pool.resize_errors[0]
                                     .message}]


def test_removing_nodes_are_not_current(sim: Sim) -> None:
    sim.pool(nodes=2)
    sim.job()
    sim.tasks("j", "t1")
    sim.send(ResizePool("p", 0, None, None, "taskcompletion"))
    pool = sim.get_pool()
    assert pool is not None
    wire = present_pool(pool, sim.nodes(), BASE_URL)
    assert (wire["currentDedicatedNodes"], wire["targetDedicatedNodes"]) == (0, 0)
    (leaving,) = sim.nodes()
    node_wire = present_node(leaving, pool, BASE_URL)
    BatchNode.model_validate(node_wire)
    assert node_wire["state"] == "leavingpool"
    assert node_wire["runningTasksCount"] == 1
    sim.send(DeletePool("p"))
    wire = present_pool(pool, sim.nodes(), BASE_URL)
    BatchPool.model_validate(wire)
    assert wire["state"] == "deleting"


def test_job_validates_through_its_life(sim: Sim) -> None:
    sim.pool(nodes=1)
    job = sim.job("Job-1", priority=10, onAllTasksComplete="NoAction", maxParallelTasks=3,
                  constraints={"maxTaskRetryCount": 2}, metadata=[{"name": "k", "value": "v"}])
    wire = present_job(job, BASE_URL)
    BatchJob.model_validate(wire)
    assert wire["state"] == "active"
    assert wire["url"] == f"{BASE_URL}/jobs/Job-1"
    assert (wire["priority"], wire["maxParallelTasks"]) == (10, 3)
    assert wire["onAllTasksComplete"] == "noaction"
    assert wire["constraints"] == {"maxTaskRetryCount": 2, "maxWallClockTime": UNLIMITED}
    assert wire["executionInfo"] == {"startTime": iso(job.creation_time), "poolId": "p"}
    assert_canonical(wire)
    sim.tasks("Job-1", "t1")
    sim.advance()
    sim.send(TerminateJob("job-1"))
    wire = present_job(job, BASE_URL)
    BatchJob.model_validate(wire)
    assert (wire["state"], wire["previousState"]) == ("terminating", "active")
    sim.exit("job-1", "t1", -9)
    wire = present_job(job, BASE_URL)
    BatchJob.model_validate(wire)
    assert wire["state"] == "completed"
    info = wire["executionInfo"]
    assert isinstance(info, dict)
    assert (info["terminateReason"], info["endTime"]) == ("UserTerminate", iso(sim.now))


def test_job_defaults(sim: Sim) -> None:
    wire = present_job(sim.job(), BASE_URL)
    assert wire["maxParallelTasks"] == -1
    assert wire["onAllTasksComplete"] == "noaction"
    assert wire["onTaskFailure"] == "noaction"
    assert wire["usesTaskDependencies"] is False
    assert wire["constraints"] == {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 0}


@pytest.mark.parametrize("path", ["active", "running", "success", "failure", "retried",
                                  "terminated"])
def test_task_validates_in_every_state(sim: Sim, path: str) -> None:
    if path != "active":
        sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", task_spec("t1", retries=2, constraints={"maxTaskRetryCount": 2,
                                                           "retentionTime": "PT1H"}))
    if path == "success":
        sim.exit("j", "t1", 0)
    elif path == "failure":
        for _ in range(3):
            sim.exit("j", "t1", 7)
    elif path == "retried":
        sim.exit("j", "t1", 7)
    elif path == "terminated":
        sim.send(TerminateTask("j", "t1"))
        sim.exit_killed()
    task = sim.task("j", "t1")
    wire = present_task(task, BASE_URL)
    model = BatchTask.model_validate(wire)
    assert model.id == "t1"
    assert_canonical(wire)
    info = wire["executionInfo"]
    assert isinstance(info, dict)
    assert wire["constraints"] == {"maxWallClockTime": UNLIMITED, "retentionTime": "PT1H",
                                   "maxTaskRetryCount": 2}
    assert wire["requiredSlots"] == 1
    expected_state = {"active": "active", "running": "running", "retried": "running"}.get(
        path, "completed")
    assert wire["state"] == expected_state
    if path == "active":
        assert info == {"retryCount": 0, "requeueCount": 0}
        assert "nodeInfo" not in wire
        return
    node_info = wire["nodeInfo"]
    assert isinstance(node_info, dict)
    assert node_info["poolId"] == "p" and node_info["nodeId"] == task.node_id
    assert node_info["taskRootDirectory"] == "workitems/j/job-1/t1"
    if path == "success":
        assert (info["result"], info["exitCode"]) == ("success", 0)
    if path == "failure":
        assert (info["result"], info["exitCode"], info["retryCount"]) == ("failure", 7, 2)
        assert info["failureInfo"]["category"] == "usererror"
        assert info["failureInfo"]["code"] == "FailureExitCode"
        assert info["failureInfo"]["details"][0]["name"] == "Message"
    if path == "terminated":
        assert info["failureInfo"]["code"] == "TaskEnded"
    if path == "retried":
        assert info["retryCount"] == 1
        assert info["lastRetryTime"] == iso(task.last_retry_time)


def test_task_counts_validate_and_match(sim: Sim) -> None:
    sim.pool(nodes=1, slots=4)
    job = sim.job()
    sim.tasks("j", task_spec("a", slots=2), "b", task_spec("c", slots=3), "d")
    sim.exit("j", "a", 0)
    sim.exit("j", "b", 1)
    wire = present_task_counts(job.counts)
    BatchTaskCountsResult.model_validate(wire)
    assert wire == {
        "taskCounts": {"active": 0, "running": 2, "completed": 2, "succeeded": 1,
                       "failed": 1},
        "taskSlotCounts": {"active": 0, "running": 4, "completed": 3, "succeeded": 2,
                           "failed": 1},
    }
