"""Job disable (requeue / terminate / wait) and enable, and the job update rules that depend on
the job's state (pool changes only while disabled, onAllTasksComplete one-way)."""

from __future__ import annotations

import pytest

from hybatch.core.commands import (
    AddTasks,
    CreatePool,
    DeleteJob,
    DisableJob,
    EnableJob,
    Precondition,
    ReactivateTask,
    TerminateJob,
    UpdateJob,
)
from hybatch.core.effects import KillTask
from hybatch.core.events import TaskExited, Tick
from hybatch.core.records import FailureInfoRecord
from hybatch.schema import BatchPoolInfo
from tests.unit.core.core_sim import Sim, job_spec, pool_spec, task_spec

TERMINATE_JOB = job_spec(onAllTasksComplete="terminatejob").on_all_tasks_complete
NO_ACTION = job_spec(onAllTasksComplete="noaction").on_all_tasks_complete


def busy_job(sim: Sim) -> None:
    """One node with two slots running t1 and t2 of job j; t3 waits."""
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", "t1", "t2", "t3")
    assert sim.running_ids() == {"t1", "t2"}
    assert sim.task("j", "t3").state == "active"


def killed_ids(sim: Sim) -> list[str]:
    return sorted(e.task_id for e in sim.last if isinstance(e, KillTask))


# ------------------------------------------------------------------ the three options


def test_disable_requeue_kills_running_tasks_and_requeues_them(sim: Sim) -> None:
    busy_job(sim)
    job = sim.job_rec()
    sim.advance()
    sim.send(DisableJob("j", "requeue"))
    assert job.state == "disabling"
    assert job.previous_state == "active"
    assert killed_ids(sim) == ["t1", "t2"]
    sim.advance()
    sim.exit_killed(137)
    assert job.state == "disabled"
    assert (job.previous_state, job.state_transition_time) == ("disabling", sim.now)
    for tid in ("t1", "t2"):
        task = sim.task("j", tid)
        assert task.state == "active"
        # a requeue, not a retry: the kill is no failure of the task
        assert (task.requeue_count, task.retry_count) == (1, 0)
        assert task.last_requeue_time == sim.now
        assert task.failure_info is None and task.result is None
    assert sim.offered() == []  # the freed slots are not given to the disabled job
    assert sim.counts()["active"] == 3
    sim.send(Tick())
    assert sim.offered() == [] and sim.running_ids() == set()
    sim.check()

    sim.advance()
    sim.send(EnableJob("j"))
    assert job.state == "active"
    assert job.previous_state == "enabling"
    # queued again in submission order: the requeued tasks first
    assert [launch.task_id for launch in sim.started()] == ["t1", "t2"]
    sim.exit("j", "t1", 0)
    assert [launch.task_id for launch in sim.started()] == ["t3"]
    sim.exit("j", "t2", 0)
    sim.exit("j", "t3", 0)
    assert sim.counts() == {"active": 0, "running": 0, "completed": 3, "succeeded": 3,
                            "failed": 0}
    sim.check()


def test_disable_terminate_completes_running_tasks_with_task_ended(sim: Sim) -> None:
    busy_job(sim)
    job = sim.job_rec()
    sim.send(DisableJob("j", "terminate"))
    assert job.state == "disabling"
    assert killed_ids(sim) == ["t1", "t2"]
    sim.exit_killed(137)
    assert job.state == "disabled"
    for tid in ("t1", "t2"):
        task = sim.task("j", tid)
        assert (task.state, task.result) == ("completed", "failure")
        assert task.failure_info is not None
        assert (task.failure_info.category, task.failure_info.code) == ("usererror",
                                                                        "TaskEnded")
        assert task.retry_count == 0
    # active tasks are not touched by the option: they stay active and wait
    assert sim.task("j", "t3").state == "active"
    assert sim.counts() == {"active": 1, "running": 0, "completed": 2, "succeeded": 0,
                            "failed": 2}
    sim.send(EnableJob("j"))
    assert [launch.task_id for launch in sim.started()] == ["t3"]
    sim.check()


def test_disable_wait_lets_running_tasks_finish_and_starts_nothing(sim: Sim) -> None:
    busy_job(sim)
    job = sim.job_rec()
    sim.send(DisableJob("j", "wait"))
    assert job.state == "disabling"
    assert killed_ids(sim) == []
    sim.exit("j", "t1", 0)
    assert job.state == "disabling"  # t2 still runs
    assert sim.started() == [] and sim.offered() == []  # t3 does not take the free slot
    sim.exit("j", "t2", 0)
    assert job.state == "disabled"
    assert sim.task("j", "t1").result == "success"
    assert sim.task("j", "t3").state == "active"
    sim.send(EnableJob("j"))
    assert [launch.task_id for launch in sim.started()] == ["t3"]
    sim.check()


