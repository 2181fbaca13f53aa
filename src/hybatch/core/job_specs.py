"""Validation and defaults of the node tasks and job-level tasks a pool or job declares: the
pool's start task, a job's manager, preparation and release tasks.

Shared by pool create/update (``startTask``), job create and job schedules
(``jobManagerTask``, ``jobPreparationTask``, ``jobReleaseTask``). What this server does not
run is refused as elsewhere (UnsupportedProperty): resource files, output files, containers,
application packages. ``userIdentity`` is accepted and recorded; every process runs as the
service's user.

Imports: standard library, core errors/validation, wire models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from hybatch.core.errors import DomainError, invalid_property
from hybatch.core.validation import check_id, check_range, unsupported
from hybatch.schema import (
    BatchJobManagerTask,
    BatchJobPreparationTask,
    BatchJobReleaseTask,
    BatchStartTask,
    BatchTaskConstraints,
    EnvironmentSetting,
)

DEFAULT_PREPARATION_TASK_ID = "jobpreparation"
DEFAULT_RELEASE_TASK_ID = "jobrelease"
DEFAULT_RELEASE_WALL_CLOCK_S = 15 * 60.0
"""A job release task's maxWallClockTime when unset, and the most it may be (Batch rule)."""
MAX_DISPLAY_NAME = 1024
MAX_ENV_NAME = 1024


