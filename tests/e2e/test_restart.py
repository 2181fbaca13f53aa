"""SIGTERM the server in the middle of a job and start it again on the same data directory:
every pool, job and task is still there, and the unfinished tasks complete."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

TASKS = 16


def test_sigterm_mid_job_then_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    client = BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    client.create_pool(m.BatchPoolCreateOptions(id="restart-pool", vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=1,
                                                task_slots_per_node=2))
    wait_for(lambda: [n for n in client.list_nodes("restart-pool") if n.state == "idle"],
             what="an idle node")
    client.create_job(m.BatchJobCreateOptions(id="restart-job", pool_info=m.BatchPoolInfo(
        pool_id="restart-pool")))
    # each task records its id in the node's shared directory when (and only when) it ends
    script = "sleep 0.4; echo $AZ_BATCH_TASK_ID >> $AZ_BATCH_NODE_SHARED_DIR/finished.txt"
    client.create_tasks("restart-job", [
        m.BatchTaskCreateOptions(id=f"t{i:02d}", command_line=f"/bin/sh -c '{script}'")
        for i in range(TASKS)])
    wait_for(lambda: client.get_job_task_counts("restart-job").task_counts.completed >= 2,
             what="a few tasks completed")

    assert server.stop(signal.SIGTERM) == 0
    server.start()

    assert [p.id for p in client.list_pools()] == ["restart-pool"]
    assert [j.id for j in client.list_jobs()] == ["restart-job"]
    assert sorted(t.id for t in client.list_tasks("restart-job")) == [
        f"t{i:02d}" for i in range(TASKS)]
    wait_for(lambda: client.get_job_task_counts("restart-job").task_counts.completed == TASKS,
             timeout=60, what="all tasks completed after the restart")
    counts = client.get_job_task_counts("restart-job").task_counts
    assert counts.succeeded == TASKS and counts.failed == 0

    node = next(iter(client.list_nodes("restart-pool")))
    shared = b"".join(client.download_node_file("restart-pool", node.id,
                                                "shared/finished.txt")).decode()
    runs = Counter(shared.split())
    assert set(runs) == {f"t{i:02d}" for i in range(TASKS)}
    assert max(runs.values()) == 1, runs  # no completed task ran twice
    server.stop()
