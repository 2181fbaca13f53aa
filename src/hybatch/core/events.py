"""Events reported by the outside world (backends, timers). Past tense, frozen.

API mutations are commands (core.commands); both go through ``BatchCore.handle``.

Imports: standard library, core.records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hybatch.core.records import FailureInfoRecord, ProcessUsage


@dataclass(frozen=True, slots=True)
class NodeReady:
    """A provisioned node finished starting and can take tasks."""

    node_id: str


@dataclass(frozen=True, slots=True)
class NodeLost:
    """A node died or disconnected; its running tasks must be requeued."""

    node_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class NodeReleased:
    """A node asked to leave the pool is gone; its record can be dropped."""

    node_id: str


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A node started an offered attempt (its process is running)."""

    job_id: str
    task_id: str
    attempt: int
    start_time: datetime


@dataclass(frozen=True, slots=True)
class TaskExited:
    """One attempt of a task ended. ``exit_code`` is None when the process never started
    (``failure`` then says why: a pre-processing error). ``usage`` is what the node measured
    for the process when it reaped it (None when it could not: never started, lost)."""

    job_id: str
    task_id: str
    attempt: int
    exit_code: int | None
    start_time: datetime | None
    end_time: datetime
    timed_out: bool = False
    failure: FailureInfoRecord | None = None
    usage: ProcessUsage | None = None


@dataclass(frozen=True, slots=True)
class TaskLost:
    """An attempt's outcome is unknowable (its node restarted with no exit record): requeue."""

    job_id: str
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class InstanceStarted:
    """A node started one instance's coordination command (multi-instance tasks)."""

    job_id: str
    task_id: str
    attempt: int
    instance: int
    start_time: datetime


@dataclass(frozen=True, slots=True)
class InstanceExited:
    """One instance's coordination command ended (fields as for TaskExited)."""

    job_id: str
    task_id: str
    attempt: int
    instance: int
    exit_code: int | None
    start_time: datetime | None
    end_time: datetime
    failure: FailureInfoRecord | None = None


@dataclass(frozen=True, slots=True)
class NodeTaskExited:
    """A node task (start, job preparation or job release task: see effects.NodeTaskLaunch)
    ended; ``exit_code`` is None when its process never started (``failure`` says why)."""

    node_id: str
    kind: str
    job_id: str
    attempt: int
    exit_code: int | None
    start_time: datetime | None
    end_time: datetime
    timed_out: bool = False
    failure: FailureInfoRecord | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer fired: re-evaluate time-based facts (resize timeouts, retention, ...)."""


Event = (NodeReady | NodeLost | NodeReleased | TaskStarted | TaskExited | TaskLost | Tick
         | InstanceStarted | InstanceExited | NodeTaskExited)