def _prop(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def preparation_task_id(task: BatchJobPreparationTask) -> str:
    return task.id or DEFAULT_PREPARATION_TASK_ID


def release_task_id(task: BatchJobReleaseTask) -> str:
    return task.id or DEFAULT_RELEASE_TASK_ID


def release_wall_clock_s(task: BatchJobReleaseTask) -> float:
    limit = task.max_wall_clock_time
    return DEFAULT_RELEASE_WALL_CLOCK_S if limit is None else limit.total_seconds()


def environment(*groups: Sequence[EnvironmentSetting] | None) -> tuple[tuple[str, str], ...]:
    """(name, value) pairs of settings, later groups overriding earlier ones in the node."""
    return tuple((s.name, s.value or "") for group in groups for s in group or ())


# ------------------------------------------------------------------ common checks


def check_command_line(prop: str, command_line: str) -> None:
    if not command_line.strip():
        raise DomainError("InvalidPropertyValue", "The command line must not be empty.",
                          details={"PropertyName": prop})
    if "\0" in command_line:
        raise invalid_property(prop, "", "The command line must not contain NUL.")


def check_environment(prop: str, settings: Sequence[EnvironmentSetting] | None) -> None:
    """Names a process environment can hold: not empty, no '=' nor NUL; values without NUL."""
    for setting in settings or ():
        name = setting.name
        if not name or "=" in name or "\0" in name or len(name) > MAX_ENV_NAME:
            raise invalid_property(f"{prop}.name", name[:64], "An environment variable name "
                                   "must be non-empty and hold neither '=' nor NUL.")
        if setting.value is not None and "\0" in setting.value:
            raise invalid_property(f"{prop}.value", name, "An environment variable value "
                                   "must not hold NUL.")


def check_retry_count(prop: str, value: int | None) -> None:
    if value is not None:
        check_range(prop, value, -1, 100)


def _check_duration(prop: str, value: timedelta | None) -> None:
    if value is not None and value < timedelta(0):
        raise invalid_property(prop, str(value), "The value must not be negative.")


def check_constraints(prop: str, constraints: BatchTaskConstraints | None) -> None:
    if constraints is None:
        return
    _check_duration(f"{prop}.maxWallClockTime", constraints.max_wall_clock_time)
    _check_duration(f"{prop}.retentionTime", constraints.retention_time)
    check_retry_count(f"{prop}.maxTaskRetryCount", constraints.max_task_retry_count)


def _check_unrun(prefix: str, *, resource_files: object = None, container: object = None,
                 output_files: object = None, packages: object = None) -> None:
    if resource_files:
        raise unsupported("Resource files", _prop(prefix, "resourceFiles"))
    if container is not None:
        raise unsupported("Container tasks", _prop(prefix, "containerSettings"))
    if output_files:
        raise unsupported("Output files", _prop(prefix, "outputFiles"))
    if packages:
        raise unsupported("Application packages", _prop(prefix, "applicationPackageReferences"))


# ------------------------------------------------------------------ the pool's start task


def check_start_task(task: BatchStartTask, prefix: str = "startTask") -> None:
    check_command_line(_prop(prefix, "commandLine"), task.command_line)
    check_environment(_prop(prefix, "environmentSettings"), task.environment_settings)
    check_retry_count(_prop(prefix, "maxTaskRetryCount"), task.max_task_retry_count)
    _check_unrun(prefix, resource_files=task.resource_files, container=task.container_settings)


# ------------------------------------------------------------------ job-level tasks


def check_job_manager(task: BatchJobManagerTask, prefix: str) -> None:
    check_id(task.id, _prop(prefix, "id"))
    if task.display_name is not None and len(task.display_name) > MAX_DISPLAY_NAME:
        raise invalid_property(_prop(prefix, "displayName"), task.display_name[:64],
                               f"The value may be at most {MAX_DISPLAY_NAME} characters long.")
    check_command_line(_prop(prefix, "commandLine"), task.command_line)
    check_environment(_prop(prefix, "environmentSettings"), task.environment_settings)
    check_constraints(_prop(prefix, "constraints"), task.constraints)
    if task.required_slots is not None:
        check_range(_prop(prefix, "requiredSlots"), task.required_slots, 1, 256)
    _check_unrun(prefix, resource_files=task.resource_files, container=task.container_settings,
                 output_files=task.output_files, packages=task.application_package_references)


def check_preparation(task: BatchJobPreparationTask, prefix: str) -> None:
    if task.id is not None:
        check_id(task.id, _prop(prefix, "id"))
    check_command_line(_prop(prefix, "commandLine"), task.command_line)
    check_environment(_prop(prefix, "environmentSettings"), task.environment_settings)
    check_constraints(_prop(prefix, "constraints"), task.constraints)
    _check_unrun(prefix, resource_files=task.resource_files, container=task.container_settings)


def check_release(task: BatchJobReleaseTask, prefix: str) -> None:
    if task.id is not None:
        check_id(task.id, _prop(prefix, "id"))
    check_command_line(_prop(prefix, "commandLine"), task.command_line)
    check_environment(_prop(prefix, "environmentSettings"), task.environment_settings)
    _check_duration(_prop(prefix, "retentionTime"), task.retention_time)
    limit = task.max_wall_clock_time
    _check_duration(_prop(prefix, "maxWallClockTime"), limit)
    if limit is not None and limit.total_seconds() > DEFAULT_RELEASE_WALL_CLOCK_S:
        raise invalid_property(_prop(prefix, "maxWallClockTime"), str(limit),
                               "A job release task may run at most 15 minutes.")
    _check_unrun(prefix, resource_files=task.resource_files, container=task.container_settings)


def check_job_tasks(manager: BatchJobManagerTask | None,
                    preparation: BatchJobPreparationTask | None,
                    release: BatchJobReleaseTask | None, prefix: str = "") -> None:
    """A job's (or job specification's) manager, preparation and release tasks, and the
    rules between them: a release task needs a preparation task, and the three ids differ
    (case-insensitively)."""
    named: list[tuple[str, str]] = []
    if manager is not None:
        check_job_manager(manager, _prop(prefix, "jobManagerTask"))
        named.append(("jobManagerTask", manager.id))
    if preparation is not None:
        check_preparation(preparation, _prop(prefix, "jobPreparationTask"))
        named.append(("jobPreparationTask", preparation_task_id(preparation)))
    if release is not None:
        if preparation is None:
            raise DomainError("InvalidPropertyValue", "A job release task needs a job "
                              "preparation task.",
                              details={"PropertyName": _prop(prefix, "jobReleaseTask")})
        check_release(release, _prop(prefix, "jobReleaseTask"))
        named.append(("jobReleaseTask", release_task_id(release)))
    seen: dict[str, str] = {}
    for prop, task_id in named:
        other = seen.get(task_id.lower())
        if other is not None:
            raise invalid_property(_prop(prefix, f"{prop}.id"), task_id,
                                   f"The id is already used by the job's {other}.")
        seen[task_id.lower()] = prop
