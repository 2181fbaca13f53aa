"""BatchService: the facade the API, CLI and dashboard use. Commands go through the writer
loop; reads go to the store and are presented as wire JSON. No HTTP here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from hybatch.core import commands as cmd
from hybatch.core import usage
from hybatch.core.effects import DeleteTaskFiles
from hybatch.core.errors import DomainError, not_found
from hybatch.core.jobs import prep_release_nodes
from hybatch.core.present import (
    present_job,
    present_job_node,
    present_job_stats,
    present_node,
    present_node_counts,
    present_pool,
    present_pool_stats,
    present_remote_login,
    present_subtasks,
    present_task,
    present_task_counts,
    present_task_stats,
    present_usage,
)
from hybatch.core.present_schedules import present_job_schedule
from hybatch.core.records import JobRecord, JobScheduleRecord, NodeRecord, PoolRecord, TaskRecord
from hybatch.core.schedules import schedule_not_found
from hybatch.core.tasks import files_expired
from hybatch.node.service_logs import UploadError, select_log_files, upload_logs
from hybatch.odata.ast import Expr
from hybatch.ports import (
    Clock,
    ComputeBackend,
    InvalidContinuationToken,
    ListQuery,
    NodeFiles,
    Store,
)
from hybatch.runtime.loop import WriterLoop
from hybatch.vm_sizes import DEFAULT_IMAGES

R = TypeVar("R")
Wire = dict[str, object]


@dataclass(frozen=True, slots=True)
class Written:
    """What a write returns to the HTTP layer: the resource's new etag and time and URL."""

    id: str
    etag: str
    last_modified: datetime | None
    url: str


