"""Restarting a node (reboot, reimage, start after deallocation) on the local backend, in
process and through the node-agent process, and the node's service log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hybatch.backends.agent import AgentBackend
from hybatch.backends.local import LocalBackend
from hybatch.core.effects import ProvisionNode, RestartNode, TaskLaunch
from hybatch.core.events import NodeLost, NodeReady
from hybatch.node.files import LocalNodeFiles
from hybatch.node.host import HostNodes
from hybatch.node.service_logs import LOG_DIR, LOG_FILE, select_log_files, write_service_log
from hybatch.ports import ComputeBackend
from tests.contract.test_backends import Events

POOL, NODE, JOB = "pool-r", "node-r", "job-r"


@pytest.fixture(params=["in-process", "agent"])
def backend(request: pytest.FixtureRequest,
            tmp_path: Path) -> Iterator[tuple[ComputeBackend, Events, Path]]:
    root = tmp_path / "nodes"
    port: ComputeBackend = (LocalBackend(root, "acct", "http://x") if request.param ==
                            "in-process" else AgentBackend(root, "acct", "http://x"))
    events = Events()
    port.start(events)
    try:
        port.provision_node(ProvisionNode(POOL, NODE, 1, True))
        events.wait_for(lambda e: e == NodeReady(NODE))
        yield port, events, HostNodes(root).node_root(POOL, NODE)
    finally:
        port.close()


def _ready_count(events: Events) -> int:
    return events.count(lambda e: e == NodeReady(NODE))


def _run_task(port: ComputeBackend, events: Events) -> None:
    port.start_task(TaskLaunch(POOL, NODE, JOB, "t", 1, "/bin/sh -c 'echo hi > out.txt'", (),
                               None))
    events.exited("t")


def test_reboot_keeps_files_and_reports_ready_again(
        backend: tuple[ComputeBackend, Events, Path]) -> None:
    port, events, root = backend
    _run_task(port, events)
    port.restart_node(RestartNode(POOL, NODE))
    events.wait_for(lambda e: _ready_count(events) == 2)
    assert (root / "workitems" / JOB / "job-1" / "t" / "wd" / "out.txt").read_text() == "hi\n"
    log = (root / LOG_DIR / LOG_FILE).read_text().splitlines()
    assert "ready" in log[0] and log[-1].endswith(f"node {NODE} restarted")
    port.start_task(TaskLaunch(POOL, NODE, JOB, "t2", 1, "/bin/true", (), None))
    assert events.exited("t2").exit_code == 0


def test_reimage_wipes_the_node_but_keeps_its_identity_and_logs(
        backend: tuple[ComputeBackend, Events, Path]) -> None:
    port, events, root = backend
    _run_task(port, events)
    (root / "shared" / "data.bin").write_bytes(b"x")
    port.restart_node(RestartNode(POOL, NODE, reimage=True))
    events.wait_for(lambda e: _ready_count(events) == 2)
    assert not (root / "workitems" / JOB).exists()
    assert not (root / "shared" / "data.bin").exists()
    for name in ("shared", "startup/wd", "applications", "fsmounts", "workitems"):
        assert (root / name).is_dir(), name
    assert (root / "volatile" / "node.json").is_file()
    assert (root / LOG_DIR / LOG_FILE).read_text().rstrip().endswith("reimaged")
    port.start_task(TaskLaunch(POOL, NODE, JOB, "t", 2, "/bin/true", (), None))
    assert events.exited("t", attempt=2).exit_code == 0


def test_restarting_an_unknown_node_reports_it_lost(
        backend: tuple[ComputeBackend, Events, Path]) -> None:
    port, events, _ = backend
    port.restart_node(RestartNode(POOL, "node-never"))
    lost = events.wait_for(lambda e: isinstance(e, NodeLost) and e.node_id == "node-never")
    assert isinstance(lost, NodeLost) and "unknown" in lost.reason


def test_log_files_are_chosen_by_the_time_range(tmp_path: Path) -> None:
    root = tmp_path / "node"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    write_service_log(root, "first", when=t0)
    write_service_log(root, "second", when=t0 + timedelta(hours=1))
    (root / LOG_DIR / "old.log").write_text("2025-01-01T00:00:00.000000Z before\n")
    files = LocalNodeFiles(root)
    now = datetime.now(UTC)
    names = [f.path for f in select_log_files(files, t0 - timedelta(days=1), None)]
    assert names == [f"{LOG_DIR}/{LOG_FILE}", f"{LOG_DIR}/old.log"]
    # a file whose first line is after the end is left out; one begun before it is kept
    names = [f.path for f in select_log_files(files, t0 - timedelta(days=1),
                                              t0 - timedelta(minutes=1))]
    assert names == [f"{LOG_DIR}/old.log"]
    assert select_log_files(files, now + timedelta(days=1), None) == []
    assert select_log_files(LocalNodeFiles(tmp_path / "missing"), t0, None) == []
