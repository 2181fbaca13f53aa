"""Fake compute backend for unit tests of the runtime: records every call and lets the test
decide what happens (which node becomes ready, which attempt exits with what) and when.

Nothing runs in the background: events reach the sink only when the test emits them, so tests
stay deterministic.

Imports: ports, core effects/events/records.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
    NodeLost,
    NodeReady,
    NodeReleased,
    NodeTaskExited,
    TaskExited,
)
from hybatch.core.records import FailureInfoRecord
from hybatch.ports import EventSink, FileInfo, NodeFiles

FakeCall = (ProvisionNode | ReleaseNode | TaskLaunch | KillTask | DeleteTaskFiles | RestartNode
            | NodeTaskLaunch | KillNodeTask)


def _epoch() -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class FakeNodeFiles:
    """In-memory :class:`hybatch.ports.NodeFiles`: ``files`` maps '/'-paths to contents."""

    files: dict[str, bytes] = field(default_factory=dict)
    when: datetime = field(default_factory=_epoch)

    def _dirs(self) -> set[str]:
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return dirs

    def _info(self, path: str) -> FileInfo:
        if path in self.files:
            size, is_dir = len(self.files[path]), False
        elif path in self._dirs() or path == "":
            size, is_dir = 0, True
        else:
            raise FileNotFoundError(path)
        mode = "0o40755" if is_dir else "0o100644"
        return FileInfo(path, is_dir, size, self.when, self.when, mode)

    @staticmethod
    def _norm(path: str) -> str:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise PermissionError(path)
        return "/".join(parts)

    def list(self, path: str, recursive: bool) -> builtins.list[FileInfo]:
        base = self._norm(path)
        info = self._info(base)
        if not info.is_directory:
            return [info]
        prefix = f"{base}/" if base else ""
        names = {p for p in (*self.files, *self._dirs()) if p.startswith(prefix) and p != base}
        if not recursive:
            names = {n for n in names if "/" not in n[len(prefix) :]}
        return [self._info(n) for n in sorted(names)]

    def stat(self, path: str) -> FileInfo:
        return self._info(self._norm(path))

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        key = self._norm(path)
        if key not in self.files:
            raise FileNotFoundError(path)
        data = self.files[key]
        return data[start:] if end is None else data[start : end + 1]

    def delete(self, path: str, recursive: bool) -> None:
        key = self._norm(path)
        if key in self.files:
            del self.files[key]
            return
        if key not in self._dirs():
            raise FileNotFoundError(path)
        inside = [p for p in self.files if p.startswith(f"{key}/")]
        if inside and not recursive:
            raise OSError(f"directory not empty: {path}")
        for p in inside:
            del self.files[p]


class FakeBackend:
    """:class:`hybatch.ports.ComputeBackend` that only records; the test drives outcomes.

    ``auto_ready`` emits NodeReady from ``provision_node`` and ``auto_release`` NodeReleased
    from ``release_node`` (synchronously, on the caller's thread), for tests that do not care.
    """

    def __init__(self, *, auto_ready: bool = False, auto_release: bool = False) -> None:
        self.auto_ready = auto_ready
        self.auto_release = auto_release
        self.sink: EventSink | None = None
        self.calls: list[FakeCall] = []
        self.provisioned: list[ProvisionNode] = []
        self.released: list[ReleaseNode] = []
        self.launches: list[TaskLaunch] = []
        self.kills: list[KillTask] = []
        self.deleted: list[DeleteTaskFiles] = []
        self.restarted: list[RestartNode] = []
        self.node_tasks: list[NodeTaskLaunch] = []
        """Node tasks (start, job preparation/release) launched, in order."""
        self.node_task_kills: list[KillNodeTask] = []
        self.running: dict[tuple[str, str, int], TaskLaunch] = {}
        """Launched attempts not yet exited, by (job id, task id, attempt) as given."""
        self.files: dict[tuple[str, str], FakeNodeFiles] = {}
        self.recorded_exits: dict[tuple[str, str, int], TaskExited] = {}
        """What ``collect_exit`` finds after a simulated restart, by (job, task, attempt)."""
        self.closed = False

    # ------------------------------------------------------------------ ComputeBackend

    def start(self, sink: EventSink) -> None:
        self.sink = sink

    def provision_node(self, effect: ProvisionNode) -> None:
        self.calls.append(effect)
        self.provisioned.append(effect)
        if self.auto_ready:
            self.emit(NodeReady(effect.node_id))

    def release_node(self, effect: ReleaseNode) -> None:
        self.calls.append(effect)
        self.released.append(effect)
        if self.auto_release:
            self.emit(NodeReleased(effect.node_id))

    def start_task(self, launch: TaskLaunch) -> None:
        self.calls.append(launch)
        self.launches.append(launch)
        self.running[(launch.job_id, launch.task_id, launch.attempt)] = launch

    def kill_task(self, effect: KillTask) -> None:
        self.calls.append(effect)
        self.kills.append(effect)

    def delete_task_files(self, effect: DeleteTaskFiles) -> None:
        self.calls.append(effect)
        self.deleted.append(effect)

    def restart_node(self, effect: RestartNode) -> None:
        self.calls.append(effect)
        self.restarted.append(effect)
        if self.auto_ready:
            self.emit(NodeReady(effect.node_id))

    def run_node_task(self, launch: NodeTaskLaunch) -> None:
        self.calls.append(launch)
        self.node_tasks.append(launch)

    def kill_node_task(self, effect: KillNodeTask) -> None:
        self.calls.append(effect)
        self.node_task_kills.append(effect)

    def collect_exit(
        self, pool_id: str, node_id: str, job_id: str, task_id: str, attempt: int
    ) -> TaskExited | None:
        return self.recorded_exits.get((job_id, task_id, attempt))

    def node_files(self, pool_id: str, node_id: str) -> NodeFiles:
        return self.files.setdefault((pool_id, node_id), FakeNodeFiles())

    def close(self) -> None:
        self.closed = True

    # ------------------------------------------------------------------ test controls

    def emit(self, event: Event) -> None:
        """Deliver any event to the sink, now, on the caller's thread."""
        if self.sink is None:
            raise RuntimeError("FakeBackend.start was not called")
        self.sink(event)

    def ready(self, node_id: str) -> None:
        self.emit(NodeReady(node_id))

    def lose(self, node_id: str, reason: str = "lost") -> None:
        self.emit(NodeLost(node_id, reason))

    def finish_release(self, node_id: str) -> None:
        self.emit(NodeReleased(node_id))

    def last_launch(self, job_id: str, task_id: str) -> TaskLaunch:
        """The most recent launch of a task (any attempt)."""
        for launch in reversed(self.launches):
            if launch.job_id == job_id and launch.task_id == task_id:
                return launch
        raise KeyError((job_id, task_id))

    def exit(
        self,
        launch: TaskLaunch,
        exit_code: int | None = 0,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        timed_out: bool = False,
        failure: FailureInfoRecord | None = None,
    ) -> TaskExited:
        """Report that an attempt ended; returns the event that was emitted."""
        self.running.pop((launch.job_id, launch.task_id, launch.attempt), None)
        end = end_time or _epoch()
        event = TaskExited(
            job_id=launch.job_id,
            task_id=launch.task_id,
            attempt=launch.attempt,
            exit_code=exit_code,
            start_time=start_time if start_time is not None or exit_code is None else end,
            end_time=end,
            timed_out=timed_out,
            failure=failure,
        )
        self.emit(event)
        return event

    def exit_instance(self, launch: TaskLaunch, exit_code: int | None = 0) -> InstanceExited:
        """Report that a multi-instance task's coordination command (``launch.instance``)
        ended."""
        self.running.pop((launch.job_id, launch.task_id, launch.attempt), None)
        end = _epoch()
        event = InstanceExited(job_id=launch.job_id, task_id=launch.task_id,
                               attempt=launch.attempt, instance=launch.instance or 0,
                               exit_code=exit_code, start_time=end, end_time=end)
        self.emit(event)
        return event

    def exit_node_task(self, launch: NodeTaskLaunch, exit_code: int | None = 0, *,
                       failure: FailureInfoRecord | None = None) -> NodeTaskExited:
        """Report that a node task ended; returns the event that was emitted."""
        end = _epoch()
        event = NodeTaskExited(node_id=launch.node_id, kind=launch.kind, job_id=launch.job_id,
                               attempt=launch.attempt, exit_code=exit_code,
                               start_time=end if exit_code is not None else None,
                               end_time=end, failure=failure)
        self.emit(event)
        return event

    def record_exit(self, event: TaskExited) -> None:
        """Make ``collect_exit`` return ``event`` (an exit the node wrote but never reported)."""
        self.recorded_exits[(event.job_id, event.task_id, event.attempt)] = event

    def exit_task(self, job_id: str, task_id: str, exit_code: int | None = 0) -> TaskExited:
        """Exit the latest attempt of a task with ``exit_code``."""
        return self.exit(self.last_launch(job_id, task_id), exit_code)
