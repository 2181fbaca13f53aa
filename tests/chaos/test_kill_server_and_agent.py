"""Chaos: a 1,000-task job while the server is killed with SIGKILL at random moments (and
restarted each time) and its node agent is killed once; afterwards every task has completed
exactly once.

The kill moments are random but seeded (``HYBATCH_CHAOS_SEED``): each one waits for a random
share of the job to complete, plus a random extra delay, and the server stays down for a random
while (attempts keep running and ending with nobody connected). Every wait is a poll against a
deadline.

What "exactly once" means here, from the tasks' own marker files (``marker_task.py``: ``S`` when
a run starts, ``E`` when it ends, with the pid of the node agent that started it):

* every task has a finished run, and the store says it succeeded once (no retry);
* server kills never make a task run again: apart from runs started by the agent that was
  killed, a task ran at most once (the agent outlives the server and the restarted server
  re-attaches to the attempts still running instead of requeueing them);
* a task whose run had finished is never run again; the one exception is a run of the killed
  agent that ended so close to the kill that its exit record may not have been written (the
  outcome was then unknowable and the task was requeued, as it must be).

The job runs twice per store: as chains of ten tasks linked by ``dependsOn`` (a child must
start only after its parent's run finished, checked from the markers) and as independent
tasks.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

SEED = int(os.environ.get("HYBATCH_CHAOS_SEED", "20261121"))
TASKS = 1000
SERVER_KILLS = 5
NODES, SLOTS = 2, 4
WORK_MS = (1, 40)
MARGIN_S = 2.0
"""A run of the killed agent that ended this close before the kill may have lost its exit
record (the agent reaps, then writes the record, then reports)."""
HELPER = Path(__file__).with_name("marker_task.py")
POOL, JOB = "chaos-pool", "chaos-job"


@dataclass
class Run:
    pid: int
    parent: int
    """The pid of the agent that started it, or of the orphan reaper when that agent was
    killed before the run looked (Python's start-up takes a few milliseconds)."""
    start: float
    end: float | None = None


def read_runs(markers: Path) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {}
    for path in markers.iterdir():
        by_pid: dict[int, Run] = {}
        ordered: list[Run] = []
        for line in path.read_text().splitlines():
            fields = line.split()
            if fields[0] == "S":
                run = Run(pid=int(fields[1]), parent=int(fields[2]), start=float(fields[3]))
                by_pid[run.pid] = run
                ordered.append(run)
            else:
                by_pid[int(fields[1])].end = float(fields[2])
        runs[path.name] = ordered
    return runs


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a slow reaper)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] not in ("Z", "X")


