"""Node tasks (start task, job preparation and release tasks) on the local backend, in
process (both spawn modes) and through the node-agent process: real processes and files.

Every wait is a poll against a deadline (an event arriving); nothing sleeps to synchronise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybatch.backends.agent import AgentBackend
from hybatch.backends.local import LocalBackend
from hybatch.core.effects import (
    KillNodeTask,
    NodeTaskLaunch,
    ProvisionNode,
    RestartNode,
    TaskLaunch,
)
from hybatch.core.events import NodeReady, NodeTaskExited, TaskExited, TaskStarted
from hybatch.node.host import HostNodes
from hybatch.ports import ComputeBackend
from tests.contract.test_backends import Events, poll

POOL, NODE, JOB = "pool-n", "node-n", "job-n"
HOLD = "/bin/sh -c 'touch started; exec sleep 60'"


@dataclass
class Host:
    port: ComputeBackend
    events: Events
    root: Path

    def run(self, kind: str, command: str, *, attempt: int = 1, job_id: str = JOB,
            task_id: str = "", env: tuple[tuple[str, str], ...] = (),
            limit: float | None = None, node_id: str = NODE) -> NodeTaskLaunch:
        if kind == "starttask":
            job_id = ""
        launch = NodeTaskLaunch(POOL, node_id, kind, job_id, task_id, attempt, command, env,
                                limit)
        self.port.run_node_task(launch)
        return launch

    def exited(self, kind: str, attempt: int = 1) -> NodeTaskExited:
        event = self.events.wait_for(lambda e: isinstance(e, NodeTaskExited)
                                     and e.kind == kind and e.attempt == attempt)
        assert isinstance(event, NodeTaskExited)
        return event

    def wait_file(self, path: Path) -> None:
        poll(path.exists, what=str(path))


@pytest.fixture(params=["inline", "handoff", "agent"])
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    root = tmp_path / "nodes"
    port: ComputeBackend
    if request.param == "agent":
        port = AgentBackend(root, "acct", "http://x")
    else:
        port = LocalBackend(root, "acct", "http://x",
                            spawners=0 if request.param == "inline" else 4)
    events = Events()
    port.start(events)
    try:
        port.provision_node(ProvisionNode(POOL, NODE, 1, True))
        events.wait_for(lambda e: e == NodeReady(NODE))
        yield Host(port, events, HostNodes(root).node_root(POOL, NODE))
    finally:
        port.close()


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_start_task_runs_in_startup(host: Host) -> None:
    host.run("starttask", "/bin/sh -c 'env > env.txt; echo out; echo err >&2; exit 3'",
             env=(("GREETING", "hi"), ("AZ_BATCH_NODE_ID", "spoof")))
    exited = host.exited("starttask")
    assert (exited.node_id, exited.job_id, exited.exit_code, exited.failure) == (
        NODE, "", 3, None)
    assert exited.start_time is not None and exited.end_time >= exited.start_time
    startup = host.root / "startup"
    assert (startup / "stdout.txt").read_text() == "out\n"
    assert (startup / "stderr.txt").read_text() == "err\n"
    env = _env(startup / "wd" / "env.txt")
    assert env["GREETING"] == "hi" and env["AZ_BATCH_NODE_ID"] == NODE
    assert env["AZ_BATCH_TASK_DIR"] == str(startup)
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(startup / "wd")
    assert "AZ_BATCH_JOB_ID" not in env and "AZ_BATCH_TASK_ID" not in env
    # a node task is not a task: no TaskStarted / TaskExited for it
    assert host.events.count(lambda e: isinstance(e, TaskStarted | TaskExited)) == 0


def test_preparation_and_release_run_in_the_job_directory(host: Host) -> None:
    host.run("jobpreparation", "/bin/sh -c 'env > env.txt; echo prepared'",
             task_id="jobpreparation", env=(("P", "1"),))
    assert host.exited("jobpreparation").exit_code == 0
    prep_dir = host.root / "workitems" / JOB / "job-1" / "jobpreparation"
    assert (prep_dir / "stdout.txt").read_text() == "prepared\n"
    env = _env(prep_dir / "wd" / "env.txt")
    assert (env["AZ_BATCH_JOB_ID"], env["AZ_BATCH_TASK_ID"], env["P"]) == (
        JOB, "jobpreparation", "1")
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(prep_dir / "wd")
    # an ordinary task of the job finds the preparation task's directories
    host.port.start_task(TaskLaunch(POOL, NODE, JOB, "t", 1, "/bin/sh -c 'env > env.txt'",
                                    (), None, job_preparation_task_id="jobpreparation"))
    host.events.exited("t")
    task_env = _env(host.root / "workitems" / JOB / "job-1" / "t" / "wd" / "env.txt")
    assert task_env["AZ_BATCH_JOB_PREP_DIR"] == str(prep_dir)
    assert task_env["AZ_BATCH_JOB_PREP_WORKING_DIR"] == str(prep_dir / "wd")
    host.run("jobrelease", "/bin/sh -c 'echo released'", task_id="jobrelease")
    assert host.exited("jobrelease").exit_code == 0
    release_dir = host.root / "workitems" / JOB / "job-1" / "jobrelease"
    assert (release_dir / "stdout.txt").read_text() == "released\n"


def test_node_tasks_take_no_slot(host: Host) -> None:
    host.run("starttask", HOLD)
    host.wait_file(host.root / "startup" / "wd" / "started")
    host.port.start_task(TaskLaunch(POOL, NODE, JOB, "t", 1, "/bin/true", (), None))
    assert host.events.exited("t").exit_code == 0  # the node's one slot was free
    host.port.kill_node_task(KillNodeTask(POOL, NODE, "starttask", "", 1))
    assert host.exited("starttask").exit_code == 137


def test_wall_clock_limit_and_kill(host: Host) -> None:
    host.run("jobrelease", "sleep 60", task_id="jobrelease", limit=0.3)
    exited = host.exited("jobrelease")
    assert exited.timed_out and exited.failure is not None
    assert exited.failure.code == "MaxWallClockTimeExceeded"
    host.run("jobpreparation", HOLD, task_id="jobpreparation", attempt=2)
    host.wait_file(host.root / "workitems" / JOB / "job-1" / "jobpreparation" / "wd" /
                   "started")
    host.port.kill_node_task(KillNodeTask(POOL, NODE, "jobpreparation", JOB, 2))
    assert host.exited("jobpreparation", attempt=2).exit_code == 137


def test_a_restart_kills_node_tasks(host: Host) -> None:
    host.run("starttask", HOLD)
    host.wait_file(host.root / "startup" / "wd" / "started")
    host.port.restart_node(RestartNode(POOL, NODE))
    assert host.exited("starttask").exit_code == 137
    host.events.wait_for(lambda e: host.events.count(lambda x: x == NodeReady(NODE)) == 2)


def test_unknown_node_and_bad_command(host: Host) -> None:
    host.run("starttask", "/bin/true", node_id="nobody")
    exited = host.exited("starttask")
    assert exited.exit_code is None and exited.failure is not None
    assert (exited.node_id, exited.failure.code) == ("nobody", "NodeUnavailable")
    host.run("starttask", "/no/such/program", attempt=2)
    failed = host.exited("starttask", attempt=2)
    assert failed.exit_code is None and failed.failure is not None
    assert failed.failure.code == "CommandProgramNotFound"
