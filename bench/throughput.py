"""End-to-end throughput and latency of hybatch through the Azure Batch REST API.

One run measures, on this host:

1. the raw spawn peer: ``ThreadPoolExecutor(2)`` running ``subprocess.run(['/bin/true'])``
   N times, before the service starts and again after it stops;
2. hybatch: a real ``hybatch serve`` process, a pool of one node with 2 task slots, N
   ``/bin/true`` tasks submitted with the official SDK's ``create_tasks``, timed from just
   before submission until ``get_job_task_counts`` shows all N completed;
3. submit-to-start latency on an idle pool: M single tasks, one at a time, each waited for
   before the next, from the client's clock just before ``create_task`` to the server's
   ``executionInfo.startTime`` and to a stamp the task process prints itself.

Writes JSON to ``--out`` and prints it. Timings are reported, never asserted.
See ``bench/README.md`` for what each number means.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

T = TypeVar("T")

SLOTS = 2
"""Task slots on the pool's single node, and threads in the peer: the same parallelism."""
TASK_COMMAND = "/bin/true"
STAMP_COMMAND = "/bin/date +%s%N"
"""Run without a shell (Batch splits a command line, it does not interpret it): the task
process is ``date`` itself, so the stamp is its start plus ``date``'s own startup, which
``local_exec_to_stamp_ms`` bounds from above."""
ACCOUNT = "benchacct"
API_VERSION = "2025-06-01"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "throughput.json"
CLOCK_NOTE = (
    "client, server and task run on this host and read the same CLOCK_REALTIME: the client "
    "via time.time_ns(), the server via datetime.now(UTC) (microsecond resolution), the task "
    "via date +%s%N"
)

LATENCY_DEFINITIONS = {
    "submit_to_server_start_ms": "client clock just before create_task -> the task's "
    "executionInfo.startTime (set by the server's writer when it places the task)",
    "submit_to_process_stamp_ms": "client clock just before create_task -> the stamp the "
    "task process printed (the process is running)",
    "server_start_to_process_stamp_ms": "executionInfo.startTime -> the process stamp",
    "create_task_call_ms": "round trip of the create_task call as the client saw it",
    "local_exec_to_stamp_ms": "this client spawning the same command itself: clock just "
    "before subprocess.run -> the stamp (the floor for exec plus date's startup)",
}


# ---------------------------------------------------------------------------- helpers


