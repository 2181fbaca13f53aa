"""Codec, filter translation and paging helpers of the stores, checked without a database."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Table

from hybatch.core.records import JobRecord, JobScheduleRecord, NodeRecord, PoolRecord, TaskRecord
from hybatch.odata.ast import And, Compare, Field, Literal, Not, Or, StartsWith
from hybatch.schema import BatchPoolCreateOptions
from hybatch.store import codec, tables
from hybatch.store.filters import AllOf, AnyOf, Cmp, matches, prefix_successor, translate
from hybatch.store.paging import decode_token, encode_token
from tests.support.store_records import POOL_SPEC, task_spec
from tests.support.store_strategies import records

RESOURCES: list[tuple[type, codec.Resource[Any], Table]] = [
    (PoolRecord, codec.POOLS, tables.pools),
    (NodeRecord, codec.NODES, tables.nodes),
    (JobRecord, codec.JOBS, tables.jobs),
    (TaskRecord, codec.TASKS, tables.tasks),
    (JobScheduleRecord, codec.JOB_SCHEDULES, tables.job_schedules),
]


# ------------------------------------------------------------------------- codec


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_record_round_trips_through_json(data: st.DataObject) -> None:
    for cls, resource, table in RESOURCES:
        record = data.draw(records(cls), label=cls.__name__)
        row = resource.to_row(record)
        assert set(row) == {c.name for c in table.columns}
        back = resource.from_data(codec.loads(codec.dumps(row["data"])))
        assert back == record
        for f in dataclasses.fields(cls):  # -0.0 == 0.0, so check float signs too
            value = getattr(record, f.name)
            if isinstance(value, float):
                assert math.copysign(1, getattr(back, f.name)) == math.copysign(1, value)


def test_non_finite_floats_are_stored_as_strings() -> None:
    record = TaskRecord(
        job_id="j",
        id="t",
        spec=task_spec("t"),
        creation_time=datetime.now(UTC),
        seq=0,
        max_wall_clock_s=math.inf,
        retention_s=-math.inf,
    )
    data = codec.TASKS.to_row(record)["data"]
    assert data["max_wall_clock_s"] == "inf"
    assert codec.TASKS.from_data(codec.loads(codec.dumps(data))) == record


def test_rows_written_by_other_versions_still_load() -> None:
    record = TaskRecord(
        job_id="j",
        id="t",
        spec=task_spec("t"),
        creation_time=datetime(2026, 1, 1, tzinfo=UTC),
        seq=3,
        retry_count=2,
    )
    data = codec.TASKS.to_row(record)["data"]
    del data["retry_count"]  # a field added later: default
    data["removed_field"] = 1  # a field removed later: ignored
    back = codec.TASKS.from_data(data)
    assert back.retry_count == 0 and back.seq == 3


def test_spec_secrets_are_written_in_clear() -> None:
    dumped = codec.dump_model(BatchPoolCreateOptions.model_validate(POOL_SPEC))
    account = dumped["userAccounts"][0]
    assert account["password"] == "pool-secret"
    assert account["linuxUserConfiguration"]["sshPrivateKey"] == "ssh-secret"
    mount = dumped["mountConfiguration"][0]["azureBlobFileSystemConfiguration"]
    assert mount["accountKey"] == "blob-secret"


def test_columns() -> None:
    record = TaskRecord(
        job_id="Job",
        id="Task",
        spec=task_spec("Task"),
        seq=1,
        state="Completed",
        creation_time=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        node_id="Node-1",
        result="Failure",
        exit_code=2,
    )
    row = codec.TASKS.to_row(record)
    assert (row["job_key"], row["task_key"], row["state"]) == ("job", "task", "completed")
    assert (row["node_key"], row["result"], row["exit_code"]) == ("node-1", "failure", 2)
    assert row["creation_us"] == 1_000_000
    assert codec.micros(datetime(1970, 1, 1, 1)) == 3_600_000_000  # naive means UTC


# ------------------------------------------------------------------------- filters


def _f(path: str) -> Field:
    return Field(tuple(path.split("/")))


def test_translation_shapes() -> None:
    fields = codec.TASKS.filters
    state = Compare("eq", _f("state"), Literal("Active"))
    unknown = Compare("eq", _f("displayName"), Literal("x"))
    assert translate(state, fields) == Cmp("state", "eq", "active")
    assert translate(And(state, unknown), fields) == Cmp("state", "eq", "active")
    assert translate(Or(state, unknown), fields) is None
    assert translate(Not(state), fields) is None
    assert translate(Or(state, state), fields) == AnyOf((Cmp("state", "eq", "active"),) * 2)
    assert translate(StartsWith(_f("id"), "Ab"), fields) == AllOf(
        (Cmp("task_key", "ge", "ab"), Cmp("task_key", "lt", "ac"))
    )
    # wrong literal types are left to the predicate
    assert translate(Compare("eq", _f("executionInfo/exitCode"), Literal("1")), fields) is None
    assert translate(Compare("eq", _f("executionInfo/exitCode"), Literal(True)), fields) is None
    assert translate(Compare("eq", _f("state"), Literal(None)), fields) is None


def test_null_columns_never_match() -> None:
    cond = Cmp("exit_code", "ne", 0)
    assert not matches(cond, {"exit_code": None})
    assert matches(cond, {"exit_code": 1})


@given(st.text(max_size=4), st.text(max_size=6))
def test_prefix_range_is_exact(prefix: str, value: str) -> None:
    high = prefix_successor(prefix)
    in_range = value >= prefix and (high is None or value < high)
    assert in_range == value.startswith(prefix)


def test_prefix_successor_edges() -> None:
    assert prefix_successor("") is None
    assert prefix_successor("a\U0010ffff") == "b"
    assert prefix_successor("\ud7ff") == "\ue000"


@given(st.text())
def test_tokens_round_trip(key: str) -> None:
    token = encode_token(key)
    assert token.isascii() and "=" not in token
    assert decode_token(token) == key
