"""Fixtures for the chaos tests: a real PostgreSQL server (started once per session, never
skipped: when it cannot start, the PostgreSQL variants fail with the reason)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.postgres import PostgresServer, PostgresUnavailable, start_postgres

_database_ids = itertools.count()


@pytest.fixture(scope="session")
def chaos_postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for these tests and could not be started: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chaos_postgres_url(chaos_postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"hybatch_chaos_{next(_database_ids)}"
    admin = f"host=127.0.0.1 port={chaos_postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield chaos_postgres.url(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
