"""A pool on the Dask cluster hybatch manages itself (vmSize ``dask_local``): the pool's
resize starts one worker process per node; a worker killed mid-task loses its node and the
task is requeued (requeueCount, not retryCount) and completes on the other node; a server
killed with SIGKILL comes back, reconnects to the scheduler and workers that outlived it, and
runs tasks there again; terminating a task kills its process on the worker; removing the pool
stops its workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from hybatch.backends.dask_cluster import pid_alive, read_pid, stop_managed_cluster
from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

POOL = "managed"
JOB = "loss"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("dask-managed") / "data"
    yield data
    stop_managed_cluster(data / "dask" / "local")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(data_dir).start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


def _client(server: ServerProcess) -> BatchClient:
    return BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))


def _worker_pid(data_dir: Path, node_id: str) -> int:
    pid = read_pid(data_dir / "dask" / "local" / "workers" / f"{node_id}.pid")
    assert pid is not None, f"no worker process recorded for {node_id}"
    return pid


def _idle_nodes(client: BatchClient, count: int) -> list[m.BatchNode] | None:
    nodes = list(client.list_nodes(POOL))
    if len(nodes) == count and all(n.state == "idle" for n in nodes):
        return nodes
    return None


def test_resize_starts_a_worker_per_node(server: ServerProcess, data_dir: Path) -> None:
    client = _client(server)
    client.create_pool(m.BatchPoolCreateOptions(id=POOL, vm_size="dask_local",
                                                target_dedicated_nodes=2,
                                                task_slots_per_node=1))
    nodes = wait_for(lambda: _idle_nodes(client, 2), timeout=180, what="2 idle Dask nodes")
    for node in nodes:
        assert pid_alive(_worker_pid(data_dir, node.id))
    assert client.get_pool(POOL).allocation_state == "steady"


def test_worker_killed_mid_task_requeues_it_elsewhere(server: ServerProcess, data_dir: Path,
                                                      tmp_path: Path) -> None:
    client = _client(server)
    mark, pid_file = tmp_path / "first-attempt", tmp_path / "first-attempt.pid"
    client.create_job(m.BatchJobCreateOptions(id=JOB, pool_info=m.BatchPoolInfo(pool_id=POOL)))
    # the first attempt records itself and blocks; the requeued one finds the mark and ends
    client.create_task(JOB, m.BatchTaskCreateOptions(
        id="victim", command_line=f"/bin/sh -c 'test -e {mark} && exit 0; echo $$ > {pid_file};"
                                  f" touch {mark}; exec sleep 600'"))
    running = wait_for(lambda: (t := client.get_task(JOB, "victim")).state == "running"
                       and mark.exists() and t, timeout=60, what="the first attempt running")
    lost_node = running.node_info.node_id
    try:
        os.kill(_worker_pid(data_dir, lost_node), signal.SIGKILL)
        done = wait_for(lambda: (t := client.get_task(JOB, "victim")).state == "completed"
                        and t, timeout=90, what="the requeued task completed")
    finally:
        with contextlib.suppress(ProcessLookupError, OSError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the orphaned first attempt
    info = done.execution_info
    assert (info.exit_code, info.result) == (0, "success")
    assert info.requeue_count == 1 and info.retry_count == 0
    assert done.node_info.node_id != lost_node
    node = client.get_node(POOL, lost_node)
    assert node.state == "unusable"
    assert node.errors and node.errors[0].code == "NodeLost"


def test_server_killed_reconnects_to_its_cluster(server: ServerProcess, data_dir: Path) -> None:
    client = _client(server)
    survivor = next(n.id for n in client.list_nodes(POOL) if n.state == "idle")
    worker = _worker_pid(data_dir, survivor)
    server.stop(signal.SIGKILL)
    server.start()
    client = _client(server)
    client.create_task(JOB, m.BatchTaskCreateOptions(id="after", command_line="/bin/echo back"))
    task = wait_for(lambda: (t := client.get_task(JOB, "after")).state == "completed" and t,
                    timeout=90, what="a task after the restart")
    assert task.node_info.node_id == survivor and task.execution_info.exit_code == 0
    assert b"".join(client.download_task_file(JOB, "after", "stdout.txt")) == b"back\n"
    assert _worker_pid(data_dir, survivor) == worker and pid_alive(worker)  # same process


def test_terminating_a_running_task_kills_it_on_the_worker(server: ServerProcess) -> None:
    client = _client(server)
    client.create_task(JOB, m.BatchTaskCreateOptions(id="long", command_line="/bin/sleep 600"))
    wait_for(lambda: client.get_task(JOB, "long").state == "running", timeout=60,
             what="the long task running")
    client.terminate_task(JOB, "long")
    task = wait_for(lambda: (t := client.get_task(JOB, "long")).state == "completed" and t,
                    timeout=60, what="the terminated task completed")
    assert task.execution_info.result == "failure"


def test_deleting_the_pool_stops_its_workers(server: ServerProcess, data_dir: Path) -> None:
    client = _client(server)
    nodes = [n.id for n in client.list_nodes(POOL)]
    pids = [read_pid(data_dir / "dask" / "local" / "workers" / f"{n}.pid") for n in nodes]
    client.begin_delete_job(JOB, polling_interval=0.2).result()
    client.begin_delete_pool(POOL, polling_interval=0.2).result()
    wait_for(lambda: not any(p is not None and pid_alive(p) for p in pids), timeout=60,
             what="the pool's worker processes gone")
