"""Pool start tasks, job preparation and release tasks and job manager tasks (with their
authentication token) through the official azure-batch 15.1 SDK against a real server
process: real processes on local nodes (in the node agent).

Gates are files the test creates in its own temporary directory; every wait polls against a
deadline.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import httpx
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models import _models as internal
from azure.core.exceptions import HttpResponseError

from tests.support.server import ServerProcess, wait_for

POLL = 0.1
WORKLOAD = Path(__file__).resolve().parents[1] / "workloads" / "job_manager.py"


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _sh(script: str) -> str:
    return f"/bin/sh -c '{script}'"


def _gate(path: Path) -> str:
    """Shell that waits until ``path`` exists."""
    return f"while [ ! -e {path} ]; do sleep 0.02; done"


def _pool(client: BatchClient, nodes: int = 1, slots: int = 1, **extra: object) -> str:
    pool_id = _uid("ntp")
    client.create_pool(m.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=nodes,
        task_slots_per_node=slots, **extra))  # type: ignore[arg-type]
    return pool_id


def _nodes(client: BatchClient, pool_id: str, count: int, state: str) -> list[m.BatchNode]:
    return wait_for(lambda: (found := list(client.list_nodes(pool_id))) and len(found) == count
                    and all(n.state == state for n in found) and found,
                    interval=POLL, what=f"{count} nodes {state}")


def _read_node_file(client: BatchClient, pool_id: str, node_id: str, path: str) -> str:
    return b"".join(client.download_node_file(pool_id, node_id, path)).decode()


def _delete_pool(client: BatchClient, pool_id: str) -> None:
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


# ------------------------------------------------------------------ start task


def test_start_task_gates_the_node_and_reruns_on_reboot(client: BatchClient,
                                                        tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    pool_id = _pool(client, start_task=m.BatchStartTask(
        command_line=_sh(f"{_gate(gate)}; echo started; echo $GREETING > greeting.txt"),
        environment_settings=[m.EnvironmentSetting(name="GREETING", value="hello")],
        wait_for_success=True, max_task_retry_count=1))
    node = _nodes(client, pool_id, 1, "waitingforstarttask")[0]
    assert node.start_task is not None and node.start_task.max_task_retry_count == 1
    info = node.start_task_info
    assert info is not None and info.state == "running" and info.retry_count == 0
    job_id = _uid("ntj")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id=pool_id)))
    client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    assert client.get_task(job_id, "t").state == "active"  # the node is not ready yet
    gate.touch()
    wait_for(lambda: client.get_task(job_id, "t").state == "completed", interval=POLL,
             what="the task to run once the start task succeeded")
    node = client.get_node(pool_id, node.id)
    info = node.start_task_info
    assert info is not None
    assert (info.state, info.result, info.exit_code, info.retry_count) == (
        "completed", "success", 0, 0)
    assert info.start_time is not None and info.end_time is not None
    assert _read_node_file(client, pool_id, node.id, "startup/stdout.txt") == "started\n"
    assert _read_node_file(client, pool_id, node.id, "startup/wd/greeting.txt") == "hello\n"
    first_end = info.end_time
    client.begin_reboot_node(pool_id, node.id, internal.BatchNodeRebootOptions(
        node_reboot_kind="requeue"), polling_interval=POLL).result()
    wait_for(lambda: (n := client.get_node(pool_id, node.id)).state == "idle"
             and n.start_task_info is not None and n.start_task_info.end_time is not None
             and n.start_task_info.end_time > first_end, interval=POLL,
             what="the start task to run again after the reboot")
    assert _read_node_file(client, pool_id, node.id, "startup/stdout.txt") == (
        "started\nstarted\n")
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    _delete_pool(client, pool_id)


def test_failing_start_task_leaves_the_node_starttaskfailed(client: BatchClient) -> None:
    pool_id = _pool(client, start_task=m.BatchStartTask(
        command_line=_sh("echo try >> $AZ_BATCH_NODE_SHARED_DIR/tries; exit 3"),
        max_task_retry_count=2))
    node = _nodes(client, pool_id, 1, "starttaskfailed")[0]
    info = node.start_task_info
    assert info is not None and info.failure_info is not None
    assert (info.state, info.result, info.exit_code, info.retry_count) == (
        "completed", "failure", 3, 2)
    assert info.failure_info.code == "FailureExitCode"
    assert info.last_retry_time is not None
    assert _read_node_file(client, pool_id, node.id, "shared/tries") == "try\n" * 3
    counts = {c.pool_id: c for c in client.list_pool_node_counts()}[pool_id]
    assert counts.dedicated is not None and counts.dedicated.start_task_failed == 1
    failed = list(client.list_nodes(pool_id, filter="state eq 'starttaskfailed'"))
    assert [n.id for n in failed] == [node.id]
    _delete_pool(client, pool_id)


def test_pool_update_sets_the_start_task(client: BatchClient) -> None:
    pool_id = _pool(client, nodes=0)
    client.update_pool(pool_id, m.BatchPoolUpdateOptions(
        start_task=m.BatchStartTask(command_line="/bin/true", wait_for_success=False)))
    start = client.get_pool(pool_id).start_task
    assert start is not None and start.command_line == "/bin/true"
    assert start.wait_for_success is False
    try:
        client.update_pool(pool_id, m.BatchPoolUpdateOptions(
            start_task=m.BatchStartTask(command_line=" ")))
        raise AssertionError("an empty command line was accepted")
    except HttpResponseError as error:
        assert (error.status_code, error.error.code) == (400, "InvalidPropertyValue")
    client.replace_pool_properties(pool_id, m.BatchPoolReplaceOptions(
        application_package_references=[], metadata=[]))
    assert client.get_pool(pool_id).start_task is None
    _delete_pool(client, pool_id)


# ------------------------------------------------------------------ preparation and release


def test_preparation_then_tasks_then_release(client: BatchClient, tmp_path: Path) -> None:
    gate = tmp_path / "prep-gate"
    pool_id = _pool(client, slots=2)
    node_id = _nodes(client, pool_id, 1, "idle")[0].id
    job_id = _uid("prj")
    client.create_job(m.BatchJobCreateOptions(
        id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id),
        job_preparation_task=m.BatchJobPreparationTask(
            command_line=_sh(f"{_gate(gate)}; echo ready > prep.txt; echo prepared")),
        job_release_task=m.BatchJobReleaseTask(id="cleanup",
                                               command_line=_sh("echo released"))))
    command = _sh("cat $AZ_BATCH_JOB_PREP_WORKING_DIR/prep.txt")
    client.create_tasks(job_id, [m.BatchTaskCreateOptions(id=f"t{i}", command_line=command)
                                 for i in range(2)])
    wait_for(lambda: all(t.state == "preparing" for t in client.list_tasks(job_id)),
             interval=POLL, what="tasks preparing")
    [status] = list(client.list_job_preparation_and_release_task_status(job_id))
    assert (status.pool_id, status.node_id) == (pool_id, node_id)
    prep = status.job_preparation_task_execution_info
    assert prep is not None and prep.state == "running" and prep.retry_count == 0
    assert prep.task_root_directory == f"workitems/{job_id}/job-1/jobpreparation"
    assert status.job_release_task_execution_info is None
    gate.touch()
    wait_for(lambda: all(t.state == "completed" for t in client.list_tasks(job_id)),
             interval=POLL, what="tasks completed")
    for task in client.list_tasks(job_id):
        assert task.execution_info is not None and task.execution_info.result == "success"
        assert b"".join(client.download_task_file(job_id, task.id, "stdout.txt")) == (
            b"ready\n")
    # 15.1 needs a non-empty options object here (an empty one fails client-side)
    client.begin_terminate_job(job_id, internal.BatchJobTerminateOptions(
        termination_reason="done"), polling_interval=POLL).result(timeout=60)
    job = client.get_job(job_id)
    assert job.state == "completed"  # only once the release task had run
    [status] = list(client.list_job_preparation_and_release_task_status(job_id))
    prep, release = (status.job_preparation_task_execution_info,
                     status.job_release_task_execution_info)
    assert prep is not None and release is not None
    assert (prep.state, prep.result, prep.exit_code) == ("completed", "success", 0)
    assert (release.state, release.result, release.exit_code) == ("completed", "success", 0)
    assert release.task_root_directory == f"workitems/{job_id}/job-1/cleanup"
    assert _read_node_file(client, pool_id, node_id,
                           f"workitems/{job_id}/job-1/cleanup/stdout.txt") == "released\n"
    completed = list(client.list_job_preparation_and_release_task_status(
        job_id, filter="jobReleaseTaskExecutionInfo/exitCode eq 0"))
    assert [s.node_id for s in completed] == [node_id]
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    _delete_pool(client, pool_id)


def test_failed_preparation_keeps_tasks_off_the_node(client: BatchClient) -> None:
    pool_id = _pool(client)
    node_id = _nodes(client, pool_id, 1, "idle")[0].id
    job_id = _uid("prf")
    client.create_job(m.BatchJobCreateOptions(
        id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id),
        job_preparation_task=m.BatchJobPreparationTask(
            command_line=_sh("exit 7"),
            constraints=m.BatchTaskConstraints(max_task_retry_count=1))))
    client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))

    def failed() -> m.BatchJobPreparationTaskExecutionInfo | None:
        statuses = list(client.list_job_preparation_and_release_task_status(job_id))
        info = statuses[0].job_preparation_task_execution_info if statuses else None
        return info if info is not None and info.state == "completed" else None

    info = wait_for(failed, interval=POLL, what="the preparation task to fail")
    assert (info.result, info.exit_code, info.retry_count) == ("failure", 7, 1)
    assert info.failure_info is not None and info.failure_info.code == "FailureExitCode"
    task = client.get_task(job_id, "t")
    assert task.state == "active"  # back in line, not run, neither retried nor requeued
    assert task.execution_info is not None
    assert (task.execution_info.retry_count, task.execution_info.requeue_count) == (0, 0)
    assert client.get_node(pool_id, node_id).state == "idle"
    try:
        client.create_task(job_id, m.BatchTaskCreateOptions(id="jobpreparation",
                                                            command_line="/bin/true"))
        raise AssertionError("a task took the preparation task's id")
    except HttpResponseError as error:
        assert (error.status_code, error.error.code) == (409, "TaskIdSameAsJobPreparationTask")
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    _delete_pool(client, pool_id)


# ------------------------------------------------------------------ job manager


def test_job_manager_adds_tasks_with_its_token(client: BatchClient) -> None:
    pool_id = _pool(client, nodes=2, slots=2)
    _nodes(client, pool_id, 2, "idle")
    job_id = _uid("jmj")
    manager = m.BatchJobManagerTask(
        id="manager", command_line=f"{sys.executable} {WORKLOAD} 50",
        kill_job_on_completion=True, run_exclusive=True, required_slots=1,
        allow_low_priority_node=True)
    # 15.1 has no model field for it; the 2025-06-01 wire contract does
    manager["authenticationTokenSettings"] = {"access": ["job"]}
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id=pool_id), job_manager_task=manager))
    listed = list(client.list_tasks(job_id))
    assert listed[0].id == "manager"
    wait_for(lambda: client.get_job(job_id).state == "completed", timeout=120, interval=0.2,
             what="the job manager to finish its job")
    job = client.get_job(job_id)
    assert job.execution_info is not None
    assert job.execution_info.termination_reason == "JMComplete"
    result = json.loads(b"".join(client.download_task_file(job_id, "manager",
                                                           "wd/result.json")))
    assert result == {"added": 50, "completed": 50, "succeeded": 50, "ownJob": 200,
                      "pools": 403, "otherJob": 403, "newJob": 403}, result
    manager_task = client.get_task(job_id, "manager")
    assert manager_task.execution_info is not None
    assert manager_task.execution_info.result == "success"
    work = [t for t in client.list_tasks(job_id) if t.id.startswith("work-")]
    assert len(work) == 50 and all(t.execution_info is not None and
                                   t.execution_info.result == "success" for t in work)
    manager_node = manager_task.node_info.node_id if manager_task.node_info else None
    assert manager_node is not None  # an exclusive manager: no work task shared its node
    assert all(t.node_info is not None and t.node_info.node_id != manager_node for t in work)
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    _delete_pool(client, pool_id)


def test_bearer_tokens_that_are_not_ours_are_refused(server: ServerProcess) -> None:
    answer = httpx.get(f"{server.endpoint}/jobs/x?api-version=2025-06-01",
                       headers={"Authorization": "Bearer not-a-task-token"})
    assert answer.status_code == 401
    assert answer.json()["code"] == "AuthenticationFailed"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
