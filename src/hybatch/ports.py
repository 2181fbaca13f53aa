"""Ports: the narrow Protocols the runtime wires together. Every adapter has a fake.

Imports: core records/effects/events, odata AST. No adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar, runtime_checkable

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
from hybatch.core.events import Event, TaskExited
from hybatch.core.records import (
    JobRecord,
    JobScheduleRecord,
    NodeRecord,
    PoolRecord,
    TaskRecord,
    UsageRecord,
)
from hybatch.odata.ast import Expr

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime: ...




EventSink = Callable[[Event], None]
"""Where adapters report what happened (thread-safe; never blocks for long)."""


# --------------------------------------------------------------------------- store


@dataclass(slots=True)
class Changes:
    """What one loop turn changed; applied by the store in one transaction.

    Record lists hold the current record objects (upserted whole). Deleted keys are the
    lower-cased ids (tasks: ``(job_key, task_key)``).
    """

    pools: list[PoolRecord] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    deleted_pools: list[str] = field(default_factory=list)
    deleted_nodes: list[str] = field(default_factory=list)
    deleted_jobs: list[str] = field(default_factory=list)
    deleted_tasks: list[tuple[str, str]] = field(default_factory=list)
    usage: list[UsageRecord] = field(default_factory=list)
    """Closed pool usage intervals, each written once (a repeated key replaces the row)."""
    job_schedules: list[JobScheduleRecord] = field(default_factory=list)
    deleted_job_schedules: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.pools or self.nodes or self.jobs or self.tasks or self.deleted_pools
                    or self.deleted_nodes or self.deleted_jobs or self.deleted_tasks
                    or self.usage or self.job_schedules or self.deleted_job_schedules)


class InvalidContinuationToken(ValueError):
    """A ``$skiptoken`` the store did not issue (or can no longer read)."""


@dataclass(frozen=True, slots=True)
class ListQuery(Generic[T]):
    """One page request. ``filter`` is translated to SQL where the store can; ``predicate`` (if
    given) is the exact test applied to each candidate record, so a store may pre-filter with
    any *superset* of the filter's conjuncts and must then apply the predicate.
    ``after`` is an opaque continuation token previously returned in ``Page.next_token``."""

    filter: Expr | None = None
    predicate: Callable[[T], bool] | None = None
    max_results: int = 1000
    after: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str | None


class Store(Protocol):
    """Durable records. Lookups take lower-cased keys. Lists are in key order."""

    def apply(self, changes: Changes) -> None: ...

    def load_pools(self) -> list[PoolRecord]: ...
    def load_nodes(self) -> list[NodeRecord]: ...
    def load_jobs(self) -> list[JobRecord]: ...
    def load_unfinished_tasks(self) -> list[TaskRecord]: ...

    def get_pool(self, pool_key: str) -> PoolRecord | None: ...
    def get_node(self, node_key: str) -> NodeRecord | None: ...
    def get_job(self, job_key: str) -> JobRecord | None: ...
    def get_task(self, job_key: str, task_key: str) -> TaskRecord | None: ...
    def get_tasks(self, job_key: str, task_keys: list[str]) -> list[TaskRecord]:
        """The stored tasks of one job among ``task_keys`` (missing ones are left out)."""
        ...

    def list_pools(self, query: ListQuery[PoolRecord]) -> Page[PoolRecord]: ...
    def list_nodes(self, pool_key: str, query: ListQuery[NodeRecord]) -> Page[NodeRecord]: ...
    def list_jobs(self, query: ListQuery[JobRecord]) -> Page[JobRecord]: ...
    def list_tasks(self, job_key: str, query: ListQuery[TaskRecord]) -> Page[TaskRecord]: ...

    def list_usage(self, start: datetime, end: datetime) -> list[UsageRecord]:
        """Usage records whose interval starts in [start, end), by interval then pool key.
        They outlive their pools (usage of deleted pools stays listed)."""
    def load_job_schedules(self) -> list[JobScheduleRecord]: ...
    def get_job_schedule(self, schedule_key: str) -> JobScheduleRecord | None: ...
    def list_job_schedules(
        self, query: ListQuery[JobScheduleRecord]
    ) -> Page[JobScheduleRecord]: ...
    def list_jobs_from_schedule(
        self, schedule_key: str, query: ListQuery[JobRecord]
    ) -> Page[JobRecord]:
        """The jobs whose ``job_schedule_id`` is the schedule (case-insensitive), by job key."""
        ...

    def get_setting(self, name: str) -> str | None: ...
    def put_setting(self, name: str, value: str) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- compute


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file or directory on a node; ``path`` is relative, '/'-separated."""

    path: str
    is_directory: bool
    size: int
    creation_time: datetime
    last_modified: datetime
    mode: str


class NodeFiles(Protocol):
    """File access on one node, relative to the node root. Raises FileNotFoundError."""

    def list(self, path: str, recursive: bool) -> list[FileInfo]: ...
    def stat(self, path: str) -> FileInfo: ...
    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes: ...
    def delete(self, path: str, recursive: bool) -> None: ...


class ComputeBackend(Protocol):
    """Runs nodes and task attempts. Calls return quickly; outcomes come back as events
    (NodeReady, NodeLost, NodeReleased, TaskExited) through the EventSink given at start."""

    def start(self, sink: EventSink) -> None: ...
    def provision_node(self, effect: ProvisionNode) -> None: ...
    def release_node(self, effect: ReleaseNode) -> None: ...
    def start_task(self, launch: TaskLaunch) -> None: ...
    def kill_task(self, effect: KillTask) -> None: ...
    def delete_task_files(self, effect: DeleteTaskFiles) -> None: ...
    def restart_node(self, effect: RestartNode) -> None:
        """Reboot (or start) a drained node, wiping its files on reimage; NodeReady follows.
        Node tasks still running there are killed."""
        ...
    def run_node_task(self, launch: NodeTaskLaunch) -> None:
        """Run a start task or job preparation/release task now, outside the node's slots;
        NodeTaskExited follows."""
        ...
    def kill_node_task(self, effect: KillNodeTask) -> None: ...
    def node_files(self, pool_id: str, node_id: str) -> NodeFiles: ...
    def collect_exit(self, pool_id: str, node_id: str, job_id: str, task_id: str,
                     attempt: int) -> TaskExited | None:
        """After a restart: the exit of an attempt the node recorded, if it did."""
        ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """One attempt the store has in flight on a node (offered or running)."""

    pool_id: str
    node_id: str
    job_id: str
    task_id: str
    attempt: int


@runtime_checkable
class Reattaching(Protocol):
    """A backend whose nodes may outlive the service (optional capability): after a restart
    it is told which attempts the store has in flight, before any other call but ``start``."""

    def reattach(self, attempts: Sequence[AttemptRef]) -> list[Event]:
        """The events that settle these attempts: TaskExited for each one that ended (from
        what its node kept or recorded), TaskLost for each whose outcome is unknown, nothing
        for those still running (their outcome is reported later through the sink)."""
        ...
