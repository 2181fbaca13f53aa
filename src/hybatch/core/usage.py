"""Pool usage accounting: core-seconds of allocated nodes, per pool per aggregation interval.

A node counts from its allocation until it leaves the pool, except while ``deallocated``:
cores of the pool's ``vmSize`` times the seconds it existed in an allocated state, whatever it
ran. Accounting is lazy and exact: a node's time up to ``NodeRecord.accounted_until`` is in
its pool's open interval (``PoolRecord.usage_interval_start`` / ``usage_core_seconds``).
``accrue`` moves a node forward (called before it enters or leaves ``deallocated`` and before
it is dropped); ``roll`` closes the pool's intervals that ended (every tick and before any
accrual), writing one ``UsageRecord`` per closed interval with the time of every node of the
pool up to the interval's end. ``open_usage`` computes, without changing anything, what
``roll`` would write plus the open interval so far: the read side shows live numbers.

Intervals are ``INTERVAL`` long, aligned to UTC midnight.

Imports: standard library, core modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hybatch.core.context import Ctx
from hybatch.core.records import NodeRecord, PoolRecord, UsageRecord

INTERVAL = timedelta(minutes=30)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNALLOCATED = frozenset({"deallocated"})
_CORES = re.compile(r"^(?:standard|basic)_[a-z]+?(\d+)(?:-(\d+))?", re.IGNORECASE)


def interval_start(when: datetime) -> datetime:
    """The start of the aggregation interval holding ``when`` (UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    step = int(INTERVAL.total_seconds())
    offset = int((when - _EPOCH).total_seconds()) // step * step
    return _EPOCH + timedelta(seconds=offset)


def vm_cores(vm_size: str) -> int:
    """vCPUs of an Azure VM size from its name (``Standard_D2s_v3`` -> 2, constrained
    ``Standard_E64-16s_v3`` -> 16 active cores); 1 for names without a count."""
    match = _CORES.match(vm_size.strip())
    if match is None:
        return 1
    cores = int(match.group(2) or match.group(1))
    return max(1, min(cores, 100_000))


def allocated(node: NodeRecord) -> bool:
    return node.state not in _UNALLOCATED


def _seconds(node: NodeRecord, start: datetime, end: datetime) -> float:
    """The node's unaccounted allocated seconds within [start, end)."""
    since = node.accounted_until or node.allocation_time or node.creation_time
    lo = max(since, start)
    if end <= lo or not allocated(node):
        return 0.0
    return (end - lo).total_seconds()


def _closed(pool: PoolRecord, nodes: list[NodeRecord],
            now: datetime) -> list[tuple[datetime, float]]:
    """(interval start, core-seconds) of every interval of the pool that ended by ``now`` and
    is not written yet, oldest first."""
    start = pool.usage_interval_start
    if start is None:
        return []
    current = interval_start(now)
    cores = vm_cores(pool.spec.vm_size)
    out: list[tuple[datetime, float]] = []
    carried = pool.usage_core_seconds
    while start < current:
        end = start + INTERVAL
        total = carried + cores * sum(_seconds(n, start, end) for n in nodes)
        out.append((start, total))
        carried = 0.0
        start = end
    return out


def roll(ctx: Ctx, pool: PoolRecord) -> None:
    """Close the pool's intervals that ended: one UsageRecord each; nodes move to the
    current interval's start."""
    current = interval_start(ctx.now)
    if pool.usage_interval_start is None:
        pool.usage_interval_start = current
        ctx.state.save_quietly(pool)
        return
    if pool.usage_interval_start >= current:
        return
    nodes = ctx.state.nodes_of(pool.key)
    for start, total in _closed(pool, nodes, ctx.now):
        ctx.state.add_usage(UsageRecord(
            pool_id=pool.id, pool_creation_time=pool.creation_time, interval_start=start,
            vm_size=pool.spec.vm_size, core_seconds=total))
    for node in nodes:
        since = node.accounted_until or node.allocation_time or node.creation_time
        if since < current:
            node.accounted_until = current
            ctx.state.save_quietly(node)
    pool.usage_interval_start = current
    pool.usage_core_seconds = 0.0
    ctx.state.save_quietly(pool)


def accrue(ctx: Ctx, node: NodeRecord) -> None:
    """Add the node's allocated time up to now to its pool's open interval."""
    pool = ctx.state.pools.get(node.pool_id.lower())
    if pool is None:
        return
    roll(ctx, pool)
    seconds = _seconds(node, interval_start(ctx.now), ctx.now)
    if seconds > 0:
        pool.usage_core_seconds += vm_cores(pool.spec.vm_size) * seconds
        ctx.state.save_quietly(pool)
    node.accounted_until = ctx.now
    ctx.state.save_quietly(node)


def close_pool(ctx: Ctx, pool: PoolRecord) -> None:
    """The pool is going: write its open interval as it stands (its nodes are gone)."""
    roll(ctx, pool)
    for node in ctx.state.nodes_of(pool.key):
        accrue(ctx, node)
    if pool.usage_interval_start is not None:
        ctx.state.add_usage(UsageRecord(
            pool_id=pool.id, pool_creation_time=pool.creation_time,
            interval_start=pool.usage_interval_start, vm_size=pool.spec.vm_size,
            core_seconds=pool.usage_core_seconds))
    pool.usage_core_seconds = 0.0


def roll_all(ctx: Ctx) -> None:
    """Close ended intervals of every pool (on each tick: cheap when none ended)."""
    current = interval_start(ctx.now)
    for pool in list(ctx.state.pools.values()):
        if pool.usage_interval_start is None or pool.usage_interval_start < current:
            roll(ctx, pool)


def open_usage(pool: PoolRecord, nodes: list[NodeRecord],
               now: datetime) -> list[tuple[datetime, float]]:
    """What the pool's usage looks like at ``now`` beyond the written records: the intervals
    ``roll`` would close, then the open interval so far. Changes nothing."""
    if pool.usage_interval_start is None:
        return []
    out = _closed(pool, nodes, now)
    current = interval_start(now)
    carried = pool.usage_core_seconds if not out else 0.0
    cores = vm_cores(pool.spec.vm_size)
    total = carried + cores * sum(_seconds(n, current, now) for n in nodes)
    out.append((current, total))
    return out


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One pool's usage in one interval, as listed (pools of the same id summed)."""

    pool_id: str
    interval_start: datetime
    vm_size: str
    core_seconds: float

    @property
    def interval_end(self) -> datetime:
        return self.interval_start + INTERVAL


def list_entries(stored: Iterable[UsageRecord],
                 live: Iterable[tuple[PoolRecord, list[NodeRecord]]],
                 now: datetime, start: datetime, end: datetime) -> list[UsageEntry]:
    """Usage per pool id per interval for intervals starting in [start, end), ordered by
    interval then pool id. ``stored`` are written records; ``live`` the pools that still
    exist (with their nodes), whose intervals from their open one on are computed at
    ``now`` (stored records of those intervals are the same time, so they are skipped)."""
    sums: dict[tuple[datetime, str], UsageEntry] = {}

    def add(pool_id: str, begin: datetime, vm_size: str, seconds: float) -> None:
        if not start <= begin < end:
            return
        key = (begin, pool_id.lower())
        before = sums.get(key)
        total = seconds + (before.core_seconds if before is not None else 0.0)
        sums[key] = UsageEntry(pool_id=pool_id, interval_start=begin, vm_size=vm_size,
                               core_seconds=total)

    open_from: dict[tuple[str, datetime], datetime] = {}
    live_list = list(live)
    for pool, _ in live_list:
        if pool.usage_interval_start is not None:
            open_from[(pool.key, pool.creation_time)] = pool.usage_interval_start
    for record in stored:
        cutoff = open_from.get((record.pool_id.lower(), record.pool_creation_time))
        if cutoff is not None and record.interval_start >= cutoff:
            continue
        add(record.pool_id, record.interval_start, record.vm_size, record.core_seconds)
    for pool, nodes in live_list:
        for begin, seconds in open_usage(pool, nodes, now):
            add(pool.id, begin, pool.spec.vm_size, seconds)
    return [sums[key] for key in sorted(sums)]
