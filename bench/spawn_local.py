"""Spawn+reap throughput of the local backend against a plain thread pool, on one 2-slot node.

Runs 1,000 ``/bin/true`` attempts two at a time (the next starts when one exits, as the
service's writer would) through :class:`hybatch.backends.local.LocalBackend`, and the peer the
budgets are ratios to: ``ThreadPoolExecutor(2)`` running ``subprocess.run(['/bin/true'])``.
The backend runs with its default (spawn handed to the reaper thread) and with
``spawn_inline=True``, on the default temp dir and on tmpfs (the backend writes a task
directory, two output files and an exit record per attempt; the peer writes nothing, so the
tmpfs run separates process machinery from disk metadata cost). Variants are interleaved so
machine load hits them alike; medians are reported. Prints JSON; never part of the test
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hybatch.backends.local import LocalBackend
from hybatch.core.effects import ProvisionNode, TaskLaunch
from hybatch.core.events import Event, NodeReady, TaskExited


def thread_pool_rate(n: int, slots: int) -> float:
    """The peer: a plain thread pool spawning the processes itself."""
    with ThreadPoolExecutor(slots) as pool:
        started = time.perf_counter()
        for _ in pool.map(lambda _: subprocess.run(["/bin/true"], check=False), range(n)):
            pass
        return n / (time.perf_counter() - started)


def backend_rate(
    n: int, slots: int, *, spawn_inline: bool, base: str | None
) -> tuple[float, float]:
    """(attempts per second, median µs the driving thread spent in ``start_task``)."""
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    in_start: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hybatch-bench-", dir=base) as tmp:
        backend = LocalBackend(
            Path(tmp), "bench", "http://127.0.0.1:0", spawners=0 if spawn_inline else 4
        )
        backend.start(events.put)
        try:
            backend.provision_node(ProvisionNode("pool", "node-1", slots, True))
            while not isinstance(events.get(timeout=10), NodeReady):
                pass

            def start(i: int) -> None:
                launch = TaskLaunch("pool", "node-1", "job", f"t{i}", 1, "/bin/true", (), None)
                before = time.perf_counter()
                backend.start_task(launch)
                in_start.append(time.perf_counter() - before)

            started = time.perf_counter()
            for i in range(min(slots, n)):
                start(i)
            next_task = min(slots, n)
            done = failed = 0
            while done < n:
                event = events.get(timeout=60)
                if not isinstance(event, TaskExited):
                    continue
                done += 1
                failed += event.exit_code != 0
                if next_task < n:
                    start(next_task)
                    next_task += 1
            elapsed = time.perf_counter() - started
        finally:
            backend.close()
    if failed:
        raise RuntimeError(f"{failed} attempts failed")
    return n / elapsed, statistics.median(in_start) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tmpfs", default="/dev/shm", help="tmpfs dir; '' to skip")
    args = parser.parse_args()
    bases: dict[str, str | None] = {"disk": None}
    if args.tmpfs and os.path.isdir(args.tmpfs):
        bases["tmpfs"] = args.tmpfs
    rates: dict[str, list[float]] = {"thread_pool": []}
    start_us: dict[str, list[float]] = {}
    loads: list[float] = []
    for _ in range(args.repeat):
        rates["thread_pool"].append(thread_pool_rate(args.tasks, args.slots))
        for where, base in bases.items():
            for mode, inline in (("handoff", False), ("inline", True)):
                name = f"local_{mode}_{where}"
                rate, us = backend_rate(args.tasks, args.slots, spawn_inline=inline, base=base)
                rates.setdefault(name, []).append(rate)
                start_us.setdefault(name, []).append(us)
        loads.append(os.getloadavg()[0])
    median = {name: statistics.median(values) for name, values in rates.items()}
    peer = median["thread_pool"]
    print(
        json.dumps(
            {
                "benchmark": "spawn_local",
                "tasks": args.tasks,
                "slots": args.slots,
                "repeat": args.repeat,
                "cpus": os.cpu_count(),
                "load_avg_1m": [round(x, 2) for x in loads],
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "rate_per_s_median": {k: round(v, 1) for k, v in median.items()},
                "ratio_to_thread_pool": {
                    k: round(v / peer, 3) for k, v in median.items() if k != "thread_pool"
                },
                "start_task_us_median": {
                    k: round(statistics.median(v), 1) for k, v in start_us.items()
                },
                "rate_per_s_runs": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
