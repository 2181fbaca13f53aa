"""What the Dask backend (service side) and the node plugin (worker side) share, kept free of
distributed so the service loads it only when it uses a Dask cluster.

Exits travel as Dask events (msgpack): a flat list rather than the exit record's JSON object,
which is smaller on the wire and in the scheduler's event log.

Imports: core records, node.process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hybatch.core.records import FailureInfoRecord, ProcessUsage
from hybatch.node.process import ExitRecord

PLUGIN_NAME = "hybatch-node"
SLOTS_RESOURCE = "hybatch-slots"
"""Worker resource holding the node's task slots (a task takes its requiredSlots of it)."""
EXIT = "x"
START = "s"
BATCH = "b"
"""``[BATCH, [message, ...]]``: what one worker queued between two turns of its event loop."""


def exit_message(record: ExitRecord) -> list[Any]:
    failure = record.failure
    usage = record.usage
    return [EXIT, record.pool_id, record.node_id, record.job_id, record.task_id,
            record.attempt, record.exit_code,
            record.start_time.isoformat() if record.start_time is not None else None,
            record.end_time.isoformat(), record.timed_out,
            None if failure is None else [failure.category, failure.code, failure.message,
                                          [list(pair) for pair in failure.details]],
            None if usage is None else [usage.user_cpu_s, usage.kernel_cpu_s,
                                        usage.read_bytes, usage.write_bytes]]


def record_from_message(message: list[Any]) -> ExitRecord:
    (_, pool_id, node_id, job_id, task_id, attempt, exit_code, start, end, timed_out,
     failure, usage) = message
    return ExitRecord(
        pool_id=pool_id, node_id=node_id, job_id=job_id, task_id=task_id,
        attempt=int(attempt), exit_code=exit_code,
        start_time=datetime.fromisoformat(start) if start is not None else None,
        end_time=datetime.fromisoformat(end), timed_out=bool(timed_out),
        failure=None if failure is None else FailureInfoRecord(
            category=failure[0], code=failure[1], message=failure[2],
            details=[(str(k), str(v)) for k, v in failure[3]]),
        usage=None if usage is None else ProcessUsage(
            user_cpu_s=float(usage[0]), kernel_cpu_s=float(usage[1]),
            read_bytes=int(usage[2]), write_bytes=int(usage[3])))


def start_message(node_id: str, job_id: str, task_id: str, attempt: int,
                  start: datetime) -> list[Any]:
    return [START, node_id, job_id, task_id, attempt, start.isoformat()]
