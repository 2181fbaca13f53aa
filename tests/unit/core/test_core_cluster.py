"""ClusterState bookkeeping: the per-turn change set, eviction of completed tasks, adopting
stored tasks, ``validate`` and ``restore``."""

from __future__ import annotations

import copy

from hybatch.core.commands import CreateJob, DeleteJob, DeleteTask, ReactivateTask
from hybatch.core.machine import BatchCore
from hybatch.core.records import task_key
from tests.unit.core.core_sim import SeqIds, Sim, job_spec, task_spec


def test_changes_hold_touched_records_and_reset(sim: Sim) -> None:
    sim.evict = False
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1", "t2")
    changes = sim.core.take_changes()
    assert set(changes.pools) == {"p"}
    assert set(changes.jobs) == {"j"}
    assert set(changes.tasks) == {("j", "t1"), ("j", "t2")}
    assert len(changes.nodes) == 1
    empty = sim.core.take_changes()
    assert (empty.pools, empty.nodes, empty.jobs, empty.tasks) == ({}, {}, {}, {})


def test_take_changes_evicts_completed_tasks_only(sim: Sim) -> None:
    sim.evict = False
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1", "t2")
    sim.exit("j", "t1", 0)
    assert task_key("j", "t1") in sim.core.state.tasks
    changes = sim.core.take_changes()
    assert changes.tasks[("j", "t1")].state == "completed"
    assert task_key("j", "t1") not in sim.core.state.tasks
    assert sim.core.state.tasks[("j", "t2")].state == "running"
    sim.check()


def test_adopted_task_can_be_reactivated_and_deleted(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1", "t2")
    sim.exit("j", "t1", 1)
    assert ("j", "t1") not in sim.core.state.tasks and ("j", "t1") in sim.store
    sim.send(ReactivateTask("j", "t1"))
    assert sim.core.state.tasks[("j", "t1")].state == "active"
    sim.exit("j", "t2", 0)
    sim.send(DeleteTask("j", "t2"))
    assert ("j", "t2") not in sim.store
    assert sim.counts()["completed"] == 0
    sim.check()


def test_job_deleted_and_recreated_in_one_turn_deletes_the_old_tasks(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "old")
    sim.evict = False
    sim.send(DeleteJob("j"))
    sim.send(CreateJob(job_spec("J")))
    changes = sim.core.take_changes()
    assert "j" in changes.deleted_jobs  # the store deletes the old job's tasks first ...
    assert changes.jobs["j"].id == "J"  # ... then writes the new job
    assert changes.tasks == {}


def test_validate_reports_broken_accounting(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", "t1", task_spec("t2", slots=1))
    sim.check()
    node = sim.nodes()[0]
    job = sim.get_job()
    assert job is not None
    node.running_task_slots += 1
    job.counts.active += 1
    problems = sim.core.state.validate()
    assert any("slots" in p for p in problems)
    assert any("active count" in p for p in problems)
    node.running_task_slots = 5
    assert any("over-committed" in p for p in sim.core.state.validate())


def test_restore_rebuilds_indexes_from_records(sim: Sim) -> None:
    sim.pool(nodes=2, slots=2)
    sim.job()
    sim.tasks("j", "t1", task_spec("t2", slots=2), "t3", "t4")
    state = sim.core.state
    pools = copy.deepcopy(list(state.pools.values()))
    nodes = copy.deepcopy(list(state.nodes.values()))
    jobs = copy.deepcopy(list(state.jobs.values()))
    tasks = copy.deepcopy(list(state.tasks.values()))
    fresh = BatchCore(SeqIds())
    fresh.restore(pools, nodes, jobs, tasks)
    assert fresh.state.validate() == []
    assert {k: n.running_task_slots for k, n in fresh.state.nodes.items()} == {
        k: n.running_task_slots for k, n in state.nodes.items()}
    assert fresh.state.running == state.running
    assert list(fresh.state.ready["j"]) == list(state.ready["j"])


def test_adopt_takes_only_completed_tasks_not_deleted_this_turn(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "done", "waiting")
    sim.exit("j", "done", 0)
    stored = sim.store[("j", "done")]
    stale_active = copy.copy(sim.task("j", "waiting"))
    sim.evict = False  # one turn: several commands, then one commit
    sim.send(DeleteTask("j", "done"))
    before = sim.counts()
    sim.core.adopt([copy.copy(stored)])  # the store still has the row this turn
    assert ("j", "done") not in sim.core.state.tasks
    sim.fails(DeleteTask("j", "done"), "TaskNotFound")
    assert sim.counts() == before
    sim.send(DeleteTask("j", "waiting"))
    sim.core.adopt([stale_active])  # never resurrect an unfinished task from the store
    assert ("j", "waiting") not in sim.core.state.tasks
    sim.check()


def test_stored_tasks_of_a_deleted_job_are_not_adopted_by_its_successor(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.exit("j", "t1", 1)
    stored = sim.store[("j", "t1")]
    sim.evict = False
    sim.send(DeleteJob("j"))
    sim.send(CreateJob(job_spec("j")))
    sim.core.adopt([copy.copy(stored)])
    assert sim.core.state.tasks == {}
    assert sim.counts()["completed"] == 0
