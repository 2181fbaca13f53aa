"""A pool whose VM size runs on Slurm (dask-jobqueue's SLURM job script): each node is a
Slurm job running one Dask worker, on a one-machine Slurm cluster (munge, slurmctld and
slurmd started by ``scripts/slurm_single_node.sh``, which installs them if missing)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from hybatch.backends.dask_cluster import stop_managed_cluster
from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm_single_node.sh"
ANCESTRY = ("/bin/sh -c 'p=$PPID; while [ \"$p\" -gt 1 ]; do cat /proc/$p/comm; "
            "p=$(cut -d\" \" -f4 /proc/$p/stat); done'")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(SCRIPT), "start", str(state)], capture_output=True,
                             text=True, timeout=600, check=False)
    assert started.returncode == 0, started.stderr + started.stdout
    conf = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # the server (a child) calls sbatch with it
    try:
        yield conf
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        subprocess.run([str(SCRIPT), "stop", str(state)], timeout=120, check=False)


@pytest.fixture(scope="module")
def server(slurm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("slurm-server")
    sizes = base / "sizes.toml"
    sizes.write_text('''
[sizes.dask_slurm]
backend = "dask"
cluster = "slurm"
cores = 1
slots = 1
memoryGiB = 1
[sizes.dask_slurm.slurm]
queue = "debug"
walltime = "00:30:00"
''')
    proc = ServerProcess(base / "data", vm_sizes=sizes).start()
    yield proc
    proc.stop()
    stop_managed_cluster(base / "data" / "dask" / "slurm")


def _jobs(conf: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True,
                         env={**os.environ, "SLURM_CONF": conf}, check=True, timeout=30)
    return [line for line in out.stdout.split() if line.startswith("hybatch-")]


def test_pool_on_slurm_runs_tasks(server: ServerProcess, slurm: str) -> None:
    client = BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    client.create_pool(m.BatchPoolCreateOptions(id="hpc", vm_size="dask_slurm",
                                                target_dedicated_nodes=1))
    def idle() -> m.BatchNode | None:
        nodes = list(client.list_nodes("hpc"))
        if nodes and nodes[0].state == "unusable":
            raise AssertionError(f"the Slurm node failed: {nodes[0].errors}")
        return nodes[0] if nodes and nodes[0].state == "idle" else None

    node = wait_for(idle, timeout=240, what="a node from a Slurm job")
    assert _jobs(slurm) == [f"hybatch-{node.id}"]
    client.create_job(m.BatchJobCreateOptions(id="hpc-job",
                                              pool_info=m.BatchPoolInfo(pool_id="hpc")))
    client.create_tasks("hpc-job", [
        m.BatchTaskCreateOptions(id="hello", command_line=ANCESTRY),
        m.BatchTaskCreateOptions(id="fails", command_line="/bin/sh -c 'exit 7'")])
    wait_for(lambda: client.get_job_task_counts("hpc-job").task_counts.completed == 2,
             timeout=120, what="both tasks completed")
    out = b"".join(client.download_task_file("hpc-job", "hello", "stdout.txt")).decode()
    assert "slurmstepd" in out.split(), out  # ran inside the Slurm job
    assert client.get_task("hpc-job", "fails").execution_info.exit_code == 7
    client.begin_delete_pool("hpc", polling_interval=0.2).result()
    wait_for(lambda: _jobs(slurm) == [], timeout=120, what="the Slurm job ended")