@dataclass(frozen=True, slots=True)
class Resource:
    """A presented resource and its concurrency metadata."""

    body: Wire
    etag: str
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class Listing:
    items: list[Wire]
    next_token: str | None


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A parsed $filter: the AST for the store, and the exact test on presented records."""

    expr: Expr
    matches: Callable[[Wire], bool]


class BatchService:
    def __init__(self, *, loop: WriterLoop, store: Store, backend: ComputeBackend,
                 clock: Clock, base_url: str, account_name: str,
                 images: Sequence[Mapping[str, object]] = DEFAULT_IMAGES) -> None:
        self._images = [dict(image) for image in images]
        self._loop = loop
        self._clock = clock
        self._store = store
        self._backend = backend
        self.base_url = base_url
        self.account_name = account_name

    def supported_images(self) -> list[dict[str, object]]:
        """The node images pools may name (from the VM size catalogue)."""
        return [dict(image) for image in self._images]

    # ------------------------------------------------------------------ plumbing

    async def _run(self, command: cmd.Command, reply: Callable[[Any], R]) -> R:
        future = self._loop.submit(command, reply)
        result: R = await asyncio.wrap_future(future)
        return result

    def _written_pool(self, pool: PoolRecord) -> Written:
        return Written(pool.id, pool.etag, pool.last_modified, f"{self.base_url}/pools/{pool.id}")

    def _written_job(self, job: JobRecord) -> Written:
        return Written(job.id, job.etag, job.last_modified, f"{self.base_url}/jobs/{job.id}")

    def _written_task(self, task: TaskRecord) -> Written:
        return Written(task.id, task.etag, task.last_modified,
                       f"{self.base_url}/jobs/{task.job_id}/tasks/{task.id}")

    # ------------------------------------------------------------------ pools

    async def create_pool(self, command: cmd.CreatePool) -> Written:
        return await self._run(command, self._written_pool)

    async def pool_command(
        self, command: cmd.ResizePool | cmd.StopPoolResize | cmd.RemoveNodes | cmd.DeletePool
    ) -> Written:
        return await self._run(command, self._written_pool)

    def _pool(self, pool_id: str) -> PoolRecord:
        pool = self._store.get_pool(pool_id.lower())
        if pool is None:
            raise not_found("Pool", pool_id)
        return pool

    def _nodes(self, pool: PoolRecord) -> list[NodeRecord]:
        nodes: list[NodeRecord] = []
        token: str | None = None
        while True:
            page = self._store.list_nodes(pool.key, ListQuery(after=token))
            nodes.extend(page.items)
            token = page.next_token
            if token is None:
                return nodes

    def _show_pool(self, pool: PoolRecord, stats: bool) -> Wire:
        nodes = self._nodes(pool)
        body = present_pool(pool, nodes, self.base_url)
        if stats:
            body["stats"] = present_pool_stats(pool, nodes, self.base_url, self._clock.now())
        return body

    def get_pool(self, pool_id: str, stats: bool = False) -> Resource:
        """``stats``: add the pool's statistics (``$expand=stats``)."""
        pool = self._pool(pool_id)
        return Resource(self._show_pool(pool, stats), pool.etag, pool.last_modified)

    def pool_exists(self, pool_id: str) -> Resource:
        pool = self._pool(pool_id)
        return Resource({}, pool.etag, pool.last_modified)

    def list_pools(self, flt: FilterSpec | None, max_results: int, token: str | None,
                   stats: bool = False) -> Listing:
        def show(pool: PoolRecord) -> Wire:
            return present_pool(pool, self._nodes(pool), self.base_url)

        page = self._store.list_pools(_query(flt, show, max_results, token))
        return Listing([self._show_pool(p, stats) for p in page.items], page.next_token)

    def pool_node_counts(self, max_results: int, token: str | None,
                         flt: FilterSpec | None = None) -> Listing:
        def show(pool: PoolRecord) -> Wire:
            return present_node_counts(pool, self._nodes(pool))

        page = self._store.list_pools(_query(flt, show, max_results, token))
        return Listing([show(p) for p in page.items], page.next_token)

    # ------------------------------------------------------------------ nodes

    def _node(self, pool_id: str, node_id: str) -> tuple[PoolRecord, NodeRecord]:
        pool = self._pool(pool_id)
        node = self._store.get_node(node_id.lower())
        if node is None or node.pool_id.lower() != pool.key:
            raise not_found("Node", node_id)
        return pool, node

    def get_node(self, pool_id: str, node_id: str) -> Resource:
        pool, node = self._node(pool_id, node_id)
        return Resource(present_node(node, pool, self.base_url), node.etag, None)

    def list_nodes(self, pool_id: str, flt: FilterSpec | None, max_results: int,
                   token: str | None) -> Listing:
        pool = self._pool(pool_id)

        def show(node: NodeRecord) -> Wire:
            return present_node(node, pool, self.base_url)

        page = self._store.list_nodes(pool.key, _query(flt, show, max_results, token))
        return Listing([show(n) for n in page.items], page.next_token)

    # ------------------------------------------------------------------ node operations

    def _written_node(self, node: NodeRecord) -> Written:
        return Written(node.id, node.etag, None,
                       f"{self.base_url}/pools/{node.pool_id}/nodes/{node.id}")

    async def update_pool(self, command: cmd.UpdatePool) -> Written:
        return await self._run(command, self._written_pool)

    async def node_command(
        self, command: cmd.NodeAction | cmd.DisableNodeScheduling | cmd.EnableNodeScheduling
        | cmd.CreateNodeUser | cmd.ReplaceNodeUser | cmd.DeleteNodeUser,
    ) -> Written:
        return await self._run(command, self._written_node)

    def remote_login_settings(self, pool_id: str, node_id: str) -> Resource:
        _, node = self._node(pool_id, node_id)
        return Resource(present_remote_login(node), node.etag, None)

    def node_extensions(self, pool_id: str, node_id: str) -> Listing:
        """Local nodes are not VMs: they have no VM extensions."""
        self._node(pool_id, node_id)
        return Listing([], None)

    def node_extension(self, pool_id: str, node_id: str, name: str) -> Resource:
        self._node(pool_id, node_id)
        raise DomainError("ResourceNotFound", "The specified node extension does not exist.",
                          details={"ExtensionName": name})

    async def upload_node_logs(self, pool_id: str, node_id: str, container_url: str,
                               start: datetime, end: datetime | None) -> Wire:
        """Upload the node's service log files (blocking I/O, run in a worker thread)."""
        pool, node = self._node(pool_id, node_id)
        files = self._backend.node_files(pool.id, node.id)

        def work() -> Wire:
            chosen = select_log_files(files, start, end)
            result = upload_logs(files, chosen, container_url, pool.id, node.id)
            return {"virtualDirectoryName": result.virtual_directory,
                    "numberOfFilesUploaded": result.files}

        try:
            return await asyncio.to_thread(work)
        except UploadError as error:
            raise DomainError("InvalidPropertyValue", f"The logs could not be uploaded: "
                              f"{error}", details={"PropertyName": "containerUrl",
                                                   "Reason": str(error)}) from error

    def list_pool_usage(self, start: datetime | None, end: datetime | None,
                        flt: FilterSpec | None, max_results: int,
                        token: str | None) -> Listing:
        """Usage per pool per aggregation interval (core.usage). Without times: the current
        interval; ``start`` alone: from its interval to now; ``end`` alone: the current
        interval if it starts before ``end``."""
        now = self._clock.now()
        current = usage.interval_start(now)
        lo = usage.interval_start(start) if start is not None else current
        hi = end if end is not None else current + usage.INTERVAL
        live: list[tuple[PoolRecord, list[NodeRecord]]] = []
        page_token: str | None = None
        while True:
            page = self._store.list_pools(ListQuery(after=page_token))
            live.extend((p, self._nodes(p)) for p in page.items)
            page_token = page.next_token
            if page_token is None:
                break
        stored = self._store.list_usage(lo, hi)
        entries = usage.list_entries(stored, live, now, lo, hi)
        wire = [present_usage(e.pool_id, e.interval_start, e.interval_end, e.vm_size,
                              e.core_seconds) for e in entries]
        keys = [f"{int(e.interval_start.timestamp())}:{e.pool_id.lower()}" for e in entries]
        first = 0
        if token is not None:
            head = token.split(":", 1)[0]
            if ":" not in token or not (head.isascii() and head.isdigit()):
                raise InvalidContinuationToken("not a usage metrics continuation token")
            first = next((i for i, k in enumerate(keys) if _after(k, token)), len(keys))
        items: list[Wire] = []
        last_key: str | None = None
        for index in range(first, len(wire)):
            if flt is not None and not flt.matches(wire[index]):
                continue
            if len(items) == max_results:
                return Listing(items, last_key)
            items.append(wire[index])
            last_key = keys[index]
        return Listing(items, None)

    # ------------------------------------------------------------------ jobs

    async def create_job(self, command: cmd.CreateJob) -> Written:
        return await self._run(command, self._written_job)

    async def job_command(
        self, command: cmd.UpdateJob | cmd.TerminateJob | cmd.DeleteJob | cmd.DisableJob
        | cmd.EnableJob,
    ) -> Written:
        return await self._run(command, self._written_job)

    def _job(self, job_id: str) -> JobRecord:
        job = self._store.get_job(job_id.lower())
        if job is None:
            raise not_found("Job", job_id)
        return job

    def _show_job(self, job: JobRecord, stats: bool) -> Wire:
        body = present_job(job, self.base_url)
        if stats:
            body["stats"] = present_job_stats(job, self.base_url, self._clock.now())
        return body

    def get_job(self, job_id: str, stats: bool = False) -> Resource:
        """``stats``: add the job's statistics (``$expand=stats``)."""
        job = self._job(job_id)
        return Resource(self._show_job(job, stats), job.etag, job.last_modified)

    def list_jobs(self, flt: FilterSpec | None, max_results: int, token: str | None,
                  stats: bool = False) -> Listing:
        def show(job: JobRecord) -> Wire:
            return present_job(job, self.base_url)

        page = self._store.list_jobs(_query(flt, show, max_results, token))
        return Listing([self._show_job(j, stats) for j in page.items], page.next_token)

    def list_prep_release_status(self, job_id: str, flt: FilterSpec | None, max_results: int,
                                 token: str | None) -> Listing:
        """Per node, the job's preparation/release task runs (409 without those tasks)."""
        job = self._job(job_id)
        entries = prep_release_nodes(job)
        if token is not None:
            after = _node_after(token)
            entries = [e for e in entries if e.node_id.lower() > after]
        items: list[Wire] = []
        last = ""
        for entry in entries:
            wire = present_job_node(job, entry, self.base_url)
            if flt is not None and not flt.matches(wire):
                continue
            if len(items) == max_results:
                return Listing(items, _node_token(last))
            items.append(wire)
            last = entry.node_id.lower()
        return Listing(items, None)

    def job_task_counts(self, job_id: str) -> Wire:
        return present_task_counts(self._job(job_id).counts)

    # ------------------------------------------------------------------ job schedules

    def _written_schedule(self, schedule: JobScheduleRecord) -> Written:
        return Written(schedule.id, schedule.etag, schedule.last_modified,
                       f"{self.base_url}/jobschedules/{schedule.id}")

    async def create_job_schedule(self, command: cmd.CreateJobSchedule) -> Written:
        return await self._run(command, self._written_schedule)

    async def job_schedule_command(
        self, command: cmd.UpdateJobSchedule | cmd.DisableJobSchedule | cmd.EnableJobSchedule
        | cmd.TerminateJobSchedule | cmd.DeleteJobSchedule,
    ) -> Written:
        return await self._run(command, self._written_schedule)

    def _job_schedule(self, schedule_id: str) -> JobScheduleRecord:
        schedule = self._store.get_job_schedule(schedule_id.lower())
        if schedule is None:
            raise schedule_not_found(schedule_id)
        return schedule

    def get_job_schedule(self, schedule_id: str) -> Resource:
        schedule = self._job_schedule(schedule_id)
        return Resource(present_job_schedule(schedule, self.base_url), schedule.etag,
                        schedule.last_modified)

    def job_schedule_exists(self, schedule_id: str) -> Resource:
        schedule = self._job_schedule(schedule_id)
        return Resource({}, schedule.etag, schedule.last_modified)

    def list_job_schedules(self, flt: FilterSpec | None, max_results: int,
                           token: str | None) -> Listing:
        def show(schedule: JobScheduleRecord) -> Wire:
            return present_job_schedule(schedule, self.base_url)

        page = self._store.list_job_schedules(_query(flt, show, max_results, token))
        return Listing([show(s) for s in page.items], page.next_token)

    def list_jobs_from_schedule(self, schedule_id: str, flt: FilterSpec | None,
                                max_results: int, token: str | None) -> Listing:
        """The jobs the schedule created (none until job creation on the recurrence is
        built); 404 JobScheduleNotFound for an unknown schedule."""
        schedule = self._job_schedule(schedule_id)

        def show(job: JobRecord) -> Wire:
            return present_job(job, self.base_url)

        page = self._store.list_jobs_from_schedule(schedule.key,
                                                   _query(flt, show, max_results, token))
        return Listing([show(j) for j in page.items], page.next_token)

    # ------------------------------------------------------------------ tasks

    async def add_task(self, command: cmd.AddTasks) -> Written:
        def reply(results: list[DomainError | TaskRecord]) -> Written:
            return self._written_task(results[0])  # type: ignore[arg-type]

        return await self._run(command, reply)

    async def add_tasks(self, command: cmd.AddTasks) -> list[DomainError | Written]:
        def reply(results: list[DomainError | TaskRecord]) -> list[DomainError | Written]:
            return [r if isinstance(r, DomainError) else self._written_task(r) for r in results]

        return await self._run(command, reply)

    async def task_command(
        self, command: cmd.TerminateTask | cmd.ReactivateTask | cmd.DeleteTask
        | cmd.UpdateTaskConstraints,
    ) -> Written | None:
        def reply(result: TaskRecord | None) -> Written | None:
            return self._written_task(result) if result is not None else None

        return await self._run(command, reply)

    def _task(self, job_id: str, task_id: str) -> TaskRecord:
        job = self._job(job_id)
        task = self._store.get_task(job.key, task_id.lower())
        if task is None:
            raise not_found("Task", task_id)
        return task

    def _show_task(self, task: TaskRecord, stats: bool) -> Wire:
        body = present_task(task, self.base_url)
        if stats:
            body["stats"] = present_task_stats(task, self.base_url, self._clock.now())
        return body

    def get_task(self, job_id: str, task_id: str, stats: bool = False) -> Resource:
        """``stats``: add the task's statistics (``$expand=stats``)."""
        task = self._task(job_id, task_id)
        return Resource(self._show_task(task, stats), task.etag, task.last_modified)

    def list_tasks(self, job_id: str, flt: FilterSpec | None, max_results: int,
                   token: str | None, stats: bool = False) -> Listing:
        job = self._job(job_id)

        def show(task: TaskRecord) -> Wire:
            return present_task(task, self.base_url)

        page = self._store.list_tasks(job.key, _query(flt, show, max_results, token))
        return Listing([self._show_task(t, stats) for t in page.items], page.next_token)

    def list_subtasks(self, job_id: str, task_id: str) -> Listing:
        """A task's subtasks (multi-instance tasks only; others have none)."""
        return Listing(present_subtasks(self._task(job_id, task_id), self.base_url), None)

    # ------------------------------------------------------------------ files

    def task_files(self, job_id: str, task_id: str) -> tuple[NodeFiles, str, str]:
        """The node file system holding a task's directory, the directory's path on the node,
        and the task's URL (for file URLs)."""
        task = self._task(job_id, task_id)
        if task.node_id is None or task.pool_id is None:
            raise DomainError("TaskFilesUnavailable", "The task has not run on a node yet, so "
                              "it has no files.")
        if self._store.get_node(task.node_id.lower()) is None:
            raise DomainError("TaskFilesUnavailable", "The node the task ran on is gone.")
        if files_expired(task, self._clock.now()):
            self._backend.delete_task_files(DeleteTaskFiles(
                pool_id=task.pool_id, node_id=task.node_id, job_id=task.job_id,
                task_id=task.id))
            raise DomainError("TaskFilesCleanedup", "The task's retention time has passed; "
                              "its files were deleted.")
        files = self._backend.node_files(task.pool_id, task.node_id)
        return (files, f"workitems/{task.job_id}/job-1/{task.id}",
                f"{self.base_url}/jobs/{task.job_id}/tasks/{task.id}")

    def node_files(self, pool_id: str, node_id: str) -> tuple[NodeFiles, str]:
        pool, node = self._node(pool_id, node_id)
        return (self._backend.node_files(pool.id, node.id),
                f"{self.base_url}/pools/{pool.id}/nodes/{node.id}")


