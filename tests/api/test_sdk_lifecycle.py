"""The foundation scenario through the official azure-batch 15.1 SDK against a real server:
a 2-node x 2-slot pool, a job with 124 tasks, and everything a user then looks at."""

from __future__ import annotations

import time
import uuid

import pytest
from azure.batch import BatchClient
from azure.batch import models as m

from tests.support.server import ACCOUNT, ServerProcess, wait_for

OK_TASKS = 112
FAILING = 8
TOTAL = OK_TASKS + FAILING + 4  # + env, timeout, stderr, select-check tasks


def _sh(script: str) -> str:
    return f"/bin/sh -c '{script}'"


@pytest.fixture(scope="module")
def scenario(client: BatchClient, server: ServerProcess) -> dict[str, str]:
    """Run the whole job once; tests below inspect the outcome."""
    pool_id = f"pool-{uuid.uuid4().hex[:8]}"
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    client.create_pool(m.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=2, task_slots_per_node=2,
        virtual_machine_configuration=m.VirtualMachineConfiguration(
            image_reference=m.BatchVmImageReference(publisher="canonical",
                                                    offer="0001-com-ubuntu-server-jammy",
                                                    sku="22_04-lts"),
            node_agent_sku_id="batch.node.ubuntu 22.04")))
    wait_for(lambda: (nodes := list(client.list_nodes(pool_id))) and len(nodes) == 2
             and all(n.state == "idle" for n in nodes), what="2 idle nodes")
    client.create_job(m.BatchJobCreateOptions(
        id=job_id, pool_info=m.BatchPoolInfo(pool_id=pool_id),
        common_environment_settings=[m.EnvironmentSetting(name="JOB_LEVEL", value="j")]))
    tasks = [m.BatchTaskCreateOptions(id=f"ok-{i:03d}",
                                      command_line=_sh("echo out-$AZ_BATCH_TASK_ID"))
             for i in range(OK_TASKS)]
    tasks += [m.BatchTaskCreateOptions(
        id=f"fail-{i}", command_line=_sh("echo failing >&2; exit 3"),
        constraints=m.BatchTaskConstraints(max_task_retry_count=1)) for i in range(FAILING)]
    tasks.append(m.BatchTaskCreateOptions(
        id="env", command_line=_sh("env | sort"),
        environment_settings=[m.EnvironmentSetting(name="SWEEP_PARAM", value="42")]))
    tasks.append(m.BatchTaskCreateOptions(
        id="timeout", command_line="/bin/sleep 30",
        constraints=m.BatchTaskConstraints(max_wall_clock_time="PT2S")))
    tasks.append(m.BatchTaskCreateOptions(id="stderr", command_line=_sh("echo to-err >&2")))
    tasks.append(m.BatchTaskCreateOptions(id="pwd", command_line="/bin/pwd"))
    started = time.monotonic()
    result = client.create_tasks(job_id, tasks)
    assert all(r.status == "success" for r in result.result_values), result
    wait_for(lambda: client.get_job_task_counts(job_id).task_counts.completed == TOTAL,
             timeout=120, interval=0.1, what="all tasks completed")
    return {"pool": pool_id, "job": job_id, "elapsed": str(time.monotonic() - started)}


def test_task_counts(client: BatchClient, scenario: dict[str, str]) -> None:
    counts = client.get_job_task_counts(scenario["job"])
    tc = counts.task_counts
    assert (tc.active, tc.running, tc.completed) == (0, 0, TOTAL)
    assert tc.failed == FAILING + 1  # failing tasks + the timed-out one
    assert tc.succeeded == TOTAL - FAILING - 1
    assert counts.task_slot_counts.completed == TOTAL


def test_failing_tasks_retried_once(client: BatchClient, scenario: dict[str, str]) -> None:
    task = client.get_task(scenario["job"], "fail-0")
    info = task.execution_info
    assert task.state == "completed"
    assert info.exit_code == 3
    assert info.retry_count == 1
    assert info.result == "failure"
    assert info.failure_info is not None and info.failure_info.category == "usererror"
    ok = client.get_task(scenario["job"], "ok-000").execution_info
    assert (ok.exit_code, ok.retry_count, ok.result) == (0, 0, "success")


