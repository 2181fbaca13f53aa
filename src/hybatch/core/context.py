"""The per-call context handed to core handlers: state, the current time, the effects being
collected and the injected id source. Keeps handler signatures short.

Imports: standard library, core modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from hybatch.core.cluster import ClusterState
from hybatch.core.commands import Precondition
from hybatch.core.effects import Effect
from hybatch.core.errors import DomainError
from hybatch.core.sizes import Offer
from hybatch.core.tokens import TaskTokens

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
    tokens: TaskTokens | None = None
    """Mints task authentication tokens (None: tasks that ask for one get none)."""
    offer: Offer | None = None
    """The VM sizes and images this server runs (None: accept any size)."""


def seconds(value: timedelta | None) -> float | None:
    """A wire duration as seconds; None for absent or "unlimited"."""
    if value is None:
        return None
    total = value.total_seconds()
    return None if total >= UNLIMITED_S else total


ConditionName = Literal["If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"]


def _etag_listed(listed: str, etag: str) -> bool:
    """Whether ``etag`` is named by a parsed If-Match / If-None-Match value: ``*`` or a
    comma-separated list of unquoted entity tags (Batch's tags never hold a comma)."""
    tags = {tag.strip() for tag in listed.split(",")}
    return "*" in tags or etag in tags


def unmet_condition(etag: str, last_modified: datetime | None,
                    pre: Precondition) -> ConditionName | None:
    """The conditional header that ``pre`` fails on a resource with this etag and time, or
    None when every condition holds. Dates compare at whole seconds, the precision of the
    ``Last-Modified`` header clients copy them from. One rule for reads (the HTTP layer maps
    the answer to 304 or 412) and writes (``check_precondition``)."""
    if pre.if_match is not None and not _etag_listed(pre.if_match, etag):
        return "If-Match"
    if pre.if_none_match is not None and _etag_listed(pre.if_none_match, etag):
        return "If-None-Match"
    stamp = last_modified.timestamp() if last_modified is not None else None
    if stamp is None:
        return None
    if pre.if_modified_since is not None and int(stamp) <= int(pre.if_modified_since):
        return "If-Modified-Since"
    if pre.if_unmodified_since is not None and int(stamp) > int(pre.if_unmodified_since):
        return "If-Unmodified-Since"
    return None


def check_precondition(etag: str, last_modified: datetime | None, pre: Precondition) -> None:
    """Apply If-Match / If-None-Match / If-(Un)Modified-Since to a write (412 when unmet)."""
    if unmet_condition(etag, last_modified, pre) is not None:
        raise DomainError("ConditionNotMet", "The condition specified using HTTP conditional "
                          "header(s) is not met.")
