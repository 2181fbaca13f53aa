"""Clocks and id sources: the runtime's only readers of time and randomness."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class RandomNodeIds:
    """Node ids in the Batch style (``tvmps_<hex>_d``), unique across restarts."""

    def node_id(self, pool_id: str) -> str:
        return f"tvmps_{secrets.token_hex(16)}_d"
