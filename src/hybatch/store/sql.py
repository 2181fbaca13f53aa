"""``SqlStore``: the durable :class:`hybatch.ports.Store` on SQLite or PostgreSQL.

One writer thread calls :meth:`SqlStore.apply` once per loop turn; any number of threads read
concurrently. Each call uses its own pooled connection and transaction, so with SQLite's WAL
readers never block the writer and never see half of a turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hybatch.core.records import (
    JobRecord,
    JobScheduleRecord,
    NodeRecord,
    PoolRecord,
    TaskRecord,
    UsageRecord,
)
from hybatch.ports import Changes, ListQuery, Page
from hybatch.store import codec, tables
from hybatch.store.codec import Resource, Row
from hybatch.store.dialects import DriverStatement, bulk_upsert, dialect_for
from hybatch.store.filters import AllOf, Cmp, Cond, translate
from hybatch.store.paging import fill_page

R = TypeVar("R")

_IN_CHUNK = 500
"""Keys per ``IN (...)`` query: well below SQLite's bound-parameter limit."""

_COMPARE: dict[str, Callable[[Any, Any], sa.ColumnElement[bool]]] = {
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: c != v,
    "gt": lambda c, v: c > v,
    "ge": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
}


def _json(table: sa.Table) -> sa.ColumnElement[str]:
    """The record column as text: parsing it ourselves is several times faster than letting
    the driver build the objects (psycopg parses ``json`` columns row by row)."""
    return sa.cast(table.c.data, sa.Text).label("data")


def _where(cond: Cond, table: sa.Table) -> sa.ColumnElement[bool]:
    if isinstance(cond, Cmp):
        return _COMPARE[cond.op](table.c[cond.column], cond.value)
    parts = [_where(p, table) for p in cond.parts]
    return sa.and_(*parts) if isinstance(cond, AllOf) else sa.or_(*parts)


def _bind(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=sa.Text)


def _rows(resource: Resource[R], records: Iterable[R], *key_columns: str) -> list[Row]:
    """Driver-ready rows (record JSON as text), the last one per key: a record changed twice
    in one turn is written once."""
    by_key: dict[tuple[Any, ...], Row] = {}
    for record in records:
        row = resource.to_row(record)
        row["data"] = codec.dumps(row["data"])
        by_key[tuple(row[c] for c in key_columns)] = row
    return list(by_key.values())


