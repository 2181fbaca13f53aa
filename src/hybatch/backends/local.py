"""Local compute backend: nodes are slot groups on this host, each with its own node root
``<root>/<poolId>/<nodeId>/`` laid out as on a Batch node.

Task processes are children of this process, supervised by one
:class:`~hybatch.node.supervisor.TaskSupervisor` (one reaper thread for all nodes). Commands
from the service's writer thread return in microseconds: ``start_task`` hands the spawn to the
reaper thread. Measured with ``bench/spawn_local.py`` (1,000 ``/bin/true`` on 2 slots, loaded
2-core host): spawning inline holds the writer 0.45-0.9 ms per task on tmpfs and 3-8 ms on the
disk (directory and file creation dominate), handing off ~0.05 ms, while throughput of the two
is the same within run-to-run noise. Other slow work (creating a node, removing files) goes to
one worker thread.

Imports: ports, core effects/events, node runtime.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pwd
import queue
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

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
    InstanceStarted,
    NodeLost,
    NodeReady,
    NodeReleased,
    NodeTaskExited,
    TaskExited,
    TaskStarted,
)
from hybatch.core.records import FailureInfoRecord
from hybatch.node.environment import (
    NodeContext,
    job_task_environment,
    minimal_base_environment,
    node_environment,
    start_task_environment,
    task_environment,
)
from hybatch.node.host import HostNodes
from hybatch.node.identity import IdentityError, TaskAccounts, account_environment
from hybatch.node.layout import (
    APPLICATIONS_DIR,
    MOUNTS_DIR,
    SHARED_DIR,
    STARTUP_DIR,
    WORKITEMS_DIR,
    NodeLayout,
    TaskPaths,
)
from hybatch.node.process import (
    CODE_KILLED_BEFORE_START,
    ExitRecord,
    LaunchFailed,
    prepare_task_dir,
)
from hybatch.node.service_logs import write_service_log
from hybatch.node.staging import StagingError, stage
from hybatch.node.supervisor import AttemptKey, TaskSupervisor, attempt_key, launch_key
from hybatch.ports import EventSink, NodeFiles

_log = logging.getLogger(__name__)

Pending = tuple[TaskLaunch, TaskPaths, dict[str, str]]

NODE_FILE = "node.json"
"""Written in each node's ``volatile/`` at provisioning: lets a restarted server adopt it."""
TRASH_DIR = ".trash"
CODE_NODE_UNAVAILABLE = "NodeUnavailable"
REIMAGE_WIPES = (WORKITEMS_DIR, SHARED_DIR, STARTUP_DIR, APPLICATIONS_DIR, MOUNTS_DIR)
"""What a reimage removes: everything but ``volatile/`` (node identity, service logs)."""


@dataclass(slots=True)
class _Node:
    context: NodeContext
    env: dict[str, str]
    slots: int = 1
    used: int = 0
    """Slots of attempts handed to the supervisor whose exit has not been delivered."""
    waiting: deque[Pending] = field(default_factory=deque)
    used_by: dict[AttemptKey, int] = field(default_factory=dict)
    """Slots each started (handed over) attempt holds."""
    """Offered attempts waiting for slots, in the order offered."""
    outstanding: int = 0
    """Attempts accepted whose TaskExited has not been delivered yet."""
    releasing: bool = False
    keys: dict[AttemptKey, int] = field(default_factory=dict)
    """Accepted attempts not yet reported (a count: a launch effect may be repeated)."""