def agent_pid(data: Path) -> int | None:
    try:
        return int((data / "nodes" / ".agent" / "agent.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("chaos_postgres_url")
    return url


@pytest.fixture
def server(tmp_path: Path, database_url: str | None) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "data", database_url=database_url)
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.stop()
        leftover = agent_pid(process.data_dir)
        if leftover is not None and alive(leftover):  # a failed test must not leave it running
            os.kill(leftover, signal.SIGTERM)


def _tasks(markers: Path, rng: random.Random, dependencies: bool) -> list[m.BatchTaskCreateOptions]:
    tasks = []
    for i in range(TASKS):
        work = rng.randint(*WORK_MS)
        depends = None
        if dependencies and i % 10:  # chains of ten
            depends = m.BatchTaskDependencies(task_ids=[f"t{i - 1:04d}"])
        tasks.append(m.BatchTaskCreateOptions(
            id=f"t{i:04d}", depends_on=depends,
            command_line=f"{sys.executable} -I -S {HELPER} {markers} {work}"))
    return tasks


def _schedule(rng: random.Random) -> list[tuple[float, str]]:
    """When to kill what, as shares of the job completed: SERVER_KILLS server kills and one
    agent kill between two of them."""
    points = sorted(rng.uniform(0.03, 0.8) for _ in range(SERVER_KILLS))
    after = rng.randrange(1, SERVER_KILLS)
    agent_at = rng.uniform(points[after - 1], points[after])
    return sorted([(p, "server") for p in points] + [(agent_at, "agent")])


@pytest.mark.parametrize("dependencies", [True, False], ids=["chains", "independent"])
def test_every_task_completes_exactly_once(server: ServerProcess, tmp_path: Path,
                                           dependencies: bool) -> None:
    rng = random.Random(SEED)
    began = time.monotonic()
    markers = tmp_path / "markers"
    markers.mkdir()
    server.start()
    client = BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    client.create_pool(m.BatchPoolCreateOptions(id=POOL, vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=NODES,
                                                task_slots_per_node=SLOTS))
    wait_for(lambda: sum(n.state == "idle" for n in client.list_nodes(POOL)) == NODES,
             what="idle nodes")
    client.create_job(m.BatchJobCreateOptions(id=JOB, pool_info=m.BatchPoolInfo(pool_id=POOL),
                                              uses_task_dependencies=dependencies or None))
    added = client.create_tasks(JOB, _tasks(markers, rng, dependencies))
    assert all(r.status == "success" for r in added.result_values)
    log: list[str] = [f"submitted at {time.monotonic() - began:.1f} s"]

    def completed() -> int:
        return int(client.get_job_task_counts(JOB).task_counts.completed)

    agent_kill: tuple[int, float] | None = None
    agents = {agent_pid(server.data_dir)}
    for share, target in _schedule(rng):
        wait_for(lambda share=share: completed() >= share * TASKS, timeout=60,  # type: ignore[misc]
                 interval=0.02, what=f"{share:.0%} of the tasks completed")
        time.sleep(rng.uniform(0.0, 0.2))  # chaos: a random moment, not a synchronisation
        before = agent_pid(server.data_dir)
        assert before is not None and alive(before)
        if target == "server":
            assert server.stop(signal.SIGKILL) == -signal.SIGKILL
            time.sleep(rng.uniform(0.0, 0.5))  # chaos: down for a while, attempts keep ending
            assert alive(before), "the node agent must outlive the server"
            restarted = time.monotonic()
            server.start()
            assert agent_pid(server.data_dir) == before, "the server must re-attach, not restart"
            log.append(f"server killed at {share:.0%}, answering again after "
                       f"{time.monotonic() - restarted:.1f} s")
        else:
            os.kill(before, signal.SIGKILL)
            agent_kill = (before, time.time())
            wait_for(lambda before=before: (pid := agent_pid(server.data_dir)) not in (
                None, before) and alive(pid), timeout=30, what="the server started a new agent")
            agents.add(agent_pid(server.data_dir))
            log.append(f"agent {before} killed at {share:.0%}")
        log.append(f"at {time.monotonic() - began:.1f} s")

    wait_for(lambda: completed() == TASKS, timeout=90, interval=0.1, what="all tasks completed")
    counts = client.get_job_task_counts(JOB).task_counts
    assert (counts.succeeded, counts.failed, counts.active, counts.running) == (TASKS, 0, 0, 0)
    tasks = list(client.list_tasks(JOB))
    assert sorted(t.id for t in tasks) == [f"t{i:04d}" for i in range(TASKS)]
    for task in tasks:
        info = task.execution_info
        assert task.state == "completed" and info is not None, task.id
        assert (info.result, info.exit_code, info.retry_count) == ("success", 0, 0), task.id
    requeues = sum(t.execution_info.requeue_count for t in tasks if t.execution_info)

    last_agent = agent_pid(server.data_dir)
    assert server.stop(signal.SIGTERM) == 0
    assert last_agent is not None
    wait_for(lambda: not alive(last_agent), timeout=30, what="a clean stop stops the agent")

    assert agent_kill is not None
    killed_agent, killed_at = agent_kill
    survivors = agents - {killed_agent}
    assert len(survivors) == 1 and None not in survivors, agents
    runs = read_runs(markers)
    summary = {"seed": SEED, "events": log, "requeues": requeues,
               "reruns": sum(len(r) - 1 for r in runs.values()),
               "wall_s": round(time.monotonic() - began, 1)}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    print("chaos summary:", json.dumps(summary))
    assert sorted(runs) == [f"t{i:04d}" for i in range(TASKS)]
    for task_id, task_runs in runs.items():
        assert any(r.end is not None for r in task_runs), f"{task_id} never finished: {task_runs}"
        # started by the killed agent: its pid, or the reaper's when it died first
        by_killed = [r.parent not in survivors for r in task_runs]
        assert by_killed.count(False) <= 1, f"{task_id} ran again without an agent kill: " \
                                            f"{task_runs}"
        for run, killed in zip(task_runs, by_killed, strict=True):
            if run.end is None:
                assert killed, f"{task_id}: a run was interrupted: {task_runs}"
                continue
            if any(r.start > run.end for r in task_runs):
                assert killed and run.end > killed_at - MARGIN_S, (
                    f"{task_id} ran again after a finished run: {task_runs}")
    if dependencies:
        for i in range(TASKS):
            if i % 10:
                parent_end = max(r.end or 0.0 for r in runs[f"t{i - 1:04d}"])
                assert min(r.start for r in runs[f"t{i:04d}"]) >= parent_end, i
    assert summary["reruns"] <= NODES * SLOTS, summary  # what the killed agent was running
