"""A node runs offered attempts within its slots, in order, and reports each start before its
exit; attempts still waiting can be killed. Also through the node-agent process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hybatch.backends.agent import AgentBackend
from hybatch.backends.local import LocalBackend
from hybatch.core.effects import KillTask, ProvisionNode, TaskLaunch
from hybatch.core.events import NodeReady, TaskExited, TaskStarted
from hybatch.node.process import CODE_KILLED_BEFORE_START
from hybatch.ports import ComputeBackend
from tests.contract.test_backends import Events

POOL, NODE, JOB = "pool-q", "node-q", "job-q"


def _launch(task_id: str, command: str, slots: int = 1) -> TaskLaunch:
    return TaskLaunch(POOL, NODE, JOB, task_id, 1, command, (), None, required_slots=slots)


@pytest.fixture(params=["in-process", "agent"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ComputeBackend,
                                                                              Events]]:
    root = tmp_path / "nodes"
    port: ComputeBackend = (LocalBackend(root, "acct", "http://x") if request.param ==
                            "in-process" else AgentBackend(root, "acct", "http://x"))
    events = Events()
    port.start(events)
    try:
        port.provision_node(ProvisionNode(POOL, NODE, 2, True))  # a 2-slot node
        events.wait_for(lambda e: e == NodeReady(NODE))
        yield port, events
    finally:
        port.close()


def _started(events: Events, task_id: str) -> int:
    return events.count(lambda e: isinstance(e, TaskStarted) and e.task_id == task_id)


def test_offers_beyond_the_slots_wait_and_start_in_order(
        backend: tuple[ComputeBackend, Events], tmp_path: Path) -> None:
    port, events = backend
    gate_a, gate_b = tmp_path / "gate-a", tmp_path / "gate-b"
    port.start_task(_launch("a", f"/bin/sh -c 'while [ ! -e {gate_a} ]; do sleep 0.01; done'"))
    port.start_task(_launch("b", f"/bin/sh -c 'while [ ! -e {gate_b} ]; do sleep 0.01; done'"))
    port.start_task(_launch("c", "/bin/true"))
    port.start_task(_launch("d", "/bin/true"))
    events.wait_for(lambda e: isinstance(e, TaskStarted) and e.task_id == "b")
    events.wait_for(lambda e: isinstance(e, TaskStarted) and e.task_id == "a")
    # both slots are held: c and d wait on the node, not started
    assert _started(events, "c") == _started(events, "d") == 0
    gate_a.touch()  # one slot frees: the first in line (c) takes it, then d after c ends
    assert events.exited("c").exit_code == 0
    assert events.exited("d").exit_code == 0
    assert _started(events, "b") == 1 and events.count(
        lambda e: isinstance(e, TaskExited) and e.task_id == "b") == 0  # b still holds a slot
    gate_b.touch()
    assert events.exited("b").exit_code == 0
    order = [e for e in events.items if isinstance(e, TaskStarted | TaskExited)]
    for task_id in "ab":  # long attempts: the start is reported, before the exit
        kinds = [type(e).__name__ for e in order if e.task_id == task_id]
        assert kinds == ["TaskStarted", "TaskExited"], (task_id, kinds)
    for task_id in "cd":  # short ones may be reported by their exit alone (it has the start)
        kinds = [type(e).__name__ for e in order if e.task_id == task_id]
        assert kinds in (["TaskExited"], ["TaskStarted", "TaskExited"]), (task_id, kinds)
    c, d = events.exited("c"), events.exited("d")
    assert c.start_time is not None and d.start_time is not None
    assert c.end_time <= d.start_time  # one slot was free: d started after c ended


def test_an_attempt_needing_more_slots_waits_for_them(
        backend: tuple[ComputeBackend, Events], tmp_path: Path) -> None:
    port, events = backend
    gate = tmp_path / "gate"
    port.start_task(_launch("one", f"/bin/sh -c 'while [ ! -e {gate} ]; do sleep 0.01; done'"))
    events.wait_for(lambda e: isinstance(e, TaskStarted) and e.task_id == "one")
    port.start_task(_launch("wide", "/bin/true", slots=2))
    port.start_task(_launch("small", "/bin/true"))  # fits, but waits behind "wide" (in order)
    assert _started(events, "wide") == 0 and _started(events, "small") == 0
    gate.touch()
    assert events.exited("wide").exit_code == 0
    assert events.exited("small").exit_code == 0


def test_killing_a_waiting_attempt_reports_it_never_started(
        backend: tuple[ComputeBackend, Events], tmp_path: Path) -> None:
    port, events = backend
    gate = tmp_path / "gate"
    hold = f"/bin/sh -c 'while [ ! -e {gate} ]; do sleep 0.01; done'"
    for task_id in ("x", "y", "queued"):
        port.start_task(_launch(task_id, hold))
    events.wait_for(lambda e: isinstance(e, TaskStarted) and e.task_id == "y")
    port.kill_task(KillTask(POOL, NODE, JOB, "queued", 1))
    exited = events.exited("queued")
    assert exited.exit_code is None and exited.start_time is None
    assert exited.failure is not None and exited.failure.code == CODE_KILLED_BEFORE_START
    assert _started(events, "queued") == 0
    gate.touch()
    assert events.exited("x").exit_code == 0
