"""The per-call context handed to core handlers: state, the current time, the effects being
collected and the injected id source. Keeps handler signatures short.

Imports: standard library, core modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from hybatch.core.cluster import ClusterState
from hybatch.core.commands import Precondition
from hybatch.core.effects import Effect
from hybatch.core.errors import DomainError

UNLIMITED_S = 10_000 * 365 * 86400.0
"""Durations at or above this (e.g. the .NET TimeSpan.MaxValue sentinel) mean "no limit"."""


class NodeIds(Protocol):
    """Where node ids come from (injected: random in the service, sequential in tests)."""

    def node_id(self, pool_id: str) -> str: ...


@dataclass(slots=True)
class Ctx:
    state: ClusterState
    now: datetime
    ids: NodeIds
    effects: list[Effect] = field(default_factory=list)


def seconds(value: timedelta | None) -> float | None:
    """A wire duration as seconds; None for absent or "unlimited"."""
    if value is None:
        return None
    total = value.total_seconds()
    return None if total >= UNLIMITED_S else total


def check_precondition(etag: str, last_modified: datetime | None, pre: Precondition) -> None:
    """Apply If-Match / If-None-Match / If-(Un)Modified-Since to a write (412 when unmet)."""
    def unmet() -> DomainError:
        return DomainError("ConditionNotMet", "The condition specified using HTTP conditional "
                           "header(s) is not met.")

    if pre.if_match is not None and pre.if_match not in ("*", etag):
        raise unmet()
    if pre.if_none_match is not None and pre.if_none_match in ("*", etag):
        raise unmet()
    stamp = last_modified.timestamp() if last_modified is not None else None
    if stamp is None:
        return
    if pre.if_modified_since is not None and int(stamp) <= int(pre.if_modified_since):
        raise unmet()
    if pre.if_unmodified_since is not None and int(stamp) > int(pre.if_unmodified_since):
        raise unmet()
