"""Dask clusters hybatch manages itself: a scheduler process and, per node, one worker (a local
process or a Slurm job). Everything is started detached (own session, output to log files), so
it outlives the service; a restarted service finds the scheduler again through its scheduler
file and its workers by name (a worker's name is its node id).

State lives under ``<state_dir>`` (normally ``<data_dir>/dask/<kind>``): ``scheduler.json``
(Dask's scheduler file), ``scheduler.pid``, ``workers/<node>.pid`` or ``workers/<node>.job``
(a Slurm job id) and the processes' logs.

Imports: standard library, distributed, dask-jobqueue (Slurm only), node.dask_plugin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hybatch.node.dask_protocol import SLOTS_RESOURCE

_log = logging.getLogger(__name__)

SCHEDULER_FILE = "scheduler.json"
SCHEDULER_PID = "scheduler.pid"
WORKERS_DIR = "workers"


class ClusterStartError(RuntimeError):
    """A scheduler or worker could not be started."""


def _spawn_detached(argv: list[str], log_path: Path, env: Mapping[str, str] | None = None
                    ) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env=dict(env) if env is not None else None)


def pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class ManagedScheduler:
    """The scheduler process of one managed cluster."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1") -> None:
        self.state_dir = Path(state_dir)
        self.host = host

    @property
    def scheduler_file(self) -> Path:
        return self.state_dir / SCHEDULER_FILE

    def address(self) -> str | None:
        """The address a running scheduler wrote, if its process is alive."""
        pid = read_pid(self.state_dir / SCHEDULER_PID)
        if pid is None or not pid_alive(pid):
            return None
        try:
            info = json.loads(self.scheduler_file.read_text())
        except (OSError, ValueError):
            return None
        address = info.get("address") if isinstance(info, dict) else None
        return str(address) if address else None

    def start(self, timeout_s: float = 60.0) -> str:
        """Start a scheduler (the previous one is gone) and return its address."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.scheduler_file.unlink()
        process = _spawn_detached(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", self.host,
             "--port", "0", "--no-dashboard", "--scheduler-file", str(self.scheduler_file)],
            self.state_dir / "scheduler.log")
        (self.state_dir / SCHEDULER_PID).write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ClusterStartError(f"the Dask scheduler exited with {process.returncode}; "
                                        f"see {self.state_dir / 'scheduler.log'}")
            address = self.address()
            if address:
                return address
            time.sleep(0.05)
        process.kill()
        raise ClusterStartError("the Dask scheduler did not start in time")

    def stop(self) -> None:
        """Stop the scheduler and every worker this state directory knows (tests, tools)."""
        stop_managed_cluster(self.state_dir)


def worker_argv(scheduler: str, node_id: str, slots: int, memory_gib: float,
                local_directory: Path) -> list[str]:
    """One worker process per node: named after it, one thread per slot, the slots as a
    resource (tasks take their requiredSlots of it), no nanny (a dead worker is a lost node)."""
    return [sys.executable, "-m", "distributed.cli.dask_worker", scheduler,
            "--name", node_id, "--nthreads", str(slots), "--nworkers", "1", "--no-nanny",
            "--resources", f"{SLOTS_RESOURCE}={slots}",
            "--memory-limit", f"{int(memory_gib * 2**30)}",
            "--local-directory", str(local_directory), "--no-dashboard"]


class LocalWorkers:
    """Worker processes on this host, one per node."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def start(self, scheduler: str, node_id: str, slots: int, memory_gib: float) -> int:
        workers = self.state_dir / WORKERS_DIR
        workers.mkdir(parents=True, exist_ok=True)
        process = _spawn_detached(
            worker_argv(scheduler, node_id, slots, memory_gib, workers / node_id),
            workers / f"{node_id}.log")
        (workers / f"{node_id}.pid").write_text(str(process.pid))
        return process.pid

    def pid(self, node_id: str) -> int | None:
        return read_pid(self.state_dir / WORKERS_DIR / f"{node_id}.pid")

    def alive(self, node_id: str) -> bool:
        pid = self.pid(node_id)
        return pid is not None and pid_alive(pid)

    def forget(self, node_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / WORKERS_DIR / f"{node_id}.pid").unlink()


