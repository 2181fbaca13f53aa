"""Pool usage accounting with an explicit clock: allocated node time x cores, per pool per
aggregation interval, written when intervals close and shown live before."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hybatch.core import usage
from hybatch.core.commands import DeletePool, NodeAction, RemoveNodes
from hybatch.core.events import Tick
from hybatch.core.records import UsageRecord
from tests.unit.core.core_sim import T0, Sim

HALF_HOUR = 1800.0


def live(sim: Sim, pool_id: str = "p") -> list[tuple[str, float]]:
    pool = sim.pool_rec(pool_id)
    return [(start.isoformat(), seconds)
            for start, seconds in usage.open_usage(pool, sim.nodes(pool_id), sim.now)]


def written(sim: Sim) -> list[tuple[str, str, float]]:
    return [(r.pool_id, r.interval_start.isoformat(), r.core_seconds) for r in sim.usage]


@pytest.mark.parametrize(("vm_size", "cores"), [
    ("standard_d2s_v3", 2), ("Standard_E64-16s_v3", 16), ("STANDARD_A0", 1),
    ("Standard_HB120rs_v3", 120), ("Basic_A1", 1), ("anything", 1), ("", 1),
])
def test_cores_come_from_the_vm_size(vm_size: str, cores: int) -> None:
    assert usage.vm_cores(vm_size) == cores


def test_intervals_are_half_hours_aligned_to_utc() -> None:
    assert usage.interval_start(T0 + timedelta(minutes=47)) == T0 + timedelta(minutes=30)
    assert usage.interval_start(T0) == T0


def test_allocated_node_time_accrues_and_closes_per_interval(sim: Sim) -> None:
    sim.pool(nodes=2)  # standard_d2s_v3: 2 cores each, allocated at T0
    sim.advance(600)
    assert live(sim) == [(T0.isoformat(), 2 * 2 * 600.0)]
    sim.advance(HALF_HOUR)  # 40 minutes in: the first interval has closed
    sim.send(Tick())
    assert written(sim) == [("p", T0.isoformat(), 2 * 2 * HALF_HOUR)]
    second = (T0 + timedelta(seconds=HALF_HOUR)).isoformat()
    assert live(sim) == [(second, 2 * 2 * 600.0)]


def test_live_view_matches_what_the_tick_later_writes(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.advance(3 * HALF_HOUR + 60)  # no tick for three intervals (e.g. a busy loop)
    expected = live(sim)
    assert [s for _, s in expected] == [2 * HALF_HOUR] * 3 + [2 * 60.0]
    sim.send(Tick())
    assert [(start, seconds) for _, start, seconds in written(sim)] == expected[:3]
    assert live(sim) == expected[3:]


def test_deallocated_time_is_not_counted(manual: Sim) -> None:
    manual.pool(nodes=1)
    manual.ready_nodes()
    node = manual.nodes()[0]
    manual.advance(100)
    manual.send(NodeAction("p", node.id, "deallocate"))
    assert node.state == "deallocated"
    manual.advance(1000)
    assert live(manual) == [(T0.isoformat(), 2 * 100.0)]
    manual.send(NodeAction("p", node.id, "start"))
    manual.restart_nodes()
    manual.advance(50)
    assert live(manual) == [(T0.isoformat(), 2 * 150.0)]


def test_removed_nodes_and_deleted_pools_keep_their_usage(sim: Sim) -> None:
    sim.pool(nodes=2)
    first = sim.nodes()[0]
    sim.advance(100)
    sim.send(RemoveNodes("p", (first.id,), None, None))
    sim.advance(100)
    assert live(sim) == [(T0.isoformat(), 2 * 100.0 + 2 * 200.0)]
    sim.send(DeletePool("p"))
    assert sim.get_pool("p") is None
    assert written(sim) == [("p", T0.isoformat(), 600.0)]
    entries = usage.list_entries(sim.usage, [], sim.now, T0, T0 + usage.INTERVAL)
    assert [(e.pool_id, e.core_seconds, e.vm_size) for e in entries] == [
        ("p", 600.0, "standard_d2s_v3")]


def test_listing_merges_written_and_live_without_counting_twice(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.advance(HALF_HOUR + 60)
    sim.send(Tick())
    pool = sim.pool_rec()
    stored = list(sim.usage)
    # a stale pool snapshot (read before the roll) must not add the written interval again
    stale = UsageRecord(pool_id="P", pool_creation_time=pool.creation_time,
                        interval_start=T0 + usage.INTERVAL, vm_size="x", core_seconds=5.0)
    entries = usage.list_entries([*stored, stale], [(pool, sim.nodes())], sim.now,
                                 T0, T0 + 2 * usage.INTERVAL)
    assert [(e.interval_start, e.core_seconds) for e in entries] == [
        (T0, 2 * HALF_HOUR), (T0 + usage.INTERVAL, 2 * 60.0)]
    only_first = usage.list_entries(stored, [(pool, sim.nodes())], sim.now, T0,
                                    T0 + usage.INTERVAL)
    assert [e.interval_start for e in only_first] == [T0]


def test_pools_of_one_id_in_one_interval_are_summed(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.advance(100)
    sim.send(DeletePool("p"))
    sim.advance(10)
    sim.pool(nodes=1, vmSize="standard_d4s_v3")
    sim.advance(100)
    entries = usage.list_entries(sim.usage, [(sim.pool_rec(), sim.nodes())], sim.now, T0,
                                 T0 + usage.INTERVAL)
    assert [(e.pool_id, e.core_seconds, e.vm_size) for e in entries] == [
        ("p", 2 * 100.0 + 4 * 100.0, "standard_d4s_v3")]
