"""BatchService: the facade the API, CLI and dashboard use. Commands go through the writer
loop; reads go to the store and are presented as wire JSON. No HTTP here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from hybatch.core import commands as cmd
from hybatch.core.effects import DeleteTaskFiles
from hybatch.core.errors import DomainError, not_found
from hybatch.core.present import (
    present_job,
    present_node,
    present_node_counts,
    present_pool,
    present_task,
    present_task_counts,
)
from hybatch.core.records import JobRecord, NodeRecord, PoolRecord, TaskRecord
from hybatch.core.tasks import files_expired
from hybatch.odata.ast import Expr
from hybatch.ports import Clock, ComputeBackend, ListQuery, NodeFiles, Store
from hybatch.runtime.loop import WriterLoop

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
                 clock: Clock, base_url: str, account_name: str) -> None:
        self._loop = loop
        self._clock = clock
        self._store = store
        self._backend = backend
        self.base_url = base_url
        self.account_name = account_name

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

    def get_pool(self, pool_id: str) -> Resource:
        pool = self._pool(pool_id)
        return Resource(present_pool(pool, self._nodes(pool), self.base_url), pool.etag,
                        pool.last_modified)

    def pool_exists(self, pool_id: str) -> Resource:
        pool = self._pool(pool_id)
        return Resource({}, pool.etag, pool.last_modified)

    def list_pools(self, flt: FilterSpec | None, max_results: int, token: str | None) -> Listing:
        def show(pool: PoolRecord) -> Wire:
            return present_pool(pool, self._nodes(pool), self.base_url)

        page = self._store.list_pools(_query(flt, show, max_results, token))
        return Listing([show(p) for p in page.items], page.next_token)

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

    # ------------------------------------------------------------------ jobs

    async def create_job(self, command: cmd.CreateJob) -> Written:
        return await self._run(command, self._written_job)

    async def job_command(
        self, command: cmd.UpdateJob | cmd.TerminateJob | cmd.DeleteJob
    ) -> Written:
        return await self._run(command, self._written_job)

    def _job(self, job_id: str) -> JobRecord:
        job = self._store.get_job(job_id.lower())
        if job is None:
            raise not_found("Job", job_id)
        return job

    def get_job(self, job_id: str) -> Resource:
        job = self._job(job_id)
        return Resource(present_job(job, self.base_url), job.etag, job.last_modified)

    def list_jobs(self, flt: FilterSpec | None, max_results: int, token: str | None) -> Listing:
        def show(job: JobRecord) -> Wire:
            return present_job(job, self.base_url)

        page = self._store.list_jobs(_query(flt, show, max_results, token))
        return Listing([show(j) for j in page.items], page.next_token)

    def job_task_counts(self, job_id: str) -> Wire:
        return present_task_counts(self._job(job_id).counts)

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

    def get_task(self, job_id: str, task_id: str) -> Resource:
        task = self._task(job_id, task_id)
        return Resource(present_task(task, self.base_url), task.etag, task.last_modified)

    def list_tasks(self, job_id: str, flt: FilterSpec | None, max_results: int,
                   token: str | None) -> Listing:
        job = self._job(job_id)

        def show(task: TaskRecord) -> Wire:
            return present_task(task, self.base_url)

        page = self._store.list_tasks(job.key, _query(flt, show, max_results, token))
        return Listing([show(t) for t in page.items], page.next_token)

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


def _query(flt: FilterSpec | None, show: Callable[[Any], Wire], max_results: int,
           token: str | None) -> ListQuery[Any]:
    if flt is None:
        return ListQuery(max_results=max_results, after=token)
    matches = flt.matches
    return ListQuery(filter=flt.expr, predicate=lambda record: matches(show(record)),
                     max_results=max_results, after=token)


__all__ = ["BatchService", "FilterSpec", "Listing", "Resource", "Written"]
