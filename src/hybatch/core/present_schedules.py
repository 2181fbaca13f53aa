"""Present job schedule records as wire JSON (BatchJobSchedule), in the style of
:mod:`hybatch.core.present`.

The job specification is shown with the defaults Batch fills in (priority 0, no parallelism
limit, ``noaction`` policies, unlimited wall clock), an empty ``schedule`` is left out, and
``executionInfo.nextRunTime`` is shown only while the schedule can still create jobs (active
or disabled).

Imports: standard library, core records and presentation helpers.
"""

from __future__ import annotations

from hybatch.core.present import UNLIMITED, Wire, iso, seg
from hybatch.core.records import JobScheduleRecord

_SPEC_DEFAULTS: Wire = {
    "priority": 0,
    "maxParallelTasks": -1,
    "allowTaskPreemption": False,
    "usesTaskDependencies": False,
    "onAllTasksComplete": "noaction",
    "onTaskFailure": "noaction",
}


def present_job_schedule(schedule: JobScheduleRecord, base_url: str) -> Wire:
    out: Wire = schedule.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not out.get("schedule"):
        out.pop("schedule", None)
    spec = out.get("jobSpecification")
    job_spec: Wire = dict(spec) if isinstance(spec, dict) else {}
    for name, value in _SPEC_DEFAULTS.items():
        job_spec.setdefault(name, value)
    constraints = job_spec.get("constraints")
    c: Wire = dict(constraints) if isinstance(constraints, dict) else {}
    c.setdefault("maxWallClockTime", UNLIMITED)
    c.setdefault("maxTaskRetryCount", 0)
    job_spec["constraints"] = c
    execution: Wire = {}
    if schedule.state in ("active", "disabled") and schedule.next_run_time is not None:
        execution["nextRunTime"] = iso(schedule.next_run_time)
    if schedule.recent_job_id is not None:
        execution["recentJob"] = {"id": schedule.recent_job_id,
                                  "url": f"{base_url}/jobs/{seg(schedule.recent_job_id)}"}
    if schedule.end_time is not None:
        execution["endTime"] = iso(schedule.end_time)
    fields: Wire = {
        "url": f"{base_url}/jobschedules/{seg(schedule.id)}",
        "eTag": schedule.etag,
        "lastModified": iso(schedule.last_modified),
        "creationTime": iso(schedule.creation_time),
        "state": schedule.state,
        "stateTransitionTime": iso(schedule.state_transition_time),
        "previousState": schedule.previous_state,
        "previousStateTransitionTime": iso(schedule.previous_state_transition_time),
        "jobSpecification": job_spec,
        "executionInfo": execution,
    }
    out.update({k: v for k, v in fields.items() if v is not None})
    return out
