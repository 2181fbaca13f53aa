"""Tasks: placement, exits and retries, terminate, reactivate, delete, collections, requeues,
constraint updates and preconditions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hybatch.core.commands import (
    AddTasks,
    DeleteTask,
    Precondition,
    ReactivateTask,
    RemoveNodes,
    TerminateTask,
    UpdateTaskConstraints,
)
from hybatch.core.effects import DeleteTaskFiles, KillTask
from hybatch.core.errors import DomainError
from hybatch.core.events import NodeLost, TaskExited, TaskLost, Tick
from hybatch.core.records import FailureInfoRecord, TaskRecord
from tests.unit.core.core_sim import Sim, task_spec


def zero_counts(**overrides: int) -> dict[str, int]:
    base = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
    base.update(overrides)
    return base


def setup(sim: Sim, *, nodes: int = 1, slots: int = 1, fill: str | None = None) -> None:
    sim.pool(nodes=nodes, slots=slots, fill=fill)
    sim.job()


# ------------------------------------------------------------------ placement


def test_placement_respects_slots_per_node_and_required_slots(sim: Sim) -> None:
    setup(sim, nodes=2, slots=3)
    sim.tasks("j", task_spec("big", slots=3), task_spec("mid", slots=2), "s1", "s2", "s3")
    placed = sim.placement()
    used = {n.id: n.running_task_slots for n in sim.nodes()}
    assert sorted(used.values()) == [3, 3]
    assert any(ids == ["big"] for ids in placed.values())
    assert sorted(sim.running_ids()) == ["big", "mid", "s1"]
    assert sim.counts() == zero_counts(active=2, running=3)
    assert sim.slot_counts() == zero_counts(active=2, running=6)
    sim.exit("j", "big")
    assert sorted(sim.running_ids()) == ["mid", "s1", "s2", "s3"]
    sim.check()


def test_task_needing_more_slots_than_a_node_has_waits(sim: Sim) -> None:
    setup(sim, nodes=2, slots=2)
    sim.tasks("j", task_spec("huge", slots=3))
    assert sim.running_ids() == set()
    assert sim.task("j", "huge").state == "active"


@pytest.mark.parametrize("command", [DeleteTask, TerminateTask])
def test_removing_a_blocked_queue_head_lets_the_next_task_run(sim: Sim, command: Any) -> None:
    setup(sim, nodes=1, slots=1)
    sim.tasks("j", task_spec("huge", slots=2), "small")
    assert sim.running_ids() == set()  # the head does not fit and holds the queue
    sim.send(command("j", "huge"))
    assert sim.running_ids() == {"small"}


def test_spread_balances_tasks_across_nodes(sim: Sim) -> None:
    setup(sim, nodes=3, slots=2)
    sim.tasks("j", "t1", "t2", "t3")
    assert sorted(len(ids) for ids in sim.placement().values()) == [1, 1, 1]


def test_pack_fills_a_node_before_the_next(sim: Sim) -> None:
    setup(sim, nodes=3, slots=2, fill="pack")
    sim.tasks("j", "t1", "t2", "t3")
    assert sorted(len(ids) for ids in sim.placement().values()) == [0, 1, 2]


def test_launch_carries_environment_and_limits(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job(commonEnvironmentSettings=[{"name": "A", "value": "job"}])
    sim.tasks("j", task_spec("t1", command="/bin/echo hi",
                             environmentSettings=[{"name": "B", "value": "task"}],
                             constraints={"maxWallClockTime": "PT1M"}))
    (launch,) = sim.started()
    assert launch.pool_id == "p" and launch.job_id == "j" and launch.task_id == "t1"
    assert launch.node_id == sim.nodes()[0].id
    assert launch.attempt == 1
    assert launch.command_line == "/bin/echo hi"
    assert launch.environment == (("A", "job"), ("B", "task"))
    assert launch.max_wall_clock_s == 60.0


def test_node_state_follows_running_tasks(sim: Sim) -> None:
    setup(sim)
    node = sim.nodes()[0]
    assert node.state == "idle"
    sim.tasks("j", "t1")
    assert node.state == "running"
    assert (node.running_tasks, node.total_tasks_run) == (1, 1)
    sim.exit("j", "t1")
    assert node.state == "idle"
    assert (node.running_tasks, node.total_tasks_succeeded) == (0, 1)


# ------------------------------------------------------------------ exits


def test_exit_zero_completes_with_success(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", "t1")
    start = sim.now
    sim.advance(30)
    sim.exit("j", "t1", 0)
    task = sim.task("j", "t1")
    assert (task.state, task.result, task.exit_code) == ("completed", "success", 0)
    assert task.failure_info is None
    assert (task.start_time, task.end_time) == (start, sim.now)
    assert task.previous_state == "running"
    assert task.key not in sim.core.state.tasks  # evicted at the end of the turn
    assert sim.counts() == zero_counts(completed=1, succeeded=1)


def test_nonzero_exit_is_retried_once_then_fails(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=1))
    first = sim.launch("j", "t1")
    sim.advance()
    sim.exit("j", "t1", 3)
    task = sim.task("j", "t1")
    second = sim.launch("j", "t1")
    assert second.attempt == first.attempt + 1
    assert (task.state, task.retry_count, task.last_retry_time) == ("running", 1, sim.now)
    assert task.requeue_count == 0
    sim.advance()
    sim.exit("j", "t1", 4)
    assert (task.state, task.result, task.exit_code) == ("completed", "failure", 4)
    assert task.retry_count == 1
    assert task.failure_info is not None
    assert (task.failure_info.category, task.failure_info.code) == ("usererror",
                                                                    "FailureExitCode")
    assert "4" in dict(task.failure_info.details)["Message"]
    assert sim.counts() == zero_counts(completed=1, failed=1)


def test_no_retries_by_default(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", "t1")
    sim.exit("j", "t1", 1)
    assert sim.task("j", "t1").result == "failure"
    assert sim.task("j", "t1").retry_count == 0


def test_minus_one_means_unlimited_retries(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=-1))
    for _ in range(150):
        sim.exit("j", "t1", 1)
    task = sim.task("j", "t1")
    assert (task.state, task.retry_count) == ("running", 150)
    sim.exit("j", "t1", 0)
    assert (task.state, task.result) == ("completed", "success")


def test_timed_out_attempts_are_failed_attempts(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=1))
    sim.exit("j", "t1", 0, timed_out=True)  # even exit code 0 counts as a failure
    task = sim.task("j", "t1")
    assert (task.state, task.retry_count) == ("running", 1)
    timeout = FailureInfoRecord(category="usererror", code="TaskTimedOut",
                                message="The task exceeded its max wall clock time.")
    sim.exit("j", "t1", -1, timed_out=True, failure=timeout)
    assert (task.state, task.result, task.exit_code) == ("completed", "failure", -1)
    assert task.failure_info == timeout


def test_pre_processing_failure_is_not_retried(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=5))
    failure = FailureInfoRecord(category="usererror", code="CommandProgramNotFound",
                                message="The specified command program is not found")
    sim.exit("j", "t1", None, failure=failure)
    task = sim.task("j", "t1")
    assert (task.state, task.result, task.exit_code) == ("completed", "failure", None)
    assert (task.retry_count, task.failure_info) == (0, failure)
    assert sim.counts() == zero_counts(completed=1, failed=1)


def test_stale_and_unknown_exit_reports_are_ignored(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=3))
    old = sim.launch("j", "t1").attempt
    sim.exit("j", "t1", 1)
    task = sim.task("j", "t1")
    version = task.version
    sim.exit("j", "t1", 0, attempt=old)  # the first attempt again
    sim.exit("j", "t1", 0, attempt=old + 5)  # an attempt that never started
    sim.send(TaskExited("j", "ghost", 1, 0, None, sim.now))
    sim.send(TaskExited("nojob", "t1", 1, 0, None, sim.now))
    sim.send(TaskLost("j", "t1", old))
    assert (task.state, task.version, task.retry_count) == ("running", version, 1)
    sim.exit("j", "t1", 0)
    sim.exit("j", "t1", 0)  # a duplicate report for a completed task
    assert sim.counts() == zero_counts(completed=1, succeeded=1)
    sim.check()


def test_exit_of_an_active_task_is_ignored(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "t1")
    sim.send(TaskExited("j", "t1", 0, 0, None, sim.now))
    sim.send(TaskExited("j", "t1", 1, 0, None, sim.now))
    assert sim.task("j", "t1").state == "active"


# ------------------------------------------------------------------ requeue


def test_task_lost_requeues_without_counting_a_retry(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=0))
    attempt = sim.launch("j", "t1").attempt
    sim.advance()
    sim.send(TaskLost("j", "t1", attempt))
    task = sim.task("j", "t1")
    assert (task.requeue_count, task.retry_count, task.last_requeue_time) == (1, 0, sim.now)
    assert task.state == "running"  # placed again at once on the free node
    assert sim.launch("j", "t1").attempt == attempt + 1
    sim.check()


def test_node_lost_requeues_to_another_node(sim: Sim) -> None:
    setup(sim, nodes=2)
    sim.tasks("j", "t1")
    first = sim.task("j", "t1").node_id
    assert first is not None
    sim.send(NodeLost(first, "gone"))
    task = sim.task("j", "t1")
    assert task.state == "running" and task.node_id != first
    assert (task.requeue_count, task.retry_count) == (1, 0)
    sim.exit("j", "t1", 0, attempt=1)  # the lost attempt reports late: ignored
    assert task.state == "running"
    sim.exit("j", "t1", 0)
    assert task.result == "success"


# ------------------------------------------------------------------ terminate


def test_terminate_active_task(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "t1", "t2")
    sim.advance()
    task = sim.send(TerminateTask("j", "t1"))
    assert (task.state, task.result, task.end_time) == ("completed", "failure", sim.now)
    assert task.failure_info.code == "TaskEnded"
    assert sim.counts() == zero_counts(active=1, completed=1, failed=1)
    assert task.key not in sim.core.state.ready["j"]
    sim.check()


def test_terminate_running_task_completes_when_the_kill_lands(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=3))
    task = sim.send(TerminateTask("j", "t1"))
    assert task.state == "running"
    (kill,) = [e for e in sim.last if isinstance(e, KillTask)]
    assert (kill.task_id, kill.attempt, kill.node_id) == ("t1", 1, task.node_id)
    sim.exit_killed(-9)
    assert (task.state, task.result, task.retry_count) == ("completed", "failure", 0)
    assert task.failure_info.code == "TaskEnded"
    assert task.exit_code == -9


def test_terminated_task_is_not_requeued_by_a_later_node_removal(sim: Sim) -> None:
    setup(sim, nodes=2)
    sim.tasks("j", "t1")
    node = sim.task("j", "t1").node_id
    assert node is not None
    sim.send(TerminateTask("j", "t1"))
    sim.send(RemoveNodes("p", (node,), None, "requeue"))
    sim.exit("j", "t1", -9)
    task = sim.task("j", "t1")
    assert (task.state, task.result, task.requeue_count) == ("completed", "failure", 0)


def test_terminate_completed_task_is_rejected(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", "t1")
    sim.exit("j", "t1", 0)
    sim.fails(TerminateTask("j", "T1"), "TaskCompleted")
    sim.fails(TerminateTask("j", "nope"), "TaskNotFound")
    sim.fails(TerminateTask("nope", "t1"), "JobNotFound")


# ------------------------------------------------------------------ reactivate


def test_reactivate_rules(sim: Sim) -> None:
    setup(sim, nodes=2)
    sim.tasks("j", "ok", task_spec("bad", retries=1), "waiting")
    sim.fails(ReactivateTask("j", "waiting"), "TaskNotCompleted")  # active
    sim.fails(ReactivateTask("j", "ok"), "TaskNotCompleted")  # running
    sim.exit("j", "ok", 0)
    sim.fails(ReactivateTask("j", "ok"), "TaskSucceeded")
    sim.exit("j", "bad", 1)
    sim.exit("j", "bad", 1)
    bad = sim.task("j", "bad")
    assert (bad.result, bad.retry_count) == ("failure", 1)
    assert sim.counts() == zero_counts(running=1, completed=2, succeeded=1, failed=1)
    sim.advance()
    bad = sim.send(ReactivateTask("j", "bad"))
    # back to active (then placed at once on the free node), failure cleared
    assert [x.task_id for x in sim.started()] == ["bad"]
    assert (bad.state, bad.previous_state) == ("running", "active")
    assert (bad.retry_count, bad.exit_code, bad.failure_info, bad.result) == (0, None, None,
                                                                              None)
    assert sim.counts() == zero_counts(running=2, completed=1, succeeded=1)
    sim.exit("j", "waiting", 0)
    sim.exit("j", "bad", 0)
    assert (bad.state, bad.result) == ("completed", "success")
    assert sim.counts() == zero_counts(completed=3, succeeded=3)
    sim.check()


def test_reactivated_task_gets_its_retries_again(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", retries=1))
    sim.exit("j", "t1", 1)
    sim.exit("j", "t1", 1)
    sim.send(ReactivateTask("j", "t1"))
    sim.exit("j", "t1", 1)
    task = sim.task("j", "t1")
    assert (task.state, task.retry_count) == ("running", 1)


def test_reactivate_terminated_active_task_runs_it_once(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "t1")
    sim.send(TerminateTask("j", "t1"))
    sim.send(ReactivateTask("j", "t1"))
    assert list(sim.core.state.ready["j"]).count(("j", "t1")) == 1
    sim.pool(nodes=2)
    assert [x.task_id for x in sim.started()] == ["t1"]
    sim.check()


# ------------------------------------------------------------------ delete


def test_delete_running_task_frees_its_slot_and_kills_it(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", "t1", "t2")
    node = sim.nodes()[0]
    sim.send(DeleteTask("j", "t1"))
    assert sim.kinds()["KillTask"] == 1
    files = [e for e in sim.last if isinstance(e, DeleteTaskFiles)]
    assert [(f.task_id, f.node_id) for f in files] == [("t1", node.id)]
    # the slot is offered again at once; the node starts t2 when the killed process is gone
    assert sim.task("j", "t2").offered
    assert sim.counts() == zero_counts(active=1)
    assert ("j", "t1") not in sim.store
    sim.exit("j", "t1", -9, attempt=1)  # the killed attempt's report: ignored by the core
    assert sim.running_ids() == {"t2"}
    assert sim.counts() == zero_counts(running=1)
    sim.fails(DeleteTask("j", "t1"), "TaskNotFound")
    sim.check()


def test_delete_active_and_completed_tasks(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", "done", "waiting", "later")
    sim.exit("j", "done", 0)
    sim.send(DeleteTask("j", "done"))
    sim.send(DeleteTask("j", "later"))
    assert sim.counts() == zero_counts(running=1)
    assert sim.slot_counts() == zero_counts(running=1)
    sim.exit("j", "waiting", 0)
    sim.send(Tick())
    assert sim.running_ids() == set()
    sim.check()


# ------------------------------------------------------------------ creation


def test_collection_with_a_duplicate_reports_per_task_errors(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "existing")
    specs = (task_spec("a"), task_spec("EXISTING"), task_spec("b"), task_spec("A"),
             task_spec("bad id"))
    results = sim.send(AddTasks("j", specs))
    assert [type(r).__name__ for r in results] == [
        "TaskRecord", "DomainError", "TaskRecord", "DomainError", "DomainError"]
    assert [r.code for r in results if isinstance(r, DomainError)] == [
        "TaskExists", "TaskExists", "InvalidPropertyValue"]
    assert sim.counts() == zero_counts(active=3)
    assert [r.seq for r in results if isinstance(r, TaskRecord)] == [2, 3]


def test_single_add_raises_and_changes_nothing(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "t1")
    sim.fails(AddTasks("j", (task_spec("T1"),), single=True), "TaskExists")
    sim.fails(AddTasks("j", (task_spec("t2", command="   "),), single=True),
              "InvalidPropertyValue")
    sim.fails(AddTasks("j", (task_spec("t2", retries=101),), single=True),
              "InvalidPropertyValue")
    sim.fails(AddTasks("j", (task_spec("t2", slots=0),), single=True), "InvalidPropertyValue")
    sim.fails(AddTasks("nope", (task_spec("t2"),), single=True), "JobNotFound")


def test_more_than_100_tasks_are_rejected_whole(sim: Sim) -> None:
    sim.job()
    specs = tuple(task_spec(f"t{i}") for i in range(101))
    error = sim.fails(AddTasks("j", specs), "InvalidPropertyValue")
    assert error.details["Reason"] == "TooManyTasks"
    assert len(sim.tasks("j", *specs[:100])) == 100
    assert sim.counts()["active"] == 100


@pytest.mark.parametrize("body", [
    {"outputFiles": [{"filePattern": "*.txt", "destination": {"container": {
        "containerUrl": "https://example.com/c"}}, "uploadOptions": {
        "uploadCondition": "taskcompletion"}}]},
    {"multiInstanceSettings": {"numberOfInstances": 2, "coordinationCommandLine": "x",
                               "commonResourceFiles": [{"storageContainerUrl": "https://c"}]}},
    {"resourceFiles": [{"httpUrl": "https://example.com/x", "filePath": "x"}]},
])
def test_unsupported_task_features_are_reported(sim: Sim, body: dict[str, Any]) -> None:
    sim.job()
    (error,) = sim.send(AddTasks("j", (task_spec("t1", **body),)))
    assert isinstance(error, DomainError) and error.code == "UnsupportedProperty"


def test_constraints_resolve_with_defaults(sim: Sim) -> None:
    sim.job()
    plain, limited = sim.tasks("j", "plain", task_spec(
        "limited", retries=2, constraints={"maxTaskRetryCount": 2, "maxWallClockTime": "PT2H",
                                           "retentionTime": "P1D"}))
    assert (plain.max_wall_clock_s, plain.retention_s, plain.max_task_retry_count) == (
        None, 7 * 86400.0, 0)
    assert (limited.max_wall_clock_s, limited.retention_s, limited.max_task_retry_count) == (
        7200.0, 86400.0, 2)


# ------------------------------------------------------------------ update constraints


def test_update_constraints_changes_only_what_is_given(sim: Sim) -> None:
    setup(sim)
    sim.tasks("j", task_spec("t1", constraints={"maxWallClockTime": "PT1H",
                                                 "maxTaskRetryCount": 1}))
    task = sim.send(UpdateTaskConstraints("j", "t1", None, timedelta(hours=2), 3))
    assert (task.max_wall_clock_s, task.retention_s, task.max_task_retry_count) == (
        3600.0, 7200.0, 3)
    sim.fails(UpdateTaskConstraints("j", "t1", None, None, 200), "InvalidPropertyValue")
    for _ in range(3):
        sim.exit("j", "t1", 1)
    assert task.state == "running"
    sim.exit("j", "t1", 1)
    assert task.result == "failure"
    sim.fails(UpdateTaskConstraints("j", "t1", None, None, 1), "TaskCompleted")


# ------------------------------------------------------------------ preconditions


def test_task_preconditions(sim: Sim) -> None:
    sim.job()
    (task,) = sim.tasks("j", "t1")
    stale = task.etag
    sim.advance()
    sim.send(UpdateTaskConstraints("j", "t1", None, None, 2))
    assert task.etag != stale
    for command in (TerminateTask("j", "t1", Precondition(if_match=stale)),
                    DeleteTask("j", "t1", Precondition(if_match=stale)),
                    UpdateTaskConstraints("j", "t1", None, None, 1,
                                          Precondition(if_match=stale))):
        sim.fails(command, "ConditionNotMet")
    sim.send(TerminateTask("j", "t1", Precondition(if_match=task.etag)))
    assert task.state == "completed"
    sim.fails(ReactivateTask("j", "t1", Precondition(if_none_match=task.etag)),
              "ConditionNotMet")
    task = sim.send(ReactivateTask("j", "t1", Precondition(if_match="*")))
    assert task.state == "active"


def test_every_change_bumps_the_etag(sim: Sim) -> None:
    setup(sim)
    (task,) = sim.tasks("j", task_spec("t1", retries=1))
    seen = {task.etag}
    sim.advance()
    sim.exit("j", "t1", 1)
    assert task.etag not in seen
    seen.add(task.etag)
    sim.advance()
    sim.exit("j", "t1", 0)
    assert task.etag not in seen


def test_files_expire_only_after_retention_from_completion(sim: Sim) -> None:
    from datetime import timedelta

    from hybatch.core.tasks import files_expired

    setup(sim)
    sim.tasks("j", "t1")
    task = sim.task("j", "t1")
    assert not files_expired(task, sim.now + timedelta(days=30))  # not completed yet
    sim.exit("j", "t1", 0)
    done = sim.store[("j", "t1")]
    assert done.end_time is not None
    assert not files_expired(done, done.end_time + timedelta(days=7))  # default retention
    assert files_expired(done, done.end_time + timedelta(days=7, seconds=1))