def test_disable_wait_keeps_a_failed_attempt_for_its_retry_after_enable(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", task_spec("t1", retries=2))
    sim.send(DisableJob("j", "wait"))
    sim.exit("j", "t1", 3)
    task = sim.task("j", "t1")
    assert (task.state, task.retry_count) == ("active", 1)
    assert sim.job_rec().state == "disabled"
    assert sim.started() == []
    sim.send(EnableJob("j"))
    assert [launch.task_id for launch in sim.started()] == ["t1"]
    assert sim.task("j", "t1").attempt == 2


def test_offers_not_started_yet_are_taken_back_without_counting_a_requeue() -> None:
    sim = Sim()
    sim.auto_start = False  # the node holds the offer without starting it
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    launch = sim.launch("j", "t1")
    assert sim.task("j", "t1").offered
    sim.send(DisableJob("j", "wait"))  # even "wait": an offered attempt is still active
    assert killed_ids(sim) == ["t1"]
    assert sim.job_rec().state == "disabling"
    sim.send(TaskExited(job_id="j", task_id="t1", attempt=launch.attempt, exit_code=None,
                        start_time=None, end_time=sim.now, failure=FailureInfoRecord(
                            category="usererror", code="TaskEnded",
                            message="The task was killed before its process started")))
    task = sim.task("j", "t1")
    assert (task.state, task.requeue_count, task.offered) == ("active", 0, False)
    assert task.failure_info is None
    assert sim.job_rec().state == "disabled"
    sim.check()


# ------------------------------------------------------------------ states and idempotence


def test_disable_idle_job_is_disabled_at_once_and_repeats_are_accepted(sim: Sim) -> None:
    job = sim.job()
    sim.advance()
    assert sim.send(DisableJob("j", "requeue")) is job
    assert (job.state, job.previous_state) == ("disabled", "disabling")
    version = job.version
    sim.send(DisableJob("J", "terminate"))  # disabled: accepted, nothing changes
    assert (job.state, job.version) == ("disabled", version)
    sim.send(EnableJob("j"))
    assert (job.state, job.previous_state) == ("active", "enabling")
    sim.fails(EnableJob("j"), "OperationInvalidForCurrentState")


def test_disable_while_disabling_is_accepted(sim: Sim) -> None:
    busy_job(sim)
    sim.send(DisableJob("j", "wait"))
    sim.send(DisableJob("j", "requeue"))
    assert sim.job_rec().state == "disabling"
    sim.fails(EnableJob("j"), "OperationInvalidForCurrentState")  # not disabled yet


@pytest.mark.parametrize(("setup", "code"), [
    ("terminated", "JobCompleted"),
    ("terminating", "JobBeingTerminated"),
    ("deleting", "JobBeingDeleted"),
])
def test_disable_and_enable_refuse_jobs_that_are_ending(sim: Sim, setup: str,
                                                        code: str) -> None:
    sim.pool(nodes=1)
    sim.job()
    if setup != "terminated":
        sim.tasks("j", "t1")  # keeps the job terminating/deleting until it exits
    sim.send(DeleteJob("j") if setup == "deleting" else TerminateJob("j"))
    sim.fails(DisableJob("j", "requeue"), code)
    sim.fails(EnableJob("j"), code)


def test_disable_and_enable_errors(sim: Sim) -> None:
    job = sim.job()
    sim.fails(DisableJob("nope", "requeue"), "JobNotFound")
    sim.fails(EnableJob("nope"), "JobNotFound")
    sim.fails(DisableJob("j", "bogus"), "InvalidPropertyValue")
    sim.fails(DisableJob("j", "wait", Precondition(if_match="0x1")), "ConditionNotMet")
    sim.send(DisableJob("j", "wait", Precondition(if_match=job.etag)))
    sim.fails(EnableJob("j", Precondition(if_none_match=job.etag)), "ConditionNotMet")
    sim.send(EnableJob("j", Precondition(if_match=job.etag)))
    assert job.state == "active"


# ------------------------------------------------------------------ what a disabled job does


def test_a_disabled_job_accepts_tasks_that_wait_for_enable(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.send(DisableJob("j", "requeue"))
    sim.tasks("j", "a", "b")
    assert sim.offered() == [] and sim.counts()["active"] == 2
    sim.send(EnableJob("j"))
    assert sorted(launch.task_id for launch in sim.started()) == ["a", "b"]
    sim.check()


def test_a_reactivated_task_of_a_disabled_job_waits(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.exit("j", "t1", 1)
    sim.send(DisableJob("j", "wait"))
    sim.send(ReactivateTask("j", "t1"))
    assert sim.task("j", "t1").state == "active" and sim.offered() == []
    sim.send(EnableJob("j"))
    assert [launch.task_id for launch in sim.started()] == ["t1"]


def test_terminate_and_delete_a_disabled_job(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job("a")
    sim.job("b")
    sim.tasks("a", "t1")
    sim.send(DisableJob("a", "requeue"))
    sim.exit_killed()
    sim.send(TerminateJob("a"))
    assert sim.job_rec("a").state == "completed"
    assert sim.task("a", "t1").state == "active"  # active tasks of a terminated job stay
    sim.send(DisableJob("b", "wait"))
    sim.send(DeleteJob("b"))
    assert sim.get_job("b") is None


def test_all_tasks_complete_waits_for_enable(sim: Sim) -> None:
    """A job disabled with terminate whose tasks all ended terminates once enabled."""
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.send(UpdateJob("j", (("onAllTasksComplete", TERMINATE_JOB),)))
    sim.send(DisableJob("j", "terminate"))
    sim.exit_killed()
    job = sim.job_rec()
    assert job.state == "disabled"
    sim.send(EnableJob("j"))
    assert (job.state, job.terminate_reason) == ("completed", "AllTasksComplete")


# ------------------------------------------------------------------ updates and job state


def test_pool_changes_only_while_disabled(sim: Sim) -> None:
    sim.pool("p", nodes=1)
    sim.send(CreatePool(pool_spec("q", nodes=1)))
    sim.job()
    sim.tasks("j", "t1", "t2")
    other = BatchPoolInfo(pool_id="q")
    sim.fails(UpdateJob("j", (("poolInfo", other),)), "OperationInvalidForCurrentState")
    sim.fails(UpdateJob("j", (("poolInfo", other),), replace=True),
              "OperationInvalidForCurrentState")
    sim.send(UpdateJob("j", (("poolInfo", BatchPoolInfo(pool_id="P")),)))  # same pool: fine
    sim.send(DisableJob("j", "requeue"))
    sim.exit_killed()
    sim.send(UpdateJob("j", (("poolInfo", other),)))
    assert sim.job_rec().pool_id == "q"
    sim.send(EnableJob("j"))
    q_nodes = {n.id for n in sim.nodes("q")}
    assert {launch.node_id for launch in sim.started()} <= q_nodes
    assert sim.task("j", "t1").pool_id == "q"
    sim.check()


def test_on_all_tasks_complete_cannot_go_back_to_no_action(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "t1")  # keeps the job from terminating at once
    sim.send(UpdateJob("j", (("onAllTasksComplete", TERMINATE_JOB),)))
    sim.fails(UpdateJob("j", (("onAllTasksComplete", NO_ACTION),)), "InvalidPropertyValue")
    sim.fails(UpdateJob("j", (("onAllTasksComplete", NO_ACTION),), replace=True),
              "InvalidPropertyValue")
    # a PUT that leaves it out resets the other fields but cannot turn it off
    sim.send(UpdateJob("j", (("priority", 4),), replace=True))
    job = sim.job_rec()
    assert (job.priority, job.spec.on_all_tasks_complete) == (4, TERMINATE_JOB)


def test_put_resets_what_it_leaves_out(sim: Sim) -> None:
    sim.job(priority=9, maxParallelTasks=3, allowTaskPreemption=True,
            constraints={"maxTaskRetryCount": 2}, metadata=[{"name": "k", "value": "v"}])
    sim.send(UpdateJob("j", (), replace=True))
    spec = sim.job_rec().spec
    assert (spec.priority, spec.max_parallel_tasks, spec.allow_task_preemption,
            spec.constraints, spec.metadata) == (None, None, None, None, None)
    assert spec.pool_info is not None and spec.pool_info.pool_id == "p"


def test_updates_refused_while_terminating(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.send(TerminateJob("j"))
    sim.fails(UpdateJob("j", (("priority", 1),)), "JobBeingTerminated")
    sim.fails(AddTasks("j", (task_spec("late"),)), "JobBeingTerminated")
