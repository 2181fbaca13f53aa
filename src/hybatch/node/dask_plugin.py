"""The node runtime inside a Dask worker: one worker is one Batch node.

``HybatchNodePlugin`` is a worker plugin (registered by the service's Dask backend). When the
service provisions a node on the worker it lays out the node directory under the worker's own
node root, computes the node's AZ_BATCH_* environment and writes ``volatile/node.json``. Each
task attempt is one Dask task (``run_attempt``) pinned to the worker, so the worker's threads
are the node's slots: the task hands the attempt to the node's ``TaskSupervisor`` (own process
group, stdout/stderr files, wall-clock limit), which writes the exit record in the task
directory and only then reports; the Dask thread waits for that exit.

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
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from hybatch.core.effects import TaskLaunch
from hybatch.core.records import FailureInfoRecord
from hybatch.node.dask_protocol import PLUGIN_NAME
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
from hybatch.node.process import CODE_KILLED_BEFORE_START, ExitRecord, read_exit_record
from hybatch.node.service_logs import write_service_log
from hybatch.node.supervisor import AttemptKey, TaskSupervisor, attempt_key, launch_key

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


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _iso(value: datetime) -> str:
    return value.isoformat()


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
        self._supervisor = TaskSupervisor(self._on_exit, spawners=0, on_start=self._on_start,
                                          start_report_delay_s=START_REPORT_DELAY_S)

    def teardown(self, worker: Any) -> None:
        self._supervisor.close()
        with self._lock:
            waiting = list(self._running.values())
            self._running.clear()
        for running in waiting:  # the worker is closing: free its task threads
            running.done.set()

    # ------------------------------------------------------------------ reporting

    def _publish(self, topic: str, message: list[Any]) -> None:
        with contextlib.suppress(Exception):  # the worker is closing: nothing to tell
            self._worker.log_event(topic, message)

    def _on_start(self, launch: TaskLaunch, start_time: datetime) -> None:
        with self._lock:
            running = self._running.get(launch_key(launch))
        if running is not None and not running.quiet:
            self._publish(running.topic, ["start", launch.node_id, launch.job_id,
                                          launch.task_id, launch.attempt, _iso(start_time)])

    def _on_exit(self, record: ExitRecord) -> None:
        """Reaper thread; the exit record is already in the task directory."""
        key = attempt_key(record.node_id, record.job_id, record.task_id, record.attempt)
        with self._lock:
            running = self._running.pop(key, None)
        if running is None:
            return
        running.record = record
        if not running.quiet:
            self._publish(running.topic, ["exit", record.to_json()])
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
                running.kill = True
        self._supervisor.kill_node(node_id)
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
                running.quiet = running.kill = True
        if running is not None:
            self._supervisor.kill(key)
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
        self._supervisor.launch(launch, paths, task_environment(node.env, paths, launch))
        with self._lock:
            kill_now = running.kill
        if kill_now:
            self._supervisor.kill(key)
        running.done.wait()

    def _never_started(self, launch: TaskLaunch, topic: str, category: str, code: str,
                       message: str) -> None:
        failure = FailureInfoRecord(category=category, code=code, message=message)
        self._publish(topic, ["exit", ExitRecord.never_started(launch, failure).to_json()])

    def kill(self, node_id: str, job_id: str, task_id: str, attempt: int) -> None:
        key = attempt_key(node_id, job_id, task_id, attempt)
        with self._lock:
            running = self._running.get(key)
            if running is None:  # not here yet (or already over): refuse it on arrival
                self._early_kills[key] = None
                while len(self._early_kills) > MAX_EARLY_KILLS:
                    self._early_kills.popitem(last=False)
                return
            running.kill = True
        self._supervisor.kill(key)


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
