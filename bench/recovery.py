"""Recovery after kill -9: how long a restarted server takes to be back to scheduling.

1. ``crash`` phase, in a child process: an in-process server (writer loop, store, detached node
   agent; no HTTP) gets a pool of one 2-slot node and a job of N ``/bin/true`` tasks (added
   through the writer loop 1,000 at a time), runs until ``--run-first`` of them completed, then
   SIGKILLs itself in the middle of the job. The node agent outlives it.
2. ``restart`` phase, in this process: a new server on the same data directory and database,
   timed step by step: build (open the store), re-attach to the agent (with the events it kept),
   recover (load the unfinished tasks, restore the core, reconcile the attempts in flight), and
   from the start until the first new attempt is offered to a node (``back_to_scheduling_s``:
   the DESIGN budget is 5 s for 100,000 tasks) and until the writer's first turn is committed.

Writes JSON (``--out``, default ``bench/results/recovery.json``) and prints it. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybatch.composition import build_server
from hybatch.core import commands as cmd
from hybatch.core.effects import TaskLaunch
from hybatch.runtime import recovery as recovery_module
from hybatch.schema import BatchJobCreateOptions, BatchPoolCreateOptions, BatchTaskCreateOptions
from hybatch.settings import Settings

SLOTS = 2
CHUNK = 100


def _settings(data: Path, node_root: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=data, node_root=node_root, account_key="cmVjb3Zlcnk=",
                    database_url=database_url)


def crash(data: Path, node_root: Path, database_url: str | None, tasks: int,
          run_first: int) -> None:
    """Build the job, run part of it, die without any clean-up."""
    server = build_server(_settings(data, node_root, database_url))
    server.start()
    loop = server.loop
    loop.submit(cmd.CreatePool(BatchPoolCreateOptions.model_validate(
        {"id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
         "taskSlotsPerNode": SLOTS}))).result()
    pause = threading.Event()
    deadline = time.monotonic() + 120
    while not any(n.state == "idle" for n in list(server.core.state.nodes.values())):
        if time.monotonic() > deadline:
            raise RuntimeError("the node did not come up")
        pause.wait(0.01)
    loop.submit(cmd.CreateJob(BatchJobCreateOptions.model_validate(
        {"id": "j", "poolInfo": {"poolId": "p"}}))).result()
    began = time.perf_counter()
    for start in range(0, tasks, CHUNK):
        specs = tuple(BatchTaskCreateOptions.model_validate(
            {"id": f"t{i:07d}", "commandLine": "/bin/true"})
            for i in range(start, min(tasks, start + CHUNK)))
        loop.submit(cmd.AddTasks("j", specs)).result()
    ingest_s = time.perf_counter() - began
    while server.core.state.jobs["j"].counts.completed < run_first:
        pause.wait(0.005)
    print(json.dumps({"ingest_s": round(ingest_s, 3), "agent_pid": server.backend.agent_pid}),
          flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def restart(data: Path, node_root: Path, database_url: str | None) -> dict[str, Any]:
    """Start again on the crashed server's data; time each step."""
    marks: dict[str, float] = {}
    first_offer = threading.Event()
    began = time.perf_counter()
    server = build_server(_settings(data, node_root, database_url))
    marks["build_s"] = time.perf_counter() - began

    original_start_task = server.backend.start_task

    def start_task(launch: TaskLaunch) -> None:
        if not first_offer.is_set():
            marks["back_to_scheduling_s"] = time.perf_counter() - began
            first_offer.set()
        original_start_task(launch)

    setattr(server.backend, "start_task", start_task)  # noqa: B010 - instrumentation
    original_recover = recovery_module.recover
    recovered: dict[str, Any] = {}

    def timed_recover(*args: Any) -> Any:
        marks["attach_s"] = time.perf_counter() - began - marks["build_s"]
        step = time.perf_counter()
        events = original_recover(*args)
        marks["recover_s"] = time.perf_counter() - step
        recovered["settled_events"] = len(events)
        return events

    import hybatch.composition as composition_module

    setattr(composition_module, "recover", timed_recover)  # noqa: B010
    try:
        server.start()
        if not first_offer.wait(120):
            raise RuntimeError("no attempt was offered after the restart")
        pause = threading.Event()
        while server.loop.turns < 1:
            pause.wait(0.001)
        marks["first_turn_committed_s"] = time.perf_counter() - began
        state = server.core.state
        recovered.update({
            "tasks_in_memory_after": len(state.tasks),
            "reattached_to_running_agent": bool(getattr(server.backend, "reattached", False)),
        })
    finally:
        setattr(composition_module, "recover", original_recover)  # noqa: B010
        server.stop()
    return {**{k: round(v, 4) for k, v in marks.items()}, **recovered}


def run_one(tasks: int, run_first: int, data_root: Path, node_root: Path | None,
            database_url: str | None) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="hybatch-recovery-", dir=data_root))
    nodes = Path(tempfile.mkdtemp(prefix="hybatch-recovery-nodes-", dir=node_root or data))
    try:
        child = subprocess.run(
            [sys.executable, __file__, "--phase", "crash", "--data", str(data), "--nodes",
             str(nodes), "--tasks", str(tasks), "--run-first", str(run_first)]
            + (["--database-url", database_url] if database_url else []),
            capture_output=True, text=True, timeout=1800, check=False)
        if child.returncode != -signal.SIGKILL:
            raise RuntimeError(f"crash phase ended with {child.returncode}: {child.stderr[-3000:]}")
        crashed = json.loads(child.stdout.strip().splitlines()[-1])
        result = restart(data, nodes, database_url)
        return {"tasks": tasks, "ran_before_crash": run_first, **crashed, **result}
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(nodes, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--run-first", type=int, default=200,
                        help="tasks completed before the crash")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--data-root", type=Path, default=Path(".cache"))
    parser.add_argument("--node-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/recovery.json"))
    parser.add_argument("--phase", choices=["crash"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "crash":
        crash(args.data, args.nodes, args.database_url, args.tasks[0], args.run_first)
        return
    args.data_root.mkdir(parents=True, exist_ok=True)
    runs = [run_one(n, args.run_first, args.data_root, args.node_root, args.database_url)
            for n in args.tasks]
    result = {
        "benchmark": "recovery",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m": os.getloadavg()[0]},
        "store": "postgresql" if args.database_url else "sqlite",
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