def _after(key: str, token: str) -> bool:
    """Usage keys ``<interval seconds>:<pool key>`` in listing order."""
    k_time, k_pool = key.split(":", 1)
    t_time, t_pool = token.split(":", 1)
    return (int(k_time), k_pool) > (int(t_time), t_pool)
_NODE_TOKEN_PREFIX = "node:"


def _node_token(node_key: str) -> str:
    """An opaque continuation token naming the last node listed."""
    raw = (_NODE_TOKEN_PREFIX + node_key).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _node_after(token: str) -> str:
    """The node key a token from ``_node_token`` names; InvalidContinuationToken otherwise."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidContinuationToken("not a token this server issued") from error
    if not text.startswith(_NODE_TOKEN_PREFIX):
        raise InvalidContinuationToken("not a token of this list")
    return text[len(_NODE_TOKEN_PREFIX):]


def _query(flt: FilterSpec | None, show: Callable[[Any], Wire], max_results: int,
           token: str | None) -> ListQuery[Any]:
    if flt is None:
        return ListQuery(max_results=max_results, after=token)
    matches = flt.matches
    return ListQuery(filter=flt.expr, predicate=lambda record: matches(show(record)),
                     max_results=max_results, after=token)


__all__ = ["BatchService", "FilterSpec", "Listing", "Resource", "Written"]
