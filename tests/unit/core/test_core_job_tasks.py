"""Job preparation and release tasks in the core: per-node runs, tasks waiting in
``preparing``, failures that block a node, release at the job's end, node restarts."""

from __future__ import annotations

from typing import Any

from hybatch.core.commands import (
    AddTasks,
    CreateJob,
    DeleteJob,
    NodeAction,
    TerminateJob,
    TerminateTask,
    UpdateJob,
)
from hybatch.core.events import NodeLost
from hybatch.core.jobs import prep_release_nodes
from hybatch.core.present import present_job_node
from hybatch.core.records import JobNodeRecord
from tests.unit.core.core_sim import BASE_URL, Sim, job_spec, task_spec
from tests.unit.core.node_task_sim import finish, last_node_task, node_task_kills, node_tasks

PREP: dict[str, Any] = {"commandLine": "/bin/sh -c 'echo prep'",
                        "environmentSettings": [{"name": "P", "value": "1"}]}
RELEASE: dict[str, Any] = {"commandLine": "/bin/sh -c 'echo release'"}


def _entry(sim: Sim, node_id: str, job_id: str = "j") -> JobNodeRecord:
    for entry in sim.job_rec(job_id).nodes_run:
        if entry.node_id == node_id:
            return entry
    raise AssertionError(f"no run on {node_id}")


def test_tasks_wait_in_preparing_until_preparation_succeeds(sim: Sim) -> None:
    sim.pool(slots=2)
    node_id = sim.nodes()[0].id
    sim.job(jobPreparationTask=PREP, commonEnvironmentSettings=[{"name": "C", "value": "c"}])
    sim.tasks("j", "t1", "t2")
    prep = last_node_task(sim, "jobpreparation")
    assert (prep.job_id, prep.task_id, prep.attempt) == ("j", "jobpreparation", 1)
    assert prep.environment == (("C", "c"), ("P", "1"))
    assert [sim.task("j", t).state for t in ("t1", "t2")] == ["preparing", "preparing"]
    assert sim.offered() == [] and sim.counts() == {
        "active": 0, "running": 2, "completed": 0, "succeeded": 0, "failed": 0}
    assert sim.get_node(node_id).free_slots == 0  # they hold their slots
    sim.check()
    run = _entry(sim, node_id).preparation
    assert run is not None and run.state == "running"
    finish(sim, prep, 0)
    assert {launch.task_id for launch in sim.offered()} == {"t1", "t2"}
    assert all(launch.job_preparation_task_id == "jobpreparation" for launch in sim.offered())
    assert [sim.task("j", t).state for t in ("t1", "t2")] == ["running", "running"]
    assert sim.task("j", "t1").previous_state == "preparing"
    assert (run.state, run.result, run.exit_code) == ("completed", "success", 0)
    sim.exit("j", "t1")
    sim.tasks("j", "t3")
    assert sim.task("j", "t3").state == "running"  # prepared already: sent at once
    assert len(node_tasks(sim, "jobpreparation")) == 1
    sim.check()


def test_failed_preparation_blocks_the_node_for_the_job(sim: Sim) -> None:
    sim.pool(nodes=2)
    first, second = (n.id for n in sim.nodes())
    sim.job(jobPreparationTask={**PREP, "constraints": {"maxTaskRetryCount": 1}})
    sim.tasks("j", "t1")
    task = sim.task("j", "t1")
    node_id = task.node_id
    assert node_id is not None
    prep = last_node_task(sim, "jobpreparation", node_id)
    finish(sim, prep, 2)
    retry = last_node_task(sim, "jobpreparation", node_id)
    assert retry.attempt == prep.attempt + 1
    assert _entry(sim, node_id).preparation.retry_count == 1  # type: ignore[union-attr]
    finish(sim, retry, 2)
    run = _entry(sim, node_id).preparation
    assert run is not None and (run.result, run.retry_count) == ("failure", 1)
    assert run.failure_info is not None and run.failure_info.code == "FailureExitCode"
    other = second if node_id == first else first
    # back to active without counting a retry or requeue, then placed on the other node
    assert (task.retry_count, task.requeue_count) == (0, 0)
    assert task.node_id == other and task.state == "preparing"
    finish(sim, last_node_task(sim, "jobpreparation", other), 0)
    assert task.state == "running"
    sim.exit("j", "t1")
    sim.tasks("j", "t2", "t3")
    assert {sim.task("j", t).node_id for t in ("t2", "t3")} == {other}
    sim.check()