def wait_until(check: Callable[[], T | None], timeout: float, interval: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def summary_ms(values_ns: list[int]) -> dict[str, float]:
    """p50/p99 (linear interpolation between closest ranks), min, max, mean; in ms."""
    ordered = sorted(values_ns)

    def quantile(q: float) -> float:
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return {
        "p50": round(quantile(0.50) / 1e6, 3),
        "p99": round(quantile(0.99) / 1e6, 3),
        "min": round(ordered[0] / 1e6, 3),
        "max": round(ordered[-1] / 1e6, 3),
        "mean": round(statistics.fmean(ordered) / 1e6, 3),
    }


def epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exact for a microsecond-resolution datetime."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def utc_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------- the peer


def raw_spawn_rate(n: int, slots: int) -> float:
    """Tasks per second of a plain thread pool spawning ``/bin/true`` itself."""
    with ThreadPoolExecutor(slots) as pool:
        started = time.perf_counter()
        for _ in pool.map(lambda _: subprocess.run([TASK_COMMAND], check=False), range(n)):
            pass
        return n / (time.perf_counter() - started)


def local_stamp_delays(samples: int) -> list[int]:
    """What exec plus ``date`` startup alone costs: client clock before Popen to the stamp."""
    delays: list[int] = []
    for _ in range(samples):
        before = time.time_ns()
        out = subprocess.run(STAMP_COMMAND.split(), capture_output=True, check=True).stdout
        delays.append(int(out) - before)
    return delays


# ---------------------------------------------------------------------------- the service


class Service:
    """A ``hybatch serve`` subprocess on a free port with its own data directory and key."""

    def __init__(self, root: Path, node_root: Path | None = None) -> None:
        self.data_dir = root / "data"
        self.node_root = node_root
        self.log_path = root / "server.log"
        self.key = base64.b64encode(os.urandom(32)).decode()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> BatchClient:
        return BatchClient(self.endpoint, AzureNamedKeyCredential(ACCOUNT, self.key))

    def __enter__(self) -> Service:
        env = dict(os.environ, HYBATCH_ACCOUNT_NAME=ACCOUNT, HYBATCH_ACCOUNT_KEY=self.key)
        cmd = [
            sys.executable,
            "-m",
            "hybatch.cli.main",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if self.node_root is not None:
            cmd += ["--node-root", str(self.node_root)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._ready, timeout=60, interval=0.05, what=f"server on {self.endpoint}")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is not None:
            print(f"--- server log tail ({self.log_path}) ---", file=sys.stderr)
            print(self.log_tail(), file=sys.stderr)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            # unauthenticated: any Batch-shaped answer (401) means it is up
            response = httpx.get(f"{self.endpoint}/pools?api-version={API_VERSION}", timeout=1)
        except httpx.HTTPError:
            return False
        return response.status_code in (200, 401)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children) CPU seconds of a process, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


class CpuSplit:
    """Where the CPU went during the timed phase: this client, the server, the node agent
    (the server's child processes) and the task processes the agent reaped."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.agent_pids = child_pids(server_pid)
        self.start = self._sample()
        self.start_threads = self._threads()

    def _threads(self) -> dict[str, float]:
        out: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{self.server_pid}/task").iterdir():
            stat = (task / "stat").read_text()
            name = "main" if task.name == str(self.server_pid) else f"tid{task.name}"
            fields = stat.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return out

    def _sample(self) -> dict[str, float]:
        own, _ = cpu_seconds(self.server_pid)
        agents = [cpu_seconds(p) for p in self.agent_pids]
        times = os.times()
        return {
            "benchmark_client": times.user + times.system,
            "server_process": own,
            "node_agent": sum(a[0] for a in agents),
            "task_processes": sum(a[1] for a in agents),
        }

    def cores_since_start(self, elapsed: float) -> dict[str, Any]:
        end = self._sample()
        threads = self._threads()
        out: dict[str, Any] = {k: round((end[k] - self.start[k]) / elapsed, 3) for k in end}
        out["server_threads"] = {
            k: round((v - self.start_threads.get(k, 0.0)) / elapsed, 3) for k, v in threads.items()
        }
        return out


class PySpy:
    """Optional: ``py-spy record`` on the server for the duration of a ``with`` block."""

    def __init__(self, pid: int, out: Path | None) -> None:
        self.pid = pid
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            fmt = "speedscope" if self.out.suffix == ".json" else "raw"
            self.proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(self.pid),
                    "--threads",
                    "--subprocesses",
                    "--gil",
                    "--rate",
                    "200",
                    "--format",
                    fmt,
                    "--output",
                    str(self.out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # let it attach before the timed work starts
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------- phases


def create_pool(client: BatchClient, pool_id: str, slots: int, timeout: float) -> float:
    """Create the one-node pool; return seconds until its node is idle."""
    started = time.perf_counter()
    client.create_pool(
        m.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v3",
            target_dedicated_nodes=1,
            task_slots_per_node=slots,
        )
    )

    def idle() -> bool:
        nodes = list(client.list_nodes(pool_id))
        return len(nodes) == 1 and nodes[0].state == m.BatchNodeState.IDLE

    wait_until(idle, timeout=timeout, interval=0.02, what=f"pool {pool_id} to be idle")
    return time.perf_counter() - started


def create_job(client: BatchClient, job_id: str, pool_id: str) -> None:
    pool_info = m.BatchPoolInfo(pool_id=pool_id)
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=pool_info))


def measure_throughput(
    client: BatchClient,
    job_id: str,
    pool_id: str,
    n: int,
    poll_interval: float,
    timeout: float,
    concurrency: int | None,
    server_pid: int,
) -> dict[str, Any]:
    create_job(client, job_id, pool_id)
    cpu = CpuSplit(server_pid)
    tasks = [m.BatchTaskCreateOptions(id=f"t{i:06d}", command_line=TASK_COMMAND) for i in range(n)]
    polls = 0
    wall_start = time.time_ns()
    started = time.perf_counter()
    result = client.create_tasks(job_id, tasks, max_concurrency=concurrency)
    submitted = time.perf_counter()
    deadline = submitted + timeout
    while True:
        counts = client.get_job_task_counts(job_id).task_counts
        polls += 1
        if counts.completed >= n:
            break
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{counts.completed}/{n} tasks completed after {timeout}s")
        time.sleep(poll_interval)
    finished = time.perf_counter()
    wall_finished = time.time_ns()
    cpu_cores = cpu.cores_since_start(finished - started)
    not_added = [
        r.task_id for r in result.result_values or [] if r.status != m.BatchTaskAddStatus.SUCCESS
    ]
    if not_added:
        raise RuntimeError(f"{len(not_added)} tasks were not added, e.g. {not_added[:3]}")
    elapsed = finished - started

    # Untimed: the server's own view of when the tasks ran.
    starts: list[int] = []
    ends: list[int] = []
    for task in client.list_tasks(job_id, select=["id", "executionInfo"]):
        info = task.execution_info
        if info is not None and info.start_time is not None and info.end_time is not None:
            starts.append(epoch_ns(info.start_time))
            ends.append(epoch_ns(info.end_time))
    server: dict[str, Any] = {}
    if starts:
        span_ns = max(ends) - min(starts)
        runs = [e - s for s, e in zip(starts, ends, strict=True)]
        server = {
            "first_start_after_submit_ms": round((min(starts) - wall_start) / 1e6, 3),
            "first_start_to_last_end_s": round(span_ns / 1e9, 4),
            "tasks_per_s": round(len(starts) / (span_ns / 1e9), 1) if span_ns > 0 else None,
            "task_run_ms": summary_ms(runs),
            "slot_occupancy": round(sum(runs) / (SLOTS * span_ns), 3) if span_ns > 0 else None,
            "last_end_to_client_saw_all_ms": round((wall_finished - max(ends)) / 1e6, 3),
        }
    return {
        "tasks": n,
        "tasks_per_s": round(n / elapsed, 1),
        "elapsed_s": round(elapsed, 4),
        "submit_s": round(submitted - started, 4),
        "submit_tasks_per_s": round(n / (submitted - started), 1),
        "submit_max_concurrency": concurrency,
        "cpu_cores": cpu_cores,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "count_polls": polls,
        "poll_interval_s": poll_interval,
        "server_view": server,
    }


def measure_latency(
    client: BatchClient,
    job_id: str,
    pool_id: str,
    samples: int,
    poll_interval: float,
    timeout: float,
) -> dict[str, Any]:
    create_job(client, job_id, pool_id)
    to_server_start: list[int] = []
    to_process: list[int] = []
    server_to_process: list[int] = []
    create_call: list[int] = []
    for i in range(samples + 1):  # sample 0 warms up the new job's paths and is not kept
        task_id = f"lat{i:04d}"
        options = m.BatchTaskCreateOptions(id=task_id, command_line=STAMP_COMMAND)
        submit = time.time_ns()
        client.create_task(job_id, options)
        created = time.time_ns()

        def completed(task_id: str = task_id) -> m.BatchTask | None:
            task = client.get_task(job_id, task_id, select=["state", "executionInfo"])
            return task if task.state == m.BatchTaskState.COMPLETED else None

        task = wait_until(
            completed, timeout=timeout, interval=poll_interval, what=f"task {task_id} to complete"
        )
        info = task.execution_info
        if info is None or info.start_time is None or info.exit_code != 0:
            raise RuntimeError(f"task {task_id} did not run cleanly: {info}")
        stamp = int(b"".join(client.download_task_file(job_id, task_id, "stdout.txt")))
        if i == 0:
            continue
        server_start = epoch_ns(info.start_time)
        to_server_start.append(server_start - submit)
        to_process.append(stamp - submit)
        server_to_process.append(stamp - server_start)
        create_call.append(created - submit)
    return {
        "samples": samples,
        "warmup_samples_discarded": 1,
        "stamp_command": STAMP_COMMAND,
        "clock": CLOCK_NOTE,
        "definitions": LATENCY_DEFINITIONS,
        "submit_to_server_start_ms": summary_ms(to_server_start),
        "submit_to_process_stamp_ms": summary_ms(to_process),
        "server_start_to_process_stamp_ms": summary_ms(server_to_process),
        "create_task_call_ms": summary_ms(create_call),
    }


def delete_all(client: BatchClient, pool_id: str, job_ids: list[str]) -> None:
    for job_id in job_ids:
        try:
            client.begin_delete_job(job_id, polling_interval=0.05).result()  # type: ignore[arg-type]
        except Exception as error:  # cleanup must not hide the results
            print(f"warning: could not delete job {job_id}: {error}", file=sys.stderr)
    try:
        client.begin_delete_pool(pool_id, polling_interval=0.05).result()  # type: ignore[arg-type]
    except Exception as error:
        print(f"warning: could not delete pool {pool_id}: {error}", file=sys.stderr)


# ---------------------------------------------------------------------------- main


def filesystem_of(path: Path) -> dict[str, str] | None:
    """The mount (from /proc/mounts) holding ``path``: task directories are created there."""
    best: dict[str, str] | None = None
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    resolved = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) > len(best["mount"])):
            best = {"path": resolved, "mount": mount, "type": fields[2]}
    return best


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "hybatch": package_version("hybatch"),
        "azure_batch": package_version("azure-batch"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started_at = utc_iso()
    info = machine_info()
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(now - mark, 3)
        mark = now

    peer_before = raw_spawn_rate(args.tasks, SLOTS)
    local_stamps = local_stamp_delays(args.latency_samples)
    phase("raw_spawn_and_local_stamps")
    tmp = tempfile.TemporaryDirectory(
        prefix="hybatch-bench-", dir=args.data_root, ignore_cleanup_errors=True
    )
    info["data_dir_filesystem"] = filesystem_of(Path(tmp.name))
    node_root = None
    if args.node_root is not None:
        node_root = Path(tempfile.mkdtemp(prefix="hybatch-bench-nodes-", dir=args.node_root))
        info["node_root_filesystem"] = filesystem_of(node_root)
    with tmp, Service(Path(tmp.name), node_root) as service:
        assert service.proc is not None
        phase("server_start")
        client = service.client()
        pool_id, job_ids = "bench-pool", ["bench-throughput", "bench-latency"]
        try:
            pool_ready_s = create_pool(client, pool_id, SLOTS, args.timeout)
            with PySpy(service.proc.pid, args.py_spy):
                throughput = measure_throughput(
                    client,
                    job_ids[0],
                    pool_id,
                    args.tasks,
                    args.poll_interval,
                    args.timeout,
                    args.submit_concurrency,
                    service.proc.pid,
                )
            phase("pool_and_throughput")
            latency = measure_latency(
                client, job_ids[1], pool_id, args.latency_samples, args.poll_interval, args.timeout
            )
            phase("latency")
        finally:
            delete_all(client, pool_id, job_ids)
            client.close()
    phase("cleanup_and_server_stop")
    peer_after = raw_spawn_rate(args.tasks, SLOTS)
    phase("raw_spawn_after")
    peer = statistics.fmean([peer_before, peer_after])
    return {
        "benchmark": "throughput",
        "started_at": started_at,
        "finished_at": utc_iso(),
        "N": args.tasks,
        "M": args.latency_samples,
        "slots": SLOTS,
        "machine": {**info, "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "phase_s": phases,
        "raw_spawn": {
            "what": f"ThreadPoolExecutor({SLOTS}) running subprocess.run(['{TASK_COMMAND}'])",
            "tasks_per_s": round(peer, 1),
            "runs_tasks_per_s": {
                "before_service": round(peer_before, 1),
                "after_service": round(peer_after, 1),
            },
        },
        "hybatch": {"pool_ready_s": round(pool_ready_s, 3), **throughput},
        "ratio_hybatch_to_raw_spawn": round(throughput["tasks_per_s"] / peer, 4),
        "latency_idle_pool": {
            **latency,
            "local_exec_to_stamp_ms": summary_ms(local_stamps),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=1000,
        metavar="N",
        help="tasks for the throughput phases (default 1000)",
    )
    parser.add_argument(
        "--latency-samples",
        type=int,
        default=50,
        metavar="M",
        help="one-at-a-time tasks for the latency phase (default 50)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write the JSON (default bench/results/throughput.json)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        metavar="S",
        help="client polling interval in seconds (default 0.05)",
    )
    parser.add_argument(
        "--submit-concurrency",
        type=int,
        default=None,
        metavar="K",
        help="create_tasks max_concurrency (default: sequential requests)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="deadline for each wait (default 120)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the server's temporary data directory goes (default: the system temp "
        "directory); task directories are created there, so its filesystem matters",
    )
    parser.add_argument(
        "--node-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="put the local nodes' directories (task dirs, stdout/stderr) under DIR, e.g. a "
        "tmpfs such as /dev/shm (default: inside the data directory)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="FILE",
        help="record the server with py-spy during the throughput phase "
        "(speedscope if FILE ends in .json, else collapsed stacks)",
    )
    args = parser.parse_args()
    if args.tasks < 1 or args.latency_samples < 1:
        parser.error("--tasks and --latency-samples must be at least 1")
    report = run(args)
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
