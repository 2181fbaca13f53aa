"""Fixtures for the store contract suite: one ``backend`` per Store adapter.

PostgreSQL is real: a throwaway server is started once per session (see
``tests/support/postgres.py``) and each test gets a fresh database in it. When the server
cannot be started, the PostgreSQL tests fail with the reason; they are never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from hybatch.ports import Store
from hybatch.store import MemoryStore, SqlStore
from tests.support.postgres import PostgresServer, PostgresUnavailable, start_postgres

_database_ids = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for these tests and could not be started: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"hybatch_test_{next(_database_ids)}"
    admin = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Backend:
    """How to open (and re-open) one store adapter on the same data."""

    name: str
    open: Callable[[], Store]
    durable: bool


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        shared = MemoryStore()
        return Backend("memory", lambda: shared, durable=False)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hybatch.db'}"
        return Backend("sqlite", lambda: SqlStore(url), durable=True)
    url = request.getfixturevalue("postgres_url")
    return Backend("postgresql", lambda: SqlStore(url), durable=True)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    yield opened
    opened.close()
