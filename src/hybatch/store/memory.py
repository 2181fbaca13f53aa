"""``MemoryStore``: the dict-based :class:`hybatch.ports.Store` for unit tests.

It keeps the same rows the SQL store writes (codec columns plus the record as JSON text) and
decodes on every read, so callers never share objects with it, records that cannot be
serialised fail here too, and filters, key order and paging behave exactly as in SQL.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from hybatch.core.records import (
    JobRecord,
    JobScheduleRecord,
    NodeRecord,
    PoolRecord,
    TaskRecord,
    UsageRecord,
)
from hybatch.ports import Changes, ListQuery, Page
from hybatch.store import codec
from hybatch.store.codec import Resource
from hybatch.store.filters import matches, translate
from hybatch.store.paging import fill_page

R = TypeVar("R")

_Rows = dict[str, tuple[dict[str, Any], str]]
"""key -> (column values, record JSON)."""


def _row(resource: Resource[R], record: R) -> tuple[dict[str, Any], str]:
    row = resource.to_row(record)
    return row, codec.dumps(row.pop("data"))


class MemoryStore:
    """In-process store with the SQL store's observable behaviour (not durable)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pools: _Rows = {}
        self._nodes: _Rows = {}
        self._jobs: _Rows = {}
        self._tasks: dict[str, _Rows] = {}
        self._job_schedules: _Rows = {}
        self._settings: dict[str, str] = {}
        self._usage: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}

    def apply(self, changes: Changes) -> None:
        """All of one turn under one lock: deletions first, then upserts (as SqlStore)."""
        pools = [_row(codec.POOLS, r) for r in changes.pools]
        nodes = [_row(codec.NODES, r) for r in changes.nodes]
        jobs = [_row(codec.JOBS, r) for r in changes.jobs]
        tasks = [_row(codec.TASKS, r) for r in changes.tasks]
        usage = [_row(codec.USAGE, r) for r in changes.usage]
        schedules = [_row(codec.JOB_SCHEDULES, r) for r in changes.job_schedules]
        with self._lock:
            for job_key, task_key in changes.deleted_tasks:
                self._tasks.get(job_key.lower(), {}).pop(task_key.lower(), None)
            for job_key in changes.deleted_jobs:
                self._tasks.pop(job_key.lower(), None)
                self._jobs.pop(job_key.lower(), None)
            for node_key in changes.deleted_nodes:
                self._nodes.pop(node_key.lower(), None)
            for pool_key in map(str.lower, changes.deleted_pools):
                for node_key in [
                    k for k, (c, _) in self._nodes.items() if c["pool_key"] == pool_key
                ]:
                    del self._nodes[node_key]
                self._pools.pop(pool_key, None)
            for schedule_key in changes.deleted_job_schedules:
                self._job_schedules.pop(schedule_key.lower(), None)
            for row in pools:
                self._pools[row[0]["pool_key"]] = row
            for row in nodes:
                self._nodes[row[0]["node_key"]] = row
            for row in jobs:
                self._jobs[row[0]["job_key"]] = row
            for row in tasks:
                self._tasks.setdefault(row[0]["job_key"], {})[row[0]["task_key"]] = row
            for row in usage:
                cols = row[0]
                key = (cols["interval_start_us"], cols["pool_key"], cols["pool_creation_us"])
                self._usage[key] = row
            for row in schedules:
                self._job_schedules[row[0]["schedule_key"]] = row

    # ------------------------------------------------------------------ settings

    def get_setting(self, name: str) -> str | None:
        with self._lock:
            return self._settings.get(name)

    def put_setting(self, name: str, value: str) -> None:
        with self._lock:
            self._settings[name] = value

    # ------------------------------------------------------------------ reads

    @staticmethod
    def _decode(resource: Resource[R], text: str) -> R:
        return resource.from_json(text)

    def _get(self, resource: Resource[R], rows: _Rows, key: str) -> R | None:
        with self._lock:
            row = rows.get(key.lower())
        return None if row is None else self._decode(resource, row[1])

    def get_pool(self, pool_key: str) -> PoolRecord | None:
        return self._get(codec.POOLS, self._pools, pool_key)

    def get_node(self, node_key: str) -> NodeRecord | None:
        return self._get(codec.NODES, self._nodes, node_key)

    def get_job(self, job_key: str) -> JobRecord | None:
        return self._get(codec.JOBS, self._jobs, job_key)

    def get_task(self, job_key: str, task_key: str) -> TaskRecord | None:
        with self._lock:
            row = self._tasks.get(job_key.lower(), {}).get(task_key.lower())
        return None if row is None else self._decode(codec.TASKS, row[1])

    def get_tasks(self, job_key: str, task_keys: list[str]) -> list[TaskRecord]:
        """The stored tasks among ``task_keys``, in the order asked (as SqlStore)."""
        wanted = list(dict.fromkeys(k.lower() for k in task_keys))
        with self._lock:
            rows = self._tasks.get(job_key.lower(), {})
            texts = [rows[k][1] for k in wanted if k in rows]
        return [self._decode(codec.TASKS, text) for text in texts]

    def load_pools(self) -> list[PoolRecord]:
        with self._lock:
            texts = [self._pools[k][1] for k in sorted(self._pools)]
        return [self._decode(codec.POOLS, t) for t in texts]

    def load_nodes(self) -> list[NodeRecord]:
        with self._lock:
            texts = [self._nodes[k][1] for k in sorted(self._nodes)]
        return [self._decode(codec.NODES, t) for t in texts]

    def load_jobs(self) -> list[JobRecord]:
        with self._lock:
            texts = [self._jobs[k][1] for k in sorted(self._jobs)]
        return [self._decode(codec.JOBS, t) for t in texts]

    def load_unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks not completed, by job key then creation order (as SqlStore)."""
        with self._lock:
            found = [
                (job_key, cols["seq"], task_key, text)
                for job_key, rows in self._tasks.items()
                for task_key, (cols, text) in rows.items()
                if cols["state"] != "completed"
            ]
        found.sort(key=lambda item: item[:3])
        return [self._decode(codec.TASKS, item[3]) for item in found]

    def _list(
        self,
        resource: Resource[R],
        rows: _Rows,
        parent: tuple[str, str] | None,
        query: ListQuery[R],
    ) -> Page[R]:
        cond = translate(query.filter, resource.filters)
        with self._lock:  # a snapshot, as the SQL store's read transaction gives
            snapshot = sorted(
                (key, text)
                for key, (cols, text) in rows.items()
                if (parent is None or cols[parent[0]] == parent[1]) and matches(cond, cols)
            )
        keys = [key for key, _ in snapshot]

        def fetch(after: str | None, limit: int) -> Sequence[tuple[str, str]]:
            start = 0 if after is None else bisect.bisect_right(keys, after)
            return snapshot[start : start + limit]

        return fill_page(
            fetch,
            lambda text: self._decode(resource, text),
            query.predicate,
            query.max_results,
            query.after,
        )

    def list_pools(self, query: ListQuery[PoolRecord]) -> Page[PoolRecord]:
        return self._list(codec.POOLS, self._pools, None, query)

    def list_nodes(self, pool_key: str, query: ListQuery[NodeRecord]) -> Page[NodeRecord]:
        return self._list(codec.NODES, self._nodes, ("pool_key", pool_key.lower()), query)

    def list_jobs(self, query: ListQuery[JobRecord]) -> Page[JobRecord]:
        return self._list(codec.JOBS, self._jobs, None, query)

    def list_tasks(self, job_key: str, query: ListQuery[TaskRecord]) -> Page[TaskRecord]:
        with self._lock:
            rows = dict(self._tasks.get(job_key.lower(), {}))
        return self._list(codec.TASKS, rows, None, query)

    def list_usage(self, start: datetime, end: datetime) -> list[UsageRecord]:
        """Usage records starting in [start, end), by interval then pool key (as SqlStore)."""
        lo, hi = codec.micros(start), codec.micros(end)
        with self._lock:
            texts = [text for key, (_, text) in sorted(self._usage.items())
                     if lo is not None and hi is not None and lo <= key[0] < hi]
        return [self._decode(codec.USAGE, t) for t in texts]
    # ------------------------------------------------------------------ job schedules

    def get_job_schedule(self, schedule_key: str) -> JobScheduleRecord | None:
        return self._get(codec.JOB_SCHEDULES, self._job_schedules, schedule_key)

    def load_job_schedules(self) -> list[JobScheduleRecord]:
        with self._lock:
            texts = [self._job_schedules[k][1] for k in sorted(self._job_schedules)]
        return [self._decode(codec.JOB_SCHEDULES, t) for t in texts]

    def list_job_schedules(
        self, query: ListQuery[JobScheduleRecord]
    ) -> Page[JobScheduleRecord]:
        return self._list(codec.JOB_SCHEDULES, self._job_schedules, None, query)

    def list_jobs_from_schedule(
        self, schedule_key: str, query: ListQuery[JobRecord]
    ) -> Page[JobRecord]:
        return self._list(codec.JOBS, self._jobs, ("schedule_key", schedule_key.lower()), query)

    def close(self) -> None:
        """Nothing to release; kept for the Protocol."""
