"""The node runtime inside a Dask worker: one worker is one Batch node.

``HybatchNodePlugin`` is a worker plugin (registered by the service's Dask backend). When the
service provisions a node on the worker it lays out the node directory under the worker's own
node root, computes the node's AZ_BATCH_* environment and writes ``volatile/node.json``. Each
task attempt is one Dask task (``run_attempt``) pinned to the worker, so the worker's threads
are the node's slots. The Dask thread runs the attempt itself with the node runtime
(``node.process``: spawn in its own process group with stdout/stderr files, wait on its
pidfd up to its wall-clock limit, reap with its resource usage), writes the exit record in the
task directory and only then reports. No supervisor thread: measured, handing each attempt to
a reaper thread and waiting for it cost the worker about twice the CPU per task (GIL
hand-offs between the Dask thread, the reaper and the worker's event loop).

Outcomes go back to the service as Dask events (``Worker.log_event`` on the node's topic, the
scheduler forwards them to the subscribed client): ``["start", ...]`` for attempts still
running after a few milliseconds, ``["exit", <exit record JSON>]`` for every attempt. The
service never reads the worker's files itself: file listings and reads, exit records on
recovery, kills, restarts and releases are functions run on the worker (``Client.run``).

Imports: standard library, distributed, core effects/records, node runtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from hybatch.core.effects import TaskLaunch
from hybatch.core.records import FailureInfoRecord
from hybatch.node.dask_protocol import BATCH, PLUGIN_NAME, exit_message, start_message
from hybatch.node.environment import (
    NodeContext,
    minimal_base_environment,
    node_environment,
    task_environment,
)
from hybatch.node.files import LocalNodeFiles
from hybatch.node.layout import (
    APPLICATIONS_DIR,
    MOUNTS_DIR,
    SHARED_DIR,
    STARTUP_DIR,
    WORKITEMS_DIR,
    NodeLayout,
    check_path_id,
)
from hybatch.node.process import (
    CODE_EXIT_STATUS_LOST,
    CODE_KILLED_BEFORE_START,
    Attempt,
    ExitRecord,
    LaunchFailed,
    kill_group,
    read_exit_record,
    spawn,
    try_reap,
    utc_now,
    wall_clock_failure,
    write_exit_record,
)
from hybatch.node.service_logs import write_service_log
from hybatch.node.supervisor import AttemptKey, attempt_key, launch_key

NODE_FILE = "node.json"
CODE_NODE_UNAVAILABLE = "NodeUnavailable"
START_REPORT_DELAY_S = 0.005
"""An attempt that ends sooner is reported once, by its exit (which carries its start)."""
RELEASE_WAIT_S = 30.0
MAX_EARLY_KILLS = 10_000
_REIMAGE_WIPES = (WORKITEMS_DIR, SHARED_DIR, STARTUP_DIR, APPLICATIONS_DIR, MOUNTS_DIR)


@dataclass(slots=True)
class _Node:
    context: NodeContext
    env: dict[str, str]
    topic: str
    slots: int
    released: bool = False


@dataclass(slots=True)
class _Running:
    topic: str
    done: threading.Event = field(default_factory=threading.Event)
    kill: bool = False
    quiet: bool = False
    """Killed as an orphan of an earlier service run: its exit is recorded, not reported."""
    record: ExitRecord | None = None
    process: Attempt | None = None
    """Set while its process runs (and is not reaped): what a kill signals."""


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class HybatchNodePlugin(WorkerPlugin):
    """Holds the nodes (normally one) this worker runs and their task supervisor."""

    name = PLUGIN_NAME
    idempotent = True
    """A service that reconnects registers the plugin again: keep the running one (and its
    nodes and attempts)."""

    def setup(self, worker: Any) -> None:
        self._worker = worker
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        self._running: dict[AttemptKey, _Running] = {}
        self._early_kills: OrderedDict[AttemptKey, None] = OrderedDict()
        self._stdin_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._outbox_lock = threading.Lock()
        self._outbox: dict[str, list[list[Any]]] = {}
        self._flush_scheduled = False

    def teardown(self, worker: Any) -> None:
        """The worker is closing: kill what still runs (its threads then finish)."""
        with self._lock:
            for running in self._running.values():
                running.kill = True
                if running.process is not None:
                    kill_group(running.process.pid)

    # ------------------------------------------------------------------ reporting

    def _publish(self, topic: str, message: list[Any]) -> None:
        """Queue a report; the worker's event loop sends what queued meanwhile as one event
        (one loop wake-up and one scheduler message for a burst of exits)."""
        with self._outbox_lock:
            self._outbox.setdefault(topic, []).append(message)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        try:
            self._worker.loop.add_callback(self._flush)
        except Exception:  # the worker is closing: nothing to tell
            with self._outbox_lock:
                self._flush_scheduled = False

    def _flush(self) -> None:
        """Worker event loop: send the queued reports, a batch per topic."""
        with self._outbox_lock:
            outbox, self._outbox = self._outbox, {}
            self._flush_scheduled = False
        for topic, messages in outbox.items():
            with contextlib.suppress(Exception):
                self._worker.log_event(topic, [BATCH, messages])

    def _finish(self, running: _Running, record: ExitRecord, task_dir: Path | None) -> None:
        """The exit record goes to the task directory first, then the report."""
        key = attempt_key(record.node_id, record.job_id, record.task_id, record.attempt)
        if task_dir is not None:
            with contextlib.suppress(OSError):
                write_exit_record(task_dir, record)
        with self._lock:
            if self._running.get(key) is running:
                del self._running[key]
        running.record = record
        if not running.quiet:
            self._publish(running.topic, exit_message(record))
        running.done.set()

    # ------------------------------------------------------------------ nodes

    def provision(self, spec: dict[str, Any]) -> dict[str, Any]:
        pool_id = check_path_id(str(spec["poolId"]), "pool id")
        node_id = check_path_id(str(spec["nodeId"]), "node id")
        base = spec.get("nodeRoot") or os.path.join(self._worker.local_directory,
                                                    "hybatch-nodes")
        layout = NodeLayout(Path(base).absolute() / pool_id / node_id)
        context = NodeContext(pool_id=pool_id, node_id=node_id,
                              is_dedicated=bool(spec["isDedicated"]), layout=layout,
                              account_name=str(spec["accountName"]),
                              account_url=str(spec["accountUrl"]), task_user=_user(),
                              base_environment=minimal_base_environment(os.environ))
        with self._lock:
            existing = self._nodes.get(node_id)
            if existing is not None and not existing.released:
                return self._describe(existing)
        layout.create()
        info = {"poolId": pool_id, "nodeId": node_id, "isDedicated": context.is_dedicated,
                "slots": int(spec["slots"]), "topic": str(spec["topic"]),
                "worker": self._worker.address}
        temp = layout.volatile / f".{NODE_FILE}.tmp"
        temp.write_text(json.dumps(info))
        os.replace(temp, layout.volatile / NODE_FILE)
        write_service_log(layout.root, f"node {node_id} of pool {pool_id} ready on Dask worker "
                                       f"{self._worker.address} ({spec['slots']} slots)")
        node = _Node(context=context, env=node_environment(context), topic=str(spec["topic"]),
                     slots=int(spec["slots"]))
        with self._lock:
            self._nodes[node_id] = node
        return self._describe(node)

    @staticmethod
    def _describe(node: _Node) -> dict[str, Any]:
        return {"poolId": node.context.pool_id, "nodeId": node.context.node_id,
                "topic": node.topic, "slots": node.slots, "released": node.released,
                "root": str(node.context.layout.root)}

    def identify(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._describe(n) for n in self._nodes.values() if not n.released]

    def _node(self, node_id: str) -> _Node:
        with self._lock:
            node = self._nodes.get(node_id)
        if node is None or node.released:
            raise FileNotFoundError(f"node {node_id} is not on this worker")
        return node

    def release(self, node_id: str) -> list[dict[str, Any]]:
        """Kill what runs on the node, wait for its exits; returns their records."""
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                return []
            node.released = True
            mine = [(k, r) for k, r in self._running.items() if k[0] == node_id]
            for _, running in mine:
                self._kill_locked(running)
        deadline = time.monotonic() + RELEASE_WAIT_S
        for _, running in mine:
            running.done.wait(max(0.0, deadline - time.monotonic()))
        root = node.context.layout.volatile
        with contextlib.suppress(OSError, ValueError):
            info = json.loads((root / NODE_FILE).read_text())
            (root / NODE_FILE).write_text(json.dumps({**info, "released": True}))
        return [r.record.to_json() for _, r in mine if r.record is not None]

    def restart(self, node_id: str, reimage: bool) -> None:
        layout = self._node(node_id).context.layout
        if reimage:
            for name in _REIMAGE_WIPES:
                shutil.rmtree(layout.root / name, ignore_errors=True)
        layout.create()
        write_service_log(layout.root, f"node {node_id} "
                                       f"{'reimaged' if reimage else 'restarted'}")

    def delete_task_files(self, node_id: str, job_id: str, task_id: str) -> None:
        with contextlib.suppress(ValueError, FileNotFoundError):
            task_dir = self._node(node_id).context.layout.task_dir(job_id, task_id)
            shutil.rmtree(task_dir, ignore_errors=True)

    def files(self, node_id: str) -> LocalNodeFiles:
        return LocalNodeFiles(self._node(node_id).context.layout.root)

    def collect_exit(self, node_id: str, job_id: str, task_id: str,
                     attempt: int) -> dict[str, Any] | None:
        """The attempt's exit record, if its node wrote one. An attempt still running belongs
        to an earlier service run whose client is gone: it is killed quietly (its task is
        requeued) and None returned."""
        node = self._node(node_id)
        key = attempt_key(node_id, job_id, task_id, attempt)
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                running.quiet = True
                self._kill_locked(running)
        if running is not None:
            running.done.wait(RELEASE_WAIT_S)
            return None
        try:
            task_dir = node.context.layout.task_dir(job_id, task_id)
        except ValueError:
            return None
        record = read_exit_record(task_dir)
        if record is None or record.attempt != attempt:
            return None
        return record.to_json()

    # ------------------------------------------------------------------ attempts

    def run(self, launch: TaskLaunch, topic: str) -> None:
        """Dask task thread: run one attempt to its end (the thread is one slot)."""
        key = launch_key(launch)
        with self._lock:
            node = self._nodes.get(launch.node_id)
            killed = key in self._early_kills
            if killed:
                del self._early_kills[key]
            running = None
            if node is not None and not node.released and not killed:
                running = self._running[key] = _Running(topic=topic)
        if killed:
            self._never_started(launch, topic, "usererror", CODE_KILLED_BEFORE_START,
                                "The task was killed before its process started")
            return
        if node is None or running is None:
            self._never_started(launch, topic, "servererror", CODE_NODE_UNAVAILABLE,
                                f"The node {launch.node_id!r} is not available to run tasks")
            return
        try:
            paths = node.context.layout.task(launch.job_id, launch.task_id)
        except ValueError as exc:
            with self._lock:
                self._running.pop(key, None)
            self._never_started(launch, topic, "usererror", CODE_NODE_UNAVAILABLE, str(exc))
            return
        outcome = spawn(launch, paths, task_environment(node.env, paths, launch),
                        self._stdin_fd)
        if isinstance(outcome, LaunchFailed):
            self._finish(running, ExitRecord.never_started(launch, outcome.failure),
                         paths.task_dir)
            return
        with self._lock:
            running.process = outcome
            if running.kill:  # killed while it was being spawned
                self._kill_locked(running)
        self._wait(running, outcome)

    def _wait(self, running: _Running, attempt: Attempt) -> None:
        """Wait on the pidfd (reporting a start if it still runs after a few ms), enforce the
        wall-clock limit, reap, record, report."""
        poller = select.poll()
        poller.register(attempt.pidfd, select.POLLIN)
        started_reported = False
        while True:
            now = time.monotonic()
            timeout = None if attempt.deadline is None else max(0.0, attempt.deadline - now)
            if not started_reported:
                timeout = START_REPORT_DELAY_S if timeout is None else min(
                    timeout, START_REPORT_DELAY_S)
            ready = poller.poll(None if timeout is None else int(timeout * 1000) + 1)
            if ready:
                break
            if not started_reported:
                started_reported = True
                if not running.quiet:
                    launch = attempt.launch
                    self._publish(running.topic, start_message(
                        launch.node_id, launch.job_id, launch.task_id, launch.attempt,
                        attempt.start_time))
            if attempt.deadline is not None and time.monotonic() >= attempt.deadline:
                with self._lock:
                    attempt.timed_out = True
                    kill_group(attempt.pid)
        lost = False
        with self._lock:  # reaping under the lock: a kill never signals a freed pid
            try:
                code = try_reap(attempt)
            except ChildProcessError:
                code, lost = None, True
            running.process = None
        end_time = utc_now()
        os.close(attempt.pidfd)
        if attempt.timed_out or attempt.kill_requested:
            kill_group(attempt.pid)  # descendants that outlived the leader go too
        failure: FailureInfoRecord | None = None
        if attempt.timed_out:
            failure = wall_clock_failure()
        elif lost:
            failure = FailureInfoRecord(
                category="servererror", code=CODE_EXIT_STATUS_LOST,
                message="The task process ended but its exit status could not be collected")
        record = ExitRecord.of(attempt.launch, exit_code=code, start_time=attempt.start_time,
                               end_time=end_time, timed_out=attempt.timed_out,
                               failure=failure, usage=attempt.usage)
        self._finish(running, record, attempt.paths.task_dir)

    def _kill_locked(self, running: _Running) -> None:
        running.kill = True
        if running.process is not None:
            running.process.kill_requested = True
            kill_group(running.process.pid)

    def _never_started(self, launch: TaskLaunch, topic: str, category: str, code: str,
                       message: str) -> None:
        failure = FailureInfoRecord(category=category, code=code, message=message)
        self._publish(topic, exit_message(ExitRecord.never_started(launch, failure)))

    def kill(self, node_id: str, job_id: str, task_id: str, attempt: int) -> None:
        key = attempt_key(node_id, job_id, task_id, attempt)
        with self._lock:
            running = self._running.get(key)
            if running is None:  # not here yet (or already over): refuse it on arrival
                self._early_kills[key] = None
                while len(self._early_kills) > MAX_EARLY_KILLS:
                    self._early_kills.popitem(last=False)
                return
            self._kill_locked(running)


# --------------------------------------------------------------------------- worker functions
# Run on the worker, either as Dask tasks (run_attempt) or through Client.run (the rest).


def _plugin(dask_worker: Any = None) -> HybatchNodePlugin:
    worker = dask_worker if dask_worker is not None else get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, HybatchNodePlugin):
        raise RuntimeError("the hybatch node plugin is not registered on this worker")
    return plugin


def run_attempt(launch: TaskLaunch, topic: str) -> None:
    _plugin().run(launch, topic)


def provision_node(spec: dict[str, Any], dask_worker: Any = None) -> dict[str, Any]:
    return _plugin(dask_worker).provision(spec)


def identify_nodes(dask_worker: Any = None) -> list[dict[str, Any]]:
    plugin = dask_worker.plugins.get(PLUGIN_NAME) if dask_worker is not None else None
    return plugin.identify() if isinstance(plugin, HybatchNodePlugin) else []


def release_node(node_id: str, dask_worker: Any = None) -> list[dict[str, Any]]:
    return _plugin(dask_worker).release(node_id)


def restart_node(node_id: str, reimage: bool, dask_worker: Any = None) -> None:
    _plugin(dask_worker).restart(node_id, reimage)


def kill_attempt(node_id: str, job_id: str, task_id: str, attempt: int,
                 dask_worker: Any = None) -> None:
    _plugin(dask_worker).kill(node_id, job_id, task_id, attempt)


def delete_task_files(node_id: str, job_id: str, task_id: str, dask_worker: Any = None) -> None:
    _plugin(dask_worker).delete_task_files(node_id, job_id, task_id)


def collect_exit(node_id: str, job_id: str, task_id: str, attempt: int,
                 dask_worker: Any = None) -> dict[str, Any] | None:
    return _plugin(dask_worker).collect_exit(node_id, job_id, task_id, attempt)


def node_files(node_id: str, operation: str, args: tuple[Any, ...],
               dask_worker: Any = None) -> Any:
    """One NodeFiles call (list, stat, read, delete) on the node's files."""
    if operation not in ("list", "stat", "read", "delete"):
        raise ValueError(f"unknown file operation {operation!r}")
    files = _plugin(dask_worker).files(node_id)
    return getattr(files, operation)(*args)
