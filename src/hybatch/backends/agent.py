"""The local backend in a child process: the node agent.

Spawning, reaping, exit records and slot gating run in a separate interpreter (its own GIL),
so task churn never competes with the service's writer thread for the lock. The service side
(``AgentBackend``) forwards effects over a pipe and feeds the events the agent sends back to
the service's sink; reading files and exit records needs no round trip (same host, same
paths), so those run service-side.

The agent runs the whole node in one thread, the supervisor's reaper: the pipe from the service
is one more fd in its epoll set, offers are spawned right there, and the events one wake-up
produces go back as one message. No hand-offs between threads, no GIL contention inside the
agent (measured in bench/README.md). Messages are pickled flat (a class and a tuple of its
fields) rather than through the dataclasses' generic state protocol.

The agent is a child of the service and stops with it (a clean stop kills its tasks unreported
so recovery requeues them; see ADR 0002). Imports: ports, core effects/events, core records,
node runtime, the local backend.
"""

from __future__ import annotations

import argparse
import copyreg
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
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
from hybatch.node.host import HostNodes
from hybatch.ports import EventSink, NodeFiles

_log = logging.getLogger(__name__)

_READY = "ready"
AgentMessage = (
    ProvisionNode | ReleaseNode | TaskLaunch | KillTask | DeleteTaskFiles | RestartNode
    | NodeTaskLaunch | KillNodeTask | None
)


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


class AgentBackend:
    """:class:`hybatch.ports.ComputeBackend` whose nodes live in a node-agent process."""

    def __init__(self, root: Path, account_name: str, account_url: str, *,
                 base_environment: Mapping[str, str] | None = None,
                 start_timeout_s: float = 60.0) -> None:
        self._root = Path(root).absolute()
        self._host = HostNodes(self._root)
        self._args = (self._root, account_name, account_url,
                      dict(base_environment) if base_environment is not None else None)
        self._start_timeout = start_timeout_s
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self, sink: EventSink) -> None:
        if self._process is not None:
            raise RuntimeError("AgentBackend already started")
        ours, theirs = socket.socketpair()
        root, account_name, account_url, base_env = self._args
        config = json.dumps({"root": str(root), "accountName": account_name,
                             "accountUrl": account_url, "baseEnvironment": base_env})
        # a fresh interpreter (not fork: the service has threads; not multiprocessing's spawn:
        # that re-imports the caller's __main__)
        process = subprocess.Popen(
            [sys.executable, "-m", "hybatch.backends.agent", "--fd", str(theirs.fileno()),
             "--config", config], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        parent = Connection(ours.detach())
        if not parent.poll(self._start_timeout) or parent.recv() != _READY:
            process.kill()
            raise RuntimeError("the node agent did not start")
        self._conn, self._process = parent, process
        self._reader = threading.Thread(target=self._read_events, args=(parent, sink),
                                        name="hybatch-agent-events", daemon=True)
        self._reader.start()

    def close(self) -> None:
        """Stop the agent: it kills what still runs and reports nothing more."""
        if self._process is None:
            return
        try:
            self._send(None)
            self._process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._process = None

    def _send(self, message: AgentMessage) -> None:
        if self._conn is None:
            raise RuntimeError("AgentBackend is not started")
        with self._send_lock:
            self._conn.send(message)

    @staticmethod
    def _read_events(conn: Connection, sink: EventSink) -> None:
        while True:
            try:
                received: Event | list[Event] = conn.recv()
            except (EOFError, OSError):
                return
            for event in received if isinstance(received, list) else (received,):
                try:
                    sink(event)
                except Exception:
                    _log.exception("event sink failed for %r", event)

    # ------------------------------------------------------------------ effects

    def provision_node(self, effect: ProvisionNode) -> None:
        self._send(effect)

    def release_node(self, effect: ReleaseNode) -> None:
        self._send(effect)

    def start_task(self, launch: TaskLaunch) -> None:
        self._send(launch)

    def kill_task(self, effect: KillTask) -> None:
        self._send(effect)

    def delete_task_files(self, effect: DeleteTaskFiles) -> None:
        self._send(effect)

    def restart_node(self, effect: RestartNode) -> None:
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


class _Outbox:
    """Events to the service: those the reaper thread produces are sent together after each of
    its wake-ups; any other thread's (node creation, the worker) go at once."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self.in_batch_thread: Any = lambda: False

    def put(self, event: Event) -> None:
        if self.in_batch_thread():
            self._pending.append(event)
            return
        with self._lock:
            self._conn.send(event)

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        with self._lock:
            self._conn.send(batch if len(batch) > 1 else batch[0])


def run_agent(conn: Connection, root: Path, account_name: str, account_url: str,
              base_environment: dict[str, str] | None) -> None:
    """The agent process: a LocalBackend driven, on its reaper thread, by the service's
    messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when we stop
    outbox = _Outbox(conn)
    backend = LocalBackend(root, account_name, account_url, base_environment=base_environment,
                           spawners=0, after_poll=outbox.flush)
    backend.start(outbox.put)
    outbox.in_batch_thread = backend.in_reaper_thread
    stop = threading.Event()

    def on_message() -> bool:
        """Reaper thread, the pipe is readable: run one message (epoll calls again while more
        wait); False once the service says stop or is gone."""
        try:
            message: AgentMessage | list[AgentMessage] = conn.recv()
        except (EOFError, OSError):
            message = None  # the service is gone
        if message is None:
            stop.set()
            return False
        for item in message if isinstance(message, list) else (message,):
            _dispatch(backend, item)
        return True

    backend.watch(conn.fileno(), on_message)
    conn.send(_READY)
    try:
        stop.wait()
    finally:
        backend.close()
        conn.close()


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


def main() -> None:
    parser = argparse.ArgumentParser(description="hybatch node agent (started by the service)")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = json.loads(args.config)
    logging.basicConfig(level=logging.WARNING)
    os.set_inheritable(args.fd, False)
    run_agent(Connection(args.fd), Path(config["root"]), config["accountName"],
              config["accountUrl"], config["baseEnvironment"])


if __name__ == "__main__":
    main()
