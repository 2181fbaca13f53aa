"""Durable records: ``MemoryStore`` for unit tests and ``SqlStore`` for SQLite and PostgreSQL.

Both implement :class:`hybatch.ports.Store` and behave identically (one contract suite runs
against each). ``codec`` maps records to rows, ``tables`` is the schema, ``dialects`` holds the
SQLite/PostgreSQL differences, ``filters`` the $filter pre-selection, ``paging`` the tokens.
"""

from __future__ import annotations

from hybatch.store.memory import MemoryStore
from hybatch.store.paging import InvalidToken
from hybatch.store.sql import SqlStore

__all__ = ["InvalidToken", "MemoryStore", "SqlStore"]
