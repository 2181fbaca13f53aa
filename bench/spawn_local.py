"""Spawn+reap throughput of the local backend against a plain thread pool, on one 2-slot node.

Runs 1,000 ``/bin/true`` attempts two at a time (the next starts when one exits, as the
service's writer would) through :class:`hybatch.backends.local.LocalBackend`, both with spawns
inline on the driving thread and handed to the backend's worker thread, and the peer every
budget is a ratio to: ``ThreadPoolExecutor(2)`` running ``subprocess.run(['/bin/true'])``.
Prints JSON; never part of the test pass/fail.
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
    n: int, slots: int, spawn_inline: bool, on_reaper: bool = False, base: str | None = None
) -> float:
    """Attempts per second through the backend, keeping ``slots`` attempts in flight."""
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="hybatch-bench-", dir=base) as tmp:
        backend = LocalBackend(
            Path(tmp), "bench", "http://127.0.0.1:0", spawn_inline=spawn_inline,
            spawn_on_reaper=on_reaper,
        )
        backend.start(events.put)
        try:
            backend.provision_node(ProvisionNode("pool", "node-1", slots, True))
            while not isinstance(events.get(timeout=10), NodeReady):
                pass

            def launch(i: int) -> TaskLaunch:
                return TaskLaunch("pool", "node-1", "job", f"t{i}", 1, "/bin/true", (), None)

            started = time.perf_counter()
            next_task = 0
            for _ in range(min(slots, n)):
                backend.start_task(launch(next_task))
                next_task += 1
            done = failed = 0
            while done < n:
                event = events.get(timeout=30)
                if not isinstance(event, TaskExited):
                    continue
                done += 1
                failed += event.exit_code != 0
                if next_task < n:
                    backend.start_task(launch(next_task))
                    next_task += 1
            elapsed = time.perf_counter() - started
            if failed:
                raise RuntimeError(f"{failed} attempts failed")
            return n / elapsed
        finally:
            backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {
        "thread_pool": [], "local_inline": [], "local_worker": [], "local_reaper": []
    }
    for _ in range(args.repeat):  # interleaved so drift hits every variant alike
        runs["thread_pool"].append(thread_pool_rate(args.tasks, args.slots))
        runs["local_inline"].append(backend_rate(args.tasks, args.slots, spawn_inline=True))
        runs["local_worker"].append(backend_rate(args.tasks, args.slots, spawn_inline=False))
        runs["local_reaper"].append(
            backend_rate(args.tasks, args.slots, spawn_inline=False, on_reaper=True)
        )
    median = {name: statistics.median(rates) for name, rates in runs.items()}
    print(
        json.dumps(
            {
                "benchmark": "spawn_local",
                "tasks": args.tasks,
                "slots": args.slots,
                "repeat": args.repeat,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "rate_per_s_median": {k: round(v, 1) for k, v in median.items()},
                "rate_per_s_runs": {k: [round(r, 1) for r in v] for k, v in runs.items()},
                "ratio_to_thread_pool": {
                    k: round(v / median["thread_pool"], 3)
                    for k, v in median.items()
                    if k != "thread_pool"
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
