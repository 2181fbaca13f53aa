"""The service engine without HTTP: writer loop + store + node agent, driven in-process.

Separates the cost of the engine (core, commits, node agent, spawning) from the REST layer and
the SDK client that ``throughput.py`` includes. In one run it measures:

1. the raw spawn peer (``ThreadPoolExecutor(2)`` running ``subprocess.run(['/bin/true'])``);
2. the engine with SQLite: a 1-node x 2-slot pool, N ``/bin/true`` tasks added 100 at a time
   through the writer loop, timed until the job's counters say all completed;
3. the same with the in-memory store (what the commits cost);
and per engine run: writer turns, mean turn and commit time, and the CPU used by the service
process, the node agent and the task processes (cores, from /proc).

Writes JSON (``--out``, default ``bench/results/engine.json``) and prints it. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybatch.composition import Server, build_server
from hybatch.core import commands as cmd
from hybatch.runtime import loop as loop_module
from hybatch.schema import BatchJobCreateOptions, BatchPoolCreateOptions, BatchTaskCreateOptions
from hybatch.settings import Settings
from hybatch.store.memory import MemoryStore

SLOTS = 2


def raw_spawn_rate(n: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(SLOTS) as pool:
        list(pool.map(lambda _: subprocess.run(["/bin/true"], check=True), range(n)))
    return n / (time.perf_counter() - started)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


class TurnTimer:
    """Times the writer's turns and commits (wraps the loop's methods for this process)."""

    def __init__(self, server: Server) -> None:
        self.turns = 0
        self.turn_s = 0.0
        self.commit_s = 0.0
        original_turn = loop_module.WriterLoop._turn
        original_apply = server.store.apply

        def turn(loop: Any, batch: Any) -> None:
            begun = time.perf_counter()
            original_turn(loop, batch)
            self.turns += 1
            self.turn_s += time.perf_counter() - begun

        def apply(changes: Any) -> None:
            begun = time.perf_counter()
            original_apply(changes)
            self.commit_s += time.perf_counter() - begun

        setattr(loop_module.WriterLoop, "_turn", turn)  # noqa: B010 - instrumentation
        setattr(server.store, "apply", apply)  # noqa: B010
        self._original_turn = original_turn

    def close(self) -> None:
        setattr(loop_module.WriterLoop, "_turn", self._original_turn)  # noqa: B010


def run_engine(n: int, data_root: Path, node_root: Path | None, memory: bool) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="hybatch-engine-", dir=data_root))
    nodes = Path(tempfile.mkdtemp(prefix="hybatch-engine-nodes-", dir=node_root or data))
    server = build_server(Settings(data_dir=data, node_root=nodes, account_key="ZW5naW5l"),
                          store=MemoryStore() if memory else None)
    timer = TurnTimer(server)
    server.start()
    try:
        loop = server.loop
        loop.submit(cmd.CreatePool(BatchPoolCreateOptions.model_validate(
            {"id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
             "taskSlotsPerNode": SLOTS}))).result()
        done = threading.Event()
        while not done.wait(0.005):
            nodes_now = list(server.core.state.nodes.values())
            if nodes_now and nodes_now[0].state == "idle":
                break
        loop.submit(cmd.CreateJob(BatchJobCreateOptions.model_validate(
            {"id": "j", "poolInfo": {"poolId": "p"}}))).result()
        specs = [BatchTaskCreateOptions.model_validate({"id": f"t{i}", "commandLine":
                                                        "/bin/true"}) for i in range(n)]
        agent_pid = _agent_pid(server)
        service_cpu, agent_cpu = _cpu_seconds(os.getpid()), _cpu_seconds(agent_pid)
        timer.turns, timer.turn_s, timer.commit_s = 0, 0.0, 0.0
        began = time.perf_counter()
        for start in range(0, n, 100):
            loop.submit(cmd.AddTasks("j", tuple(specs[start:start + 100]))).result()
        while server.core.state.jobs["j"].counts.completed < n:
            done.wait(0.002)
        elapsed = time.perf_counter() - began
        service_after, agent_after = _cpu_seconds(os.getpid()), _cpu_seconds(agent_pid)
    finally:
        server.stop()
        timer.close()
    return {
        "store": "memory" if memory else "sqlite",
        "tasks_per_s": round(n / elapsed, 1),
        "elapsed_s": round(elapsed, 4),
        "writer_turns": timer.turns,
        "turn_ms_mean": round(timer.turn_s / max(timer.turns, 1) * 1e3, 3),
        "commit_ms_mean": round(timer.commit_s / max(timer.turns, 1) * 1e3, 3),
        "writer_busy": round(timer.turn_s / elapsed, 3),
        "cpu_cores": {
            "service_process": round((service_after[0] - service_cpu[0]) / elapsed, 3),
            "node_agent": round((agent_after[0] - agent_cpu[0]) / elapsed, 3),
            "task_processes": round((agent_after[1] - agent_cpu[1]) / elapsed, 3),
        },
    }


def _agent_pid(server: Server) -> int:
    pid = getattr(server.backend, "agent_pid", None)
    if pid is None:
        raise RuntimeError("the engine benchmark needs the node-agent backend")
    return int(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--data-root", type=Path, default=Path(".cache"))
    parser.add_argument("--node-root", type=Path, default=None,
                        help="parent of the node directories (e.g. /dev/shm)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/engine.json"))
    args = parser.parse_args()
    args.data_root.mkdir(parents=True, exist_ok=True)
    raw_before = raw_spawn_rate(args.tasks)
    runs = [run_engine(args.tasks, args.data_root, args.node_root, memory)
            for memory in (False, True)]
    raw_after = raw_spawn_rate(args.tasks)
    raw = (raw_before + raw_after) / 2
    result = {
        "benchmark": "engine",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "tasks": args.tasks,
        "slots": SLOTS,
        "node_root": str(args.node_root) if args.node_root else "data directory",
        "raw_spawn_tasks_per_s": round(raw, 1),
        "runs": runs,
        "ratios_to_raw": {r["store"]: round(r["tasks_per_s"] / raw, 3) for r in runs},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
