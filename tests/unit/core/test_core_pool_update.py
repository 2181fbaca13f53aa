"""Pool PATCH (merge) and updateproperties (replace) in the pure core."""

from __future__ import annotations

from hybatch.core.commands import DeletePool, Precondition, UpdatePool
from tests.unit.core.core_sim import Sim


def patch(pool_id: str = "p", **fields: object) -> UpdatePool:
    return UpdatePool(pool_id, tuple(fields.items()))


def replace(pool_id: str = "p", **fields: object) -> UpdatePool:
    return UpdatePool(pool_id, tuple(fields.items()), replace=True)


def test_patch_changes_only_what_is_sent(sim: Sim) -> None:
    pool = sim.pool(nodes=1, metadata=[{"name": "a", "value": "1"}], displayName="first")
    etag = pool.etag
    sim.advance()
    sim.send(patch(metadata=[{"name": "b", "value": "2"}]))
    assert [(m.name, m.value) for m in pool.spec.metadata or []] == [("b", "2")]
    assert pool.spec.display_name == "first"
    assert pool.spec.vm_size == "standard_d2s_v3"
    assert pool.etag != etag and pool.last_modified == sim.now
    sim.send(patch(metadata=None))  # null is "not sent" for a merge
    assert [m.name for m in pool.spec.metadata or []] == ["b"]
    sim.send(patch(metadata=[]))  # an empty list clears
    assert not pool.spec.metadata


def test_replace_clears_what_is_absent(sim: Sim) -> None:
    pool = sim.pool(nodes=1, metadata=[{"name": "a", "value": "1"}], displayName="keep",
                    certificateReferences=[])
    sim.send(replace(metadata=[], applicationPackageReferences=[]))
    assert not pool.spec.metadata
    assert pool.spec.start_task is None
    assert pool.spec.display_name == "keep"  # not a replaceable property


def test_fields_of_an_empty_pool_only(sim: Sim) -> None:
    pool = sim.pool(nodes=1)
    error = sim.fails(patch(taskSlotsPerNode=4), "OperationInvalidForCurrentState")
    assert "taskSlotsPerNode" in error.message
    empty = sim.pool("e", nodes=0)
    sim.send(patch("e", taskSlotsPerNode=4, vmSize="standard_d8s_v3", displayName="big",
                   taskSchedulingPolicy={"jobDefaultOrder": "creationtime"}))
    assert (empty.task_slots_per_node, empty.spec.vm_size, empty.spec.display_name) == (
        4, "standard_d8s_v3", "big")
    assert empty.node_fill_type == "spread"  # kept: the policy sent had no fill type
    sim.send(patch("e", taskSchedulingPolicy={"nodeFillType": "pack"}))
    assert empty.node_fill_type == "pack"
    assert pool.task_slots_per_node == 1


def test_refusals_change_nothing(sim: Sim) -> None:
    sim.pool(nodes=0)
    sim.fails(patch("nope", metadata=[]), "PoolNotFound")
    sim.fails(patch(startTask={"commandLine": " "}), "InvalidPropertyValue")
    sim.fails(patch(startTask={"commandLine": "x", "maxTaskRetryCount": -2}),
              "InvalidPropertyValue")
    sim.fails(patch(startTask={"commandLine": "x", "resourceFiles": [{"httpUrl": "u"}]}),
              "UnsupportedProperty")
    sim.fails(patch(applicationPackageReferences=[{"applicationId": "a"}]),
              "UnsupportedProperty")
    sim.fails(patch(taskSlotsPerNode=0), "InvalidPropertyValue")
    sim.fails(patch(vmSize=" "), "InvalidPropertyValue")
    sim.fails(patch(metadata=[{"name": "", "value": "x"}]), "EmptyMetadataKey")
    sim.fails(patch(virtualMachineConfiguration={"nodeAgentSKUId": "x"}),
              "MissingRequiredProperty")
    sim.fails(patch(id="other"), "InvalidPropertyValue")
    sim.fails(UpdatePool("p", (("metadata", []),), precondition=Precondition(if_match="0x1")),
              "ConditionNotMet")


def test_no_update_while_deleting(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    manual.send(DeletePool("p"))
    manual.fails(patch(metadata=[]), "PoolBeingDeleted")
