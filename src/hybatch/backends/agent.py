"""The local backend in a detached process: the node agent.

Spawning, reaping, exit records and slot gating run in a separate interpreter (its own GIL),
so task churn never competes with the service's writer thread for the lock. The service side
(``AgentBackend``) forwards effects over a Unix socket and feeds the events the agent sends
back to the service's sink; reading files and exit records needs no round trip (same host, same
paths), so those run service-side.

The agent runs the whole node in one thread, the supervisor's reaper: the connection from the
service is one more fd in its epoll set, offers are spawned right there, and the events one
wake-up produces go back as one message. No hand-offs between threads, no GIL contention inside
the agent (measured in bench/README.md). Messages are pickled flat (a class and a tuple of its
fields) rather than through the dataclasses' generic state protocol.

The agent outlives the service (ADR 0002): it runs in its own process group, ignores the
terminal's signals, holds a lock on
``<node root>/.agent/agent.pid`` (which names its pid) and listens on
``<node root>/.agent/agent.sock``. A service that starts connects to a running agent
(re-attach) or starts one. While no service is connected the agent keeps running its attempts,
writes their exit records and keeps the events it could not deliver; the next service gets, in
the answer to its hello, the attempts the agent still holds and those events. A clean stop of
the service stops the agent (its attempts are killed unreported and requeued on the next
start) unless the service was built to leave it running. An agent with no service and nothing
to run exits after a while, and at once when its socket is removed (its data directory is
gone).

Imports: ports, core effects/events, core records, node runtime, the local backend.
"""

from __future__ import annotations

import argparse
import contextlib
import copyreg
import dataclasses
import fcntl
import functools
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from operator import attrgetter
from pathlib import Path
from typing import Any

from hybatch.backends.local import LocalBackend
from hybatch.core.effects import (
    DeleteTaskFiles,
    KillNodeTask,
    KillTask,
    NodeTaskLaunch,
    ProvisionNode,
    ReleaseNode,
    RestartNode,
    TaskLaunch,
)
from hybatch.core.events import (
    Event,
    InstanceExited,
    InstanceStarted,
    NodeLost,
    NodeReady,
    NodeReleased,
    NodeTaskExited,
    TaskExited,
    TaskLost,
    TaskStarted,
)
from hybatch.core.records import FailureInfoRecord, ProcessUsage
from hybatch.node.environment import minimal_base_environment
from hybatch.node.host import HostNodes
from hybatch.node.strays import kill_strays
from hybatch.ports import AttemptRef, EventSink, NodeFiles

_log = logging.getLogger(__name__)

AGENT_DIR = ".agent"
"""Under the node root: the agent's socket, lock/pid file and log."""
SOCKET_NAME = "agent.sock"
PID_NAME = "agent.pid"
LOG_NAME = "agent.log"
PROTOCOL = 1
EXIT_LOCKED = 3
"""The agent's exit status when another agent holds the lock."""
IDLE_EXIT_S = 300.0
"""An agent with no service connected and no attempt left exits after this long."""
WATCHDOG_S = 1.0
MAX_SPAWNS = 3

AgentMessage = (
    ProvisionNode | ReleaseNode | TaskLaunch | KillTask | DeleteTaskFiles | RestartNode
    | NodeTaskLaunch | KillNodeTask | None
)
AttemptId = tuple[str, str, int]
"""(job id, task id, attempt) as the launch spelled them."""


@dataclass(frozen=True, slots=True)
class Hello:
    """The service's first message on a connection: who it is now."""

    protocol: int
    account_name: str
    account_url: str
    base_environment: dict[str, str]


