"""Data structures behind task dependencies (the rules are in core.dependencies).

* **Integer runs**: a set of 32-bit integers (the values of task ids that are integers) kept as
  sorted, disjoint, non-adjacent inclusive ``[start, end]`` runs, with a side count of values
  held more than once. A job whose tasks ``1``..``100000`` all succeeded is one run. Runs live
  in the job's stored :class:`~hybatch.core.records.DependencyBookRecord`.
* **Interval stabbing**: ``taskIdRanges`` of waiting tasks, each split into at most 64 aligned
  power-of-two blocks of the 32-bit value space (the nodes of an implicit segment tree). The
  waiting tasks whose ranges hold a value ``v`` are found by looking at the 33 blocks that
  contain ``v``: the cost does not depend on the ranges' widths or on how many ranges miss
  ``v``. A range is never expanded.
* :class:`JobDependencies`: the in-memory index of one job (rebuilt from the records at
  start-up): unsatisfied-parent counters of waiting tasks, explicit-id watchers and the
  stabbing table.

Imports: standard library.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

Key = tuple[str, str]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
_OFFSET = 2**31
_LEVELS = 33  # block sizes 2**0 .. 2**32
_LEVEL_SHIFT = 33  # a block id: level << 33 | index (index < 2**33)


def int_value(task_id: str) -> int | None:
    """The integer a task id denotes for ``taskIdRanges`` (``7``, ``007``, ``-3``), or None
    when it is not an integer or lies outside 32 bits (no range can select it)."""
    text = task_id[1:] if task_id[:1] == "-" else task_id
    if not text.isdigit() or not text.isascii():
        return None
    value = int(task_id)
    return value if INT32_MIN <= value <= INT32_MAX else None


# ------------------------------------------------------------------ integer runs


def _start(run: list[int]) -> int:
    return run[0]


def _find(runs: list[list[int]], value: int) -> int:
    """Index of the run holding ``value``, or -1."""
    i = bisect_right(runs, value, key=_start) - 1
    return i if i >= 0 and runs[i][1] >= value else -1


def runs_has(runs: list[list[int]], value: int) -> bool:
    return _find(runs, value) >= 0


def runs_add(runs: list[list[int]], extra: dict[str, int], value: int) -> bool:
    """Add one holder of ``value``; True when the value was not held before."""
    i = bisect_right(runs, value, key=_start) - 1
    if i >= 0 and runs[i][1] >= value:
        extra[str(value)] = extra.get(str(value), 0) + 1
        return False
    left = i >= 0 and runs[i][1] == value - 1
    right = i + 1 < len(runs) and runs[i + 1][0] == value + 1
    if left and right:
        runs[i][1] = runs[i + 1][1]
        del runs[i + 1]
    elif left:
        runs[i][1] = value
    elif right:
        runs[i + 1][0] = value
    else:
        runs.insert(i + 1, [value, value])
    return True


def runs_remove(runs: list[list[int]], extra: dict[str, int], value: int) -> bool:
    """Remove one holder of ``value``; True when no holder is left."""
    i = _find(runs, value)
    if i < 0:
        return False
    name = str(value)
    held = extra.get(name, 0)
    if held:
        if held == 1:
            del extra[name]
        else:
            extra[name] = held - 1
        return False
    start, end = runs[i]
    if start == end:
        del runs[i]
    elif value == start:
        runs[i][0] = value + 1
    elif value == end:
        runs[i][1] = value - 1
    else:
        runs[i][1] = value - 1
        runs.insert(i + 1, [value + 1, end])
    return True


def runs_count(runs: list[list[int]], low: int, high: int) -> int:
    """How many values in ``[low, high]`` are held."""
    if low > high:
        return 0
    i = max(bisect_right(runs, low, key=_start) - 1, 0)
    total = 0
    while i < len(runs) and runs[i][0] <= high:
        first, last = max(runs[i][0], low), min(runs[i][1], high)
        if first <= last:
            total += last - first + 1
        i += 1
    return total


def runs_first_missing(runs: list[list[int]], low: int, high: int) -> int | None:
    """The smallest value in ``[low, high]`` that is not held, or None (runs never touch, so
    the value after the run holding ``low`` is free)."""
    i = _find(runs, low)
    value = low if i < 0 else runs[i][1] + 1
    return value if value <= high else None


def runs_spans(runs: list[list[int]], low: int, high: int) -> Iterator[tuple[int, int]]:
    """The held values in ``[low, high]`` as clipped runs."""
    i = max(bisect_right(runs, low, key=_start) - 1, 0)
    while i < len(runs) and runs[i][0] <= high:
        first, last = max(runs[i][0], low), min(runs[i][1], high)
        if first <= last:
            yield first, last
        i += 1


# ------------------------------------------------------------------ interval stabbing


def span_blocks(low: int, high: int) -> Iterator[int]:
    """The aligned blocks that exactly cover ``[low, high]`` (at most 64)."""
    left, right, level = low + _OFFSET, high + _OFFSET + 1, 0
    while left < right:
        if left & 1:
            yield (level << _LEVEL_SHIFT) | left
            left += 1
        if right & 1:
            right -= 1
            yield (level << _LEVEL_SHIFT) | right
        left >>= 1
        right >>= 1
        level += 1


def point_blocks(value: int) -> Iterator[int]:
    """The 33 blocks that contain ``value``."""
    shifted = value + _OFFSET
    for level in range(_LEVELS):
        yield (level << _LEVEL_SHIFT) | (shifted >> level)


# ------------------------------------------------------------------ per-job index


@dataclass(slots=True)
class JobDependencies:
    """The in-memory dependency index of one job (nothing here is stored)."""

    waiting: dict[Key, int] = field(default_factory=dict)
    """Waiting task -> parent requirements not satisfied yet (an explicit id counts once,
    a range counts once per value; the task is released when this reaches 0)."""
    watchers: dict[str, set[Key]] = field(default_factory=dict)
    """Lower-cased id named in ``dependsOn.taskIds`` -> the waiting tasks naming it."""
    stab: dict[int, dict[Key, int]] = field(default_factory=dict)
    """Block -> waiting tasks with a range covering it (with multiplicity)."""
    own_value: dict[Key, int] = field(default_factory=dict)
    """Waiting tasks with ranges whose own id is an integer: a range never waits for the task
    itself."""
    failures: deque[tuple[Key, str]] = field(default_factory=deque)
    """Waiting tasks to fail (``hybatch.failBlockedDependents``) and the parent to name."""
    draining: bool = False

    def add_ranges(self, key: Key, ranges: list[tuple[int, int]]) -> None:
        for low, high in ranges:
            for block in span_blocks(low, high):
                holders = self.stab.setdefault(block, {})
                holders[key] = holders.get(key, 0) + 1

    def remove_ranges(self, key: Key, ranges: list[tuple[int, int]]) -> None:
        for low, high in ranges:
            for block in span_blocks(low, high):
                holders = self.stab.get(block)
                if holders is None:
                    continue
                count = holders.get(key, 0) - 1
                if count > 0:
                    holders[key] = count
                else:
                    holders.pop(key, None)
                    if not holders:
                        del self.stab[block]

    def covering(self, value: int) -> list[tuple[Key, int]]:
        """Waiting tasks with ranges that hold ``value`` (not the task whose own id it is),
        each with the number of its ranges that do."""
        found: dict[Key, int] = {}
        for block in point_blocks(value):
            holders = self.stab.get(block)
            if holders:
                for key, count in holders.items():
                    found[key] = found.get(key, 0) + count
        own = self.own_value
        return [(k, c) for k, c in found.items() if own.get(k) != value]