def test_stdout_and_stderr(client: BatchClient, scenario: dict[str, str]) -> None:
    out = b"".join(client.download_task_file(scenario["job"], "ok-007", "stdout.txt"))
    assert out == b"out-ok-007\n"
    err = b"".join(client.download_task_file(scenario["job"], "stderr", "stderr.txt"))
    assert err == b"to-err\n"
    names = {f.name for f in client.list_task_files(scenario["job"], "ok-007")}
    assert {"stdout.txt", "stderr.txt", "wd"} <= names
    props = client.get_task_file_properties(scenario["job"], "ok-007", "stdout.txt")
    assert int(props.content_length) == len(out)
    assert props.is_directory in (False, "false")
    assert props.url.endswith("/files/stdout.txt")
    ranged = b"".join(client.download_task_file(scenario["job"], "ok-007", "stdout.txt",
                                                ocp_range="bytes=4-9"))
    assert ranged == b"ok-007"


def test_environment_variables(client: BatchClient, scenario: dict[str, str],
                               server: ServerProcess) -> None:
    text = b"".join(client.download_task_file(scenario["job"], "env", "stdout.txt")).decode()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    task = client.get_task(scenario["job"], "env")
    node_id = task.node_info.node_id
    assert env["AZ_BATCH_POOL_ID"] == scenario["pool"]
    assert env["AZ_BATCH_JOB_ID"] == scenario["job"]
    assert env["AZ_BATCH_TASK_ID"] == "env"
    assert env["AZ_BATCH_NODE_ID"] == node_id
    assert env["AZ_BATCH_ACCOUNT_NAME"] == ACCOUNT
    assert env["AZ_BATCH_ACCOUNT_URL"].rstrip("/") == server.endpoint
    root = env["AZ_BATCH_NODE_ROOT_DIR"]
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == f"{root}/shared"
    assert env["AZ_BATCH_NODE_STARTUP_DIR"] == f"{root}/startup"
    assert env["AZ_BATCH_TASK_DIR"] == f"{root}/workitems/{scenario['job']}/job-1/env"
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == f"{env['AZ_BATCH_TASK_DIR']}/wd"
    assert env["SWEEP_PARAM"] == "42"
    assert env["JOB_LEVEL"] == "j"
    pwd = b"".join(client.download_task_file(scenario["job"], "pwd", "stdout.txt")).decode()
    assert pwd.strip().endswith(f"/workitems/{scenario['job']}/job-1/pwd/wd")


def test_wall_clock_timeout(client: BatchClient, scenario: dict[str, str]) -> None:
    task = client.get_task(scenario["job"], "timeout")
    info = task.execution_info
    assert task.state == "completed"
    assert info.result == "failure"
    assert info.failure_info is not None
    ran_for = (info.end_time - info.start_time).total_seconds()
    assert 1.5 <= ran_for < 20, ran_for


def test_paging_lists_every_task_once(client: BatchClient, scenario: dict[str, str]) -> None:
    pages = client.list_tasks(scenario["job"], max_results=10).by_page()
    sizes = []
    ids: list[str] = []
    for page in pages:
        batch = [t.id for t in page]
        sizes.append(len(batch))
        ids.extend(batch)
    assert len(ids) == TOTAL == len(set(ids))
    assert all(size == 10 for size in sizes[:-1]) and len(sizes) == -(-TOTAL // 10)


def test_filter_and_select(client: BatchClient, scenario: dict[str, str]) -> None:
    job = scenario["job"]
    failed = {t.id for t in client.list_tasks(job, filter="executionInfo/exitCode eq 3")}
    assert failed == {f"fail-{i}" for i in range(FAILING)}
    ok1 = {t.id for t in client.list_tasks(job, filter="startswith(id,'ok-01')")}
    assert ok1 == {f"ok-{i:03d}" for i in range(10, 20)}
    both = {t.id for t in client.list_tasks(
        job, filter="state eq 'completed' and executionInfo/exitCode ne 0")}
    assert failed <= both and "ok-000" not in both
    selected = list(client.list_tasks(job, select=["id", "state"], filter="id eq 'ok-005'"))
    assert len(selected) == 1
    assert selected[0].id == "ok-005" and selected[0].state == "completed"
    assert selected[0].command_line is None and selected[0].execution_info is None


def test_delete_job_and_pool_with_pollers(client: BatchClient,
                                          scenario: dict[str, str]) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    client.begin_delete_job(scenario["job"], polling_interval=0.2).result()
    with pytest.raises(ResourceNotFoundError) as job_gone:
        client.get_job(scenario["job"])
    assert job_gone.value.error.code == "JobNotFound"
    client.begin_delete_pool(scenario["pool"], polling_interval=0.2).result()
    with pytest.raises(ResourceNotFoundError) as pool_gone:
        client.get_pool(scenario["pool"])
    assert pool_gone.value.error.code == "PoolNotFound"
