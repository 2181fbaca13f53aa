"""Dask workers as separate hosts on this machine, for tests (needs root and iproute2).

Each worker runs in its own network namespace, joined to a bridge in the test's namespace by
a veth pair, and reaches the scheduler (listening on the bridge's address) over that link.
It also runs in its own mount namespace with a private tmpfs over the node root, so its node
files exist only for it: the service can reach them only through the worker. Addresses are a
free 10.x.y.0/24 picked per run; names carry a random tag, so parallel runs do not collide.
Everything is torn down at the end (processes killed, namespaces and bridge deleted).

Also: ``local_scheduler``, a scheduler process on 127.0.0.1 with plain worker processes (for
scenarios that need no isolation), and ``wait_for_workers``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SLOTS_RESOURCE = "hybatch-slots"


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=30)


def ensure_iproute() -> None:
    """``ip`` from iproute2 (installed with apt-get when missing)."""
    if shutil.which("ip"):
        return
    subprocess.run(["apt-get", "install", "-y", "-qq", "iproute2"], check=True,
                   capture_output=True, timeout=300)


def _free_subnet() -> str:
    """A 10.x.y.0/24 no interface or route on this machine uses (checked, then taken)."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True,
                          check=True).stdout
    used += subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    for _ in range(200):
        candidate = f"10.{random.randint(160, 250)}.{random.randint(0, 254)}"
        if f"{candidate}." not in used:
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 for the test hosts")


def spawn_logged(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_scheduler(host: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A scheduler process listening on ``host``; returns it and its address."""
    scheduler_file = workdir / f"scheduler-{uuid.uuid4().hex[:6]}.json"
    process = spawn_logged([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", host,
                      "--port", "0", "--no-dashboard", "--scheduler-file",
                      str(scheduler_file)], workdir / "scheduler.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"scheduler exited: {(workdir / 'scheduler.log').read_text()}")
        with contextlib.suppress(OSError, ValueError):
            address = json.loads(scheduler_file.read_text())["address"]
            return process, str(address)
        time.sleep(0.05)
    stop_process(process)
    raise RuntimeError("the scheduler did not start")


def worker_argv(scheduler: str, name: str, slots: int, local_dir: str,
                host: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--name", name,
            "--nthreads", str(slots), "--nworkers", "1", "--no-nanny", "--no-dashboard",
            "--resources", f"{SLOTS_RESOURCE}={slots}", "--local-directory", local_dir]
    if host is not None:
        argv += ["--host", host]
    return argv


def wait_for_workers(scheduler: str, count: int, timeout: float = 120.0) -> list[str]:
    """Poll the scheduler until ``count`` workers are connected; their addresses."""
    from distributed import Client

    with Client(scheduler, timeout=60, set_as_default=False) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = list(client.scheduler_info(n_workers=-1)["workers"])
            if len(workers) >= count:
                return sorted(workers)
            time.sleep(0.1)
    raise AssertionError(f"fewer than {count} workers joined {scheduler}")


@dataclass
class SeparateHosts:
    scheduler: str
    node_root: Path
    """Where each worker's private tmpfs is mounted (empty as the service sees it)."""
    addresses: list[str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)


@contextlib.contextmanager
def separate_hosts(workdir: Path, count: int = 2, slots: int = 2) -> Iterator[SeparateHosts]:
    ensure_iproute()
    tag = uuid.uuid4().hex[:6]
    subnet = _free_subnet()
    bridge = f"hb{tag}b"
    namespaces: list[str] = []
    processes: list[subprocess.Popen[bytes]] = []
    node_root = workdir / "node-root"
    node_root.mkdir(parents=True, exist_ok=True)
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        scheduler, address = start_scheduler(f"{subnet}.1", workdir)
        processes.append(scheduler)
        hosts = SeparateHosts(scheduler=address, node_root=node_root, addresses=[])
        for i in range(count):
            ns, here, there = f"hb{tag}n{i}", f"hb{tag}v{i}", f"hb{tag}p{i}"
            _ip("netns", "add", ns)
            namespaces.append(ns)
            _ip("link", "add", here, "type", "veth", "peer", "name", there)
            _ip("link", "set", there, "netns", ns)
            _ip("link", "set", here, "master", bridge)
            _ip("link", "set", here, "up")
            own = f"{subnet}.{i + 2}"
            _ip("addr", "add", f"{own}/24", "dev", there, netns=ns)
            _ip("link", "set", there, "up", netns=ns)
            _ip("link", "set", "lo", "up", netns=ns)
            worker = " ".join(worker_argv(address, f"host-{i}", slots,
                                          str(node_root / "dask"), host=own))
            script = (f"mount -t tmpfs -o size=256m hybatch-node {node_root} && "
                      f"exec {worker}")
            process = spawn_logged(["ip", "netns", "exec", ns, "unshare", "--mount",
                              "--propagation", "private", "--", "sh", "-c", script],
                             workdir / f"worker-{i}.log")
            processes.append(process)
            hosts.workers.append(process)
        hosts.addresses = wait_for_workers(address, count)
        yield hosts
    finally:
        for process in reversed(processes):
            stop_process(process)
        for ns in namespaces:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", bridge)
