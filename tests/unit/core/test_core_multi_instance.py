"""Multi-instance tasks in the pure core: gang placement (all or none, whole nodes), the
coordination phase on every instance, the application command on the primary, failures,
kills, node loss, subtasks and restore."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hybatch.core.commands import AddTasks, ResizePool, TerminateTask
from hybatch.core.effects import KillTask, StartTask, TaskLaunch
from hybatch.core.errors import DomainError
from hybatch.core.events import InstanceExited, NodeLost, TaskExited
from hybatch.core.machine import BatchCore
from hybatch.core.present import present_subtasks
from hybatch.core.records import FailureInfoRecord, TaskRecord
from tests.unit.core.core_sim import BASE_URL, SeqIds, Sim, task_spec

MPI = {"enableInterNodeCommunication": True}


def mi_spec(task_id: str = "mpi", instances: int = 2, **extra: Any) -> Any:
    settings = {"numberOfInstances": instances, "coordinationCommandLine": "coord"}
    settings.update(extra.pop("settings", {}))
    return task_spec(task_id, command="app", multiInstanceSettings=settings, **extra)


def gang_sim(nodes: int = 3, **pool: Any) -> Sim:
    sim = Sim()
    sim.pool("p", nodes=nodes, **{**MPI, **pool})
    sim.job()
    return sim


def coordination(sim: Sim) -> list[TaskLaunch]:
    return [e.launch for e in sim.last if isinstance(e, StartTask)
            and e.launch.instance is not None]


def instance_exit(sim: Sim, launch: TaskLaunch, code: int | None = 0) -> None:
    sim._forget_launch(launch)
    sim.send(InstanceExited(job_id=launch.job_id, task_id=launch.task_id,
                            attempt=launch.attempt, instance=launch.instance or 0,
                            exit_code=code, start_time=sim.now, end_time=sim.now))


def app_exit(sim: Sim, launch: TaskLaunch, code: int = 0) -> None:
    sim._forget_launch(launch)
    sim.send(TaskExited(job_id=launch.job_id, task_id=launch.task_id, attempt=launch.attempt,
                        exit_code=code, start_time=sim.now, end_time=sim.now))


def mpi_task(sim: Sim, task_id: str = "mpi") -> TaskRecord:
    return sim.task("j", task_id)


# ------------------------------------------------------------------ placement


def test_a_gang_takes_whole_nodes_all_at_once() -> None:
    sim = gang_sim(nodes=3)
    sim.tasks("j", mi_spec())
    launches = coordination(sim)
    assert [launch.instance for launch in launches] == [0, 1]
    assert len({launch.node_id for launch in launches}) == 2
    assert all(launch.command_line == "coord" and launch.multi_instance for launch in launches)
    task = mpi_task(sim)
    assert task.state == "running" and task.node_id == launches[0].node_id
    assert task.instances is not None and [i.state for i in task.instances] == ["running"] * 2
    env = dict(launches[1].environment)
    assert env["AZ_BATCH_HOST_LIST"] == "127.0.0.1,127.0.0.1"
    assert env["AZ_BATCH_NODE_LIST"] == "127.0.0.1;127.0.0.1"
    assert env["AZ_BATCH_MASTER_NODE"] == "127.0.0.1:6000"
    assert env["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == "false"
    assert dict(launches[0].environment)["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == "true"
    assert env["CCP_NODES"] == "2 127.0.0.1 1 127.0.0.1 1"
    # the third node still takes ordinary work; the gang's nodes take nothing else
    sim.job("other")
    sim.tasks("other", "o1", "o2")
    placed = sim.placement()
    free = next(n for n in placed if n not in {launch.node_id for launch in launches})
    assert placed[free] == ["o1"]
    sim.check()


def test_all_or_none_the_gang_waits_for_enough_nodes() -> None:
    sim = gang_sim(nodes=2)
    sim.tasks("j", mi_spec(instances=3), "behind")
    assert not sim.offered()  # neither the gang nor the task behind it (it holds the queue)
    assert mpi_task(sim).state == "active"
    sim.send(ResizePool("p", 3, None, None, None))
    assert sorted(launch.instance or 0 for launch in coordination(sim)) == [0, 1, 2]
    sim.check()


@pytest.mark.parametrize("pool", [{"enableInterNodeCommunication": False}, {"slots": 2}])
def test_a_pool_unfit_for_gangs_never_runs_them(pool: dict[str, Any]) -> None:
    sim = gang_sim(nodes=3, **pool)
    sim.tasks("j", mi_spec())
    assert not sim.offered() and mpi_task(sim).state == "active"


# ------------------------------------------------------------------ phases


def test_the_application_runs_on_the_primary_after_every_coordination() -> None:
    sim = gang_sim(nodes=2)
    sim.tasks("j", mi_spec(settings={"commonResourceFiles": [
        {"httpUrl": "http://127.0.0.1:1/hello.py", "filePath": "bin/hello.py",
         "fileMode": "0755"}]}))
    primary, sub = coordination(sim)
    assert primary.resource_files == (("http://127.0.0.1:1/hello.py", "bin/hello.py", "0755"),)
    instance_exit(sim, primary)
    assert not sim.offered()  # the subtask is still coordinating
    instance_exit(sim, sub)
    (app,) = sim.offered()
    assert app.instance is None and app.multi_instance and app.command_line == "app"
    assert app.node_id == primary.node_id and app.attempt == primary.attempt
    assert dict(app.environment)["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == "true"
    task = mpi_task(sim)
    assert task.state == "running"
    subtasks = present_subtasks(task, BASE_URL)
    assert [(s["id"], s["state"]) for s in subtasks] == [(1, "running")]
    app_exit(sim, app, 0)
    task = mpi_task(sim)
    assert task.state == "completed" and task.result == "success" and task.exit_code == 0
    (subtask,) = present_subtasks(task, BASE_URL)
    assert subtask["state"] == "completed" and subtask["result"] == "success"
    assert subtask["exitCode"] == 0
    node_info = subtask["nodeInfo"]
    assert isinstance(node_info, dict) and node_info["nodeId"] == sub.node_id
    assert all(n.running_task_slots == 0 and not n.held_by_gang for n in sim.nodes())
    assert all(n.state == "idle" for n in sim.nodes())
    sim.check()


def test_the_application_exit_code_is_the_tasks() -> None:
    sim = gang_sim(nodes=2)
    sim.tasks("j", mi_spec())
    for launch in coordination(sim):
        instance_exit(sim, launch)
    (app,) = sim.offered()
    app_exit(sim, app, 3)
    task = mpi_task(sim)
    assert task.state == "completed" and task.result == "failure" and task.exit_code == 3
    sim.check()


def test_a_failing_coordination_fails_the_attempt_and_is_retried() -> None:
    sim = gang_sim(nodes=2)
    sim.tasks("j", mi_spec(retries=1))
    primary, sub = coordination(sim)
    instance_exit(sim, sub, 7)
    kills = [e for e in sim.last if isinstance(e, KillTask)]
    assert [(k.node_id, k.attempt) for k in kills] == [(primary.node_id, 1)]
    retry = coordination(sim)  # both nodes are free again (the kill is in flight)
    assert [launch.attempt for launch in retry] == [2, 2]
    task = mpi_task(sim)
    assert task.retry_count == 1 and task.state == "running"
    instance_exit(sim, primary, 137)  # the killed first attempt reports late: ignored
    assert mpi_task(sim).attempt == 2
    instance_exit(sim, retry[0], 9)
    task = mpi_task(sim)
    assert task.state == "completed" and task.exit_code == 9 and task.result == "failure"
    assert all(n.running_task_slots == 0 for n in sim.nodes())
    sim.check()


def test_terminate_kills_every_instance() -> None:
    sim = gang_sim(nodes=3)
    sim.tasks("j", mi_spec(instances=3))
    launches = coordination(sim)
    instance_exit(sim, launches[2])  # one already coordinated
    sim.send(TerminateTask("j", "mpi"))
    kills = [e for e in sim.last if isinstance(e, KillTask)]
    assert {k.node_id for k in kills} == {launches[0].node_id, launches[1].node_id}
    instance_exit(sim, launches[0], 137)
    task = mpi_task(sim)
    assert task.state == "completed" and task.failure_info is not None
    assert task.failure_info.code == "TaskEnded"
    assert all(n.running_task_slots == 0 for n in sim.nodes())
    sim.check()


def test_a_lost_subtask_node_requeues_the_task() -> None:
    sim = gang_sim(nodes=3)
    sim.tasks("j", mi_spec())
    primary, sub = coordination(sim)
    sim.send(NodeLost(sub.node_id, "gone"))
    task = mpi_task(sim)
    assert task.requeue_count == 1
    kills = [e for e in sim.last if isinstance(e, KillTask)]
    assert primary.node_id in {k.node_id for k in kills}
    # requeued and placed again on the two nodes still usable
    assert task.attempt == 2 and task.state == "running"
    sim.check()


def test_a_download_failure_completes_without_retry() -> None:
    sim = gang_sim(nodes=2)
    sim.tasks("j", mi_spec(retries=3))
    _, sub = coordination(sim)
    sim._forget_launch(sub)
    sim.send(InstanceExited(job_id="j", task_id="mpi", attempt=1, instance=1, exit_code=None,
                            start_time=None, end_time=sim.now, failure=FailureInfoRecord(
                                category="usererror", code="ResourceFileDownloadError",
                                message="404")))
    task = mpi_task(sim)
    assert task.state == "completed" and task.retry_count == 0
    assert task.failure_info is not None and task.failure_info.code == "ResourceFileDownloadError"
    sim.check()


def test_restore_counts_an_in_flight_gang_on_every_node() -> None:
    sim = gang_sim(nodes=3)
    sim.tasks("j", mi_spec())
    fresh = BatchCore(SeqIds())
    state = sim.core.state
    fresh.restore([copy.deepcopy(p) for p in state.pools.values()],
                  [copy.deepcopy(n) for n in state.nodes.values()],
                  [copy.deepcopy(j) for j in state.jobs.values()],
                  [copy.deepcopy(t) for t in state.tasks.values()])
    assert not fresh.state.validate()
    assert sum(n.running_task_slots for n in fresh.state.nodes.values()) == 2
    assert sum(n.held_by_gang for n in fresh.state.nodes.values()) == 2


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(("spec", "code"), [
    (mi_spec(instances=0), "InvalidPropertyValue"),
    (mi_spec(instances=101), "InvalidPropertyValue"),
    (mi_spec(slots=2), "InvalidPropertyValue"),
    (mi_spec(settings={"coordinationCommandLine": " "}), "InvalidPropertyValue"),
    (mi_spec(settings={"commonResourceFiles": [{"httpUrl": "ftp://x/y", "filePath": "y"}]}),
     "InvalidPropertyValue"),
    (mi_spec(settings={"commonResourceFiles": [{"httpUrl": "http://x/y"}]}),
     "MissingRequiredProperty"),
    (mi_spec(settings={"commonResourceFiles": [{"httpUrl": "http://x/y",
                                                "filePath": "../y"}]}),
     "InvalidPropertyValue"),
    (mi_spec(settings={"commonResourceFiles": [{"httpUrl": "http://x/y",
                                                "filePath": "/etc/y"}]}),
     "InvalidPropertyValue"),
    (mi_spec(settings={"commonResourceFiles": [{"httpUrl": "http://x/y", "filePath": "y",
                                                "fileMode": "rwx"}]}),
     "InvalidPropertyValue"),
    (mi_spec(settings={"commonResourceFiles": [{"storageContainerUrl": "https://c"}]}),
     "UnsupportedProperty"),
])
def test_invalid_multi_instance_tasks_are_refused(spec: Any, code: str) -> None:
    sim = gang_sim()
    with pytest.raises(DomainError) as caught:
        sim.send(AddTasks("j", (spec,), single=True))
    assert caught.value.code == code
