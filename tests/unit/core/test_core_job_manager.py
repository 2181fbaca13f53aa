"""The job manager task in the core: created with its job, killJobOnCompletion,
runExclusive, allowLowPriorityNode, retries first in line, authentication tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hybatch.core.commands import CreateJob
from hybatch.core.machine import BatchCore
from hybatch.core.tokens import TaskTokens
from tests.unit.core.core_sim import T0, SeqIds, Sim, job_spec, task_spec

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _manager(**extra: Any) -> dict[str, Any]:
    return {"id": "jm", "commandLine": "/bin/true", **extra}


def test_created_with_the_job_and_ends_it(sim: Sim) -> None:
    sim.pool(nodes=2, slots=2)
    job = sim.job(jobManagerTask=_manager(runExclusive=False), onAllTasksComplete="terminatejob")
    assert job.state == "active"  # its manager is a task: the job is not empty
    manager = sim.task("j", "jm")
    assert manager.seq == 1 and manager.state == "running"
    sim.tasks("j", "t1", "t2")
    assert sim.counts()["running"] == 3
    sim.exit("j", "jm", 3)  # whatever the exit code
    assert job.state == "terminating" and job.terminate_reason == "JMComplete"
    assert manager.result == "failure"
    killed = sim.exit_killed()
    assert {k.task_id for k in killed} == {"t1", "t2"}
    assert job.state == "completed"
    assert sim.task("j", "t1").failure_info.code == "TaskEnded"  # type: ignore[union-attr]
    sim.check()


def test_kill_job_on_completion_false_keeps_the_job(sim: Sim) -> None:
    sim.pool()
    job = sim.job(jobManagerTask=_manager(killJobOnCompletion=False))
    sim.exit("j", "jm")
    assert job.state == "active"


def test_an_exclusive_manager_keeps_its_node_to_itself(sim: Sim) -> None:
    sim.pool(nodes=2, slots=4)
    sim.job(jobManagerTask=_manager())
    manager_node = sim.task("j", "jm").node_id
    sim.tasks("j", *[f"t{i}" for i in range(6)])
    sim.job("other")
    sim.tasks("other", "o1")
    placement = sim.placement()
    assert placement[manager_node or ""] == ["jm"]  # 3 free slots there stay unused
    assert sum(len(tasks) for tasks in placement.values()) == 5  # 4 slots of the other node
    assert sim.task("other", "o1").state == "active"
    sim.check()
    sim.exit("j", "jm")  # the job ends; the node is free for others at once
    assert sim.placement()[manager_node or ""] == ["o1"]
    sim.exit_killed()
    assert sim.job_rec().state == "completed"
    sim.check()


def test_an_exclusive_manager_waits_for_an_empty_node(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job("busy")
    sim.tasks("busy", "b1")
    sim.job(jobManagerTask=_manager())
    assert sim.task("j", "jm").state == "active"
    sim.exit("busy", "b1")
    assert sim.task("j", "jm").state == "running"
    sim.tasks("busy", "b2")
    assert sim.task("busy", "b2").state == "active"


def test_not_on_a_low_priority_node_when_told(sim: Sim) -> None:
    sim.pool(nodes=1, low=1)
    dedicated = next(n.id for n in sim.nodes() if n.is_dedicated)
    sim.job(jobManagerTask=_manager(allowLowPriorityNode=False, runExclusive=False,
                                    requiredSlots=1))
    assert sim.task("j", "jm").node_id == dedicated


def test_a_retried_manager_goes_first(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job(jobManagerTask=_manager(runExclusive=False, constraints={"maxTaskRetryCount": 1}))
    sim.tasks("j", "t1", "t2")
    assert sim.task("j", "t1").state == "active"
    sim.exit("j", "jm", 1)
    manager = sim.task("j", "jm")
    assert manager.retry_count == 1 and manager.state == "running"  # ahead of t1 and t2
    assert sim.task("j", "t1").state == "active"


def test_requires_a_valid_manager(sim: Sim) -> None:
    sim.pool()
    sim.fails(CreateJob(job_spec(jobManagerTask=_manager(id="bad id"))), "InvalidPropertyValue")
    sim.fails(CreateJob(job_spec(jobManagerTask=_manager(requiredSlots=0))),
              "InvalidPropertyValue")
    sim.fails(CreateJob(job_spec(jobManagerTask=_manager(outputFiles=[{
        "filePattern": "*", "destination": {"container": {"containerUrl": "http://x"}},
        "uploadOptions": {"uploadCondition": "tasksuccess"}}]))), "UnsupportedProperty")
    assert sim.core.state.jobs == {}


def test_the_attempt_gets_an_authentication_token() -> None:
    tokens = TaskTokens("acct", KEY)
    sim = Sim(core=BatchCore(SeqIds(), tokens=tokens))
    sim.pool(nodes=3)
    sim.job(jobManagerTask=_manager(authenticationTokenSettings={"access": ["job"]},
                                    constraints={"maxWallClockTime": "P30D"}))
    env = dict(sim.launch("j", "jm").environment)
    claims = tokens.verify(env["AZ_BATCH_AUTHENTICATION_TOKEN"], T0)
    assert (claims.account, claims.job_id, claims.task_id, claims.access) == (
        "acct", "j", "jm", ("job",))
    assert claims.expires >= T0 + timedelta(days=31) - timedelta(seconds=1)
    sim.tasks("j", task_spec("plain"), task_spec("asks", authenticationTokenSettings={
        "access": ["job"]}))
    assert "AZ_BATCH_AUTHENTICATION_TOKEN" not in dict(sim.launch("j", "plain").environment)
    asked = dict(sim.launch("j", "asks").environment)["AZ_BATCH_AUTHENTICATION_TOKEN"]
    assert tokens.verify(asked, T0).task_id == "asks"