@dataclass(frozen=True, slots=True)
class Attached:
    """The agent's answer to a hello, taken in one go on its reaper thread: every attempt it
    holds (its outcome will be reported on this connection) and the events no service
    received. An attempt neither held nor reported here has ended: its exit record is in its
    task directory, or its outcome is unknown."""

    pid: int
    fresh: bool
    """No service had connected to this agent before."""
    held: list[TaskLaunch] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def _pickle_flat(*classes: type) -> None:
    """Pickle these dataclasses as (class, field values): several times cheaper than the
    generic ``__getstate__`` of slotted dataclasses, which walks ``fields()`` per object."""
    for cls in classes:
        names = [f.name for f in dataclasses.fields(cls)]
        get = attrgetter(*names)

        def reduce(obj: Any, cls: type = cls, get: attrgetter[Any] = get,
                   single: bool = len(names) == 1) -> tuple[type, Any]:
            return cls, (get(obj),) if single else get(obj)

        copyreg.pickle(cls, reduce)


_pickle_flat(TaskLaunch, ProvisionNode, ReleaseNode, KillTask, DeleteTaskFiles, RestartNode,
             TaskExited,
             TaskStarted, TaskLost, NodeReady, NodeLost, NodeReleased, FailureInfoRecord,
             ProcessUsage, InstanceStarted, InstanceExited, NodeTaskLaunch, KillNodeTask,
             NodeTaskExited)


def agent_dir(root: Path) -> Path:
    return Path(root).absolute() / AGENT_DIR