def test_a_single_blocked_node_leaves_tasks_active(sim: Sim) -> None:
    sim.pool()
    sim.job(jobPreparationTask=PREP)
    sim.tasks("j", "t1")
    finish(sim, last_node_task(sim, "jobpreparation"), 1)
    task = sim.task("j", "t1")
    assert task.state == "active" and not task.offered
    assert len(node_tasks(sim, "jobpreparation")) == 1
    sim.job("k")
    sim.tasks("k", "other")
    assert sim.task("k", "other").state == "running"  # other jobs still use the node
    sim.check()


def test_without_wait_for_success_tasks_start_with_the_preparation(sim: Sim) -> None:
    sim.pool()
    sim.job(jobPreparationTask={**PREP, "waitForSuccess": False})
    sim.tasks("j", "t1")
    assert sim.task("j", "t1").state == "running"
    finish(sim, last_node_task(sim, "jobpreparation"), 1)
    sim.exit("j", "t1")
    sim.tasks("j", "t2")
    assert sim.task("j", "t2").state == "running"


def test_release_runs_where_preparation_ran_when_the_job_ends(sim: Sim) -> None:
    sim.pool(nodes=2)
    sim.job(jobPreparationTask=PREP, jobReleaseTask={**RELEASE, "maxWallClockTime": "PT5M"},
            onAllTasksComplete="noaction")
    sim.tasks("j", "t1")
    node_id = sim.task("j", "t1").node_id
    assert node_id is not None
    finish(sim, last_node_task(sim, "jobpreparation"), 0)
    sim.exit("j", "t1")
    sim.send(UpdateJob("j", (("onAllTasksComplete", "terminatejob"),)))
    job = sim.job_rec()
    assert job.state == "terminating"
    releases = node_tasks(sim, "jobrelease")
    assert [(r.node_id, r.task_id, r.max_wall_clock_s) for r in releases] == [
        (node_id, "jobrelease", 300.0)]  # only where preparation ran
    finish(sim, releases[0], 4)
    assert job.state == "completed" and job.terminate_reason == "AllTasksComplete"
    run = _entry(sim, node_id).release
    assert run is not None and (run.state, run.result, run.exit_code) == (
        "completed", "failure", 4)  # a failed release does not hold the job
    wire = present_job_node(job, prep_release_nodes(job)[0], BASE_URL)
    assert wire["nodeId"] == node_id and wire["poolId"] == "p"
    prep_info, release_info = (wire["jobPreparationTaskExecutionInfo"],
                               wire["jobReleaseTaskExecutionInfo"])
    assert isinstance(prep_info, dict) and isinstance(release_info, dict)
    assert prep_info["state"] == "completed" and prep_info["result"] == "success"
    assert prep_info["taskRootDirectory"] == "workitems/j/job-1/jobpreparation"
    assert release_info["exitCode"] == 4 and "retryCount" not in release_info


def test_terminating_while_tasks_wait_for_preparation(sim: Sim) -> None:
    sim.pool(slots=2)
    sim.job(jobPreparationTask=PREP, jobReleaseTask=RELEASE)
    sim.tasks("j", "t1", "t2")
    prep = last_node_task(sim, "jobpreparation")
    sim.send(TerminateTask("j", "t2"))
    t2 = sim.task("j", "t2")
    assert t2.state == "completed" and t2.failure_info is not None
    assert t2.failure_info.code == "TaskEnded"
    sim.send(TerminateJob("j"))
    job = sim.job_rec()
    assert sim.task("j", "t1").state == "completed"
    kills = node_task_kills(sim)
    assert [(k.kind, k.attempt) for k in kills] == [("jobpreparation", prep.attempt)]
    release = last_node_task(sim, "jobrelease")
    assert job.state == "terminating"
    finish(sim, prep, 137)  # the killed preparation: ignored
    assert job.state == "terminating"
    finish(sim, release, 0)
    assert job.state == "completed"
    sim.check()


def test_deleting_a_job_runs_its_release_and_removes_the_directories(sim: Sim) -> None:
    sim.pool()
    sim.job(jobPreparationTask=PREP, jobReleaseTask=RELEASE)
    sim.tasks("j", "t1")
    finish(sim, last_node_task(sim, "jobpreparation"), 0)
    sim.exit("j", "t1")
    sim.send(DeleteJob("j"))
    assert sim.job_rec().state == "deleting"
    finish(sim, last_node_task(sim, "jobrelease"), 0)
    assert sim.get_job() is None
    assert {"jobpreparation", "jobrelease"} <= {d.task_id for d in sim.deleted_files()}


def test_a_lost_node_does_not_hold_the_release(sim: Sim) -> None:
    sim.pool()
    sim.job(jobPreparationTask=PREP, jobReleaseTask=RELEASE)
    sim.tasks("j", "t1")
    finish(sim, last_node_task(sim, "jobpreparation"), 0)
    sim.exit("j", "t1")
    sim.send(TerminateJob("j"))
    node_id = last_node_task(sim, "jobrelease").node_id
    sim.send(NodeLost(node_id, "gone"))
    assert sim.job_rec().state == "completed"
    run = _entry(sim, node_id).release
    assert run is not None and run.failure_info is not None
    assert run.failure_info.code == "NodeUnavailable"


