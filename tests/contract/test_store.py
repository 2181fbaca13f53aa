"""The Store contract: one suite, run against MemoryStore, SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybatch.core.records import JobRecord, NodeRecord, PoolRecord, TaskRecord
from hybatch.odata.ast import And, Compare, Field, Literal, Not, Or, StartsWith
from hybatch.ports import Changes, ListQuery, Page, Store
from hybatch.store import InvalidToken
from tests.support.store_records import (
    T0,
    full_job,
    full_node,
    full_pool,
    full_task,
    job,
    node,
    pool,
    task,
    usage_record,
)
from tests.support.store_strategies import records

from .conftest import Backend


def eq(path: str, value: object) -> Compare:
    return Compare("eq", Field(tuple(path.split("/"))), Literal(value))  # type: ignore[arg-type]


def cmp(op: str, path: str, value: object) -> Compare:
    return Compare(op, Field(tuple(path.split("/"))), Literal(value))  # type: ignore[arg-type]


def all_pages(
    list_page: Callable[[ListQuery[TaskRecord]], Page[TaskRecord]], **query: object
) -> list[Page[TaskRecord]]:
    pages: list[Page[TaskRecord]] = []
    token: str | None = None
    while True:
        page = list_page(ListQuery(after=token, **query))  # type: ignore[arg-type]
        pages.append(page)
        token = page.next_token
        if token is None:
            return pages
        assert len(pages) < 1000, "paging does not terminate"


def ids(items: list[TaskRecord]) -> list[str]:
    return [t.id for t in items]


def seed_tasks(store: Store, job_id: str, count: int, **fields: object) -> list[TaskRecord]:
    records = [task(job_id, f"t{i:03d}", seq=i, **fields) for i in range(count)]
    store.apply(Changes(jobs=[job(job_id)], tasks=records))
    return records


# ------------------------------------------------------------------------- round trips


def test_full_records_round_trip(store: Store) -> None:
    p, n, j, t = full_pool(), full_node(), full_job(), full_task()
    store.apply(Changes(pools=[p], nodes=[n], jobs=[j], tasks=[t]))

    assert store.get_pool("pool-a") == p
    assert store.get_node("tvm-0001_node") == n
    assert store.get_job("job-1") == j
    assert store.get_task("job-1", "task-1") == t
    assert store.load_pools() == [p]
    assert store.load_nodes() == [n]
    assert store.load_jobs() == [j]
    # secrets survive (pydantic masks SecretStr values as '**********' when dumping)
    got = store.get_task("job-1", "task-1")
    assert got is not None and got.spec.container_settings is not None
    registry = got.spec.container_settings.registry
    assert registry is not None and registry.password is not None
    assert clear(registry.password) == "pw"


def clear(value: object) -> object:
    reveal = getattr(value, "get_secret_value", None)
    return reveal() if reveal is not None else value


def test_get_tasks_by_keys(store: Store) -> None:
    seed_tasks(store, "Job", 5)
    seed_tasks(store, "other", 5)
    got = store.get_tasks("JOB", ["T003", "missing", "t001", "t003"])
    assert [(t.job_id, t.id) for t in got] == [("Job", "t003"), ("Job", "t001")]
    assert store.get_tasks("job", []) == []
    many = store.get_tasks("job", [f"t{i:03d}" for i in range(5)] * 300)
    assert ids(many) == [f"t{i:03d}" for i in range(5)]


def test_get_returns_copies(store: Store) -> None:
    t = task("j", "t1")
    store.apply(Changes(tasks=[t]))
    t.state = "running"  # the caller keeps mutating its record; the store must not see it
    got = store.get_task("j", "t1")
    assert got is not None and got.state == "active"
    got.state = "completed"
    again = store.get_task("j", "t1")
    assert again is not None and again.state == "active"


def test_missing_records_are_none(store: Store) -> None:
    assert store.get_pool("nope") is None
    assert store.get_node("nope") is None
    assert store.get_job("nope") is None
    assert store.get_task("nope", "nope") is None
    assert store.load_pools() == [] and store.load_jobs() == []
    assert store.load_unfinished_tasks() == []


def test_keys_are_case_insensitive_and_ids_keep_their_case(store: Store) -> None:
    store.apply(
        Changes(
            pools=[pool("MyPool")],
            nodes=[node("Node-X", "MyPool")],
            jobs=[job("MyJob")],
            tasks=[task("MyJob", "MyTask")],
        )
    )
    for key in ("mypool", "MYPOOL", "MyPool"):
        got = store.get_pool(key)
        assert got is not None and got.id == "MyPool"
    assert store.get_node("NODE-x") is not None
    assert store.get_job("MYJOB") is not None
    got_task = store.get_task("myjob", "MYTASK")
    assert got_task is not None and (got_task.job_id, got_task.id) == ("MyJob", "MyTask")
    assert ids(store.list_tasks("MYJOB", ListQuery()).items) == ["MyTask"]
    assert [n.id for n in store.list_nodes("MYPOOL", ListQuery()).items] == ["Node-X"]

    # an id differing only in case is the same record: the upsert replaces it
    store.apply(Changes(tasks=[task("myjob", "MYTASK", state="running")]))
    tasks = store.list_tasks("myjob", ListQuery()).items
    assert [(t.id, t.state) for t in tasks] == [("MYTASK", "running")]


def test_upsert_replaces_and_last_record_of_a_turn_wins(store: Store) -> None:
    store.apply(Changes(tasks=[task("j", "t", version=1)]))
    store.apply(Changes(tasks=[task("j", "t", version=2), task("j", "t", version=3)]))
    got = store.get_task("j", "t")
    assert got is not None and got.version == 3


def test_empty_changes_are_a_no_op(store: Store) -> None:
    store.apply(Changes())
    assert store.load_jobs() == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_records_round_trip(store: Store, data: st.DataObject) -> None:
    """Hypothesis-generated records (every field random) come back equal from the store."""
    p = data.draw(records(PoolRecord))
    n = data.draw(records(NodeRecord))
    j = data.draw(records(JobRecord))
    t = data.draw(records(TaskRecord))
    store.apply(Changes(pools=[p], nodes=[n], jobs=[j], tasks=[t]))
    assert store.get_pool(p.id.lower()) == p
    assert store.get_node(n.id.lower()) == n
    assert store.get_job(j.id.lower()) == j
    assert store.get_task(t.job_id.lower(), t.id.lower()) == t


# ------------------------------------------------------------------------- deletes


def test_deleting_a_job_deletes_its_tasks_only(store: Store) -> None:
    seed_tasks(store, "J1", 5)
    seed_tasks(store, "j2", 3)
    store.apply(Changes(deleted_jobs=["j1"]))

    assert store.get_job("j1") is None
    assert store.get_task("j1", "t000") is None
    assert store.list_tasks("j1", ListQuery()).items == []
    assert [t.job_id for t in store.load_unfinished_tasks()] == ["j2"] * 3
    assert [j.id for j in store.load_jobs()] == ["j2"]

    # a job re-created with the same id starts empty
    store.apply(Changes(jobs=[job("J1")]))
    assert store.list_tasks("j1", ListQuery()).items == []


def test_deleting_a_pool_deletes_its_nodes_only(store: Store) -> None:
    store.apply(
        Changes(
            pools=[pool("p1"), pool("p2")],
            nodes=[node("n1", "P1"), node("n2", "p1"), node("n3", "p2")],
        )
    )
    store.apply(Changes(deleted_pools=["p1"]))
    assert store.get_pool("p1") is None
    assert store.get_node("n1") is None and store.get_node("n2") is None
    assert [n.id for n in store.load_nodes()] == ["n3"]
    assert store.list_nodes("p1", ListQuery()).items == []


def test_deleting_single_tasks_and_nodes(store: Store) -> None:
    seed_tasks(store, "j", 3)
    store.apply(Changes(pools=[pool("p")], nodes=[node("n1", "p"), node("n2", "p")]))
    store.apply(Changes(deleted_tasks=[("j", "t001")], deleted_nodes=["n2"]))
    assert ids(store.list_tasks("j", ListQuery()).items) == ["t000", "t002"]
    assert [n.id for n in store.load_nodes()] == ["n1"]
    assert store.get_job("j") is not None


def test_deletes_apply_before_upserts_of_the_same_turn(store: Store) -> None:
    seed_tasks(store, "j", 2)
    store.apply(Changes(jobs=[job("j", seq=9)], tasks=[task("j", "new")], deleted_jobs=["j"]))
    got = store.get_job("j")
    assert got is not None and got.seq == 9
    assert ids(store.list_tasks("j", ListQuery()).items) == ["new"]


# ------------------------------------------------------------------------- start-up load


def test_load_unfinished_tasks_skips_completed(store: Store) -> None:
    store.apply(
        Changes(
            tasks=[
                task("b", "x", seq=2, state="running"),
                task("b", "y", seq=1, state="active"),
                task("b", "z", seq=3, state="completed"),
                task("a", "q", seq=0, state="preparing"),
                task("a", "r", seq=1, state="Completed"),
            ]
        )
    )
    assert [(t.job_id, t.id) for t in store.load_unfinished_tasks()] == [
        ("a", "q"),
        ("b", "y"),
        ("b", "x"),
    ]
    store.apply(Changes(tasks=[task("b", "x", seq=2, state="completed")]))
    assert [t.id for t in store.load_unfinished_tasks()] == ["q", "y"]


# ------------------------------------------------------------------------- paging


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (25, 10, [10, 10, 5]),
        (20, 10, [10, 10]),
        (1, 1000, [1]),
        (0, 10, [0]),
        (3, 1, [1, 1, 1]),
    ],
)
def test_paging_sizes_and_tokens(store: Store, count: int, size: int, expected: list[int]) -> None:
    seed_tasks(store, "j", count)
    pages = all_pages(lambda q: store.list_tasks("j", q), max_results=size)
    assert [len(p.items) for p in pages] == expected
    assert all(p.next_token is not None for p in pages[:-1])
    assert pages[-1].next_token is None
    assert [t.id for p in pages for t in p.items] == [f"t{i:03d}" for i in range(count)]


def test_lists_are_in_key_order(store: Store) -> None:
    names = ["b", "A", "c10", "C2", "a-1", "a_1", "B0"]
    store.apply(
        Changes(
            tasks=[task("j", n) for n in names],
            jobs=[job(n) for n in names],
            pools=[pool(n) for n in names],
        )
    )
    expected = sorted(names, key=str.lower)
    assert ids(store.list_tasks("j", ListQuery()).items) == expected
    assert [j.id for j in store.list_jobs(ListQuery()).items] == expected
    assert [p.id for p in store.list_pools(ListQuery()).items] == expected
    pages = all_pages(lambda q: store.list_tasks("j", q), max_results=2)
    assert [t.id for p in pages for t in p.items] == expected


def test_paging_continues_after_concurrent_inserts(store: Store) -> None:
    seed_tasks(store, "j", 10)
    first = store.list_tasks("j", ListQuery(max_results=4))
    store.apply(Changes(tasks=[task("j", "t000a"), task("j", "t009a")]))
    second = store.list_tasks("j", ListQuery(max_results=100, after=first.next_token))
    assert ids(second.items) == ["t004", "t005", "t006", "t007", "t008", "t009", "t009a"]


def test_bad_tokens_and_page_sizes_are_rejected(store: Store) -> None:
    seed_tasks(store, "j", 2)
    with pytest.raises(InvalidToken):
        store.list_tasks("j", ListQuery(after="garbage!"))
    with pytest.raises(ValueError):
        store.list_tasks("j", ListQuery(after="k%%%"))
    with pytest.raises(ValueError):
        store.list_tasks("j", ListQuery(max_results=0))


def test_list_nodes_and_pools_and_jobs(store: Store) -> None:
    store.apply(
        Changes(
            pools=[pool("p1"), pool("p2")],
            nodes=[node("n3", "p1"), node("n1", "p1"), node("n2", "p2")],
            jobs=[job("j2"), job("j1")],
        )
    )
    assert [n.id for n in store.list_nodes("p1", ListQuery()).items] == ["n1", "n3"]
    assert [n.id for n in store.list_nodes("p2", ListQuery()).items] == ["n2"]
    assert [p.id for p in store.list_pools(ListQuery(max_results=1)).items] == ["p1"]
    assert [j.id for j in store.list_jobs(ListQuery()).items] == ["j1", "j2"]


# ------------------------------------------------------------------------- filters


def _mixed_tasks(store: Store) -> None:
    records = []
    for i in range(30):
        state = ("active", "running", "completed")[i % 3]
        exit_code = (i % 5) - 1 if state == "completed" else None
        records.append(
            task(
                "j",
                f"T{i:03d}",
                seq=i,
                state=state,
                exit_code=exit_code,
                result=None if exit_code is None else ("success" if exit_code == 0 else "failure"),
                start_time=None if state == "active" else T0 + timedelta(seconds=i),
            )
        )
    store.apply(Changes(jobs=[job("j")], tasks=records))


def _expect(store: Store, keep: Callable[[TaskRecord], bool]) -> list[str]:
    everything = store.list_tasks("j", ListQuery(max_results=1000)).items
    return [t.id for t in everything if keep(t)]


@pytest.mark.parametrize(
    ("expr", "keep"),
    [
        (eq("state", "Completed"), lambda t: t.state == "completed"),
        (Compare("ne", Field(("state",)), Literal("ACTIVE")), lambda t: t.state != "active"),
        (eq("id", "t007"), lambda t: t.id == "T007"),
        (StartsWith(Field(("id",)), "t01"), lambda t: t.id.startswith("T01")),
        (StartsWith(Field(("id",)), ""), lambda t: True),
        (cmp("gt", "id", "t025"), lambda t: t.id > "T025"),
        (
            cmp("gt", "executionInfo/exitCode", 0),
            lambda t: t.exit_code is not None and t.exit_code > 0,
        ),
        (
            cmp("ne", "executionInfo/exitCode", 0),
            lambda t: t.exit_code is not None and t.exit_code != 0,
        ),
        (
            Or(cmp("lt", "executionInfo/exitCode", 0), cmp("gt", "executionInfo/exitCode", 2)),
            lambda t: t.exit_code is not None and (t.exit_code < 0 or t.exit_code > 2),
        ),
        (
            And(eq("state", "running"), StartsWith(Field(("id",)), "T00")),
            lambda t: t.state == "running" and t.id.startswith("T00"),
        ),
        (eq("executionInfo/result", "FAILURE"), lambda t: t.result == "failure"),
        (
            cmp("ge", "executionInfo/startTime", T0 + timedelta(seconds=20)),
            lambda t: t.start_time is not None and t.start_time >= T0 + timedelta(seconds=20),
        ),
    ],
)
def test_translated_filters_are_exact(
    store: Store, expr: object, keep: Callable[[TaskRecord], bool]
) -> None:
    """Filters on indexed columns need no predicate: the SQL part alone is exact."""
    _mixed_tasks(store)
    expected = _expect(store, keep)
    assert expected, "the case should select something"
    got = store.list_tasks("j", ListQuery(filter=expr, max_results=1000))  # type: ignore[arg-type]
    assert ids(got.items) == expected
    pages = all_pages(lambda q: store.list_tasks("j", q), filter=expr, max_results=4)
    assert [t.id for p in pages for t in p.items] == expected
    assert all(len(p.items) == 4 for p in pages[:-1])


def test_predicate_stricter_than_the_translated_part(store: Store) -> None:
    _mixed_tasks(store)
    # SQL can narrow to completed tasks with exit code > 0; the predicate adds seq % 2 == 0.
    expr = And(eq("state", "completed"), cmp("gt", "executionInfo/exitCode", 0))

    def predicate(t: TaskRecord) -> bool:
        return t.seq % 2 == 0 and t.state == "completed" and (t.exit_code or 0) > 0

    expected = _expect(store, predicate)
    assert len(expected) >= 3
    pages = all_pages(
        lambda q: store.list_tasks("j", q), filter=expr, predicate=predicate, max_results=2
    )
    assert [t.id for p in pages for t in p.items] == expected
    assert all(len(p.items) == 2 for p in pages[:-1])
    assert pages[-1].next_token is None and pages[-1].items


def test_untranslatable_filters_are_left_to_the_predicate(store: Store) -> None:
    _mixed_tasks(store)
    # Not(...) and unknown properties are not translated; Or with one unknown side neither.
    expr = And(Not(eq("state", "active")), Or(eq("displayName", "x"), eq("state", "running")))

    def predicate(t: TaskRecord) -> bool:
        return t.state == "running"

    expected = _expect(store, predicate)
    got = store.list_tasks("j", ListQuery(filter=expr, predicate=predicate, max_results=1000))
    assert ids(got.items) == expected


def test_sparse_predicate_still_fills_pages(store: Store) -> None:
    seed_tasks(store, "j", 200)

    def predicate(t: TaskRecord) -> bool:
        return t.seq % 37 == 0

    pages = all_pages(lambda q: store.list_tasks("j", q), predicate=predicate, max_results=2)
    assert [[t.seq for t in p.items] for p in pages] == [[0, 37], [74, 111], [148, 185]]
    assert pages[-1].next_token is None


def test_filters_on_other_resources(store: Store) -> None:
    store.apply(
        Changes(
            pools=[
                pool("p1"),
                pool("p2", state="deleting"),
                pool("p3", allocation_state="resizing"),
            ],
            nodes=[
                node("n1", "p1"),
                node("n2", "p1", is_dedicated=False, state="idle"),
                node("n3", "p1", state="Idle"),
            ],
            jobs=[job("j1"), job("j2", state="completed")],
        )
    )
    assert [p.id for p in store.list_pools(ListQuery(filter=eq("state", "ACTIVE"))).items] == [
        "p1",
        "p3",
    ]
    assert [
        p.id for p in store.list_pools(ListQuery(filter=eq("allocationState", "resizing"))).items
    ] == ["p3"]
    assert [
        n.id for n in store.list_nodes("p1", ListQuery(filter=eq("isDedicated", False))).items
    ] == ["n2"]
    assert [n.id for n in store.list_nodes("p1", ListQuery(filter=eq("state", "idle"))).items] == [
        "n2",
        "n3",
    ]
    assert [j.id for j in store.list_jobs(ListQuery(filter=eq("state", "completed"))).items] == [
        "j2"
    ]
    assert [
        j.id
        for j in store.list_jobs(
            ListQuery(filter=cmp("lt", "creationTime", T0 + timedelta(seconds=1)))
        ).items
    ] == ["j1", "j2"]


# ------------------------------------------------------------------------- settings


def test_settings(store: Store) -> None:
    assert store.get_setting("account_key") is None
    store.put_setting("account_key", "abc==")
    assert store.get_setting("account_key") == "abc=="
    store.put_setting("account_key", "def")
    store.put_setting("other", "\u00fc")
    assert store.get_setting("account_key") == "def"
    assert store.get_setting("other") == "\u00fc"


# ------------------------------------------------------------------------- durability


def test_persists_across_reopen(backend: Backend) -> None:
    """SQL stores keep everything across close/open (the memory store reopens itself)."""
    first = backend.open()
    first.apply(
        Changes(
            pools=[full_pool()],
            nodes=[full_node()],
            jobs=[full_job()],
            tasks=[full_task(), task("job-1", "t-open", state="running")],
        )
    )
    first.put_setting("account_key", "k")
    first.close()

    second = backend.open()
    try:
        assert second.get_pool("pool-a") == full_pool()
        assert second.get_node("tvm-0001_node") == full_node()
        assert second.get_job("job-1") == full_job()
        assert second.get_task("job-1", "task-1") == full_task()
        assert [t.id for t in second.load_unfinished_tasks()] == ["t-open"]
        assert second.get_setting("account_key") == "k"
    finally:
        second.close()


# ------------------------------------------------------------------------- concurrency


def test_concurrent_reads_during_writes(store: Store) -> None:
    """One writer applies turns that rewrite every task with a new version; readers must
    never fail and never see a mix of two turns in one answer."""
    count, turns = 300, 25
    store.apply(
        Changes(
            jobs=[job("j", version=0)],
            tasks=[task("j", f"t{i:03d}", seq=i, version=0) for i in range(count)],
        )
    )
    errors: list[BaseException] = []
    stop = threading.Event()
    reads = [0]

    def writer() -> None:
        try:
            for v in range(1, turns + 1):
                store.apply(
                    Changes(
                        jobs=[job("j", version=v)],
                        tasks=[
                            task(
                                "j",
                                f"t{i:03d}",
                                seq=i,
                                version=v,
                                state="running" if v % 2 else "active",
                            )
                            for i in range(count)
                        ],
                    )
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                page = store.list_tasks("j", ListQuery(max_results=1000))
                assert len(page.items) == count
                assert len({t.version for t in page.items}) == 1, "torn page"
                # several chunked queries behind one page: still one snapshot
                sparse = store.list_tasks(
                    "j", ListQuery(predicate=lambda t: t.seq % 3 == 0, max_results=1000)
                )
                assert len(sparse.items) == count // 3
                assert len({t.version for t in sparse.items}) == 1, "torn chunked page"
                running = store.list_tasks("j", ListQuery(filter=eq("state", "running")))
                assert len(running.items) in (0, count)
                got = store.get_task("j", "t150")
                assert got is not None and 0 <= got.version <= turns
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads did not finish"
    assert not errors, errors[0]
    assert reads[0] > 0
    final = store.get_job("j")
    assert final is not None and final.version == turns
    assert {t.version for t in store.list_tasks("j", ListQuery()).items} == {turns}


def test_record_helpers_are_independent() -> None:
    """Guard for the suite itself: the builders give fresh objects."""
    a, b = full_task(), full_task()
    assert a == b and a is not b
    assert replace(a, version=1) != b


# ------------------------------------------------------------------------- pool usage


def test_usage_records_are_listed_by_interval_and_outlive_their_pool(
        backend: Backend, store: Store) -> None:
    hour = T0.replace(minute=0, second=0, microsecond=0)
    half = timedelta(minutes=30)
    store.apply(Changes(pools=[pool("Pool-B")], usage=[
        usage_record("Pool-B", 1, 10.0), usage_record("pool-a", 1, 20.5),
        usage_record("Pool-B", 0, 30.0), usage_record("Pool-B", 3, 40.0)]))
    store.apply(Changes(deleted_pools=["pool-b"],
                        usage=[usage_record("Pool-B", 1, 5.0, created=60)]))
    listed = store.list_usage(hour, hour + 3 * half)
    assert [(u.interval_start - hour, u.pool_id, u.core_seconds) for u in listed] == [
        (timedelta(0), "Pool-B", 30.0), (half, "pool-a", 20.5), (half, "Pool-B", 10.0),
        (half, "Pool-B", 5.0)]
    assert listed[1] == usage_record("pool-a", 1, 20.5)
    assert store.list_usage(hour + half, hour + 2 * half) == listed[1:]
    assert store.list_usage(hour + 4 * half, hour + 9 * half) == []
    store.apply(Changes(usage=[usage_record("pool-a", 1, 21.0)]))  # same key: replaced
    assert [u.core_seconds for u in store.list_usage(hour + half, hour + 2 * half)] == [
        21.0, 10.0, 5.0]
    if backend.durable:
        reopened = backend.open()
        try:
            assert len(reopened.list_usage(hour, hour + 9 * half)) == 5
        finally:
            reopened.close()
