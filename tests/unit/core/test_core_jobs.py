"""Jobs: create, priority and maxParallelTasks in placement, update, terminate, delete,
onAllTasksComplete and counters."""

from __future__ import annotations

from typing import Any

import pytest

from hybatch.core.commands import (
    AddTasks,
    CreateJob,
    DeleteJob,
    Precondition,
    ReactivateTask,
    RemoveNodes,
    ResizePool,
    TerminateJob,
    TerminateTask,
    UpdateJob,
)
from hybatch.core.effects import DeleteTaskFiles, KillTask
from hybatch.core.events import NodeLost, TaskLost
from tests.unit.core.core_sim import Sim, job_spec, task_spec

TERMINATE_JOB = job_spec(onAllTasksComplete="TerminateJob").on_all_tasks_complete
"""The parsed enum value the HTTP layer hands over (input spelling is case-insensitive)."""


def zero_counts(**overrides: int) -> dict[str, int]:
    base = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
    base.update(overrides)
    return base


# ------------------------------------------------------------------ create


def test_create_job_is_active_with_start_time(sim: Sim) -> None:
    job = sim.job("Job-1", "p", priority=5)
    assert job.state == "active"
    assert job.start_time == sim.now == job.creation_time
    assert job.priority == 5
    assert job.pool_id == "p"
    assert sim.counts("job-1") == zero_counts()


def test_job_ids_are_unique_case_insensitively(sim: Sim) -> None:
    sim.job("Job-1")
    error = sim.fails(CreateJob(job_spec("JOB-1")), "JobExists")
    assert error.details["JobId"] == "JOB-1"


@pytest.mark.parametrize(("extra", "code"), [
    ({"priority": 1001}, "InvalidPropertyValue"),
    ({"maxParallelTasks": 0}, "InvalidPropertyValue"),
    ({"jobManagerTask": {"id": "jm", "commandLine": " "}}, "InvalidPropertyValue"),
])
def test_invalid_job_bodies_are_rejected(sim: Sim, extra: dict[str, Any], code: str) -> None:
    sim.fails(CreateJob(job_spec("j", **extra)), code)


def test_bad_job_id_and_missing_pool(sim: Sim) -> None:
    sim.fails(CreateJob(job_spec("bad id")), "InvalidPropertyValue")
    spec = job_spec("j").model_copy(update={"pool_info": None})
    sim.fails(CreateJob(spec), "MissingRequiredProperty")


# ------------------------------------------------------------------ placement across jobs


def test_higher_priority_job_is_placed_first(sim: Sim) -> None:
    sim.pool(nodes=0)
    sim.job("low", priority=1)
    sim.job("high", priority=100)
    sim.job("mid", priority=1)  # same priority as "low" but created later
    sim.tasks("low", "l1", "l2")
    sim.tasks("mid", "m1")
    sim.tasks("high", "h1", "h2")
    sim.send(ResizePool("p", 3, None, None, None))
    assert sorted(x.task_id for x in sim.started()) == ["h1", "h2", "l1"]
    sim.exit("high", "h1")
    assert [x.task_id for x in sim.started()] == ["l2"]
    sim.exit("low", "l1")
    assert [x.task_id for x in sim.started()] == ["m1"]
    sim.check()