def test_reboot_reruns_preparation_unless_told_not_to(sim: Sim) -> None:
    sim.pool()
    node_id = sim.nodes()[0].id
    sim.job("a", jobPreparationTask=PREP)
    sim.job("b", jobPreparationTask={**PREP, "rerunOnNodeRebootAfterSuccess": False})
    sim.tasks("a", "ta")
    finish(sim, last_node_task(sim, "jobpreparation"), 0)
    sim.exit("a", "ta")
    sim.tasks("b", "tb")
    finish(sim, last_node_task(sim, "jobpreparation"), 0)
    sim.exit("b", "tb")
    sim.send(NodeAction("p", node_id, "reboot"))
    assert sim.get_node(node_id).state == "idle"
    sim.tasks("b", "tb2")
    assert sim.task("b", "tb2").state == "running"  # b does not rerun
    sim.exit("b", "tb2")
    sim.tasks("a", "ta2")
    assert sim.task("a", "ta2").state == "preparing"  # a does
    rerun = last_node_task(sim, "jobpreparation")
    assert rerun.job_id == "a"
    finish(sim, rerun, 0)
    assert sim.task("a", "ta2").state == "running"
    sim.check()


def test_reimage_unblocks_a_node_whose_preparation_failed(sim: Sim) -> None:
    sim.pool()
    node_id = sim.nodes()[0].id
    sim.job(jobPreparationTask=PREP)
    sim.tasks("j", "t1")
    finish(sim, last_node_task(sim, "jobpreparation"), 1)
    sim.send(NodeAction("p", node_id, "reboot"))
    assert sim.task("j", "t1").state == "active"  # a reboot does not unblock
    sim.send(NodeAction("p", node_id, "reimage"))
    assert sim.task("j", "t1").state == "preparing"
    assert len(node_tasks(sim, "jobpreparation")) == 2


def test_reboot_requeues_tasks_waiting_for_preparation(sim: Sim) -> None:
    sim.pool()
    node_id = sim.nodes()[0].id
    sim.job(jobPreparationTask=PREP)
    sim.tasks("j", "t1")
    first = last_node_task(sim, "jobpreparation")
    sim.send(NodeAction("p", node_id, "reboot"))
    # drained (never sent, so no kill to wait for), restarted, and placed again
    task = sim.task("j", "t1")
    assert task.state == "preparing" and task.requeue_count == 0
    second = last_node_task(sim, "jobpreparation")
    assert second.attempt > first.attempt
    run = _entry(sim, node_id).preparation
    assert run is not None and run.state == "running"
    finish(sim, first, 137)  # the run the restart killed: stale
    assert task.state == "preparing"
    finish(sim, second, 0)
    assert task.state == "running"
    sim.check()


def test_task_ids_of_preparation_and_release_are_reserved(sim: Sim) -> None:
    sim.pool()
    sim.job(jobPreparationTask={**PREP, "id": "prep"}, jobReleaseTask=RELEASE)
    sim.fails(AddTasks("j", (task_spec("PREP"),), single=True),
              "TaskIdSameAsJobPreparationTask")
    sim.fails(AddTasks("j", (task_spec("jobrelease"),), single=True),
              "TaskIdSameAsJobReleaseTask")


def test_invalid_job_tasks_are_refused(sim: Sim) -> None:
    sim.pool()
    bad: list[tuple[dict[str, Any], str]] = [
        ({"jobReleaseTask": RELEASE}, "InvalidPropertyValue"),
        ({"jobPreparationTask": PREP, "jobReleaseTask": {**RELEASE, "maxWallClockTime": "PT16M"}},
         "InvalidPropertyValue"),
        ({"jobPreparationTask": {**PREP, "id": "x y"}}, "InvalidPropertyValue"),
        ({"jobPreparationTask": {**PREP, "id": "same"},
          "jobManagerTask": {"id": "SAME", "commandLine": "x"}}, "InvalidPropertyValue"),
        ({"jobPreparationTask": {**PREP, "resourceFiles": [{"httpUrl": "http://x/y"}]}},
         "UnsupportedProperty"),
        ({"jobPreparationTask": {**PREP, "constraints": {"maxTaskRetryCount": -5}}},
         "InvalidPropertyValue"),
    ]
    for extra, code in bad:
        sim.fails(CreateJob(job_spec("j", "p", **extra)), code)
    assert sim.core.state.jobs == {}