def _write_node_file(directory: Path, info: dict[str, object]) -> None:
    temp = directory / f".{NODE_FILE}.tmp"
    temp.write_text(json.dumps(info))
    os.replace(temp, directory / NODE_FILE)


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class LocalBackend:
    """:class:`hybatch.ports.ComputeBackend` running task processes on this host."""

    def __init__(
        self,
        root: Path,
        account_name: str,
        account_url: str,
        *,
        base_environment: Mapping[str, str] | None = None,
        spawners: int = 4,
        start_report_delay_s: float = 0.005,
        timeout_grace_s: float = 0.0,
        after_poll: Callable[[], None] | None = None,
    ) -> None:
        self._root = Path(root).absolute()
        self._host = HostNodes(self._root)
        self._account_name = account_name
        self._account_url = account_url
        self._base_env = dict(
            minimal_base_environment(os.environ) if base_environment is None else base_environment
        )
        self._spawners = spawners
        """0: spawn in the calling thread (the node agent calls everything from the reaper
        thread, so the whole node runs in one thread); otherwise hand spawns to this many
        spawner threads so the caller (the service's writer) never waits for process work."""
        self._after_poll = after_poll
        self._start_delay = start_report_delay_s
        """An attempt that ends within this long is reported once, by its exit (which carries
        its start time): half the events for short tasks."""
        self._grace = timeout_grace_s
        self._user = _current_user()
        self._accounts = TaskAccounts(self._root)
        self._staging: dict[AttemptKey, bool] = {}
        """Attempts downloading their resource files -> whether a kill cancelled them."""
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        self._node_tasks: dict[AttemptKey, NodeTaskLaunch] = {}
        """Node tasks (start, job preparation/release) running, by their supervisor key."""
        self._sink: EventSink | None = None
        self._supervisor: TaskSupervisor | None = None
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    @property
    def root(self) -> Path:
        return self._root

    def node_root(self, pool_id: str, node_id: str) -> Path:
        return self._host.node_root(pool_id, node_id)

    # ------------------------------------------------------------------ lifecycle

    def start(self, sink: EventSink) -> None:
        if self._supervisor is not None:
            raise RuntimeError("LocalBackend already started")
        self._sink = sink
        trash = self._root / TRASH_DIR
        trash.mkdir(parents=True, exist_ok=True)
        self._supervisor = TaskSupervisor(self._on_exit, timeout_grace_s=self._grace,
                                          on_start=self._on_start,
                                          start_report_delay_s=self._start_delay,
                                          spawners=self._spawners,
                                          after_poll=self._after_poll)
        self._worker = threading.Thread(target=self._work_loop, name="hybatch-local", daemon=True)
        self._worker.start()
        leftovers = list(trash.iterdir())  # deletions a previous run did not finish
        if leftovers:
            self._work.put(lambda: _remove_all(leftovers))

    def watch(self, fd: int, on_ready: Callable[[], bool]) -> None:
        """Run ``on_ready`` on the reaper thread whenever ``fd`` is readable (until it returns
        False): a host that calls this backend only from there runs the node in one thread."""
        assert self._supervisor is not None, "start() first"
        self._supervisor.watch(fd, on_ready)

    def unwatch(self, fd: int) -> None:
        assert self._supervisor is not None, "start() first"
        self._supervisor.unwatch(fd)

    def in_reaper_thread(self) -> bool:
        return self._supervisor is not None and self._supervisor.in_reaper_thread()

    def held_launches(self) -> list[TaskLaunch]:
        """Attempts accepted whose outcome has not been reported: running, about to report a
        failed start, or waiting on their node for slots (what a re-attaching server keeps)."""
        assert self._supervisor is not None, "start() first"
        held = self._supervisor.launches()
        with self._lock:
            for node in self._nodes.values():
                held.extend(pending[0] for pending in node.waiting)
        return held

    def busy(self) -> bool:
        """Whether any accepted attempt has not been reported yet."""
        with self._lock:
            return any(node.outstanding for node in self._nodes.values())

    def reconfigure(self, account_name: str, account_url: str,
                    base_environment: Mapping[str, str] | None) -> None:
        """New service identity for attempts started from now on (a server that re-attaches
        may listen elsewhere); running attempts keep the environment they started with."""
        with self._lock:
            self._account_name, self._account_url = account_name, account_url
            if base_environment is not None:
                self._base_env = dict(base_environment)
            for node in self._nodes.values():
                context = dataclasses.replace(node.context, account_name=account_name,
                                              account_url=account_url,
                                              base_environment=self._base_env)
                node.context, node.env = context, node_environment(context)

    def close(self) -> None:
        """Stop the threads and kill every process still running (nothing more is reported)."""
        if self._worker is not None:
            self._work.put(None)
            self._worker.join()
            self._worker = None
        if self._supervisor is not None:
            self._supervisor.close()
            self._supervisor = None

    # ------------------------------------------------------------------ nodes

    def provision_node(self, effect: ProvisionNode) -> None:
        try:
            layout = NodeLayout(self.node_root(effect.pool_id, effect.node_id))
        except ValueError as exc:
            lost = NodeLost(effect.node_id, str(exc))
            self._work.put(lambda: self._emit(lost))
            return
        node = self._make_node(effect.pool_id, effect.node_id, effect.is_dedicated, layout,
                               effect.slots)
        with self._lock:
            self._nodes.setdefault(effect.node_id, node)
        self._work.put(lambda: self._create_node(effect, layout))

    def _make_node(
        self, pool_id: str, node_id: str, is_dedicated: bool, layout: NodeLayout, slots: int
    ) -> _Node:
        context = NodeContext(
            pool_id=pool_id,
            node_id=node_id,
            is_dedicated=is_dedicated,
            layout=layout,
            account_name=self._account_name,
            account_url=self._account_url,
            task_user=self._user,
            base_environment=self._base_env,
        )
        return _Node(context=context, env=node_environment(context), slots=max(1, slots))

    def _create_node(self, effect: ProvisionNode, layout: NodeLayout) -> None:
        try:
            layout.create()
            info = {
                "poolId": effect.pool_id,
                "nodeId": effect.node_id,
                "isDedicated": effect.is_dedicated,
                "slots": effect.slots,
            }
            _write_node_file(layout.volatile, info)
        except OSError as exc:
            with self._lock:
                self._nodes.pop(effect.node_id, None)
            self._emit(NodeLost(effect.node_id, f"could not create the node directory: {exc}"))
            return
        write_service_log(layout.root, f"node {effect.node_id} of pool {effect.pool_id} ready "
                                       f"({effect.slots} slots)")
        self._emit(NodeReady(effect.node_id))

    def restart_node(self, effect: RestartNode) -> None:
        """Restart a node the service drained: no task runs on it, so a reboot (or start)
        only has to come back; a reimage first wipes its files. NodeReady follows."""
        self._work.put(lambda: self._restart(effect))

    def _restart(self, effect: RestartNode) -> None:
        with self._lock:
            node = self._nodes.get(effect.node_id)
            if node is None:
                node = self._adopt(effect.pool_id, effect.node_id)
                if node is not None:
                    self._nodes[effect.node_id] = node
        if node is not None and node.releasing:
            return  # leaving the pool: NodeReleased follows instead
        if node is None:
            self._emit(NodeLost(effect.node_id, "the node to restart is unknown to this host"))
            return
        layout = node.context.layout
        self._kill_node_tasks(effect.node_id)  # they do not survive the node's restart
        try:
            if effect.reimage:
                trash = self._root / TRASH_DIR
                moved: list[Path] = []
                for name in REIMAGE_WIPES:
                    target = trash / uuid.uuid4().hex
                    try:
                        os.rename(layout.root / name, target)
                    except FileNotFoundError:
                        continue
                    moved.append(target)
                self._work.put(lambda: _remove_all(moved))
            layout.create()
        except OSError as exc:
            self._emit(NodeLost(effect.node_id, f"could not restart the node: {exc}"))
            return
        write_service_log(layout.root, f"node {effect.node_id} "
                                       f"{'reimaged' if effect.reimage else 'restarted'}")
        self._emit(NodeReady(effect.node_id))

    def _adopt(self, pool_id: str, node_id: str) -> _Node | None:
        """A node provisioned by an earlier server run, known from its ``node.json``."""
        try:
            layout = NodeLayout(self.node_root(pool_id, node_id))
            info = json.loads((layout.volatile / NODE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or info.get("released"):
            return None
        slots = info.get("slots", 1)
        return self._make_node(pool_id, node_id, bool(info.get("isDedicated", True)), layout,
                               slots if isinstance(slots, int) else 1)

    def release_node(self, effect: ReleaseNode) -> None:
        """Kill what runs on the node; NodeReleased follows the last of their TaskExited."""
        with self._lock:
            node = self._nodes.get(effect.node_id)
            if node is None:
                self._work.put(lambda: self._emit(NodeReleased(effect.node_id)))
                return
            node.releasing = True
        with self._lock:
            dropped = list(node.waiting)
            node.waiting.clear()
        for pending in dropped:
            self._report_never_started(pending)
        assert self._supervisor is not None
        self._supervisor.kill_node(effect.node_id)
        self._work.put(lambda: self._maybe_released(effect.node_id))

    def _maybe_released(self, node_id: str) -> None:
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None or not node.releasing or node.outstanding:
                return
            del self._nodes[node_id]
        root = node.context.layout.volatile
        try:  # a restarted server must not adopt a node that was let go
            info = json.loads((root / NODE_FILE).read_text())
            _write_node_file(root, {**info, "released": True})
        except (OSError, ValueError, TypeError):
            _log.warning("could not mark node %s released in %s", node_id, root)
        self._emit(NodeReleased(node_id))

    # ------------------------------------------------------------------ tasks

    def start_task(self, launch: TaskLaunch) -> None:
        """Queue the attempt on its node; start it if it has its slots (in this thread with
        ``spawners=0``, else on a spawner thread)."""
        with self._lock:
            node = self._nodes.get(launch.node_id)
            if node is None:
                node = self._adopt(launch.pool_id, launch.node_id)
                if node is not None:
                    self._nodes[launch.node_id] = node
            if node is not None and node.releasing:
                node = None
        if node is None:
            self._work.put(lambda: self._report_unavailable(launch))
            return
        try:
            paths = node.context.layout.task(launch.job_id, launch.task_id)
        except ValueError as exc:
            why = str(exc)
            self._work.put(lambda: self._report_unavailable(launch, why, "usererror"))
            return
        env = task_environment(node.env, paths, launch)
        if launch.multi_instance:  # identical name on every node of the task, as on Batch
            env["AZ_BATCH_TASK_SHARED_DIR"] = str(paths.task_dir)
        if launch.user_identity:  # only tasks that name a userIdentity
            try:
                launch = self._with_account(launch, paths, env)
            except IdentityError as exc:
                why = f"The node could not provide the task's user identity: {exc}"
                self._work.put(lambda: self._report_unavailable(launch, why))
                return
        startable: list[Pending] = []
        with self._lock:
            if node.releasing or self._nodes.get(launch.node_id) is not node:
                node = None
            else:
                node.outstanding += 1
                key = launch_key(launch)
                node.keys[key] = node.keys.get(key, 0) + 1
                node.waiting.append((launch, paths, env))
                startable = _take_startable(node)
        if node is None:
            self._work.put(lambda: self._report_unavailable(launch))
            return
        self._run(startable)

    def _with_account(self, launch: TaskLaunch, paths: TaskPaths,
                      env: dict[str, str]) -> TaskLaunch:
        """The launch with the OS account its identity maps to (node.identity), its
        environment updated to match; unchanged when it runs as the node's own user."""
        account = self._accounts.resolve(launch.user_identity, paths)
        if account is None:
            return launch
        account_environment(env, account, paths)
        return dataclasses.replace(launch, run_as=account)

    def _run(self, startable: list[Pending]) -> None:
        """Hand attempts that have their slots to the supervisor."""
        assert self._supervisor is not None
        for launch, paths, env in startable:
            if launch.resource_files:  # downloads first, on a thread of their own
                self._stage(launch, paths, env)
            elif not self._spawners:
                self._supervisor.launch(launch, paths, env)
            else:
                self._supervisor.submit(launch, paths, env)

    def _stage(self, launch: TaskLaunch, paths: TaskPaths, env: dict[str, str]) -> None:
        """Download the launch's resource files, then start it (never on the caller's thread:
        the node agent's one thread must not wait for the network). A kill meanwhile cancels
        the start; a failed download is the attempt's pre-processing error."""
        key = launch_key(launch)
        with self._lock:
            self._staging[key] = False
        threading.Thread(target=self._stage_then_start, args=(launch, paths, env),
                         name="hybatch-stage", daemon=True).start()

    def _stage_then_start(self, launch: TaskLaunch, paths: TaskPaths,
                          env: dict[str, str]) -> None:
        assert self._supervisor is not None
        failure: FailureInfoRecord | None = None
        try:
            prepare_task_dir(paths)
            stage(launch.resource_files, paths)
        except StagingError as exc:
            failure = exc.failure
        except OSError as exc:
            failure = FailureInfoRecord(category="servererror", code="ProcessStartFailed",
                                        message=f"The node could not prepare the task "
                                                f"directory: {exc}")
        with self._lock:
            cancelled = self._staging.pop(launch_key(launch), False)
        if cancelled:
            failure = FailureInfoRecord(category="usererror", code=CODE_KILLED_BEFORE_START,
                                        message="The task was killed before its process "
                                                "started")
        if failure is not None:
            self._supervisor.report_failure(LaunchFailed(launch, paths, failure))
        elif not self._spawners:
            self._supervisor.launch(launch, paths, env)
        else:
            self._supervisor.submit(launch, paths, env)

    def _on_start(self, launch: TaskLaunch, start_time: datetime) -> None:
        if launch.instance is not None:  # a multi-instance task's coordination command
            self._emit(InstanceStarted(job_id=launch.job_id, task_id=launch.task_id,
                                       attempt=launch.attempt, instance=launch.instance,
                                       start_time=start_time))
            return
        if self._node_tasks and launch.task_id.startswith(NODE_TASK_MARK):
            return  # a node task: only its exit is reported
        self._emit(TaskStarted(job_id=launch.job_id, task_id=launch.task_id,
                               attempt=launch.attempt, start_time=start_time))

    def _report_unavailable(
        self, launch: TaskLaunch, why: str | None = None, category: str = "servererror"
    ) -> None:
        """An attempt that could not even be placed (unknown or leaving node, bad id)."""
        message = why or f"The node {launch.node_id!r} is not available to run tasks"
        failure = FailureInfoRecord(category=category, code=CODE_NODE_UNAVAILABLE,
                                    message=message)
        self._deliver(ExitRecord.never_started(launch, failure), accepted=False)

    def kill_task(self, effect: KillTask) -> None:
        """SIGKILL the attempt's process group; its TaskExited still follows (real status).
        An attempt still waiting for slots is dropped and reported killed before start."""
        key = attempt_key(effect.node_id, effect.job_id, effect.task_id, effect.attempt)
        with self._lock:
            node = self._nodes.get(effect.node_id)
            dropped = _drop_waiting(node, {key}) if node is not None else []
            staging = key in self._staging
            if staging:
                self._staging[key] = True  # reported killed once its download ends
        for pending in dropped:
            self._report_never_started(pending)
        if not dropped and not staging:
            assert self._supervisor is not None
            self._supervisor.kill(key)

    def _report_never_started(self, pending: Pending) -> None:
        failure = FailureInfoRecord(category="usererror", code=CODE_KILLED_BEFORE_START,
                                    message="The task was killed before its process started")
        self._deliver(ExitRecord.never_started(pending[0], failure), started=False)

    def delete_task_files(self, effect: DeleteTaskFiles) -> None:
        """Move the task directory aside at once (so a re-created task id starts clean), then
        remove it on the worker thread."""
        try:
            layout = NodeLayout(self.node_root(effect.pool_id, effect.node_id))
            task_dir = layout.task_dir(effect.job_id, effect.task_id)
        except ValueError:
            return
        target = self._root / TRASH_DIR / uuid.uuid4().hex
        try:
            os.rename(task_dir, target)
        except FileNotFoundError:
            return  # nothing to delete
        self._work.put(lambda: shutil.rmtree(target, ignore_errors=True))

    def collect_exit(
        self, pool_id: str, node_id: str, job_id: str, task_id: str, attempt: int
    ) -> TaskExited | None:
        """After a restart: the outcome the node recorded for this attempt, if any."""
        return self._host.collect_exit(pool_id, node_id, job_id, task_id, attempt)

    def node_files(self, pool_id: str, node_id: str) -> NodeFiles:
        return self._host.node_files(pool_id, node_id)

    # ------------------------------------------------------------------ outcomes

    def _on_exit(self, record: ExitRecord) -> None:
        """Reaper thread: the exit record is on disk; now report it."""
        if self._node_tasks:
            key = attempt_key(record.node_id, record.job_id, record.task_id, record.attempt)
            with self._lock:
                node_task = self._node_tasks.pop(key, None)
            if node_task is not None:
                self._emit(_node_task_exited(node_task, record))
                return
        self._deliver(record)

    # ------------------------------------------------------------------ node tasks

    def run_node_task(self, launch: NodeTaskLaunch) -> None:
        """Start a start task or job preparation/release task now, outside the node's slots
        (its directory: ``startup/``, or the job's directory under its task id)."""
        with self._lock:
            node = self._nodes.get(launch.node_id)
            if node is None:
                node = self._adopt(launch.pool_id, launch.node_id)
                if node is not None:
                    self._nodes[launch.node_id] = node
        proxy = _proxy_launch(launch)
        if node is None or node.releasing:
            self._work.put(lambda: self._node_task_unavailable(launch, proxy))
            return
        try:
            if launch.kind == "starttask":
                paths = node.context.layout.startup_task()
                env = start_task_environment(node.env, node.context.layout, launch.environment)
            else:
                paths = node.context.layout.task(launch.job_id, launch.task_id)
                env = job_task_environment(node.env, paths, launch)
        except ValueError as exc:
            why = str(exc)
            self._work.put(lambda: self._node_task_unavailable(launch, proxy, why))
            return
        with self._lock:
            self._node_tasks[launch_key(proxy)] = launch
        self._run([(proxy, paths, env)])

    def kill_node_task(self, effect: KillNodeTask) -> None:
        """SIGKILL a node task's process group (its exit is still reported)."""
        assert self._supervisor is not None
        self._supervisor.kill(attempt_key(effect.node_id, effect.job_id,
                                          NODE_TASK_MARK + effect.kind, effect.attempt))

    def _kill_node_tasks(self, node_id: str) -> None:
        assert self._supervisor is not None
        with self._lock:
            keys = [key for key in self._node_tasks if key[0] == node_id]
        for key in keys:
            self._supervisor.kill(key)

    def _node_task_unavailable(self, launch: NodeTaskLaunch, proxy: TaskLaunch,
                               why: str | None = None) -> None:
        failure = FailureInfoRecord(
            category="servererror", code=CODE_NODE_UNAVAILABLE,
            message=why or f"The node {launch.node_id!r} is not available to run tasks")
        self._emit(_node_task_exited(launch, ExitRecord.never_started(proxy, failure)))

    def _deliver(self, record: ExitRecord, accepted: bool = True,
                  started: bool = True) -> None:
        """Report an outcome; for an accepted attempt, settle the node's accounting: free its
        slots and start what waits for them *before* reporting, so the node never idles
        waiting for the service to hear about the exit."""
        if not accepted:
            self._emit(record.to_event() if record.instance is None
                       else record.to_instance_event())
            return
        key = attempt_key(record.node_id, record.job_id, record.task_id, record.attempt)
        releasing = False
        startable: list[Pending] = []
        with self._lock:
            node = self._nodes.get(record.node_id)
            if node is not None and key in node.keys:
                node.keys[key] -= 1
                if not node.keys[key]:
                    del node.keys[key]
                node.outstanding -= 1
                if started:
                    node.used -= node.used_by.pop(key, 0)
                if not node.releasing:
                    startable = _take_startable(node)
                releasing = node.releasing and node.outstanding == 0
        self._run(startable)
        self._emit(record.to_event() if record.instance is None else record.to_instance_event())
        if releasing:
            self._maybe_released(record.node_id)

    def _emit(self, event: Event) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink(event)
        except Exception:
            _log.exception("event sink failed for %r", event)

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            try:
                item()
            except Exception:
                _log.exception("local backend work item failed")


NODE_TASK_MARK = "$"
"""Node tasks run under the task id ``$<kind>`` in the supervisor: never a task id."""


def _proxy_launch(launch: NodeTaskLaunch) -> TaskLaunch:
    """The supervisor's view of a node task: a launch keyed apart from every task."""
    return TaskLaunch(pool_id=launch.pool_id, node_id=launch.node_id, job_id=launch.job_id,
                      task_id=NODE_TASK_MARK + launch.kind, attempt=launch.attempt,
                      command_line=launch.command_line, environment=(),
                      max_wall_clock_s=launch.max_wall_clock_s, required_slots=0)


def _node_task_exited(launch: NodeTaskLaunch, record: ExitRecord) -> NodeTaskExited:
    return NodeTaskExited(node_id=launch.node_id, kind=launch.kind, job_id=launch.job_id,
                          attempt=launch.attempt, exit_code=record.exit_code,
                          start_time=record.start_time, end_time=record.end_time,
                          timed_out=record.timed_out, failure=record.failure)


def _take_startable(node: _Node) -> list[Pending]:
    """Under the backend lock: the waiting attempts that fit the node's free slots now, in
    order offered (a head that does not fit holds the ones behind it)."""
    out: list[Pending] = []
    while node.waiting:
        pending = node.waiting[0]
        need = pending[0].required_slots
        if node.used + need > node.slots:
            break
        node.waiting.popleft()
        node.used += need
        node.used_by[launch_key(pending[0])] = need
        out.append(pending)
    return out


def _drop_waiting(node: _Node, keys: set[AttemptKey]) -> list[Pending]:
    """Under the backend lock: remove waiting attempts with these keys."""
    dropped = [p for p in node.waiting if launch_key(p[0]) in keys]
    if dropped:
        node.waiting = deque(p for p in node.waiting if launch_key(p[0]) not in keys)
    return dropped
