"""The Store contract for job schedules and for the jobs a schedule created: one suite, run
against MemoryStore, SQLite and a real PostgreSQL (fixtures in conftest)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybatch.core.records import JobScheduleRecord
from hybatch.odata.ast import And, Compare, Field, Literal, StartsWith
from hybatch.ports import Changes, ListQuery, Page, Store
from tests.support.store_records import (
    T0,
    full_job,
    full_job_schedule,
    job,
    job_schedule,
    schedule_spec,
)
from tests.support.store_strategies import records

from .conftest import Backend


def eq(path: str, value: object) -> Compare:
    return Compare("eq", Field(tuple(path.split("/"))), Literal(value))  # type: ignore[arg-type]


def cmp(op: str, path: str, value: object) -> Compare:
    return Compare(op, Field(tuple(path.split("/"))), Literal(value))  # type: ignore[arg-type]


def schedule_ids(page: Page[JobScheduleRecord]) -> list[str]:
    return [s.id for s in page.items]


# ------------------------------------------------------------------------- round trips


def test_full_schedule_round_trips(store: Store) -> None:
    s = full_job_schedule()
    store.apply(Changes(job_schedules=[s]))
    assert store.get_job_schedule("sched-1") == s
    assert store.get_job_schedule("SCHED-1") == s
    assert store.load_job_schedules() == [s]
    assert store.list_job_schedules(ListQuery()).items == [s]
    assert store.get_job_schedule("other") is None


def test_reads_return_copies(store: Store) -> None:
    store.apply(Changes(job_schedules=[job_schedule("s")]))
    first = store.get_job_schedule("s")
    assert first is not None
    first.state = "deleting"
    again = store.get_job_schedule("s")
    assert again is not None and again.state == "active"


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_generated_schedules_round_trip(store: Store, data: st.DataObject) -> None:
    s = data.draw(records(JobScheduleRecord))
    store.apply(Changes(job_schedules=[s]))
    assert store.get_job_schedule(s.id.lower()) == s


def test_upsert_replaces_and_the_last_record_of_a_turn_wins(store: Store) -> None:
    store.apply(Changes(job_schedules=[job_schedule("s")]))
    store.apply(Changes(job_schedules=[job_schedule("s", state="disabled", version=2),
                                       job_schedule("S", state="completed", version=3)]))
    stored = store.get_job_schedule("s")
    assert stored is not None and (stored.id, stored.state, stored.version) == ("S",
                                                                                 "completed", 3)
    assert len(store.load_job_schedules()) == 1


# ------------------------------------------------------------------------- deletes


def test_deleting_a_schedule_deletes_its_row_only(store: Store) -> None:
    store.apply(Changes(job_schedules=[job_schedule("a"), job_schedule("b")],
                        jobs=[job("a:job-1", job_schedule_id="a")]))
    store.apply(Changes(deleted_job_schedules=["A"]))
    assert store.get_job_schedule("a") is None
    assert [s.id for s in store.load_job_schedules()] == ["b"]
    # the core deletes a schedule's jobs itself (they are listed in deleted_jobs)
    assert store.get_job("a:job-1") is not None


def test_deletes_apply_before_upserts_of_the_same_turn(store: Store) -> None:
    store.apply(Changes(job_schedules=[job_schedule("s", state="deleting")]))
    store.apply(Changes(deleted_job_schedules=["s"], job_schedules=[job_schedule("S")]))
    stored = store.get_job_schedule("s")
    assert stored is not None and stored.id == "S" and stored.state == "active"


# ------------------------------------------------------------------------- lists


def test_schedules_list_in_key_order_and_page(store: Store) -> None:
    ids = ["b", "A", "c", "a-2", "D"]
    store.apply(Changes(job_schedules=[job_schedule(i) for i in ids]))
    assert schedule_ids(store.list_job_schedules(ListQuery())) == ["A", "a-2", "b", "c", "D"]
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        page = store.list_job_schedules(ListQuery(max_results=2, after=token))
        pages.append(schedule_ids(page))
        token = page.next_token
        if token is None:
            break
    assert pages == [["A", "a-2"], ["b", "c"], ["D"]]


def _mixed_schedules(store: Store) -> None:
    store.apply(Changes(job_schedules=[
        job_schedule("s1"),
        job_schedule("s2", state="disabled", state_transition_time=T0 + timedelta(seconds=5)),
        job_schedule("s3", state="Completed", end_time=T0 + timedelta(hours=1)),
        replace(job_schedule("x1"), spec=schedule_spec(
            "x1", schedule={"doNotRunUntil": (T0 + timedelta(days=1)).isoformat(),
                            "doNotRunAfter": (T0 + timedelta(days=9)).isoformat()})),
    ]))


def test_schedule_filters_on_columns(store: Store) -> None:
    _mixed_schedules(store)

    def listed(expr: object) -> list[str]:
        return schedule_ids(store.list_job_schedules(ListQuery(filter=expr)))  # type: ignore[arg-type]

    assert listed(eq("state", "ACTIVE")) == ["s1", "x1"]
    assert listed(eq("state", "completed")) == ["s3"]
    assert listed(eq("id", "S2")) == ["s2"]
    assert listed(StartsWith(Field(("id",)), "S")) == ["s1", "s2", "s3"]
    assert listed(cmp("gt", "stateTransitionTime", T0)) == ["s2"]
    assert listed(cmp("ge", "executionInfo/endTime", T0)) == ["s3"]
    assert listed(cmp("gt", "schedule/doNotRunUntil", T0)) == ["x1"]
    assert listed(cmp("lt", "schedule/doNotRunAfter", T0 + timedelta(days=10))) == ["x1"]
    assert listed(And(eq("state", "active"), cmp("le", "creationTime", T0))) == ["s1", "x1"]


def test_schedule_predicate_decides_the_rest(store: Store) -> None:
    _mixed_schedules(store)
    page = store.list_job_schedules(ListQuery(
        filter=eq("state", "active"), predicate=lambda s: s.id.startswith("x"), max_results=1))
    assert schedule_ids(page) == ["x1"] and page.next_token is None


def test_jobs_from_schedule_are_found_by_their_schedule(store: Store) -> None:
    store.apply(Changes(
        job_schedules=[job_schedule("Nightly"), job_schedule("hourly")],
        jobs=[
            job("Nightly:job-2", job_schedule_id="Nightly"),
            job("nightly:job-1", job_schedule_id="NIGHTLY", state="completed"),
            job("hourly:job-1", job_schedule_id="hourly"),
            job("plain"),
        ],
    ))
    listed = store.list_jobs_from_schedule("NIGHTLY", ListQuery())
    assert [j.id for j in listed.items] == ["nightly:job-1", "Nightly:job-2"]
    assert listed.next_token is None
    assert [j.id for j in store.list_jobs_from_schedule("hourly", ListQuery()).items] == [
        "hourly:job-1"]
    assert store.list_jobs_from_schedule("nobody", ListQuery()).items == []
    completed = store.list_jobs_from_schedule("nightly", ListQuery(filter=eq("state",
                                                                               "completed")))
    assert [j.id for j in completed.items] == ["nightly:job-1"]
    first = store.list_jobs_from_schedule("nightly", ListQuery(max_results=1))
    assert [j.id for j in first.items] == ["nightly:job-1"] and first.next_token
    rest = store.list_jobs_from_schedule("nightly", ListQuery(max_results=1,
                                                             after=first.next_token))
    assert [j.id for j in rest.items] == ["Nightly:job-2"] and rest.next_token is None
    # the plain job list still has every job
    assert len(store.list_jobs(ListQuery()).items) == 4


def test_deleted_jobs_leave_their_schedules_listing(store: Store) -> None:
    store.apply(Changes(job_schedules=[job_schedule("s")],
                        jobs=[job("s:job-1", job_schedule_id="s"),
                              job("s:job-2", job_schedule_id="s")]))
    store.apply(Changes(deleted_jobs=["s:job-1"]))
    assert [j.id for j in store.list_jobs_from_schedule("s", ListQuery()).items] == ["s:job-2"]
    # a job that is updated keeps its schedule
    store.apply(Changes(jobs=[job("s:job-2", job_schedule_id="s", state="terminating")]))
    listed = store.list_jobs_from_schedule("s", ListQuery())
    assert [(j.id, j.state) for j in listed.items] == [("s:job-2", "terminating")]


# ------------------------------------------------------------------------- durability


def test_schedules_persist_across_reopen(backend: Backend) -> None:
    first = backend.open()
    first.apply(Changes(job_schedules=[full_job_schedule()], jobs=[full_job()]))
    first.close()
    second = backend.open()
    try:
        assert second.get_job_schedule("sched-1") == full_job_schedule()
        assert second.load_job_schedules() == [full_job_schedule()]
        assert [j.id for j in second.list_jobs_from_schedule("SCHED-1", ListQuery()).items] == [
            "Job-1"]
    finally:
        second.close()
