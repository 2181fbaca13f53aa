"""What a Dask node reports travels as msgpack-able lists and comes back unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import msgpack

from hybatch.core.effects import TaskLaunch
from hybatch.core.records import FailureInfoRecord, ProcessUsage
from hybatch.node.dask_protocol import exit_message, record_from_message, start_message
from hybatch.node.process import ExitRecord

LAUNCH = TaskLaunch("pool", "node", "Job", "Task", 3, "/bin/true", (), None)
T0 = datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC)


def _roundtrip(record: ExitRecord) -> ExitRecord:
    wire = msgpack.unpackb(msgpack.packb(exit_message(record)))
    return record_from_message(wire)


def test_exit_records_round_trip() -> None:
    full = ExitRecord.of(LAUNCH, exit_code=7, start_time=T0, end_time=T0, timed_out=True,
                         failure=FailureInfoRecord("usererror", "Code", "message",
                                                   [("k", "v")]),
                         usage=ProcessUsage(0.25, 0.5, 1024, 2048))
    assert _roundtrip(full) == full
    never = ExitRecord.never_started(LAUNCH, FailureInfoRecord("servererror", "X", "why"))
    assert _roundtrip(never) == never


def test_start_message() -> None:
    assert msgpack.unpackb(msgpack.packb(start_message("node", "Job", "Task", 3, T0))) == [
        "s", "node", "Job", "Task", 3, T0.isoformat()]