def test_priority_update_reorders_waiting_work(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job("a")
    sim.job("b")
    sim.tasks("a", "a1", "a2")
    sim.tasks("b", "b1")
    assert sim.running_ids("a") == {"a1"}
    sim.send(UpdateJob("b", (("priority", 10),)))
    sim.exit("a", "a1")
    assert [x.task_id for x in sim.started()] == ["b1"]


def test_max_parallel_tasks_caps_running_tasks(sim: Sim) -> None:
    sim.pool(nodes=2, slots=4)
    sim.job("capped", maxParallelTasks=2)
    sim.job("other", priority=-5)
    sim.tasks("capped", *[f"c{i}" for i in range(5)])
    sim.tasks("other", "o1", "o2")
    assert sim.running_ids("capped") == {"c0", "c1"}
    assert sim.running_ids("other") == {"o1", "o2"}  # the cap leaves room for other jobs
    sim.exit("capped", "c0")
    assert sim.running_ids("capped") == {"c1", "c2"}
    sim.send(UpdateJob("capped", (("maxParallelTasks", -1),)))
    assert sim.running_ids("capped") == {"c1", "c2", "c3", "c4"}
    sim.check()


# ------------------------------------------------------------------ update


def test_update_job_patch_and_put(sim: Sim) -> None:
    job = sim.job("j", priority=3, maxParallelTasks=4)
    etag = job.etag
    sim.advance()
    sim.send(UpdateJob("j", (("metadata", [{"name": "k", "value": "v"}]),)))
    assert job.priority == 3
    assert job.etag != etag
    assert job.last_modified == sim.now
    sim.send(UpdateJob("j", (("priority", 7),), replace=True))
    assert job.priority == 7
    assert job.spec.max_parallel_tasks is None
    assert job.spec.metadata is None
    assert job.pool_id == "p"


def test_update_job_rejects_unknown_fields_and_stale_etags(sim: Sim) -> None:
    job = sim.job("j")
    sim.fails(UpdateJob("j", (("id", "other"),)), "InvalidPropertyValue")
    sim.fails(UpdateJob("j", (("priority", 5000),)), "InvalidPropertyValue")
    sim.fails(UpdateJob("j", (("maxParallelTasks", 0),)), "InvalidPropertyValue")
    sim.fails(UpdateJob("j", (("priority", 1),), precondition=Precondition(if_match="0x1")),
              "ConditionNotMet")
    sim.send(UpdateJob("j", (("priority", 1),), precondition=Precondition(if_match=job.etag)))
    assert job.priority == 1
    sim.fails(UpdateJob("nope", (("priority", 1),)), "JobNotFound")


# ------------------------------------------------------------------ terminate


def test_terminate_kills_running_tasks_and_completes_after_their_exits(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", task_spec("t1", retries=5), "t2", "t3")
    sim.advance()
    sim.send(TerminateJob("j"))
    job = sim.get_job()
    assert job is not None
    assert job.state == "terminating"
    assert job.terminate_reason == "UserTerminate"
    assert sorted(e.task_id for e in sim.last if isinstance(e, KillTask)) == ["t1", "t2"]
    sim.fails(TerminateJob("j"), "JobBeingTerminated")
    sim.fails(AddTasks("j", (task_spec("late"),)), "JobBeingTerminated")

    sim.exit("j", "t1", -9)
    assert job.state == "terminating"
    sim.exit("j", "t2", 0)
    assert job.state == "completed"
    assert (job.previous_state, job.end_time) == ("terminating", sim.now)
    for tid in ("t1", "t2"):
        task = sim.task("j", tid)
        assert (task.state, task.result) == ("completed", "failure")
        assert task.failure_info is not None and task.failure_info.code == "TaskEnded"
        assert task.retry_count == 0
    # an active task of a terminated job stays active and never runs
    assert sim.task("j", "t3").state == "active"
    assert sim.counts() == zero_counts(active=1, completed=2, failed=2)
    assert sim.running_ids() == set()
    sim.fails(TerminateJob("j"), "JobCompleted")
    sim.fails(UpdateJob("j", (("priority", 1),)), "JobCompleted")
    sim.fails(AddTasks("j", (task_spec("late"),)), "JobCompleted")
    sim.check()


def test_terminate_idle_job_completes_at_once_with_custom_reason(sim: Sim) -> None:
    job = sim.job()
    sim.send(TerminateJob("j", reason="AllDone"))
    assert (job.state, job.terminate_reason) == ("completed", "AllDone")
    assert job.previous_state == "terminating"
    assert job.end_time == sim.now


def test_node_lost_while_job_terminates_completes_the_job(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.send(TerminateJob("j"))
    sim.send(NodeLost(sim.nodes()[0].id, "gone"))
    assert sim.job_rec().state == "completed"
    failure = sim.task("j", "t1").failure_info
    assert failure is not None and failure.code == "TaskEnded"


def test_terminating_job_survives_a_requeue_of_its_killed_task(sim: Sim) -> None:
    """A node removal (requeue) while the job is terminating must not leave it stuck."""
    sim.pool(nodes=2)
    sim.job()
    sim.tasks("j", "t1")
    sim.send(TerminateJob("j"))
    node = sim.task("j", "t1").node_id
    assert node is not None
    sim.send(RemoveNodes("p", (node,), None, "requeue"))
    sim.exit("j", "t1", -9)
    assert sim.job_rec().state == "completed"
    assert sim.running_ids() == set()
    sim.check()


# ------------------------------------------------------------------ delete


def test_delete_job_is_gone_after_running_tasks_exit(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", "t1", "t2", "t3")
    sim.exit("j", "t1", 0)  # completes; t3 starts
    sim.send(DeleteJob("j"))
    job = sim.get_job()
    assert job is not None and job.state == "deleting"
    assert sorted(e.task_id for e in sim.last if isinstance(e, KillTask)) == ["t2", "t3"]
    sim.fails(UpdateJob("j", (("priority", 1),)), "JobBeingDeleted")
    sim.fails(TerminateJob("j"), "JobBeingDeleted")
    sim.fails(AddTasks("j", (task_spec("late"),)), "JobBeingDeleted")
    assert sim.send(DeleteJob("j")) is job  # idempotent while deleting
    sim.exit("j", "t2", -9)
    assert sim.get_job() is not None
    sim.exit("j", "t3", -9)
    assert sim.get_job() is None
    files = [e for e in sim.last if isinstance(e, DeleteTaskFiles)]
    assert "t3" in {e.task_id for e in files}
    assert not any(k[0] == "j" for k in sim.core.state.tasks)
    assert "j" not in sim.core.state.ready and "j" not in sim.core.state.running
    assert sim.nodes()[0].running_task_slots == 0
    sim.fails(DeleteJob("j"), "JobNotFound")
    # the id can be used again
    assert sim.job().state == "active"
    sim.check()


def test_delete_job_with_retries_left_still_goes_away(sim: Sim) -> None:
    """The killed attempt exits non-zero; a retryable task must not keep the job alive."""
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", task_spec("t1", retries=3))
    sim.send(DeleteJob("j"))
    sim.exit("j", "t1", 137)
    assert sim.get_job() is None
    assert sim.running_ids() == set()
    sim.check()


def test_delete_job_when_its_node_is_lost_goes_away(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.send(DeleteJob("j"))
    sim.send(NodeLost(sim.nodes()[0].id, "gone"))
    assert sim.get_job() is None


def test_delete_job_when_its_attempt_is_lost_goes_away(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.send(DeleteJob("j"))
    sim.send(TaskLost("j", "t1", sim.launch("j", "t1").attempt))
    assert sim.get_job() is None
    assert sim.nodes()[0].running_tasks == 0


def test_delete_job_without_running_tasks_is_immediate(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "t1")  # no pool: stays active
    sim.send(DeleteJob("J"))
    assert sim.get_job() is None


# ------------------------------------------------------------------ onAllTasksComplete


def test_terminatejob_at_creation_with_no_tasks_terminates_at_once(sim: Sim) -> None:
    job = sim.job(onAllTasksComplete="terminatejob")
    assert (job.state, job.terminate_reason) == ("completed", "AllTasksComplete")
    sim.fails(AddTasks("j", (task_spec("t1"),)), "JobCompleted")


def test_terminatejob_set_by_update_after_tasks(sim: Sim) -> None:
    sim.pool(nodes=2)
    job = sim.job()
    sim.tasks("j", "t1", "t2", "t3")
    sim.send(UpdateJob("j", (("onAllTasksComplete", TERMINATE_JOB),)))
    assert job.state == "active"
    sim.exit("j", "t1")
    sim.exit("j", "t2", 2)
    assert job.state == "active"
    sim.exit("j", "t3")
    assert (job.state, job.terminate_reason) == ("completed", "AllTasksComplete")
    assert sim.counts() == zero_counts(completed=3, succeeded=2, failed=1)


def test_terminatejob_update_when_everything_is_done_terminates_now(sim: Sim) -> None:
    sim.pool(nodes=1)
    job = sim.job()
    sim.tasks("j", "t1")
    sim.exit("j", "t1")
    assert job.state == "active"
    sim.send(UpdateJob("j", (("onAllTasksComplete", "terminatejob"),)))
    assert job.state == "completed"


def test_terminatejob_fires_when_the_last_active_task_is_terminated(sim: Sim) -> None:
    job = sim.job()
    sim.tasks("j", "t1")  # no pool: never runs
    sim.send(UpdateJob("j", (("onAllTasksComplete", "terminatejob"),)))
    assert job.state == "active"
    sim.send(TerminateTask("j", "t1"))
    assert job.state == "completed"


def test_counts_follow_every_transition(sim: Sim) -> None:
    sim.pool(nodes=1, slots=3)
    sim.job()
    sim.tasks("j", task_spec("a", slots=2), task_spec("b", retries=1), "c", "d")
    assert sim.counts() == zero_counts(active=2, running=2)
    assert sim.slot_counts() == zero_counts(active=2, running=3)
    sim.exit("j", "b", 1)  # retried: back to active, then placed again
    assert sim.counts() == zero_counts(active=2, running=2)
    sim.exit("j", "a")
    assert sim.counts() == zero_counts(active=0, running=3, completed=1, succeeded=1)
    assert sim.slot_counts() == zero_counts(running=3, completed=2, succeeded=2)
    sim.exit("j", "b", 1)
    assert sim.counts() == zero_counts(running=2, completed=2, succeeded=1, failed=1)
    sim.exit("j", "c")
    sim.exit("j", "d")
    assert sim.counts() == zero_counts(completed=4, succeeded=3, failed=1)
    assert sim.slot_counts() == zero_counts(completed=5, succeeded=4, failed=1)
    sim.check()


def test_reactivate_needs_an_active_job_and_terminate_honours_if_match(sim: Sim) -> None:
    sim.pool(nodes=1)
    job = sim.job()
    sim.tasks("j", "t1")
    sim.exit("j", "t1", 1)
    sim.fails(TerminateJob("j", precondition=Precondition(if_match="0x0")), "ConditionNotMet")
    sim.send(TerminateJob("j", precondition=Precondition(if_match=job.etag)))
    assert job.state == "completed"
    sim.fails(ReactivateTask("j", "t1"), "JobCompleted")
