"""Task dependencies in the pure core: validation, readiness (explicit ids, ranges, parents
added late or already stored), satisfy/block, reactivate/delete of parents, the
``hybatch.failBlockedDependents`` opt-in, restore, and the index's consistency check."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hybatch.core import dependencies
from hybatch.core.commands import (
    AddTasks,
    DeleteTask,
    EnableJob,
    ReactivateTask,
    TerminateTask,
    UpdateJob,
)
from hybatch.core.errors import DomainError
from hybatch.core.machine import BatchCore
from hybatch.core.records import TaskRecord
from hybatch.schema import BatchMetadataItem
from tests.unit.core.core_sim import SeqIds, Sim, task_spec

OPT_IN = [{"name": "hybatch.failBlockedDependents", "value": "true"}]


def dag(sim: Sim, *, slots: int = 4, **job: Any) -> None:
    sim.pool(nodes=1, slots=slots)
    sim.job(usesTaskDependencies=True, **job)


def after(task_id: str, *parents: str, ranges: tuple[tuple[int, int], ...] = (),
          **extra: Any) -> Any:
    deps: dict[str, Any] = {}
    if parents:
        deps["taskIds"] = list(parents)
    if ranges:
        deps["taskIdRanges"] = [{"start": s, "end": e} for s, e in ranges]
    return task_spec(task_id, dependsOn=deps, **extra)


def state(sim: Sim, task_id: str, job_id: str = "j") -> str:
    return sim.task(job_id, task_id).state


def started_ids(sim: Sim) -> list[str]:
    return sorted(launch.task_id for launch in sim.started())


def consistent(sim: Sim) -> None:
    sim.check()
    assert dependencies.problems(sim.core.state) == []


def waiting(sim: Sim, job_id: str = "j") -> set[str]:
    return {t.id for t in sim.core.state.tasks_of(job_id.lower()) if t.waiting_on_parents}


# ------------------------------------------------------------------ validation


def test_dependencies_need_a_job_that_uses_them(sim: Sim) -> None:
    sim.pool()
    sim.job()
    error = sim.fails(AddTasks("j", (after("b", "a"),), single=True),
                      "TaskDependenciesNotSpecifiedOnJob")
    assert error.details["PropertyName"] == "dependsOn"
    (result,) = sim.send(AddTasks("j", (after("c", ranges=((1, 2),)),)))
    assert isinstance(result, DomainError)
    assert result.code == "TaskDependenciesNotSpecifiedOnJob"
    # an empty dependsOn names no parent: accepted anywhere
    sim.tasks("j", task_spec("d", dependsOn={}))
    assert state(sim, "d") == "running"


@pytest.mark.parametrize(("deps", "code", "prop"), [
    ({"taskIds": ["x" * 64] * 1001}, "TaskDependencyListTooLong", "dependsOn.taskIds"),
    ({"taskIdRanges": [{"start": i, "end": i} for i in range(101)]},
     "TaskDependencyRangesTooLong", "dependsOn.taskIdRanges"),
    ({"taskIds": ["t"]}, "InvalidPropertyValue", "dependsOn.taskIds"),
    ({"taskIds": ["T"]}, "InvalidPropertyValue", "dependsOn.taskIds"),
    ({"taskIds": ["bad id"]}, "InvalidPropertyValue", "dependsOn.taskIds"),
    ({"taskIds": [""]}, "InvalidPropertyValue", "dependsOn.taskIds"),
    ({"taskIdRanges": [{"start": 0, "end": 2**31}]}, "InvalidPropertyValue",
     "dependsOn.taskIdRanges[0].end"),
    ({"taskIdRanges": [{"start": -(2**31) - 1, "end": 0}]}, "InvalidPropertyValue",
     "dependsOn.taskIdRanges[0].start"),
])
def test_invalid_dependencies_are_refused(sim: Sim, deps: dict[str, Any], code: str,
                                          prop: str) -> None:
    dag(sim)
    error = sim.fails(AddTasks("j", (task_spec("t", dependsOn=deps),), single=True), code)
    assert error.details["PropertyName"] == prop


def test_limits_are_inclusive(sim: Sim) -> None:
    dag(sim)
    ids = [f"{i:063d}p" for i in range(1000)]  # exactly 64000 characters
    ranges = [{"start": 10 * i, "end": 10 * i + 1} for i in range(100)]
    sim.tasks("j", task_spec("t", dependsOn={"taskIds": ids, "taskIdRanges": ranges}))
    assert waiting(sim) == {"t"}
    consistent(sim)


@pytest.mark.parametrize(("job", "conditions", "prop"), [
    ({}, {"default": {"jobAction": "none"}}, "exitConditions.default.jobAction"),
    ({"usesTaskDependencies": True},
     {"exitCodes": [{"code": 1, "exitOptions": {"jobAction": "terminate"}}]},
     "exitConditions.exitCodes[0].exitOptions.jobAction"),
    ({}, {"preProcessingError": {"dependencyAction": "satisfy"}},
     "exitConditions.preProcessingError.dependencyAction"),
    ({"onTaskFailure": "performexitoptionsjobaction"},
     {"exitCodeRanges": [{"start": 1, "end": 5, "exitOptions": {"dependencyAction": "block"}}]},
     "exitConditions.exitCodeRanges[0].exitOptions.dependencyAction"),
    ({}, {"exitCodeRanges": [{"start": 5, "end": 1, "exitOptions": {}}]},
     "exitConditions.exitCodeRanges[0].start"),
    ({}, {"exitCodes": [{"code": 2**31, "exitOptions": {}}]},
     "exitConditions.exitCodes[0].code"),
])
def test_invalid_exit_conditions_are_refused(sim: Sim, job: dict[str, Any],
                                             conditions: dict[str, Any], prop: str) -> None:
    sim.pool()
    sim.job(**job)
    error = sim.fails(AddTasks("j", (task_spec("t", exitConditions=conditions),),
                               single=True), "InvalidPropertyValue")
    assert error.details["PropertyName"] == prop


def test_valid_exit_conditions_are_accepted(sim: Sim) -> None:
    sim.pool()
    sim.job(usesTaskDependencies=True, onTaskFailure="performexitoptionsjobaction")
    conditions = {
        "exitCodes": [{"code": 3, "exitOptions": {"jobAction": "terminate",
                                                  "dependencyAction": "satisfy"}}],
        "exitCodeRanges": [{"start": 4, "end": 4, "exitOptions": {}}],
        "preProcessingError": {"jobAction": "disable"},
        "fileUploadError": {"dependencyAction": "block"},
        "default": {"jobAction": "none"},
    }
    sim.tasks("j", task_spec("t", exitConditions=conditions))
    assert state(sim, "t") == "running"


# ------------------------------------------------------------------ readiness


def test_dependent_starts_in_the_same_call_as_its_parents_exit(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", "a", after("b", "a"))
    assert state(sim, "a") == "running" and state(sim, "b") == "active"
    assert waiting(sim) == {"b"}
    assert sim.counts()["active"] == 1
    consistent(sim)
    sim.exit("j", "a", 0)
    assert started_ids(sim) == ["b"]  # offered and started within the exit's handling
    assert waiting(sim) == set()
    consistent(sim)


def test_parents_may_be_added_after_their_dependent(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", after("c", "A", "b"))  # ids compare case-insensitively
    assert sim.core.state.jobs["j"].dependency_book is not None
    assert sorted(sim.core.state.jobs["j"].dependency_book.absent) == ["a", "b"]
    sim.tasks("j", "a")
    sim.exit("j", "a", 0)
    assert state(sim, "c") == "active"
    sim.tasks("j", "b")
    assert sim.core.state.jobs["j"].dependency_book.absent == {}
    sim.exit("j", "b", 0)
    assert state(sim, "c") == "running"
    consistent(sim)


def test_repeated_parent_ids_count_once(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", "a", after("b", "a", "A", "a"))
    sim.exit("j", "a", 0)
    assert state(sim, "b") == "running"


def test_stored_parents_are_read_when_a_dependent_is_added(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", "ok", "bad")
    sim.exit("j", "ok", 0)
    sim.exit("j", "bad", 1)
    assert ("j", "ok") not in sim.core.state.tasks  # completed: only in the store
    sim.tasks("j", after("x", "ok"), after("y", "bad"), after("z", "ok", "bad"))
    assert state(sim, "x") == "running"
    assert state(sim, "y") == state(sim, "z") == "active"
    assert waiting(sim) == {"y", "z"}
    assert sim.core.state.jobs["j"].dependency_book.blocked == {"bad": 1}
    consistent(sim)


def test_fan_out_and_fan_in(sim: Sim) -> None:
    dag(sim, slots=8)
    sim.tasks("j", "root", *[after(f"m{i}", "root") for i in range(5)],
              after("join", *[f"m{i}" for i in range(5)]))
    sim.exit("j", "root", 0)
    assert started_ids(sim) == [f"m{i}" for i in range(5)]
    for i in range(4):
        sim.exit("j", f"m{i}", 0)
        assert state(sim, "join") == "active"
    sim.exit("j", "m4", 0)
    assert state(sim, "join") == "running"
    consistent(sim)


def test_range_waits_for_every_value_whatever_the_order(sim: Sim) -> None:
    dag(sim, slots=8)
    sim.tasks("j", after("merge", ranges=((1, 4),)))  # submitted before any parent
    assert waiting(sim) == {"merge"}
    sim.tasks("j", "1", "02", "x3", "4")  # 02 is value 2; x3 is no integer
    for task_id in ("1", "02", "x3", "4"):
        sim.exit("j", task_id, 0)
    assert state(sim, "merge") == "active"  # 3 is still missing
    sim.tasks("j", "003")
    sim.exit("j", "003", 0)
    assert state(sim, "merge") == "running"
    consistent(sim)


def test_range_never_waits_for_the_task_itself(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", "1", "3", after("2", ranges=((1, 3),)))
    sim.exit("j", "1", 0)
    assert state(sim, "2") == "active"
    sim.exit("j", "3", 0)
    assert state(sim, "2") == "running"
    consistent(sim)


def test_overlapping_ranges_and_ids_mixed(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", after("d", "5", "e", ranges=((4, 6), (5, 5), (6, 4))))  # (6, 4): empty
    job = sim.core.state.jobs["j"]
    assert sim.core.state.dependencies["j"].waiting[("j", "d")] == 2 + 3 + 1
    sim.tasks("j", "4", "5", "6", "e")
    for task_id in ("4", "6", "e"):
        sim.exit("j", task_id, 0)
    assert sim.core.state.dependencies["j"].waiting[("j", "d")] == 3  # "5" once, 5 twice
    sim.exit("j", "5", 0)
    assert state(sim, "d") == "running"
    assert job.dependency_book is not None
    assert job.dependency_book.satisfied_runs == [[4, 6]]
    consistent(sim)


def test_wide_ranges_are_counted_not_expanded(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", after("all", ranges=((-(2**31), 2**31 - 1),)))
    assert sim.core.state.dependencies["j"].waiting[("j", "all")] == 2**32
    sim.tasks("j", "0")
    sim.exit("j", "0", 0)
    assert sim.core.state.dependencies["j"].waiting[("j", "all")] == 2**32 - 1
    consistent(sim)


def test_a_long_chain_and_a_big_fan_in(sim: Sim) -> None:
    """2000 tasks: a chain submitted last-first and a range fan-in over all of them."""
    dag(sim, slots=2)
    n = 1000
    specs = [after(str(i), str(i - 1)) if i else task_spec("0") for i in range(n)]
    specs.append(after("join", ranges=((0, n - 1),)))
    for start in range(n, -1, -100):  # the SDK's order: last chunk first
        sim.tasks("j", *reversed(specs[max(start - 99, 0):start + 1]))
    for i in range(n):
        assert state(sim, str(i)) == "running"
        assert state(sim, "join") == "active"
        sim.exit("j", str(i), 0)
    assert state(sim, "join") == "running"
    consistent(sim)


# ------------------------------------------------------------------ satisfy and block


def all_complete_terminates(sim: Sim) -> None:
    """Set after the tasks are added (a job with no task counts as all complete)."""
    sim.send(UpdateJob("j", (("onAllTasksComplete", "terminatejob"),)))


def test_a_failed_parent_blocks_its_dependents_forever(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", task_spec("a", retries=1), after("b", "a"), after("c", "b"))
    all_complete_terminates(sim)
    sim.exit("j", "a", 1)  # retried
    assert state(sim, "a") == "running" and state(sim, "b") == "active"
    sim.exit("j", "a", 1)
    assert sim.task("j", "a").result == "failure"
    assert sim.task("j", "a").dependency_action == "block"
    assert waiting(sim) == {"b", "c"}
    assert sim.counts()["active"] == 2
    assert sim.get_job().state == "active"  # blocked tasks are not "all complete"
    consistent(sim)


def test_satisfy_lets_dependents_of_a_failure_run(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", task_spec("a", exitConditions={"default": {"dependencyAction": "satisfy"}}),
              after("b", "a"))
    sim.exit("j", "a", 7)
    assert sim.task("j", "a").result == "failure"
    assert state(sim, "b") == "running"


def test_an_explicit_exit_code_mapping_can_block_a_success(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", task_spec("a", exitConditions={"exitCodes": [
        {"code": 0, "exitOptions": {"dependencyAction": "block"}}]}), after("b", "a"))
    sim.exit("j", "a", 0)
    assert sim.task("j", "a").result == "success"
    assert state(sim, "b") == "active"
    consistent(sim)


def test_preprocessing_errors_use_their_own_options() -> None:
    from hybatch.core.records import FailureInfoRecord
    sim = Sim()
    dag(sim)
    failure = FailureInfoRecord(category="usererror", code="ResourceFileDownloadFailed",
                                message="x")
    sim.tasks("j", task_spec("a", exitConditions={
        "preProcessingError": {"dependencyAction": "satisfy"},
        "default": {"dependencyAction": "block"}}), after("b", "a"))
    sim.exit("j", "a", None, failure=failure)
    assert state(sim, "b") == "running"


def test_terminating_a_parent_blocks_and_terminating_a_waiting_task_completes_it(
        sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", "a", after("b", "a"), after("c", "b"))
    sim.send(TerminateTask("j", "b"))  # waiting: completes at once
    assert sim.task("j", "b").failure_info is not None
    assert sim.task("j", "b").failure_info.code == "TaskEnded"
    assert waiting(sim) == {"c"}
    sim.exit("j", "a", 0)
    assert state(sim, "c") == "active"
    consistent(sim)


def test_reactivating_a_blocked_parent_releases_dependents_when_it_succeeds(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", "a", after("b", "a"))
    sim.exit("j", "a", 1)
    assert sim.core.state.jobs["j"].dependency_book.blocked == {"a": 1}
    sim.send(ReactivateTask("j", "a"))
    assert sim.core.state.jobs["j"].dependency_book.blocked == {}
    assert state(sim, "a") == "running" and state(sim, "b") == "active"
    consistent(sim)
    sim.exit("j", "a", 0)
    assert state(sim, "b") == "running"
    consistent(sim)


def test_reactivating_a_satisfying_failure_makes_waiters_wait_again(sim: Sim) -> None:
    dag(sim)
    satisfy = {"default": {"dependencyAction": "satisfy"}}
    sim.tasks("j", task_spec("1", exitConditions=satisfy), "2",
              after("both", "1", ranges=((1, 2),)))
    sim.exit("j", "1", 5)
    assert sim.core.state.dependencies["j"].waiting[("j", "both")] == 1
    sim.send(ReactivateTask("j", "1"))
    assert sim.core.state.dependencies["j"].waiting[("j", "both")] == 3
    consistent(sim)
    sim.exit("j", "2", 0)
    sim.exit("j", "1", 0)
    assert state(sim, "both") == "running"


def test_deleting_parents(sim: Sim) -> None:
    dag(sim, slots=1)
    sim.tasks("j", "gate", "done", after("w", "done", "gate", "gone"), "gone")
    sim.exit("j", "gate", 1)  # blocked
    sim.exit("j", "done", 0)  # satisfied, then deleted: the satisfaction stays
    sim.send(DeleteTask("j", "done"))
    sim.send(DeleteTask("j", "gone"))  # running: deleting it leaves "w" waiting for it
    sim.exit_killed()
    sim.send(DeleteTask("j", "gate"))
    book = sim.core.state.jobs["j"].dependency_book
    assert book is not None
    assert (book.ghosts, sorted(book.absent), book.blocked) == ({"done": 1}, ["gate", "gone"],
                                                                {})
    assert sim.core.state.dependencies["j"].waiting[("j", "w")] == 2
    consistent(sim)
    sim.tasks("j", "gate", "gone")
    sim.exit("j", "gate", 0)
    sim.exit("j", "gone", 0)
    assert state(sim, "w") == "running"
    assert (book.ghosts, book.absent) == ({}, {})  # nothing waits any more: forgotten
    consistent(sim)


def test_deleting_a_waiting_task_forgets_it(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", after("w", "p", ranges=((1, 9),)))
    sim.send(DeleteTask("j", "w"))
    idx = sim.core.state.dependencies["j"]
    assert (idx.waiting, idx.watchers, idx.stab) == ({}, {}, {})
    assert sim.core.state.jobs["j"].dependency_book.absent == {}
    consistent(sim)


def test_a_disabled_job_keeps_waiting_tasks_out_of_its_queue_on_enable(sim: Sim) -> None:
    from hybatch.core.commands import DisableJob
    dag(sim)
    sim.tasks("j", "a", after("b", "a"))
    sim.send(DisableJob("j", "wait"))
    sim.exit("j", "a", 1)
    sim.send(EnableJob("j"))
    assert ("j", "b") not in sim.core.state.ready["j"]
    consistent(sim)


# ------------------------------------------------------------------ job actions


def test_failure_terminates_the_job_under_performexitoptionsjobaction(sim: Sim) -> None:
    dag(sim, onTaskFailure="performexitoptionsjobaction")
    sim.tasks("j", "ok", "bad", "long")
    sim.exit("j", "ok", 0)
    assert sim.get_job().state == "active"
    sim.exit("j", "bad", 3)
    job = sim.get_job()
    assert job.state == "terminating" and job.terminate_reason == "TaskFailed"
    sim.exit_killed()
    assert job.state == "completed"
    assert sim.task("j", "long").failure_info.code == "TaskEnded"


@pytest.mark.parametrize(("mode", "conditions", "job_state"), [
    ("noaction", None, "active"),  # Batch: no job action without the opt-in mode
    ("performexitoptionsjobaction", {"default": {"jobAction": "none"}}, "active"),
    ("performexitoptionsjobaction", {"exitCodes": [
        {"code": 3, "exitOptions": {"jobAction": "disable"}}]}, "disabled"),
    ("performexitoptionsjobaction", {"exitCodeRanges": [
        {"start": 1, "end": 9, "exitOptions": {"jobAction": "terminate"}}]}, "completed"),
])
def test_job_actions(sim: Sim, mode: str, conditions: dict[str, Any] | None,
                     job_state: str) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job(onTaskFailure=mode)
    extra = {"exitConditions": conditions} if conditions else {}
    sim.tasks("j", task_spec("bad", **extra), "other")
    sim.exit("j", "bad", 3)
    sim.exit_killed(-9)
    assert sim.get_job().state == job_state
    if job_state == "disabled":
        other = sim.task("j", "other")
        assert (other.state, other.requeue_count) == ("active", 1)  # disable = requeue
    sim.check()


def test_an_explicit_mapping_of_exit_zero_can_terminate_the_job(sim: Sim) -> None:
    sim.pool()
    sim.job(onTaskFailure="performexitoptionsjobaction")
    sim.tasks("j", task_spec("t", exitConditions={"exitCodes": [
        {"code": 0, "exitOptions": {"jobAction": "terminate"}}]}))
    sim.exit("j", "t", 0)
    assert sim.get_job().state == "completed"
    assert sim.get_job().terminate_reason == "TaskFailed"


# ------------------------------------------------------------------ the opt-in


def test_opt_in_fails_the_blocked_subtree(sim: Sim) -> None:
    dag(sim, metadata=OPT_IN)
    sim.tasks("j", "1", "2", after("b", "1"), after("c", "b"),
              after("r", ranges=((1, 2),)), after("rr", "r", "c"))
    all_complete_terminates(sim)
    sim.exit("j", "2", 0)
    sim.exit("j", "1", 4)
    for task_id, parent in (("b", "1"), ("c", "b"), ("r", "1"), ("rr", "r")):
        task = sim.task("j", task_id)
        assert (task.state, task.result) == ("completed", "failure"), task_id
        assert task.failure_info is not None
        assert (task.failure_info.category, task.failure_info.code) == (
            "usererror", "DependencyFailed")
        assert task.failure_info.details == [("ParentTaskId", parent)], task_id
        assert parent in task.failure_info.message
        assert task.start_time is None and task.exit_code is None
    assert sim.counts() == {"active": 0, "running": 0, "completed": 6, "succeeded": 1,
                            "failed": 5}
    assert sim.get_job().state == "completed"  # nothing left: onAllTasksComplete fires


def test_opt_in_fails_a_task_added_under_a_blocked_parent(sim: Sim) -> None:
    dag(sim, metadata=OPT_IN)
    sim.tasks("j", "1", "ok")
    sim.exit("j", "1", 1)
    sim.exit("j", "ok", 0)
    sim.tasks("j", after("x", "1"), after("y", ranges=((0, 5),)), after("z", "ok"))
    assert sim.task("j", "x").failure_info.details == [("ParentTaskId", "1")]
    assert sim.task("j", "y").failure_info.details == [("ParentTaskId", "1")]
    assert state(sim, "z") == "running"
    consistent(sim)


def test_opt_in_set_later_fails_what_is_already_blocked(sim: Sim) -> None:
    dag(sim)
    sim.tasks("j", "a", after("b", "a"), after("c", "b"), after("d", "e"))
    sim.exit("j", "a", 1)
    assert waiting(sim) == {"b", "c", "d"}
    sim.send(UpdateJob("j", (("metadata", [BatchMetadataItem(
        name="hybatch.failblockeddependents", value="TRUE")]),)))
    assert waiting(sim) == {"d"}  # "e" does not exist: not blocked, just waiting
    assert sim.task("j", "c").failure_info.details == [("ParentTaskId", "b")]
    consistent(sim)


def test_opt_in_is_off_unless_true(sim: Sim) -> None:
    dag(sim, metadata=[{"name": "hybatch.failBlockedDependents", "value": "yes"}])
    sim.tasks("j", "a", after("b", "a"))
    sim.exit("j", "a", 1)
    assert waiting(sim) == {"b"}


# ------------------------------------------------------------------ restore


def restart(sim: Sim) -> BatchCore:
    """A new core restored from what is stored (unfinished tasks and the job records)."""
    sim.commit()
    state = sim.core.state
    fresh = BatchCore(SeqIds())
    unfinished: list[TaskRecord] = [copy.deepcopy(t) for t in state.tasks.values()]
    fresh.restore([copy.deepcopy(p) for p in state.pools.values()],
                  [copy.deepcopy(n) for n in state.nodes.values()],
                  [copy.deepcopy(j) for j in state.jobs.values()], unfinished)
    return fresh


def test_restore_recounts_waiting_tasks(sim: Sim) -> None:
    dag(sim, slots=1)
    sim.tasks("j", "a", "bad", "1", after("w1", "a", "bad"), after("w2", "a", "late"),
              after("w3", "a", ranges=((1, 3),)), after("free", "a"))
    sim.exit("j", "a", 0)  # "free" is released (queued behind the busy slot)
    sim.exit("j", "bad", 1)
    assert waiting(sim) == {"w1", "w2", "w3"}
    fresh = restart(sim)
    assert dependencies.problems(fresh.state) == []
    idx = fresh.state.dependencies["j"]
    assert idx.waiting == {("j", "w1"): 1, ("j", "w2"): 1, ("j", "w3"): 3}
    queued = set(fresh.state.ready["j"])
    assert ("j", "free") in queued or fresh.state.tasks[("j", "free")].in_flight
    assert not {("j", "w1"), ("j", "w2"), ("j", "w3")} & queued


def test_restore_is_exact_after_many_kinds_of_change(sim: Sim) -> None:
    dag(sim, slots=2)
    sim.tasks("j", "1", "2", "3", "g", after("x", "g", "h", ranges=((1, 3),)))
    sim.exit("j", "1", 0)
    sim.exit("j", "2", 1)
    sim.send(DeleteTask("j", "1"))
    sim.exit("j", "g", 0)
    sim.send(DeleteTask("j", "g"))
    sim.send(ReactivateTask("j", "2"))
    before = dict(sim.core.state.dependencies["j"].waiting)
    fresh = restart(sim)
    assert fresh.state.dependencies["j"].waiting == before
    assert dependencies.problems(fresh.state) == []