class SqlStore:
    """Store on ``sqlite:///path`` (``sqlite://`` for memory) or ``postgresql+psycopg://``.

    The schema is created on first open. Ids passed in are lower-cased again defensively.
    """

    def __init__(self, url: str) -> None:
        self._dialect = dialect_for(url)
        self._engine = self._dialect.create_engine(url)
        self._lock: AbstractContextManager[Any] = (
            threading.RLock() if self._dialect.single_connection else nullcontext()
        )
        with self._write() as conn:  # serialised with other writers (SQLite: BEGIN IMMEDIATE)
            tables.metadata.create_all(conn)
        self._turn_conn: Any = None
        """The writer thread's own pooled DBAPI connection for ``apply``: kept open, and used
        directly, so a loop turn pays no pool check-out or SQLAlchemy execution overhead."""
        t = tables
        engine = self._engine
        self._upsert = {
            tb.name: bulk_upsert(self._dialect, engine, tb) for tb in tables.metadata.sorted_tables
        }

        def delete(statement: sa.Delete) -> DriverStatement:
            return DriverStatement(engine, statement)

        self._delete_pool_nodes = delete(sa.delete(t.nodes).where(t.nodes.c.pool_key == _bind("k")))
        self._delete_pools = delete(sa.delete(t.pools).where(t.pools.c.pool_key == _bind("k")))
        self._delete_nodes = delete(sa.delete(t.nodes).where(t.nodes.c.node_key == _bind("k")))
        self._delete_job_tasks = delete(sa.delete(t.tasks).where(t.tasks.c.job_key == _bind("k")))
        self._delete_jobs = delete(sa.delete(t.jobs).where(t.jobs.c.job_key == _bind("k")))
        self._delete_job_schedules = delete(sa.delete(t.job_schedules).where(
            t.job_schedules.c.schedule_key == _bind("k")
        ))
        self._delete_tasks = delete(sa.delete(t.tasks).where(
            (t.tasks.c.job_key == _bind("j")) & (t.tasks.c.task_key == _bind("k"))
        ))

    @property
    def dialect_name(self) -> str:
        return self._dialect.name

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._lock, self._dialect.reading(self._engine) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock, self._dialect.writing(self._engine) as conn:
            yield conn

    @contextmanager
    def _write_turn(self) -> Iterator[Any]:
        """A write transaction on the long-lived turn connection (one writer thread), as a
        DBAPI cursor. Any failure rolls back and drops the connection: the next turn starts
        on a fresh one (a database restart, a broken link)."""
        with self._lock:
            if self._turn_conn is None:
                self._turn_conn = self._engine.raw_connection()
            pooled = self._turn_conn
            dbapi = pooled.driver_connection
            try:
                self._dialect.begin_turn(dbapi)
                cursor = dbapi.cursor()
                try:
                    yield cursor
                finally:
                    cursor.close()
                dbapi.commit()
            except BaseException:
                with suppress(Exception):
                    dbapi.rollback()
                with suppress(Exception):
                    pooled.invalidate()
                self._turn_conn = None
                raise

    # ------------------------------------------------------------------ writes

    def apply(self, changes: Changes) -> None:
        """Write one loop turn in one transaction: deletions first, then the upserts, so a
        record deleted and re-created within the turn ends up stored. Deleting a job deletes
        its tasks, deleting a pool its nodes (a job schedule's jobs are deleted by the core)."""
        if changes.is_empty():
            return
        # Encode before taking the write lock: JSON encoding is most of the work.
        pools = _rows(codec.POOLS, changes.pools, "pool_key")
        nodes = _rows(codec.NODES, changes.nodes, "node_key")
        jobs = _rows(codec.JOBS, changes.jobs, "job_key")
        tasks = _rows(codec.TASKS, changes.tasks, "job_key", "task_key")
        usage = _rows(codec.USAGE, changes.usage, "pool_key", "interval_start_us",
                      "pool_creation_us")
        schedules = _rows(codec.JOB_SCHEDULES, changes.job_schedules, "schedule_key")
        deleted_pools = [{"k": k.lower()} for k in changes.deleted_pools]
        deleted_nodes = [{"k": k.lower()} for k in changes.deleted_nodes]
        deleted_jobs = [{"k": k.lower()} for k in changes.deleted_jobs]
        deleted_tasks = [{"j": j.lower(), "k": k.lower()} for j, k in changes.deleted_tasks]
        deleted_schedules = [{"k": k.lower()} for k in changes.deleted_job_schedules]
        with self._write_turn() as cursor:
            self._delete_tasks.run(cursor, deleted_tasks)
            self._delete_job_tasks.run(cursor, deleted_jobs)
            self._delete_jobs.run(cursor, deleted_jobs)
            self._delete_nodes.run(cursor, deleted_nodes)
            self._delete_pool_nodes.run(cursor, deleted_pools)
            self._delete_pools.run(cursor, deleted_pools)
            self._delete_job_schedules.run(cursor, deleted_schedules)
            for table, rows in (
                (tables.pools, pools),
                (tables.nodes, nodes),
                (tables.jobs, jobs),
                (tables.tasks, tasks),
                (tables.pool_usage, usage),
                (tables.job_schedules, schedules),
            ):
                self._upsert[table.name].run(cursor, rows)

    def put_setting(self, name: str, value: str) -> None:
        with self._write() as conn:
            self._upsert[tables.settings.name](conn, [{"name": name, "value": value}])

    # ------------------------------------------------------------------ reads

    def get_setting(self, name: str) -> str | None:
        s = tables.settings
        with self._read() as conn:
            value = conn.execute(sa.select(s.c.value).where(s.c.name == name)).scalar()
        return None if value is None else str(value)

    def _get(
        self, resource: Resource[R], table: sa.Table, where: sa.ColumnElement[bool]
    ) -> R | None:
        with self._read() as conn:
            text = conn.execute(sa.select(_json(table)).where(where)).scalar()
        return None if text is None else resource.from_json(text)

    def get_pool(self, pool_key: str) -> PoolRecord | None:
        t = tables.pools
        return self._get(codec.POOLS, t, t.c.pool_key == pool_key.lower())

    def get_node(self, node_key: str) -> NodeRecord | None:
        t = tables.nodes
        return self._get(codec.NODES, t, t.c.node_key == node_key.lower())

    def get_job(self, job_key: str) -> JobRecord | None:
        t = tables.jobs
        return self._get(codec.JOBS, t, t.c.job_key == job_key.lower())

    def get_task(self, job_key: str, task_key: str) -> TaskRecord | None:
        t = tables.tasks
        where = (t.c.job_key == job_key.lower()) & (t.c.task_key == task_key.lower())
        return self._get(codec.TASKS, t, where)

    def get_tasks(self, job_key: str, task_keys: list[str]) -> list[TaskRecord]:
        """The stored tasks among ``task_keys``, in the order asked (missing ones left out,
        repeated keys answered once)."""
        wanted = list(dict.fromkeys(k.lower() for k in task_keys))
        t = tables.tasks
        found: dict[str, Any] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                stmt = sa.select(t.c.task_key, _json(t)).where(
                    (t.c.job_key == job_key.lower())
                    & t.c.task_key.in_(wanted[start : start + _IN_CHUNK])
                )
                found.update((k, d) for k, d in conn.execute(stmt))
        return [codec.TASKS.from_json(found[k]) for k in wanted if k in found]

    def _load(self, resource: Resource[R], stmt: sa.Select[Any]) -> list[R]:
        with self._read() as conn:
            return [resource.from_json(text) for text in conn.execute(stmt).scalars()]

    def load_pools(self) -> list[PoolRecord]:
        t = tables.pools
        return self._load(codec.POOLS, sa.select(_json(t)).order_by(t.c.pool_key))

    def load_nodes(self) -> list[NodeRecord]:
        t = tables.nodes
        return self._load(codec.NODES, sa.select(_json(t)).order_by(t.c.node_key))

    def load_jobs(self) -> list[JobRecord]:
        t = tables.jobs
        return self._load(codec.JOBS, sa.select(_json(t)).order_by(t.c.job_key))

    def load_unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks not completed, by job key then creation order (read via the partial index)."""
        t = tables.tasks
        stmt = (
            sa.select(_json(t))
            .where(tables.UNFINISHED)
            .order_by(t.c.job_key, t.c.seq, t.c.task_key)
        )
        return self._load(codec.TASKS, stmt)

    def _list(
        self,
        resource: Resource[R],
        table: sa.Table,
        parent: sa.ColumnElement[bool] | None,
        query: ListQuery[R],
    ) -> Page[R]:
        key = table.c[resource.key_column]
        base = sa.select(key, _json(table))
        if parent is not None:
            base = base.where(parent)
        cond = translate(query.filter, resource.filters)
        if cond is not None:
            base = base.where(_where(cond, table))
        base = base.order_by(key)

        with self._read() as conn:

            def fetch(after: str | None, limit: int) -> Sequence[tuple[str, Any]]:
                stmt = base if after is None else base.where(key > after)
                return [(k, d) for k, d in conn.execute(stmt.limit(limit))]

            return fill_page(
                fetch, resource.from_json, query.predicate, query.max_results, query.after
            )

    def list_pools(self, query: ListQuery[PoolRecord]) -> Page[PoolRecord]:
        return self._list(codec.POOLS, tables.pools, None, query)

    def list_nodes(self, pool_key: str, query: ListQuery[NodeRecord]) -> Page[NodeRecord]:
        t = tables.nodes
        return self._list(codec.NODES, t, t.c.pool_key == pool_key.lower(), query)

    def list_jobs(self, query: ListQuery[JobRecord]) -> Page[JobRecord]:
        return self._list(codec.JOBS, tables.jobs, None, query)

    def list_tasks(self, job_key: str, query: ListQuery[TaskRecord]) -> Page[TaskRecord]:
        t = tables.tasks
        return self._list(codec.TASKS, t, t.c.job_key == job_key.lower(), query)

    def list_usage(self, start: datetime, end: datetime) -> list[UsageRecord]:
        t = tables.pool_usage
        stmt = (
            sa.select(_json(t))
            .where((t.c.interval_start_us >= codec.micros(start))
                   & (t.c.interval_start_us < codec.micros(end)))
            .order_by(t.c.interval_start_us, t.c.pool_key, t.c.pool_creation_us)
        )
        return self._load(codec.USAGE, stmt)
    # ------------------------------------------------------------------ job schedules

    def get_job_schedule(self, schedule_key: str) -> JobScheduleRecord | None:
        t = tables.job_schedules
        return self._get(codec.JOB_SCHEDULES, t, t.c.schedule_key == schedule_key.lower())

    def load_job_schedules(self) -> list[JobScheduleRecord]:
        t = tables.job_schedules
        return self._load(codec.JOB_SCHEDULES, sa.select(_json(t)).order_by(t.c.schedule_key))

    def list_job_schedules(
        self, query: ListQuery[JobScheduleRecord]
    ) -> Page[JobScheduleRecord]:
        return self._list(codec.JOB_SCHEDULES, tables.job_schedules, None, query)

    def list_jobs_from_schedule(
        self, schedule_key: str, query: ListQuery[JobRecord]
    ) -> Page[JobRecord]:
        t = tables.jobs
        return self._list(codec.JOBS, t, t.c.schedule_key == schedule_key.lower(), query)

    def close(self) -> None:
        if self._turn_conn is not None:
            with suppress(Exception):
                self._turn_conn.close()
            self._turn_conn = None
        self._engine.dispose()
