"""Everything that differs between SQLite and PostgreSQL, and nothing else.

* engine set-up: SQLite gets WAL, ``synchronous=NORMAL``, a busy timeout and explicit
  ``BEGIN`` / ``BEGIN IMMEDIATE`` (pysqlite's implicit transactions do not cover SELECTs, so a
  multi-statement read would otherwise see several snapshots); PostgreSQL reads run in
  read-only REPEATABLE READ transactions for the same reason. ``postgresql://`` URLs get the
  psycopg 3 driver.
* column types: keys and other compared strings use the ``C`` collation on PostgreSQL so that
  ORDER BY and range conditions follow code-point order, as SQLite's BINARY collation and
  Python's ``str`` comparison do (the stores must page identically);
  the record column is ``JSON`` (PostgreSQL ``json`` keeps the text verbatim, which keeps
  ``-0.0`` and float digits exact; nothing queries inside it).
* upsert syntax (``INSERT ... ON CONFLICT DO UPDATE``) and partial index clauses.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

from hybatch.store.codec import dumps, loads

_WRITE = "hybatch_write"
_POOL_SIZE = 8


def key_type() -> sa.types.TypeEngine[str]:
    """Lower-cased keys and compared strings: code-point ordered on every dialect."""
    return sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSON(), "postgresql")


def partial_index(where: sa.ColumnElement[bool]) -> dict[str, Any]:
    """Keyword arguments of :class:`sqlalchemy.Index` for an index restricted to ``where``."""
    return {"sqlite_where": where, "postgresql_where": where}


class SqlDialect(ABC):
    """One database family. Subclasses override what differs."""

    name = ""
    #: True when every thread shares one DBAPI connection (SQLite in memory): the store
    #: then serialises its calls.
    single_connection = False

    @abstractmethod
    def create_engine(self, url: str) -> Engine: ...

    @abstractmethod
    def upsert(self, table: sa.Table) -> Insert:
        """INSERT of whole rows that replaces the non-key columns of an existing row."""

    @contextmanager
    def reading(self, engine: Engine) -> Iterator[Connection]:
        """A read transaction: every statement inside sees the same committed state."""
        with engine.connect() as conn:
            conn.execution_options(**self._read_options())
            with conn.begin():
                yield conn

    @contextmanager
    def writing(self, engine: Engine) -> Iterator[Connection]:
        """A write transaction, committed on normal exit and rolled back on error."""
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @abstractmethod
    def begin_turn(self, dbapi_conn: Any) -> None:
        """Start the writer's turn transaction on its own DBAPI connection."""

    def _read_options(self) -> dict[str, Any]:
        return {}


class DriverStatement:
    """A statement compiled once and run through the driver's ``executemany``.

    Skips SQLAlchemy's per-execution work (parameter processing, compiled-cache lookup,
    result set-up), which on the writer's hot path costs more than the statements themselves.
    Rows must hold plain driver values: ``str``, ``int``, ``bool``, ``None``, and JSON columns
    already serialised."""

    def __init__(self, engine: Engine, statement: sa.ClauseElement) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=engine.dialect))
        self._sql = compiled.string
        self._order: list[str] | None = (
            list(compiled.positiontup) if compiled.positiontup is not None else None
        )

    def _params(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        if self._order is None:
            return list(rows)
        order = self._order
        return [tuple(row[c] for c in order) for row in rows]

    def __call__(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run inside a SQLAlchemy transaction."""
        if rows:
            conn.exec_driver_sql(self._sql, self._params(rows))

    def run(self, cursor: Any, rows: Sequence[dict[str, Any]]) -> None:
        """Run on a DBAPI cursor (the writer's turn transaction)."""
        if rows:
            cursor.executemany(self._sql, self._params(rows))


def bulk_upsert(dialect: SqlDialect, engine: Engine, table: sa.Table) -> DriverStatement:
    """INSERT of whole rows replacing an existing row's non-key columns, compiled once."""
    return DriverStatement(engine, dialect.upsert(table))


def _on_conflict_update(insert: Any, table: sa.Table) -> Insert:
    keys: Sequence[sa.Column[Any]] = list(table.primary_key.columns)
    stmt = insert(table)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if not c.primary_key}
    result: Insert = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    return result


class SqliteDialect(SqlDialect):
    name = "sqlite"

    def __init__(self, url: str) -> None:
        database = make_url(url).database
        self.single_connection = database in (None, "", ":memory:")

    def create_engine(self, url: str) -> Engine:
        args: dict[str, Any] = {"json_serializer": dumps, "json_deserializer": loads}
        if self.single_connection:
            args["poolclass"] = StaticPool
        else:
            args["pool_size"] = _POOL_SIZE
            args["max_overflow"] = 4 * _POOL_SIZE
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60.0}, **args
        )
        event.listen(engine, "connect", self._on_connect)
        event.listen(engine, "begin", self._on_begin)
        return engine

    def upsert(self, table: sa.Table) -> Insert:
        return _on_conflict_update(sqlite.insert, table)

    @staticmethod
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Transactions are begun explicitly in _on_begin (autocommit at the driver level).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute("PRAGMA temp_store=MEMORY")
        finally:
            cur.close()

    def begin_turn(self, dbapi_conn: Any) -> None:
        # autocommit at the driver level (see _on_connect): take the write lock up front
        dbapi_conn.execute("BEGIN IMMEDIATE")

    @staticmethod
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so a busy database makes them wait (busy
        # timeout) instead of failing half-way; readers take a snapshot at their first read.
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class PostgresDialect(SqlDialect):
    name = "postgresql"

    def begin_turn(self, dbapi_conn: Any) -> None:
        """Nothing: psycopg opens the transaction with the turn's first statement."""

    def create_engine(self, url: str) -> Engine:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(
            parsed,
            json_serializer=dumps,
            json_deserializer=loads,
            pool_size=_POOL_SIZE,
            max_overflow=4 * _POOL_SIZE,
            pool_pre_ping=True,
        )
        event.listen(engine, "connect", self._on_connect)
        return engine

    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: object) -> None:
        # Page queries over large tables look expensive to the planner, which then JIT-compiles
        # them: ~80 ms per query for queries that run in a few. Our queries are all short.
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            dbapi_conn.execute("SET jit = off")
        finally:
            dbapi_conn.autocommit = autocommit

    def upsert(self, table: sa.Table) -> Insert:
        return _on_conflict_update(postgresql.insert, table)

    def _read_options(self) -> dict[str, Any]:
        return {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


def dialect_for(url: str) -> SqlDialect:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDialect(url)
    if backend == "postgresql":
        return PostgresDialect()
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:/// or postgresql+psycopg://")