class SlurmWorkers:
    """One Slurm job per node, running one worker; job scripts come from dask-jobqueue's
    ``SLURMJob`` with the size's SLURMCluster settings."""

    def __init__(self, state_dir: Path, settings: Mapping[str, Any]) -> None:
        self.state_dir = Path(state_dir)
        self.settings = dict(settings)

    def job_script(self, scheduler: str, node_id: str, slots: int, memory_gib: float) -> str:
        """Written by dask-jobqueue in a child interpreter: importing dask_jobqueue installs a
        SIGINT handler, which only a main thread may do (and the service must not get)."""
        request = json.dumps({"scheduler": scheduler, "nodeId": node_id, "slots": slots,
                              "memoryGiB": memory_gib, "settings": self.settings,
                              "logDirectory": str(self.state_dir / WORKERS_DIR)})
        done = subprocess.run([sys.executable, "-m", "hybatch.backends.dask_cluster",
                               "slurm-job-script"], input=request, capture_output=True,
                              text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ClusterStartError(f"could not write the Slurm job script: {done.stderr}")
        return done.stdout

    def start(self, scheduler: str, node_id: str, slots: int, memory_gib: float) -> str:
        workers = self.state_dir / WORKERS_DIR
        workers.mkdir(parents=True, exist_ok=True)
        path = workers / f"{node_id}.sh"
        path.write_text(self.job_script(scheduler, node_id, slots, memory_gib))
        done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise ClusterStartError(f"sbatch failed: {done.stderr.strip() or done.stdout}")
        match = re.match(r"^(\d+)", done.stdout.strip())
        if match is None:
            raise ClusterStartError(f"sbatch answered no job id: {done.stdout!r}")
        (workers / f"{node_id}.job").write_text(match.group(1))
        return match.group(1)

    def cancel(self, node_id: str) -> None:
        path = self.state_dir / WORKERS_DIR / f"{node_id}.job"
        job = read_pid(path)
        if job is not None:
            subprocess.run(["scancel", str(job)], capture_output=True, timeout=60, check=False)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _slurm_job_script(request: dict[str, Any]) -> str:
    from dask_jobqueue import slurm

    job_class: Any = slurm.SLURMJob
    settings = dict(request["settings"])
    slots = int(request["slots"])
    node_id = str(request["nodeId"])
    extra = list(settings.pop("worker_extra_args", []))
    extra += ["--resources", f"{SLOTS_RESOURCE}={slots}"]
    settings.setdefault("python", sys.executable)
    settings.setdefault("walltime", "24:00:00")
    settings.setdefault("log_directory", request["logDirectory"])
    job = job_class(scheduler=request["scheduler"], name=node_id, cores=slots, processes=1,
                    memory=f"{request['memoryGiB']}GiB", nanny=False,
                    job_name=f"hybatch-{node_id}", worker_extra_args=extra, **settings)
    script: str = job.job_script()
    return script


def stop_managed_cluster(state_dir: Path, timeout_s: float = 10.0) -> None:
    """Terminate a managed cluster's scheduler and local workers, and cancel its Slurm jobs
    (nodes do not survive this: for tests and ``hybatch`` tooling)."""
    state_dir = Path(state_dir)
    pids: list[int] = []
    workers = state_dir / WORKERS_DIR
    if workers.is_dir():
        for path in workers.glob("*.pid"):
            pid = read_pid(path)
            if pid is not None:
                pids.append(pid)
        for path in workers.glob("*.job"):
            job = read_pid(path)
            if job is not None:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(["scancel", str(job)], capture_output=True, timeout=30,
                                   check=False)
    scheduler = read_pid(state_dir / SCHEDULER_PID)
    if scheduler is not None:
        pids.append(scheduler)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)  # started in their own sessions
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    if sys.argv[1:] == ["slurm-job-script"]:
        sys.stdout.write(_slurm_job_script(json.loads(sys.stdin.read())))
    else:
        sys.exit("usage: python -m hybatch.backends.dask_cluster slurm-job-script < request")
