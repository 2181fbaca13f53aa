"""SIGTERM the server while a node waits for its start task and a job's tasks wait for its
preparation task; start it again: both node tasks run again and the work completes."""

from __future__ import annotations

import signal
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for


def _gated(gate: Path, then: str) -> str:
    return f"/bin/sh -c 'echo run >> runs.txt; while [ ! -e {gate} ]; do sleep 0.02; done; {then}'"


def test_node_tasks_run_again_after_a_restart(tmp_path: Path) -> None:
    start_gate, prep_gate = tmp_path / "start-gate", tmp_path / "prep-gate"
    server = ServerProcess(tmp_path / "data").start()
    client = BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    client.create_pool(m.BatchPoolCreateOptions(
        id="p", vm_size="standard_d2s_v3", target_dedicated_nodes=1,
        start_task=m.BatchStartTask(command_line=_gated(start_gate, "true"))))
    node_id = wait_for(lambda: [n.id for n in client.list_nodes("p")
                                if n.state == "waitingforstarttask"],
                       what="a node waiting for its start task")[0]
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    wait_for(lambda: b"".join(client.download_node_file("p", node_id, "startup/wd/runs.txt"))
             == b"run\nrun\n", what="the start task to run again")
    start_gate.touch()
    wait_for(lambda: client.get_node("p", node_id).state == "idle", what="an idle node")

    client.create_job(m.BatchJobCreateOptions(
        id="j", pool_info=m.BatchPoolInfo(pool_id="p"),
        job_preparation_task=m.BatchJobPreparationTask(command_line=_gated(prep_gate, "true"))))
    client.create_task("j", m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_for(lambda: client.get_task("j", "t").state == "preparing", what="t preparing")
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    runs = "workitems/j/job-1/jobpreparation/wd/runs.txt"
    wait_for(lambda: b"".join(client.download_node_file("p", node_id, runs)) == b"run\nrun\n",
             what="the preparation task to run again")
    prep_gate.touch()
    wait_for(lambda: client.get_task("j", "t").state == "completed", what="t completed")
    task = client.get_task("j", "t")
    assert task.execution_info is not None and task.execution_info.result == "success"
    [status] = list(client.list_job_preparation_and_release_task_status("j"))
    prep = status.job_preparation_task_execution_info
    assert prep is not None and (prep.state, prep.result) == ("completed", "success")
    server.stop()
