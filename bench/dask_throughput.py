"""Throughput of hybatch's Dask backend through the REST API against plain Dask, same run.

1. plain Dask (the peer): a scheduler process and one worker process with 2 threads (the
   same command line hybatch uses for a node of its managed cluster), and
   ``client.map(run_true, range(N))``: each Dask task runs ``subprocess.run(['/bin/true'])``;
   timed from just before ``map`` until ``gather`` has every exit code. Measured before and
   after the hybatch phase.
2. hybatch: a real ``hybatch serve`` process, a pool of one node of VM size ``dask_local``
   (one worker of the cluster hybatch starts itself, 2 task slots = 2 threads), N
   ``/bin/true`` tasks submitted with the official SDK's ``create_tasks``, timed from just
   before submission until ``get_job_task_counts`` shows all N completed (polling every
   ``--poll-interval``). Each hybatch task also gets a task directory, stdout/stderr files and
   an exit record on the worker, which the peer does not.

Writes JSON to ``--out`` and prints it. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from hybatch.backends.dask_cluster import (
    LocalWorkers,
    ManagedScheduler,
    stop_managed_cluster,
)

T = TypeVar("T")
SLOTS = 2
ACCOUNT = "benchacct"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "dask_throughput.json"


def wait_until(check: Callable[[], T | None], timeout: float, interval: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def run_true(_: int) -> int:
    return subprocess.run(["/bin/true"], check=False).returncode


def plain_dask(tasks: int, workdir: Path) -> dict[str, Any]:
    """The peer: one worker of 2 threads, client.map of subprocess.run."""
    from distributed import Client

    state = workdir / f"peer-{uuid.uuid4().hex[:6]}"
    try:
        address = ManagedScheduler(state).start()
        LocalWorkers(state).start(address, "peer", SLOTS, 4.0)
        with Client(address, timeout=60, set_as_default=False) as client:
            wait_until(lambda: client.scheduler_info(n_workers=-1)["workers"], 120, 0.1,
                       "the peer's worker")
            client.gather(client.map(run_true, range(20), pure=False))  # warm-up
            start = time.perf_counter()
            futures = client.map(run_true, range(1000, 1000 + tasks), pure=False)
            codes = client.gather(futures)  # every exit code back in the client
            elapsed = time.perf_counter() - start
        assert all(code == 0 for code in codes)
        return {"tasks": tasks, "elapsed_s": round(elapsed, 3),
                "tasks_per_s": round(tasks / elapsed, 1)}
    finally:
        stop_managed_cluster(state)


def hybatch_run(tasks: int, workdir: Path, poll: float, timeout: float) -> dict[str, Any]:
    data = workdir / "hybatch-data"
    key = base64.b64encode(os.urandom(32)).decode()
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, HYBATCH_ACCOUNT_NAME=ACCOUNT, HYBATCH_ACCOUNT_KEY=key)
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "hybatch.cli.main", "serve", "--port",
                               str(port), "--data-dir", str(data)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    client = BatchClient(f"http://127.0.0.1:{port}", AzureNamedKeyCredential(ACCOUNT, key))
    try:
        def up() -> bool:
            try:
                list(client.list_pools())
                return True
            except Exception:
                return False

        wait_until(up, 120, 0.1, "the server")
        started = time.monotonic()
        client.create_pool(m.BatchPoolCreateOptions(id="bench", vm_size="dask_local",
                                                    target_dedicated_nodes=1,
                                                    task_slots_per_node=SLOTS))
        wait_until(lambda: [n for n in client.list_nodes("bench") if n.state == "idle"],
                   timeout, 0.1, "the Dask node")
        pool_ready = time.monotonic() - started
        client.create_job(m.BatchJobCreateOptions(id="warm",
                                                  pool_info=m.BatchPoolInfo(pool_id="bench")))
        client.create_tasks("warm", [m.BatchTaskCreateOptions(id=f"w{i}",
                                                              command_line="/bin/true")
                                     for i in range(20)])
        wait_until(lambda: client.get_job_task_counts("warm").task_counts.completed == 20,
                   timeout, poll, "warm-up tasks")
        client.create_job(m.BatchJobCreateOptions(id="run",
                                                  pool_info=m.BatchPoolInfo(pool_id="bench")))
        specs = [m.BatchTaskCreateOptions(id=f"t{i:06d}", command_line="/bin/true")
                 for i in range(tasks)]
        polls = 0

        def finished() -> bool:
            nonlocal polls
            polls += 1
            return client.get_job_task_counts("run").task_counts.completed == tasks

        start = time.perf_counter()
        client.create_tasks("run", specs)
        submitted = time.perf_counter() - start
        wait_until(finished, timeout, poll, "all tasks")
        elapsed = time.perf_counter() - start
        listed = list(client.list_tasks("run", select=["id", "executionInfo"]))
        failed = sum(1 for t in listed if t.execution_info.exit_code != 0)
        starts = [t.execution_info.start_time for t in listed]
        ends = [t.execution_info.end_time for t in listed]
        span = (max(ends) - min(starts)).total_seconds()
        return {"tasks": tasks, "elapsed_s": round(elapsed, 3),
                "tasks_per_s": round(tasks / elapsed, 1), "submit_s": round(submitted, 3),
                "count_polls": polls, "failed": failed, "pool_ready_s": round(pool_ready, 1),
                "server_view": {"tasks_per_s": round(tasks / span, 1) if span else None}}
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        stop_managed_cluster(data / "dask" / "local")


def machine() -> dict[str, Any]:
    versions = {}
    for name in ("dask", "distributed", "azure-batch"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "packages": versions,
            "load_1m": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hybatch-dask-bench-"))
    try:
        report: dict[str, Any] = {"benchmark": "dask_throughput",
                                  "when": datetime.now().astimezone().isoformat(),
                                  "machine_at_start": machine()}
        before = plain_dask(args.tasks, workdir)
        ours = hybatch_run(args.tasks, workdir, args.poll_interval, args.timeout)
        after = plain_dask(args.tasks, workdir)
        peer_rate = (before["tasks_per_s"] + after["tasks_per_s"]) / 2
        report.update({
            "plain_dask": {"tasks_per_s": round(peer_rate, 1),
                           "runs_tasks_per_s": [before["tasks_per_s"], after["tasks_per_s"]],
                           "threads": SLOTS},
            "hybatch_dask": ours,
            "ratio_hybatch_to_plain_dask": round(ours["tasks_per_s"] / peer_rate, 3),
            "machine_at_end": machine(),
        })
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
