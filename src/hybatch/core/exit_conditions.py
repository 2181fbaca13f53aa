"""Exit conditions: which ``ExitOptions`` apply when a task completes, and their validation.

A task's ``exitConditions`` map how it ended to a ``jobAction`` (none / disable / terminate,
performed only when the job's ``onTaskFailure`` is ``performexitoptionsjobaction``) and a
``dependencyAction`` (satisfy / block: whether tasks depending on it may run). Selection, as
Batch documents it:

* a pre-processing error (the process never started): ``preProcessingError``, else
  ``default``, else the failure defaults;
* an exit code ``c``: the first ``exitCodes`` entry with ``code == c``, else the first
  ``exitCodeRanges`` entry with ``start <= c <= end``, else for a failure (``c != 0`` or the
  attempt timed out) ``default`` or the failure defaults, and for success the success
  defaults (``default`` never applies to exit code 0);
* an output upload failure after the exit: an explicit exit-code match wins, else
  ``fileUploadError``, else ``default``, else the failure defaults (hybatch runs no output
  uploads yet, so this branch is reached only by callers that report one).

Defaults per field: success -> jobAction ``none``, dependencyAction ``satisfy``; failure ->
``terminate`` and ``block``. A matched entry that leaves a field out gets that field's default
for how the task ended. Tasks ended by a terminate request (their own or their job's) and
tasks failed because a parent blocked (``hybatch.failBlockedDependents``) take no job action
and block their dependents (:data:`ENDED`).

Imports: standard library, core.errors, core.records, wire models.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybatch.core.errors import DomainError, invalid_property
from hybatch.core.records import JobRecord
from hybatch.schema import ExitConditions, ExitOptions

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
PERFORM_JOB_ACTION = "performexitoptionsjobaction"


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """The ExitOptions that applied to a task's completion, defaults filled in."""

    job_action: str  # "none" | "disable" | "terminate"
    dependency_action: str  # "satisfy" | "block"


SUCCESS = ExitDecision("none", "satisfy")
FAILURE = ExitDecision("terminate", "block")
ENDED = ExitDecision("none", "block")
"""Terminated by a request, or failed because a parent blocked: no job action, dependents
stay blocked."""


def _apply(options: ExitOptions | None, base: ExitDecision) -> ExitDecision:
    if options is None:
        return base
    job_action = str(options.job_action) if options.job_action is not None else base.job_action
    dependency = (str(options.dependency_action) if options.dependency_action is not None
                  else base.dependency_action)
    return ExitDecision(job_action, dependency)


def _explicit(conditions: ExitConditions, code: int) -> ExitOptions | None:
    for mapping in conditions.exit_codes or ():
        if mapping.code == code:
            return mapping.exit_options
    for span in conditions.exit_code_ranges or ():
        if span.start <= code <= span.end:
            return span.exit_options
    return None


def decide(conditions: ExitConditions | None, exit_code: int | None, *,
           failed: bool, pre_processing: bool = False,
           upload_failed: bool = False) -> ExitDecision:
    """The ExitOptions for a completion. ``failed``: the task completes with result failure
    (a non-zero exit, a timeout, a pre-processing or upload error)."""
    base = FAILURE if failed else SUCCESS
    if conditions is None:
        return base
    if pre_processing or exit_code is None:
        return _apply(conditions.pre_processing_error or conditions.default, FAILURE)
    explicit = _explicit(conditions, exit_code)
    if explicit is not None:
        return _apply(explicit, base)
    if upload_failed:
        return _apply(conditions.file_upload_error or conditions.default, FAILURE)
    if failed:
        return _apply(conditions.default, FAILURE)
    return SUCCESS


# ------------------------------------------------------------------ validation


def _all_options(conditions: ExitConditions) -> list[tuple[str, ExitOptions]]:
    found: list[tuple[str, ExitOptions]] = []
    for i, mapping in enumerate(conditions.exit_codes or ()):
        found.append((f"exitConditions.exitCodes[{i}].exitOptions", mapping.exit_options))
    for i, span in enumerate(conditions.exit_code_ranges or ()):
        found.append((f"exitConditions.exitCodeRanges[{i}].exitOptions", span.exit_options))
    for name in ("preProcessingError", "fileUploadError", "default"):
        attr = {"preProcessingError": "pre_processing_error",
                "fileUploadError": "file_upload_error", "default": "default"}[name]
        options = getattr(conditions, attr)
        if options is not None:
            found.append((f"exitConditions.{name}", options))
    return found


def _check_int32(prop: str, value: int) -> None:
    if not INT32_MIN <= value <= INT32_MAX:
        raise invalid_property(prop, value, "The value must be a 32-bit integer.")


def validate(conditions: ExitConditions | None, job: JobRecord) -> None:
    """Batch's rules: ``jobAction`` only on a job whose ``onTaskFailure`` is
    ``performexitoptionsjobaction``, ``dependencyAction`` only on a job that uses task
    dependencies (both 400 InvalidPropertyValue); codes and ranges are 32-bit integers and a
    range's start is not after its end."""
    if conditions is None:
        return
    for i, mapping in enumerate(conditions.exit_codes or ()):
        _check_int32(f"exitConditions.exitCodes[{i}].code", mapping.code)
    for i, span in enumerate(conditions.exit_code_ranges or ()):
        prop = f"exitConditions.exitCodeRanges[{i}]"
        _check_int32(f"{prop}.start", span.start)
        _check_int32(f"{prop}.end", span.end)
        if span.start > span.end:
            raise invalid_property(f"{prop}.start", span.start,
                                   "The start of an exit code range must not be after its end.")
    performs = str(job.spec.on_task_failure or "noaction") == PERFORM_JOB_ACTION
    uses_dependencies = bool(job.spec.uses_task_dependencies)
    for prop, options in _all_options(conditions):
        if options.job_action is not None and not performs:
            raise DomainError(
                "InvalidPropertyValue",
                "jobAction may be specified only when the job's onTaskFailure is "
                "performexitoptionsjobaction.",
                details={"PropertyName": f"{prop}.jobAction",
                         "PropertyValue": str(options.job_action),
                         "Reason": "The job's onTaskFailure is noaction"})
        if options.dependency_action is not None and not uses_dependencies:
            raise DomainError(
                "InvalidPropertyValue",
                "dependencyAction may be specified only on a job that uses task dependencies.",
                details={"PropertyName": f"{prop}.dependencyAction",
                         "PropertyValue": str(options.dependency_action),
                         "Reason": "The job does not use task dependencies"})
