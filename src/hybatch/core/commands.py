"""Commands: API mutations, as frozen values handed to ``BatchCore.handle``.

Each command either changes state and returns a result, or raises ``DomainError`` having
changed nothing. Bodies arrive already parsed into wire models by the HTTP layer.

Imports: standard library, wire models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hybatch.schema import (
    BatchJobCreateOptions,
    BatchJobScheduleConfiguration,
    BatchJobScheduleCreateOptions,
    BatchJobSpecification,
    BatchMetadataItem,
    BatchPoolCreateOptions,
    BatchTaskCreateOptions,
)


@dataclass(frozen=True, slots=True)
class Precondition:
    """Conditional-request headers, already parsed: ``if_match`` / ``if_none_match`` are
    ``*`` or comma-separated unquoted entity tags, the dates POSIX seconds."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None  # POSIX seconds
    if_unmodified_since: float | None = None


NO_PRECONDITION = Precondition()


# ------------------------------------------------------------------ pools


@dataclass(frozen=True, slots=True)
class CreatePool:
    spec: BatchPoolCreateOptions


@dataclass(frozen=True, slots=True)
class ResizePool:
    pool_id: str
    target_dedicated_nodes: int | None
    target_low_priority_nodes: int | None
    resize_timeout: timedelta | None
    node_deallocation_option: str | None
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class StopPoolResize:
    pool_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class RemoveNodes:
    pool_id: str
    node_ids: tuple[str, ...]
    resize_timeout: timedelta | None
    node_deallocation_option: str | None
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class DeletePool:
    pool_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class UpdatePool:
    """PATCH (merge: only ``fields`` present change) or updateproperties (``replace``: the
    caller sends every replaceable field; None removes it).

    ``fields`` maps wire names (``startTask``, ``metadata``, ``applicationPackageReferences``,
    ``displayName``, ``vmSize``, ...) to their wire JSON values (already validated by the
    request model)."""

    pool_id: str
    fields: tuple[tuple[str, object], ...]
    replace: bool = False
    precondition: Precondition = NO_PRECONDITION


# ------------------------------------------------------------------ nodes


@dataclass(frozen=True, slots=True)
class NodeAction:
    """``reboot``, ``reimage``, ``deallocate`` (with their option) or ``start``."""

    pool_id: str
    node_id: str
    action: str
    option: str | None = None


@dataclass(frozen=True, slots=True)
class DisableNodeScheduling:
    pool_id: str
    node_id: str
    option: str | None = None


@dataclass(frozen=True, slots=True)
class EnableNodeScheduling:
    pool_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class CreateNodeUser:
    pool_id: str
    node_id: str
    name: str
    is_admin: bool = False
    expiry_time: datetime | None = None
    password: str | None = field(default=None, repr=False)
    ssh_public_key: str | None = None


@dataclass(frozen=True, slots=True)
class ReplaceNodeUser:
    pool_id: str
    node_id: str
    name: str
    expiry_time: datetime | None = None
    password: str | None = field(default=None, repr=False)
    ssh_public_key: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteNodeUser:
    pool_id: str
    node_id: str
    name: str


# ------------------------------------------------------------------ jobs


@dataclass(frozen=True, slots=True)
class CreateJob:
    spec: BatchJobCreateOptions


@dataclass(frozen=True, slots=True)
class UpdateJob:
    """PATCH (merge: only ``fields`` present are changed) or PUT (replace updatable fields).

    ``fields`` maps wire names (``priority``, ``maxParallelTasks``, ``onAllTasksComplete``,
    ``constraints``, ``poolInfo``, ``metadata``, ``allowTaskPreemption``) to parsed values."""

    job_id: str
    fields: tuple[tuple[str, object], ...]
    replace: bool = False
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class TerminateJob:
    job_id: str
    reason: str | None = None
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class DeleteJob:
    job_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class DisableJob:
    """``disable_tasks``: what happens to running tasks: ``requeue`` | ``terminate`` |
    ``wait`` (the wire enum's value; anything else is refused)."""

    job_id: str
    disable_tasks: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class EnableJob:
    job_id: str
    precondition: Precondition = NO_PRECONDITION


# ------------------------------------------------------------------ job schedules


@dataclass(frozen=True, slots=True)
class CreateJobSchedule:
    spec: BatchJobScheduleCreateOptions


@dataclass(frozen=True, slots=True)
class UpdateJobSchedule:
    """PATCH (``replace=False``: a None element is left unchanged) or PUT (``replace=True``:
    a None ``schedule`` becomes the empty schedule, None ``metadata`` removes the metadata;
    ``job_specification`` is required)."""

    job_schedule_id: str
    schedule: BatchJobScheduleConfiguration | None = None
    job_specification: BatchJobSpecification | None = None
    metadata: tuple[BatchMetadataItem, ...] | None = None
    replace: bool = False
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class DisableJobSchedule:
    job_schedule_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class EnableJobSchedule:
    job_schedule_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class TerminateJobSchedule:
    job_schedule_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class DeleteJobSchedule:
    job_schedule_id: str
    precondition: Precondition = NO_PRECONDITION


# ------------------------------------------------------------------ tasks


@dataclass(frozen=True, slots=True)
class AddTasks:
    """One task (``single=True``: errors raise) or a collection (per-task results)."""

    job_id: str
    specs: tuple[BatchTaskCreateOptions, ...]
    single: bool = False


@dataclass(frozen=True, slots=True)
class TerminateTask:
    job_id: str
    task_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class ReactivateTask:
    job_id: str
    task_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class DeleteTask:
    job_id: str
    task_id: str
    precondition: Precondition = NO_PRECONDITION


@dataclass(frozen=True, slots=True)
class UpdateTaskConstraints:
    job_id: str
    task_id: str
    max_wall_clock_time: timedelta | None
    retention_time: timedelta | None
    max_task_retry_count: int | None
    precondition: Precondition = NO_PRECONDITION


Command = (
    CreatePool | ResizePool | StopPoolResize | RemoveNodes | DeletePool | UpdatePool
    | NodeAction | DisableNodeScheduling | EnableNodeScheduling
    | CreateNodeUser | ReplaceNodeUser | DeleteNodeUser
    | CreateJob | UpdateJob | TerminateJob | DeleteJob | DisableJob | EnableJob
    | CreateJobSchedule | UpdateJobSchedule | DisableJobSchedule | EnableJobSchedule
    | TerminateJobSchedule | DeleteJobSchedule
    | AddTasks | TerminateTask | ReactivateTask | DeleteTask | UpdateTaskConstraints
)


def task_targets(command: object) -> list[tuple[str, str]]:
    """(job_id, task_id) pairs a command touches; the runtime loads stored ones first.
    Empty for events and commands that touch no task."""
    if isinstance(command, AddTasks):
        # the new ids (duplicate checks) and the parents they name (readiness)
        targets = [(command.job_id, s.id) for s in command.specs]
        for spec in command.specs:
            if spec.depends_on is not None and spec.depends_on.task_ids:
                targets.extend((command.job_id, p) for p in spec.depends_on.task_ids)
        return targets
    if isinstance(command, TerminateTask | ReactivateTask | DeleteTask | UpdateTaskConstraints):
        return [(command.job_id, command.task_id)]
    return []
