"""A real MPI hello world from a 2-instance task: MPICH's mpiexec (from PyPI wheels, cached in
.venv-mpi by scripts/mpi_venv.sh) launched by the primary on the hosts of
AZ_BATCH_HOST_LIST, one rank per instance; the program itself comes as a commonResourceFile
from a local HTTP server; every instance runs the coordination command first."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m

from tests.support.server import wait_for

REPO = Path(__file__).resolve().parents[2]
HELLO = """\
from mpi4py import MPI
comm = MPI.COMM_WORLD
print(f"hello from rank {comm.Get_rank()} of {comm.Get_size()}", flush=True)
"""


@pytest.fixture(scope="module")
def mpi_dir() -> Path:
    """The cached MPICH + mpi4py virtualenv (installed on first use, about a second)."""
    done = subprocess.run([str(REPO / "scripts" / "mpi_venv.sh")], check=True,
                          capture_output=True, text=True, timeout=600)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def files_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP server for the task's resource files."""
    root = tmp_path_factory.mktemp("served")
    (root / "hello.py").write_text(HELLO)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_mpi_hello_world_on_two_instances(client: BatchClient, mpi_dir: Path,
                                          files_url: str) -> None:
    pool_id = f"mpi-pool-{uuid.uuid4().hex[:6]}"
    job_id = f"mpi-job-{uuid.uuid4().hex[:6]}"
    client.create_pool(m.BatchPoolCreateOptions(
        id=pool_id, vm_size="standard_d2s_v3", target_dedicated_nodes=2,
        task_slots_per_node=1, enable_inter_node_communication=True))
    wait_for(lambda: len([n for n in client.list_nodes(pool_id) if n.state == "idle"]) == 2,
             what="two idle nodes")
    client.create_job(m.BatchJobCreateOptions(id=job_id,
                                              pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    mpiexec, python = mpi_dir / "bin" / "mpiexec", mpi_dir / "bin" / "python"
    client.create_task(job_id, m.BatchTaskCreateOptions(
        id="hello",
        command_line=(f"/bin/sh -c '{mpiexec} -launcher fork -hosts $AZ_BATCH_HOST_LIST "
                      f"-n 2 {python} $AZ_BATCH_TASK_SHARED_DIR/hello.py'"),
        multi_instance_settings=m.MultiInstanceSettings(
            number_of_instances=2,
            coordination_command_line=(
                "/bin/sh -c 'test -r $AZ_BATCH_TASK_SHARED_DIR/hello.py && echo coordinated "
                "$AZ_BATCH_NODE_ID master=$AZ_BATCH_IS_CURRENT_NODE_MASTER "
                "hosts=$AZ_BATCH_HOST_LIST >&2'"),
            common_resource_files=[m.ResourceFile(http_url=f"{files_url}/hello.py",
                                                  file_path="hello.py")])))
    task = wait_for(lambda: (t := client.get_task(job_id, "hello")).state == "completed"
                    and t, timeout=60, what="the MPI task")
    stdout = b"".join(client.download_task_file(job_id, "hello", "stdout.txt")).decode()
    stderr = b"".join(client.download_task_file(job_id, "hello", "stderr.txt")).decode()
    assert task.execution_info.exit_code == 0, (stdout, stderr)
    assert sorted(stdout.splitlines()) == ["hello from rank 0 of 2", "hello from rank 1 of 2"]
    primary = task.node_info.node_id
    assert (f"coordinated {primary} master=true hosts=127.0.0.1,127.0.0.1"
            in stderr)

    (subtask,) = client.list_subtasks(job_id, "hello")
    assert subtask.id == 1 and subtask.state == "completed"
    assert subtask.exit_code == 0 and subtask.result == "success"
    other = subtask.node_info.node_id
    assert other != primary
    sub_err = b"".join(client.download_node_file(
        pool_id, other, f"workitems/{job_id}/job-1/hello/stderr.txt")).decode()
    assert f"coordinated {other} master=false" in sub_err
    client.begin_delete_job(job_id, polling_interval=0.5).result(timeout=60)
    client.begin_delete_pool(pool_id, polling_interval=0.5).result(timeout=60)