def agent_pid(root: Path) -> int | None:
    """The pid the last agent under this node root wrote (it may have exited since)."""
    try:
        return int((agent_dir(root) / PID_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def _unix_address(path: Path) -> Iterator[str]:
    """An address for ``bind``/``connect``: the path itself, or, when it is too long for a
    socket address (108 bytes), the same file reached through an open fd of its directory."""
    if len(os.fsencode(str(path))) < 100:
        yield str(path)
        return
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dir_fd}/{path.name}"
    finally:
        os.close(dir_fd)


def _lowered(job_id: str, task_id: str, attempt: int) -> AttemptId:
    return (job_id.lower(), task_id.lower(), attempt)


def _shutdown(conn: Connection) -> None:
    """Shut the socket under ``conn`` down (a thread blocked reading it sees the end)."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


# =========================================================================== service side


class AgentBackend:
    """:class:`hybatch.ports.ComputeBackend` whose nodes live in a detached node agent.

    ``outlive_close``: ``close`` leaves the agent running with its attempts (the next service
    re-attaches) instead of stopping it.
    """

    def __init__(self, root: Path, account_name: str, account_url: str, *,
                 base_environment: Mapping[str, str] | None = None,
                 start_timeout_s: float = 60.0, outlive_close: bool = False,
                 idle_exit_s: float = IDLE_EXIT_S) -> None:
        self._root = Path(root).absolute()
        self._dir = agent_dir(self._root)
        self._host = HostNodes(self._root)
        self._hello = Hello(PROTOCOL, account_name, account_url,
                            dict(minimal_base_environment(os.environ) if base_environment is None
                                 else base_environment))
        self._idle_exit = idle_exit_s
        self._start_timeout = start_timeout_s
        self._outlive_close = outlive_close
        self._sink: EventSink | None = None
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        """The agent, when this service started it (to reap it)."""
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._started = False
        self._closing = False
        self._backlog: list[AgentMessage] = []
        """Messages sent while no agent was connected (it is being restarted)."""
        self._outstanding: dict[AttemptId, TaskLaunch] = {}
        """Attempts handed to the agent whose exit has not come back: settled if it dies."""
        self._nodes: dict[str, ProvisionNode] = {}
        self._node_ops: dict[str, ReleaseNode | RestartNode] = {}
        """Node changes the agent has not confirmed yet (NodeReleased, NodeReady)."""
        self._held: dict[AttemptId, TaskLaunch] = {}
        """From the last attach until ``reattach``: attempts the agent holds (lower-cased)."""
        self._reported: set[AttemptId] = set()
        """From the last attach: attempts whose exit came with it (lower-cased)."""
        self.agent_pid: int | None = None
        self.reattached = False
        """Whether the last attach found an agent that a previous service had used."""

    @property
    def root(self) -> Path:
        return self._root

    # ------------------------------------------------------------------ lifecycle

    def start(self, sink: EventSink) -> None:
        """Connect to the node root's running agent (re-attach) or start one; the events it
        kept go to ``sink`` at once. Call ``reattach`` with the attempts the service believes
        in flight before anything else."""
        if self._started:
            raise RuntimeError("AgentBackend already started")
        self._sink = sink
        self._closing = False
        conn, attached = self._attach()
        with self._send_lock:
            self._install(conn, attached)
        self._started = True
        self._reader = threading.Thread(target=self._read_events, args=(conn,),
                                        name="hybatch-agent-events", daemon=True)
        self._reader.start()

    def reattach(self, attempts: Sequence[AttemptRef]) -> list[Event]:
        """Settle the attempts a restarted service found in flight: those the agent holds keep
        running (their outcome is reported later); the others ended: their exit record says
        how, or their outcome is unknown (TaskLost). Held attempts the service does not know
        are killed."""
        events: list[Event] = []
        with self._send_lock:
            held, reported = self._held, self._reported
            self._held, self._reported = {}, set()
        wanted: set[AttemptId] = set()
        for ref in attempts:
            key = _lowered(ref.job_id, ref.task_id, ref.attempt)
            wanted.add(key)
            launch = held.get(key)
            if launch is not None:
                self._outstanding[(launch.job_id, launch.task_id, launch.attempt)] = launch
                continue
            if key in reported:
                continue  # its exit was among the events the agent kept
            exited = self._host.collect_exit(ref.pool_id, ref.node_id, ref.job_id, ref.task_id,
                                             ref.attempt)
            events.append(exited if exited is not None else
                          TaskLost(job_id=ref.job_id, task_id=ref.task_id, attempt=ref.attempt))
        for key, launch in held.items():
            if key not in wanted:
                _log.warning("killing attempt %s/%s #%d: the service does not know it",
                             launch.job_id, launch.task_id, launch.attempt)
                self.kill_task(KillTask(launch.pool_id, launch.node_id, launch.job_id,
                                        launch.task_id, launch.attempt))
        return events

    def close(self) -> None:
        """Stop the agent (it kills what still runs and reports nothing more), or with
        ``outlive_close`` only disconnect from it."""
        if not self._started:
            return
        self._closing = True
        with self._send_lock:
            conn, self._conn = self._conn, None
            self._started = False
        if conn is not None and not self._outlive_close:
            with contextlib.suppress(OSError):
                conn.send(None)
                # the agent closes its end once its attempts are killed and reaped
                if self._reader is not None:
                    self._reader.join(timeout=30)
        if conn is not None:
            _shutdown(conn)  # wakes the reader blocked on it
            conn.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._process is not None and not self._outlive_close:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    # ------------------------------------------------------------------ connecting

    def _attach(self) -> tuple[Connection, Attached]:
        """Connect to the agent (starting one if none runs) and say hello."""
        deadline = time.monotonic() + self._start_timeout
        spawns = 0
        while True:
            conn = self._connect()
            if conn is not None:
                try:
                    return conn, self._handshake(conn, deadline)
                except (EOFError, OSError, TimeoutError) as exc:  # it stopped meanwhile
                    _log.info("node agent did not answer (%s); trying again", exc)
                    conn.close()
            elif spawns < MAX_SPAWNS:
                spawns += 1
                if self._spawn(deadline):
                    continue  # it listens now
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no node agent answered on {self._dir / SOCKET_NAME}")
            # another agent holds the lock but does not answer yet (starting or stopping)
            time.sleep(0.05)

    def _connect(self) -> Connection | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _unix_address(self._dir / SOCKET_NAME) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        except BaseException:
            sock.close()
            raise
        return Connection(sock.detach())

    def _handshake(self, conn: Connection, deadline: float) -> Attached:
        conn.send(self._hello)
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            raise TimeoutError("no answer to hello")
        answer = conn.recv()
        if not isinstance(answer, Attached):
            raise OSError(f"unexpected answer from the node agent: {answer!r}")
        return answer

    def _spawn(self, deadline: float) -> bool:
        """Start an agent in its own process group; True once it listens, False when another agent
        holds the lock."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = json.dumps({"idleExitSeconds": self._idle_exit})
        read_fd, write_fd = os.pipe()
        try:
            with open(self._dir / LOG_NAME, "ab") as log:
                # a fresh interpreter (not fork: the service has threads), in its own process
                # group: no signal sent to the service's group (Ctrl-C) reaches it, and the
                # service's death sends it none. Not a session of its own: with scheduler
                # autogroups that measured 10-20% slower on a loaded host (ADR 0002).
                process = subprocess.Popen(
                    [sys.executable, "-m", "hybatch.backends.agent", "--root", str(self._root),
                     "--config", config, "--ready-fd", str(write_fd)],
                    pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    process_group=0)
        finally:
            os.close(write_fd)
        try:
            poller = select.poll()
            poller.register(read_fd, select.POLLIN)
            ready = poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
            answer = os.read(read_fd, 1) if ready else b""
        finally:
            os.close(read_fd)
        if answer == b"1":
            self._process = process
            return True
        if not ready:
            process.kill()
            process.wait()
            raise RuntimeError("the node agent did not start in time")
        code = process.wait(timeout=30)
        if code == EXIT_LOCKED:
            return False
        raise RuntimeError(f"the node agent exited with status {code} at start "
                           f"(see {self._dir / LOG_NAME})")

    def _install(self, conn: Connection, attached: Attached) -> None:
        """Under the send lock: use this connection; pass on the events the agent kept."""
        self._conn = conn
        self.agent_pid = attached.pid
        self.reattached = not attached.fresh
        self._held = {_lowered(launch.job_id, launch.task_id, launch.attempt): launch
                      for launch in attached.held}
        self._reported = {_lowered(e.job_id, e.task_id, e.attempt) for e in attached.events
                          if isinstance(e, TaskExited)}
        if attached.events:
            _log.info("node agent %d kept %d events while no service was connected",
                      attached.pid, len(attached.events))
        for event in attached.events:
            self._observe(event)
            self._emit(event)

    # ------------------------------------------------------------------ events

    def _read_events(self, conn: Connection) -> None:
        while True:
            self._pump(conn)
            if self._closing:
                return
            replacement = self._replace_agent(conn)
            if replacement is None:
                return
            conn = replacement

    def _pump(self, conn: Connection) -> None:
        """Feed the agent's events to the sink until the connection ends."""
        sink = self._sink
        assert sink is not None
        outstanding = self._outstanding
        while True:
            try:
                received: Event | list[Event] = conn.recv()
            except (EOFError, OSError):
                return
            for event in received if isinstance(received, list) else (received,):
                if type(event) is TaskExited:
                    outstanding.pop((event.job_id, event.task_id, event.attempt), None)
                    if self._held:  # only between a start and its reattach
                        self._held.pop(_lowered(event.job_id, event.task_id, event.attempt),
                                       None)
                elif type(event) is not TaskStarted:
                    self._observe(event)
                try:
                    sink(event)
                except Exception:
                    _log.exception("event sink failed for %r", event)

    def _observe(self, event: Event) -> None:
        """Keep track of what the agent confirmed about nodes."""
        if isinstance(event, NodeReady):
            if isinstance(self._node_ops.get(event.node_id), RestartNode):
                del self._node_ops[event.node_id]
        elif isinstance(event, NodeReleased | NodeLost):
            self._node_ops.pop(event.node_id, None)
            self._nodes.pop(event.node_id, None)

    def _emit(self, event: Event) -> None:
        assert self._sink is not None
        try:
            self._sink(event)
        except Exception:
            _log.exception("event sink failed for %r", event)

    def _replace_agent(self, dead: Connection) -> Connection | None:
        """The agent went away while the service runs (it was killed): start another, give it
        the nodes again and settle the attempts the dead one had: exit record, else lost."""
        _log.warning("the node agent connection closed; starting or re-attaching an agent")
        with self._send_lock:
            if self._conn is dead:
                self._conn = None  # sends wait in the backlog meanwhile
        dead.close()
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            self._process = None
        try:
            conn, attached = self._attach()
        except Exception:
            _log.exception("could not restart the node agent: its nodes are lost")
            self._give_up()
            return None
        with self._send_lock:
            if self._closing:
                with contextlib.suppress(OSError):
                    conn.send(None)
                conn.close()
                return None
            self._install(conn, attached)
            held = {(launch.job_id, launch.task_id, launch.attempt) for launch in attached.held}
            self._held = {}
            reported, self._reported = self._reported, set()
            backlog, self._backlog = self._backlog, []
            waiting = {(m.job_id, m.task_id, m.attempt) for m in backlog
                       if isinstance(m, TaskLaunch)}
            settled: list[Event] = []
            for key, launch in list(self._outstanding.items()):
                if key in held or key in waiting:
                    continue
                del self._outstanding[key]
                if _lowered(*key) in reported:
                    continue
                exited = self._host.collect_exit(launch.pool_id, launch.node_id, *key)
                settled.append(exited if exited is not None else TaskLost(*key))
            messages: list[AgentMessage] = [self._node_ops.get(node_id) or self._nodes[node_id]
                                            for node_id in {**self._nodes, **self._node_ops}]
            messages.extend(backlog)
            for index, message in enumerate(messages):
                try:
                    conn.send(message)
                except OSError:  # this one died too: the reader finds out and starts over
                    self._conn = None
                    self._backlog = [m for m in messages[index:]
                                     if not isinstance(m, ProvisionNode | ReleaseNode |
                                                       RestartNode)]
                    break
        _log.warning("node agent %d attached; %d attempts of the previous agent settled "
                     "(exit record or lost)", attached.pid, len(settled))
        for event in settled:
            self._emit(event)
        return conn

    def _give_up(self) -> None:
        """No agent can be started: every node is lost (its attempts are requeued)."""
        with self._send_lock:
            nodes = sorted({**self._nodes, **self._node_ops})
            self._nodes.clear()
            self._node_ops.clear()
            self._outstanding.clear()
            self._backlog.clear()
        for node_id in nodes:
            self._emit(NodeLost(node_id, "the node agent stopped and could not be restarted"))

    # ------------------------------------------------------------------ effects

    def _send(self, message: AgentMessage) -> None:
        with self._send_lock:
            self._send_locked(message)

    def _send_locked(self, message: AgentMessage) -> None:
        conn = self._conn
        if conn is None:
            if self._closing:
                return  # stopping: the agent is told nothing more
            if not self._started:
                raise RuntimeError("AgentBackend is not started")
            self._backlog.append(message)
            return
        try:
            conn.send(message)
        except OSError:  # the agent died: the reader replaces it and sends the backlog
            self._conn = None
            self._backlog.append(message)

    def provision_node(self, effect: ProvisionNode) -> None:
        self._nodes[effect.node_id] = effect
        self._node_ops.pop(effect.node_id, None)
        self._send(effect)

    def release_node(self, effect: ReleaseNode) -> None:
        self._node_ops[effect.node_id] = effect
        self._send(effect)

    def start_task(self, launch: TaskLaunch) -> None:
        with self._send_lock:  # one step: a replaced agent's settlement sees both or neither
            self._outstanding[(launch.job_id, launch.task_id, launch.attempt)] = launch
            self._send_locked(launch)

    def kill_task(self, effect: KillTask) -> None:
        self._send(effect)

    def delete_task_files(self, effect: DeleteTaskFiles) -> None:
        self._send(effect)

    def restart_node(self, effect: RestartNode) -> None:
        self._node_ops[effect.node_id] = effect
        self._send(effect)

    def run_node_task(self, launch: NodeTaskLaunch) -> None:
        self._send(launch)

    def kill_node_task(self, effect: KillNodeTask) -> None:
        self._send(effect)

    # ------------------------------------------------------------------ same-host reads

    def node_files(self, pool_id: str, node_id: str) -> NodeFiles:
        return self._host.node_files(pool_id, node_id)

    def collect_exit(self, pool_id: str, node_id: str, job_id: str, task_id: str,
                     attempt: int) -> TaskExited | None:
        return self._host.collect_exit(pool_id, node_id, job_id, task_id, attempt)


# =========================================================================== agent side


class _Outbox:
    """Events to the service: those the reaper thread produces are sent together after each of
    its wake-ups; any other thread's (node creation, the worker) go at once. While no service
    is connected (or a send fails: it died) they are kept for the next one."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.lock = threading.Lock()
        self._pending: list[Event] = []
        self.kept: list[Event] = []
        self.in_batch_thread: Any = lambda: False

    def put(self, event: Event) -> None:
        if self.in_batch_thread():
            self._pending.append(event)
            return
        with self.lock:
            self._send([event])

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        with self.lock:
            self._send(batch)

    def _send(self, batch: list[Event]) -> None:
        conn = self.conn
        if conn is None:
            self.kept.extend(batch)
            return
        try:
            conn.send(batch if len(batch) > 1 else batch[0])
        except OSError:  # the service is gone; its successor gets these
            self.conn = None
            self.kept.extend(batch)

    def keep_pending(self) -> None:
        """Reaper thread, under the lock: this wake-up's events go to the kept ones."""
        self.kept.extend(self._pending)
        self._pending = []


class _Agent:
    """The agent's connection handling, all on the reaper thread."""

    def __init__(self, backend: LocalBackend, outbox: _Outbox, listener: socket.socket,
                 stop: threading.Event) -> None:
        self.backend = backend
        self.outbox = outbox
        self.listener = listener
        self.stop = stop
        self.conn: Connection | None = None
        self.fresh = True
        self.quiet_since = time.monotonic()

    def on_accept(self) -> bool:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return True
        conn = Connection(sock.detach())
        self.backend.watch(conn.fileno(), functools.partial(self.on_hello, conn))
        return True

    def _drop(self, conn: Connection) -> None:
        self.backend.unwatch(conn.fileno())
        conn.close()

    def on_hello(self, conn: Connection) -> bool:
        try:
            hello = conn.recv()
        except (EOFError, OSError):
            self._drop(conn)
            return True
        if not isinstance(hello, Hello) or hello.protocol != PROTOCOL:
            _log.warning("refused a connection that did not say hello: %r", hello)
            self._drop(conn)
            return True
        if self.conn is not None:  # the newest service wins: the old one is gone
            self._disconnected(self.conn)
        self.backend.reconfigure(hello.account_name, hello.account_url,
                                 hello.base_environment)
        with self.outbox.lock:
            self.outbox.keep_pending()
            attached = Attached(pid=os.getpid(), fresh=self.fresh,
                                held=self.backend.held_launches(), events=self.outbox.kept)
            try:
                conn.send(attached)
            except OSError:
                self._drop(conn)
                return True
            self.outbox.kept = []
            self.outbox.conn = conn
        self.conn = conn
        self.fresh = False
        self.backend.watch(conn.fileno(), functools.partial(self.on_message, conn))
        return True

    def on_message(self, conn: Connection) -> bool:
        """The connection is readable: run one message (epoll calls again while more wait)."""
        try:
            message: AgentMessage | list[AgentMessage] = conn.recv()
        except (EOFError, OSError):  # the service is gone: keep running, keep its events
            self._disconnected(conn)
            return True
        if message is None:  # a clean stop
            self.stop.set()
            return False
        for item in message if isinstance(message, list) else (message,):
            _dispatch(self.backend, item)
        return True

    def _disconnected(self, conn: Connection) -> None:
        with self.outbox.lock:
            if self.outbox.conn is conn:
                self.outbox.conn = None
        self._drop(conn)
        if self.conn is conn:
            self.conn = None
            self.quiet_since = time.monotonic()


def _dispatch(backend: LocalBackend, message: AgentMessage) -> None:
    try:
        if isinstance(message, TaskLaunch):
            backend.start_task(message)
        elif isinstance(message, KillTask):
            backend.kill_task(message)
        elif isinstance(message, ProvisionNode):
            backend.provision_node(message)
        elif isinstance(message, ReleaseNode):
            backend.release_node(message)
        elif isinstance(message, DeleteTaskFiles):
            backend.delete_task_files(message)
        elif isinstance(message, RestartNode):
            backend.restart_node(message)
        elif isinstance(message, NodeTaskLaunch):
            backend.run_node_task(message)
        elif isinstance(message, KillNodeTask):
            backend.kill_node_task(message)
    except Exception:
        _log.exception("node agent failed on %r", message)


def _socket_id(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def run_agent(root: Path, ready_fd: int | None, idle_exit_s: float = IDLE_EXIT_S,
              lock_fd: int | None = None) -> None:
    """The agent process, once it holds the lock (``lock_fd``, released before the service is
    told the agent is done): a LocalBackend driven, on its reaper thread, by the messages of
    whichever service is connected."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when we stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # so does a terminal that closes
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    killed = kill_strays(root)  # left by an agent that died: nobody can collect them now
    if killed:
        _log.warning("killed %d task processes left by a previous node agent", killed)
    path = agent_dir(root) / SOCKET_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead agent's (we hold the lock)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with _unix_address(path) as address:
        listener.bind(address)
    listener.listen(8)
    ours = _socket_id(path)
    outbox = _Outbox()
    backend = LocalBackend(root, "", "", base_environment={}, spawners=0,
                           after_poll=outbox.flush)
    backend.start(outbox.put)
    outbox.in_batch_thread = backend.in_reaper_thread
    agent = _Agent(backend, outbox, listener, stop)
    backend.watch(listener.fileno(), agent.on_accept)
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    try:
        while not stop.wait(WATCHDOG_S):
            if agent.conn is not None:
                continue
            now = time.monotonic()
            if _socket_id(path) != ours:
                _log.warning("the agent socket %s is gone: stopping", path)
                break
            if backend.busy():
                agent.quiet_since = now
            elif now - agent.quiet_since >= idle_exit_s:
                _log.info("no service for %.0f s and nothing to run: stopping", idle_exit_s)
                break
    finally:
        if _socket_id(path) == ours:
            with contextlib.suppress(OSError):
                path.unlink()
        backend.close()  # kills what still runs, reports nothing
        listener.close()
        if lock_fd is not None:
            os.close(lock_fd)  # a new agent may start from here on
        if agent.conn is not None:
            agent.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="hybatch node agent (started by the service)")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--config", default="{}")
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args()
    config = json.loads(args.config)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s agent[%(process)d] %(levelname)s %(message)s")
    if args.ready_fd is not None:
        os.set_inheritable(args.ready_fd, False)
    directory = agent_dir(args.root)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_fd = os.open(directory / PID_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(EXIT_LOCKED)
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
    run_agent(args.root.absolute(), args.ready_fd,
              float(config.get("idleExitSeconds", IDLE_EXIT_S)), lock_fd)


if __name__ == "__main__":
    # run the imported module's main, not this __main__ copy: the classes pickled between
    # service and agent (Hello, Attached) must be the same ones on both sides
    from hybatch.backends import agent as _module

    _module.main()
