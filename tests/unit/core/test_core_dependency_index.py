"""The data structures behind task dependencies: integer runs and interval stabbing,
against brute force."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from hybatch.core.dependency_index import (
    INT32_MAX,
    INT32_MIN,
    JobDependencies,
    int_value,
    runs_add,
    runs_count,
    runs_first_missing,
    runs_has,
    runs_remove,
    runs_spans,
    span_blocks,
)

SMALL = st.integers(-6, 40)


def test_int_value() -> None:
    assert [int_value(i) for i in ("7", "007", "-3", "0", "x7", "7a", "", "-", "1_0",
                                   "2147483647", "2147483648", "-2147483648",
                                   "-2147483649")] == [
        7, 7, -3, 0, None, None, None, None, None, INT32_MAX, None, INT32_MIN, None]
    assert int_value("٣") is None  # a non-ASCII digit never names a value


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), SMALL), max_size=60),
       low=SMALL, high=SMALL)
def test_runs_behave_like_a_multiset(ops: list[tuple[bool, int]], low: int, high: int) -> None:
    runs: list[list[int]] = []
    extra: dict[str, int] = {}
    model: dict[int, int] = {}
    for add, value in ops:
        if add:
            assert runs_add(runs, extra, value) == (model.get(value, 0) == 0)
            model[value] = model.get(value, 0) + 1
        else:
            held = model.get(value, 0)
            assert runs_remove(runs, extra, value) == (held == 1)
            if held:
                model[value] = held - 1
        members = {v for v, n in model.items() if n}
        # runs are sorted, disjoint and never touch
        for first, second in itertools.pairwise(runs):
            assert first[0] <= first[1] < second[0] - 1
        assert {v for a, b in runs for v in range(a, b + 1)} == members
        assert all(runs_has(runs, v) == (v in members) for v in range(-7, 42))
    members = {v for v, n in model.items() if n}
    inside = [v for v in range(low, high + 1) if v in members]
    assert runs_count(runs, low, high) == len(inside)
    assert [v for a, b in runs_spans(runs, low, high) for v in range(a, b + 1)] == inside
    missing = [v for v in range(low, high + 1) if v not in members]
    assert runs_first_missing(runs, low, high) == (missing[0] if missing else None)


@settings(max_examples=300, deadline=None)
@given(low=st.integers(INT32_MIN, INT32_MAX), width=st.integers(0, 2**33),
       probes=st.lists(st.integers(-3, 3), max_size=5))
def test_span_blocks_cover_exactly(low: int, width: int, probes: list[int]) -> None:
    high = min(low + width, INT32_MAX)
    idx = JobDependencies()
    idx.add_ranges(("j", "t"), [(low, high)])
    blocks = list(span_blocks(low, high))
    assert len(blocks) <= 64
    for value in {low, high, low - 1, high + 1, (low + high) // 2,
                  *(low + p for p in probes), *(high + p for p in probes)}:
        if not INT32_MIN <= value <= INT32_MAX:
            continue
        hits = idx.covering(value)
        assert hits == ([(("j", "t"), 1)] if low <= value <= high else []), value
    idx.remove_ranges(("j", "t"), [(low, high)])
    assert idx.stab == {}


def test_covering_counts_overlaps_and_skips_the_task_itself() -> None:
    idx = JobDependencies()
    idx.add_ranges(("j", "a"), [(1, 10), (5, 6)])
    idx.add_ranges(("j", "5"), [(1, 9)])
    idx.own_value[("j", "5")] = 5
    assert sorted(idx.covering(5)) == [(("j", "a"), 2)]
    assert sorted(idx.covering(1)) == [(("j", "5"), 1), (("j", "a"), 1)]
    assert idx.covering(11) == []
