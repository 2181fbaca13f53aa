"""The node agent outlives its service: a service that goes away (crash, or a stop that leaves
the agent up) loses nothing, the next one re-attaches and keeps the attempts still running; an
agent that dies is replaced and its attempts are settled (exit record, else lost); a clean stop
stops it. Real processes and sockets; every wait is a poll against a deadline."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hybatch.backends.agent import AGENT_DIR, SOCKET_NAME, AgentBackend, agent_pid
from hybatch.core.effects import ProvisionNode, TaskLaunch
from hybatch.core.events import NodeReady, TaskExited, TaskLost
from hybatch.node.layout import NodeLayout
from hybatch.node.process import read_exit_record
from hybatch.ports import AttemptRef, ComputeBackend, Reattaching
from tests.contract.test_backends import Events, poll, process_gone

POOL, NODE, JOB = "pool-d", "node-d", "job-d"
ACCOUNT, URL = "acct", "http://x"


def _waiting(gate: Path, pid_file: Path) -> str:
    """A task that records its pid, then runs until ``gate`` exists."""
    temp = pid_file.with_suffix(".tmp")
    program = (f"import os, pathlib, time\npathlib.Path({str(temp)!r}).write_text("
               f"str(os.getpid()))\nos.replace({str(temp)!r}, {str(pid_file)!r})\n"
               f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)")
    return shlex.join([sys.executable, "-I", "-S", "-c", program])


def all_threads_gone(pid: int) -> bool:
    """Gone, or a zombie whose threads have all exited (a zombie leader alone does not mean
    its other threads, which share its open files, are gone)."""
    try:
        return process_gone(pid) and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except FileNotFoundError:
        return True


def _launch(task_id: str, command: str, attempt: int = 1) -> TaskLaunch:
    return TaskLaunch(POOL, NODE, JOB, task_id, attempt, command, (), None)


def _ref(task_id: str, attempt: int = 1) -> AttemptRef:
    return AttemptRef(POOL, NODE, JOB, task_id, attempt)


def _started(backend: AgentBackend, events: Events, slots: int = 2) -> AgentBackend:
    port: ComputeBackend = backend
    port.start(events)
    port.provision_node(ProvisionNode(POOL, NODE, slots, True))
    events.wait_for(lambda e: e == NodeReady(NODE))
    return backend


_made: list[AgentBackend] = []


def _backend(root: Path, **options: Any) -> AgentBackend:
    backend = AgentBackend(root, ACCOUNT, URL, **options)
    _made.append(backend)
    return backend


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "nodes"
    yield root
    while _made:  # what a failing test left open
        _made.pop().close()
    pid = agent_pid(root)
    if pid is not None and not process_gone(pid):
        os.kill(pid, signal.SIGTERM)
        poll(lambda: process_gone(pid), what="the agent to stop")


def test_the_agent_outlives_its_service_and_keeps_what_ends_meanwhile(root: Path,
                                                                       tmp_path: Path) -> None:
    gate, pid_file = tmp_path / "gate", tmp_path / "long.pid"
    first = Events()
    a = _started(_backend(root, outlive_close=True), first)
    assert not a.reattached
    a.start_task(_launch("long", _waiting(gate, pid_file)))
    a.start_task(_launch("quick", "/bin/true"))
    assert first.exited("quick").exit_code == 0
    poll(pid_file.exists, what="the long task to run")
    agent = a.agent_pid
    assert agent is not None and agent_pid(root) == agent
    a.close()  # the service goes away; the agent stays
    assert not process_gone(agent)

    gate.touch()  # the attempt ends while no service is connected
    task_dir = NodeLayout(root / POOL / NODE).task_dir(JOB, "long")
    poll(lambda: read_exit_record(task_dir) is not None, what="the exit record")

    second = Events()
    b = _backend(root)
    b.start(second)
    assert b.reattached and b.agent_pid == agent
    assert second.exited("long").exit_code == 0  # kept for the next service
    assert isinstance(b, Reattaching)
    settled = b.reattach([_ref("long"), _ref("quick")])
    # long came with the kept events; quick's exit went to the first service: its record
    assert [(type(e), e.task_id) for e in settled] == [(TaskExited, "quick")]
    b.close()
    poll(lambda: process_gone(agent), what="a clean stop to stop the agent")


def test_reattach_keeps_the_attempts_that_still_run(root: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = Events()
    a = _started(_backend(root, outlive_close=True), first)
    a.start_task(_launch("long", _waiting(gate, tmp_path / "long.pid")))
    a.start_task(_launch("orphan", _waiting(gate, tmp_path / "orphan.pid")))
    a.start_task(_launch("queued", "/bin/true"))  # waits for one of the two slots
    poll(lambda: (tmp_path / "long.pid").exists() and (tmp_path / "orphan.pid").exists(),
         what="both long tasks to run")
    a.close()

    second = Events()
    b = _backend(root)
    b.start(second)
    assert b.reattached
    # never: the service committed the offer but crashed before sending it
    settled = b.reattach([_ref("long"), _ref("queued"), _ref("never")])
    assert settled == [TaskLost(JOB, "never", 1)]
    orphan = second.exited("orphan")  # held but unknown to the service: killed
    assert orphan.exit_code == 128 + signal.SIGKILL
    assert second.exited("queued").exit_code == 0  # it took the orphan's slot
    gate.touch()
    assert second.exited("long").exit_code == 0
    assert second.count(lambda e: isinstance(e, TaskLost)) == 0
    b.close()


def test_a_killed_agent_is_replaced_and_its_attempts_settled(root: Path, tmp_path: Path) -> None:
    gate, pid_file = tmp_path / "gate", tmp_path / "long.pid"
    events = Events()
    backend = _started(_backend(root), events)
    backend.start_task(_launch("done", "/bin/true"))
    assert events.exited("done").exit_code == 0
    backend.start_task(_launch("long", _waiting(gate, pid_file)))
    poll(pid_file.exists, what="the long task to run")
    task_pid = int(pid_file.read_text())
    old = backend.agent_pid
    assert old is not None

    os.kill(old, signal.SIGKILL)  # the worker dies: long's outcome is unknowable
    assert events.wait_for(lambda e: isinstance(e, TaskLost)) == TaskLost(JOB, "long", 1)
    assert backend.agent_pid not in (None, old) and not process_gone(backend.agent_pid)
    poll(lambda: process_gone(task_pid), what="the new agent to kill the stray attempt")
    assert events.count(lambda e: isinstance(e, TaskExited) and e.task_id == "done") == 1

    backend.start_task(_launch("long", "/bin/true", attempt=2))  # the node works again
    assert events.exited("long", attempt=2).exit_code == 0
    backend.close()


def test_what_is_sent_while_the_agent_is_replaced_runs_once(root: Path) -> None:
    events = Events()
    backend = _started(_backend(root), events)
    old = backend.agent_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    poll(lambda: all_threads_gone(old), what="the agent to die")
    # the service may not have noticed yet, or be starting the new agent: either way the
    # attempt waits and goes to the new one (an attempt sent while the agent was dying, its
    # socket still open, would be settled as lost instead: it may have started)
    backend.start_task(_launch("during", "/bin/true"))
    assert events.exited("during").exit_code == 0
    poll(lambda: backend.agent_pid != old, what="the new agent")
    assert events.count(lambda e: isinstance(e, TaskExited | TaskLost)
                        and e.task_id == "during") == 1
    backend.close()


def test_a_clean_stop_stops_the_agent_and_its_attempts(root: Path, tmp_path: Path) -> None:
    gate, pid_file = tmp_path / "gate", tmp_path / "long.pid"
    events = Events()
    backend = _started(_backend(root), events)
    backend.start_task(_launch("long", _waiting(gate, pid_file)))
    poll(pid_file.exists, what="the long task to run")
    agent, task_pid = backend.agent_pid, int(pid_file.read_text())
    assert agent is not None
    backend.close()
    assert process_gone(task_pid)  # killed and reaped before the agent let go
    poll(lambda: process_gone(agent), what="the agent to exit")
    assert not (root / AGENT_DIR / SOCKET_NAME).exists()
    assert events.count(lambda e: isinstance(e, TaskExited) and e.task_id == "long") == 0


def test_an_agent_left_alone_stops_when_idle_or_when_its_socket_goes(root: Path) -> None:
    idle = _backend(root, outlive_close=True, idle_exit_s=0.5)
    _started(idle, Events())
    pid = idle.agent_pid
    assert pid is not None
    idle.close()
    poll(lambda: process_gone(pid), what="the idle agent to exit")

    left = _backend(root, outlive_close=True)
    _started(left, Events())
    pid = left.agent_pid
    assert pid is not None and pid != idle.agent_pid
    left.close()
    (root / AGENT_DIR / SOCKET_NAME).unlink()  # its data directory is being removed
    poll(lambda: process_gone(pid), what="the agent whose socket is gone to exit")


def test_a_node_root_too_long_for_a_socket_address(root: Path) -> None:
    long_root = root / ("r" * 60) / ("s" * 60)
    assert len(str(long_root / AGENT_DIR / SOCKET_NAME)) > 108
    events = Events()
    backend = _started(_backend(long_root, outlive_close=True), events)
    backend.start_task(_launch("t", "/bin/true"))
    assert events.exited("t").exit_code == 0
    agent = backend.agent_pid
    backend.close()
    again = _backend(long_root)
    again.start(Events())
    assert again.reattached and again.agent_pid == agent
    again.close()
    assert agent is not None
    poll(lambda: process_gone(agent), what="the agent to stop")
