"""Pools and nodes: create, allocation state, resize, stop resize, remove nodes, delete."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hybatch.core.commands import (
    CreatePool,
    DeletePool,
    Precondition,
    RemoveNodes,
    ResizePool,
    StopPoolResize,
)
from hybatch.core.effects import KillTask, ProvisionNode, ReleaseNode
from hybatch.core.events import NodeLost, NodeReady, NodeReleased, Tick
from tests.unit.core.core_sim import Sim, pool_spec, task_spec


def resize(pool_id: str = "p", dedicated: int | None = None, low: int | None = None,
           option: str | None = None, precondition: Precondition | None = None) -> ResizePool:
    return ResizePool(pool_id, dedicated, low, None, option, precondition or Precondition())


def remove(pool_id: str, *node_ids: str, option: str | None = None) -> RemoveNodes:
    return RemoveNodes(pool_id, tuple(node_ids), None, option)


# ------------------------------------------------------------------ create


def test_create_provisions_nodes_and_resizes_until_every_node_is_ready(manual: Sim) -> None:
    pool = manual.pool(nodes=2, low=1, slots=3)
    provisions = [e for e in manual.last if isinstance(e, ProvisionNode)]
    assert [(e.pool_id, e.slots, e.is_dedicated) for e in provisions] == [
        ("p", 3, True), ("p", 3, True), ("p", 3, False)]
    assert len({e.node_id for e in provisions}) == 3
    assert pool.state == "active"
    assert pool.allocation_state == "resizing"
    assert pool.allocation_state_transition_time == manual.now
    assert {n.state for n in manual.nodes()} == {"creating"}

    manual.advance(5)
    manual.ready_nodes(2)
    assert pool.allocation_state == "resizing"
    manual.advance(5)
    manual.ready_nodes()
    assert pool.allocation_state == "steady"
    assert pool.allocation_state_transition_time == manual.now
    assert [n.state for n in manual.nodes()] == ["idle"] * 3
    assert all(n.last_boot_time is not None for n in manual.nodes())
    manual.check()


def test_create_with_zero_targets_is_steady_at_once(manual: Sim) -> None:
    pool = manual.pool(nodes=0)
    assert pool.allocation_state == "steady"
    assert manual.last == []


def test_node_ready_for_unknown_or_ready_node_is_ignored(sim: Sim) -> None:
    sim.pool(nodes=1)
    node = sim.nodes()[0]
    version = node.version
    sim.send(NodeReady(node.id))
    sim.send(NodeReady("nope"))
    sim.send(NodeReleased("nope"))
    sim.send(NodeLost("nope", "gone"))
    assert node.version == version
    assert node.state == "idle"


def test_duplicate_pool_id_differing_only_in_case_is_rejected(sim: Sim) -> None:
    sim.pool("MyPool", nodes=1)
    error = sim.fails(CreatePool(pool_spec("mypool")), "PoolExists")
    assert error.details["PoolId"] == "mypool"


@pytest.mark.parametrize("bad", ["has space", "dot.ted", "x" * 65, "ünï"])
def test_bad_pool_id_is_rejected(sim: Sim, bad: str) -> None:
    error = sim.fails(CreatePool(pool_spec(bad)), "InvalidPropertyValue")
    assert error.details["PropertyName"] == "id"
    assert sim.core.state.pools == {}


@pytest.mark.parametrize(("field", "value"), [
    ("taskSlotsPerNode", 0), ("taskSlotsPerNode", 257), ("targetDedicatedNodes", 1001),
])
def test_out_of_range_pool_values_are_rejected(sim: Sim, field: str, value: int) -> None:
    spec = pool_spec("p").model_copy()
    body = spec.model_dump(by_alias=True, exclude_none=True) | {field: value}
    sim.fails(CreatePool(type(spec).model_validate(body)), "InvalidPropertyValue")


def test_unsupported_pool_features_are_refused_clearly(sim: Sim) -> None:
    spec = pool_spec("p", enableAutoScale=True, autoScaleFormula="$TargetDedicatedNodes=1")
    sim.fails(CreatePool(spec), "UnsupportedProperty")


def test_pool_slots_and_fill_type_come_from_the_spec(sim: Sim) -> None:
    pool = sim.pool(nodes=1, slots=4, fill="pack")
    assert (pool.task_slots_per_node, pool.node_fill_type) == (4, "pack")
    assert sim.nodes()[0].slots == 4
    assert sim.pool("q", nodes=0).node_fill_type == "spread"


# ------------------------------------------------------------------ resize


def test_resize_up_provisions_the_difference(manual: Sim) -> None:
    pool = manual.pool(nodes=1)
    manual.ready_nodes()
    manual.advance()
    manual.send(resize(dedicated=3, low=1))
    assert pool.allocation_state == "resizing"
    assert manual.kinds() == {"ProvisionNode": 3}
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (3, 1)
    manual.ready_nodes()
    assert pool.allocation_state == "steady"
    assert len(manual.nodes()) == 4


def test_resize_is_rejected_while_resizing(manual: Sim) -> None:
    manual.pool(nodes=2)
    manual.fails(resize(dedicated=5), "PoolBeingResized")


def test_resize_out_of_range_and_bad_option_change_nothing(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.fails(resize(dedicated=-1), "InvalidPropertyValue")
    sim.fails(resize(dedicated=1001), "InvalidPropertyValue")
    sim.fails(resize(dedicated=0, option="explode"), "InvalidPropertyValue")
    sim.fails(resize("missing", dedicated=0), "PoolNotFound")


def test_resize_keeps_the_other_target_when_omitted(sim: Sim) -> None:
    pool = sim.pool(nodes=1, low=2)
    sim.send(resize(dedicated=2))
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (2, 2)
    assert sum(1 for n in sim.nodes() if not n.is_dedicated) == 2


def test_resize_down_removes_idle_nodes_first(manual: Sim) -> None:
    pool = manual.pool(nodes=3)
    manual.ready_nodes()
    manual.job()
    manual.tasks("j", "t1")
    busy = next(n for n in manual.nodes() if n.running_tasks)
    manual.send(resize(dedicated=1))
    released = [e.node_id for e in manual.last if isinstance(e, ReleaseNode)]
    assert busy.id not in released
    assert len(released) == 2
    assert not any(isinstance(e, KillTask) for e in manual.last)
    assert pool.allocation_state == "resizing"
    assert {n.state for n in manual.nodes() if n.id in released} == {"leavingpool"}
    manual.release_nodes()
    assert pool.allocation_state == "steady"
    assert [n.id for n in manual.nodes()] == [busy.id]
    assert busy.state == "running"
    manual.check()


def running_pool(sim: Sim, option: str) -> tuple[str, list[str]]:
    """One busy node with two running tasks, then a resize to zero with ``option``."""
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", task_spec("t1", retries=3), "t2")
    node = sim.nodes()[0].id
    sim.advance()
    sim.send(resize(dedicated=0, option=option))
    return node, [e.task_id for e in sim.last if isinstance(e, KillTask)]


def test_resize_down_requeue_kills_and_requeues_running_tasks(sim: Sim) -> None:
    node, killed = running_pool(sim, "requeue")
    assert sorted(killed) == ["t1", "t2"]
    assert sim.get_node(node).state == "leavingpool"
    assert sim.pool_rec().allocation_state == "resizing"
    sim.exit_killed(-9)
    for tid in ("t1", "t2"):
        task = sim.task("j", tid)
        assert task.state == "active"
        assert (task.requeue_count, task.retry_count) == (1, 0)
        assert task.last_requeue_time == sim.now
        assert task.failure_info is None
    assert [e.node_id for e in sim.last if isinstance(e, ReleaseNode)] == [node]
    assert sim.counts() == {"active": 2, "running": 0, "completed": 0, "succeeded": 0,
                            "failed": 0}
    assert sim.pool_rec().allocation_state == "steady"
    assert sim.nodes() == []
    sim.check()


def test_resize_down_terminate_completes_running_tasks_with_failure(sim: Sim) -> None:
    _, killed = running_pool(sim, "terminate")
    assert sorted(killed) == ["t1", "t2"]
    sim.exit_killed(-9)
    for tid in ("t1", "t2"):
        task = sim.task("j", tid)
        assert (task.state, task.result) == ("completed", "failure")
        assert task.failure_info is not None and task.failure_info.code == "TaskEnded"
        assert task.retry_count == 0
    assert sim.counts()["failed"] == 2
    assert sim.pool_rec().allocation_state == "steady"
    assert sim.nodes() == []


def test_resize_down_taskcompletion_waits_for_running_tasks(sim: Sim) -> None:
    node, killed = running_pool(sim, "taskcompletion")
    assert killed == []
    assert sim.pool_rec().allocation_state == "resizing"
    sim.exit("j", "t1", 0)
    assert [n.id for n in sim.nodes()] == [node]
    sim.exit("j", "t2", 1)
    assert [e.node_id for e in sim.last if isinstance(e, ReleaseNode)] == [node]
    assert sim.task("j", "t1").result == "success"
    assert sim.task("j", "t2").result == "failure"
    assert sim.nodes() == []
    assert sim.pool_rec().allocation_state == "steady"


def test_retrying_task_does_not_go_back_to_a_leaving_node(sim: Sim) -> None:
    node, _ = running_pool(sim, "taskcompletion")
    sim.exit("j", "t1", 3)  # retried: must not be placed on the leaving node
    task = sim.task("j", "t1")
    assert (task.state, task.retry_count) == ("active", 1)
    assert sim.placement() == {node: ["t2"]}


def test_stop_resize_keeps_ready_nodes_and_reports_resize_stopped(manual: Sim) -> None:
    pool = manual.pool(nodes=3)
    manual.ready_nodes(1)
    manual.advance()
    manual.send(StopPoolResize("p"))
    assert pool.allocation_state == "stopping"
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (3, 0)
    manual.ready_nodes()
    assert pool.allocation_state == "steady"
    assert [e.code for e in pool.resize_errors] == ["ResizeStopped"]


def test_stop_resize_on_a_steady_pool_is_a_no_op(sim: Sim) -> None:
    pool = sim.pool(nodes=1)
    version = pool.version
    assert sim.send(StopPoolResize("p")) is pool
    assert pool.version == version
    assert pool.resize_errors == []


def test_remove_nodes_removes_exactly_those_nodes(manual: Sim) -> None:
    pool = manual.pool(nodes=3)
    manual.ready_nodes()
    victim = manual.nodes()[1].id
    manual.send(remove("p", victim.upper()))
    assert pool.target_dedicated_nodes == 2
    assert pool.allocation_state == "resizing"
    assert [e.node_id for e in manual.last if isinstance(e, ReleaseNode)] == [victim]
    manual.release_nodes()
    assert pool.allocation_state == "steady"
    assert victim not in [n.id for n in manual.nodes()]
    assert len(manual.nodes()) == 2


def test_remove_nodes_duplicates_count_once(sim: Sim) -> None:
    pool = sim.pool(nodes=2)
    victim = sim.nodes()[0].id
    sim.send(remove("p", victim, victim))
    assert pool.target_dedicated_nodes == 1
    assert len(sim.nodes()) == 1


def test_remove_nodes_validation(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.pool("q", nodes=1)
    other = sim.nodes("q")[0].id
    sim.fails(remove("p", other), "NodeNotFound")
    sim.fails(remove("p", "nope"), "NodeNotFound")
    sim.fails(remove("p"), "InvalidPropertyValue")
    sim.fails(remove("p", *[f"n{i}" for i in range(101)]), "InvalidPropertyValue")
    sim.fails(remove("p", sim.nodes()[0].id, option="bogus"), "InvalidPropertyValue")


def test_remove_nodes_requeues_running_tasks_by_default(sim: Sim) -> None:
    sim.pool(nodes=2)
    sim.job()
    sim.tasks("j", "t1")
    busy = sim.task("j", "t1").node_id
    assert busy is not None
    sim.send(remove("p", busy))
    sim.exit_killed()
    task = sim.task("j", "t1")
    # requeued, then placed on the remaining node once the requeue is processed
    assert task.requeue_count == 1
    assert task.state == "running"
    assert task.node_id != busy
    assert sim.pool_rec().allocation_state == "steady"
    sim.check()


# ------------------------------------------------------------------ delete


def test_delete_pool_goes_away_once_nodes_are_released(manual: Sim) -> None:
    manual.pool(nodes=2)
    manual.ready_nodes()
    manual.job()
    manual.tasks("j", "t1")
    manual.send(DeletePool("p"))
    pool = manual.get_pool()
    assert pool is not None and pool.state == "deleting"
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (0, 0)
    assert manual.kinds()["KillTask"] == 1
    manual.exit_killed()
    assert manual.task("j", "t1").state == "active"  # requeued; the pool takes no tasks
    assert manual.get_pool() is not None
    manual.release_nodes()
    assert manual.get_pool() is None
    assert manual.core.state.nodes == {}
    manual.send(Tick())
    assert manual.task("j", "t1").state == "active"
    manual.check()


def test_delete_empty_pool_is_immediate_and_id_reusable(sim: Sim) -> None:
    sim.pool(nodes=0)
    sim.send(DeletePool("P"))
    assert sim.get_pool() is None
    assert sim.pool("p", nodes=1).state == "active"


def test_delete_pool_twice_and_operations_on_a_deleting_pool(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    manual.send(DeletePool("p"))
    pool = manual.get_pool()
    assert pool is not None
    version = pool.version
    assert manual.send(DeletePool("p")) is pool
    assert pool.version == version
    manual.fails(resize(dedicated=2), "PoolBeingDeleted")
    manual.fails(CreatePool(pool_spec("p")), "PoolExists")
    manual.release_nodes()
    manual.fails(DeletePool("p"), "PoolNotFound")


def test_pool_preconditions(sim: Sim) -> None:
    pool = sim.pool(nodes=1)
    stale = pool.etag
    sim.advance()
    sim.send(resize(dedicated=2))
    assert pool.etag != stale
    sim.fails(resize(dedicated=3, precondition=Precondition(if_match=stale)),
              "ConditionNotMet")
    sim.fails(DeletePool("p", Precondition(if_match=stale)), "ConditionNotMet")
    sim.fails(DeletePool("p", Precondition(if_none_match="*")), "ConditionNotMet")
    sim.send(resize(dedicated=1, precondition=Precondition(if_match=pool.etag)))
    assert pool.target_dedicated_nodes == 1


def test_if_modified_since_preconditions(sim: Sim) -> None:
    pool = sim.pool(nodes=0)
    assert pool.last_modified is not None
    stamp = pool.last_modified.timestamp()
    sim.fails(DeletePool("p", Precondition(if_modified_since=stamp)), "ConditionNotMet")
    sim.fails(DeletePool("p", Precondition(if_unmodified_since=stamp - 10)), "ConditionNotMet")
    sim.send(DeletePool("p", Precondition(if_unmodified_since=stamp)))
    assert sim.get_pool() is None


# ------------------------------------------------------------------ node loss


def test_node_lost_requeues_tasks_and_marks_node_unusable(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", task_spec("t1", retries=0), "t2")
    node = sim.nodes()[0]
    sim.advance()
    sim.send(NodeLost(node.id, "agent vanished"))
    assert node.state == "unusable"
    assert [e.code for e in node.errors] == ["NodeLost"]
    for tid in ("t1", "t2"):
        task = sim.task("j", tid)
        assert (task.state, task.requeue_count, task.retry_count) == ("active", 1, 0)
    assert sim.counts()["active"] == 2
    assert node.running_task_slots == 0
    # an unusable node takes no new tasks
    sim.send(Tick())
    assert sim.running_ids() == set()
    sim.check()


def test_losing_a_creating_node_does_not_leave_the_pool_resizing(manual: Sim) -> None:
    pool = manual.pool(nodes=2)
    manual.ready_nodes(1)
    lost = manual.provisioning.pop()
    manual.send(NodeLost(lost.node_id, "never came up"))
    assert pool.allocation_state == "steady"
    manual.send(resize(dedicated=3))  # a later resize is accepted
    assert pool.allocation_state == "resizing"


def test_node_lost_while_leaving_is_released(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    manual.job()
    manual.tasks("j", "t1")
    node = manual.nodes()[0].id
    manual.send(resize(dedicated=0, option="taskcompletion"))
    manual.send(NodeLost(node, "gone"))
    assert [r.node_id for r in manual.releasing] == [node]
    manual.release_nodes()
    assert manual.pool_rec().allocation_state == "steady"
    assert manual.task("j", "t1").state == "active"


def test_resize_timeout_is_recorded(sim: Sim) -> None:
    pool = sim.pool(nodes=1)
    assert pool.resize_timeout_s == 900.0
    sim.send(ResizePool("p", 2, None, timedelta(minutes=5), None))
    assert pool.resize_timeout_s == 300.0


def test_negative_resize_timeout_is_refused_and_changes_nothing(sim: Sim) -> None:
    from datetime import timedelta

    from hybatch.core.commands import CreatePool, ResizePool

    spec = pool_spec("neg", nodes=1).model_copy(update={"resize_timeout": timedelta(minutes=-5)})
    sim.fails(CreatePool(spec), "InvalidPropertyValue")
    sim.pool("ok", nodes=1)
    sim.fails(ResizePool("ok", 2, None, timedelta(seconds=-1), None), "InvalidPropertyValue")


def test_job_patch_refuses_auto_pools_and_empty_pool_info(sim: Sim) -> None:
    from hybatch.core.commands import UpdateJob
    from hybatch.schema import BatchPoolInfo

    sim.pool()
    sim.job()
    auto = BatchPoolInfo.model_validate({"autoPoolSpecification": {
        "poolLifetimeOption": "job", "pool": {"vmSize": "x"}}})
    sim.fails(UpdateJob("j", (("poolInfo", auto),)), "UnsupportedProperty")
    sim.fails(UpdateJob("j", (("poolInfo", BatchPoolInfo()),)), "MissingRequiredProperty")
