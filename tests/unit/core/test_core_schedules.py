"""Job schedules in the pure core: validation, the state-transition table, updates, the
terminate and delete cascades over the jobs a schedule created, restore, and presentation."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from hybatch.core.commands import (
    AddTasks,
    CreateJob,
    CreateJobSchedule,
    DeleteJobSchedule,
    DisableJobSchedule,
    EnableJobSchedule,
    Precondition,
    TerminateJob,
    TerminateJobSchedule,
    UpdateJobSchedule,
)
from hybatch.core.effects import DeleteTaskFiles, KillTask
from hybatch.core.errors import DomainError
from hybatch.core.events import Tick
from hybatch.core.machine import BatchCore
from hybatch.core.present import UNLIMITED
from hybatch.core.present_schedules import present_job_schedule
from hybatch.core.records import JobRecord, JobScheduleRecord
from hybatch.core.schedules import next_run_time
from hybatch.schema import (
    BatchJobScheduleConfiguration,
    BatchJobScheduleCreateOptions,
    BatchJobSpecification,
    BatchMetadataItem,
)
from tests.unit.core.core_sim import BASE_URL, T0, SeqIds, Sim, job_spec, task_spec

# ------------------------------------------------------------------ helpers


def schedule_spec(schedule_id: str = "s", pool_id: str = "p", *,
                  schedule: dict[str, Any] | None = None, job: dict[str, Any] | None = None,
                  **extra: Any) -> BatchJobScheduleCreateOptions:
    body: dict[str, Any] = {
        "id": schedule_id,
        "schedule": schedule if schedule is not None else {"recurrenceInterval": "PT5M"},
        "jobSpecification": {"poolInfo": {"poolId": pool_id}, **(job or {})},
    }
    body.update(extra)
    return BatchJobScheduleCreateOptions.model_validate(body)


def config(**body: Any) -> BatchJobScheduleConfiguration:
    return BatchJobScheduleConfiguration.model_validate(body)


def job_specification(pool_id: str = "p", **extra: Any) -> BatchJobSpecification:
    return BatchJobSpecification.model_validate({"poolInfo": {"poolId": pool_id}, **extra})


def create(sim: Sim, schedule_id: str = "s", **kwargs: Any) -> JobScheduleRecord:
    result = sim.send(CreateJobSchedule(schedule_spec(schedule_id, **kwargs)))
    assert isinstance(result, JobScheduleRecord)
    sim.commit()
    return result


def rec(sim: Sim, schedule_id: str = "s") -> JobScheduleRecord:
    found = sim.core.state.job_schedules.get(schedule_id.lower())
    assert found is not None, f"no schedule {schedule_id}"
    return found


def schedules_snapshot(sim: Sim) -> dict[str, tuple[object, ...]]:
    return {k: (s.version, s.state, s.spec, s.next_run_time, s.end_time)
            for k, s in sim.core.state.job_schedules.items()}


def refused(sim: Sim, message: Any, code: str) -> DomainError:
    """``message`` must raise ``code`` and leave every schedule (and the rest) unchanged."""
    before = schedules_snapshot(sim)
    error = sim.fails(message, code)
    assert schedules_snapshot(sim) == before
    assert not sim.core.take_changes().job_schedules
    return error


def scheduled_job(sim: Sim, schedule_id: str, number: int, *tasks: str) -> JobRecord:
    """A job as the schedule's timer will create it (that timer is another issue): the
    ``{schedule}:job-{n}`` id and ``job_schedule_id`` set, plus tasks if given."""
    schedule = rec(sim, schedule_id)
    job_id = f"{schedule.id}:job-{number}"
    sim.core.state.job_seq += 1
    job = JobRecord(id=job_id, spec=job_spec(job_id, "p"), creation_time=sim.now,
                    seq=sim.core.state.job_seq, state_transition_time=sim.now,
                    start_time=sim.now, job_schedule_id=schedule.id)
    sim.core.state.add_job(job, sim.now)
    schedule.recent_job_id = job_id
    sim.commit()
    if tasks:
        sim.tasks(job_id, *tasks)
    return job


# ------------------------------------------------------------------ next run time (pure)


def test_next_run_time_is_due_at_once_without_do_not_run_until() -> None:
    assert next_run_time(config(), T0) == T0
    assert next_run_time(config(recurrenceInterval="PT1H"), T0) == T0


def test_next_run_time_waits_for_a_later_do_not_run_until() -> None:
    later = T0 + timedelta(days=2)
    assert next_run_time(config(doNotRunUntil=later.isoformat()), T0) == later
    earlier = T0 - timedelta(days=2)
    assert next_run_time(config(doNotRunUntil=earlier.isoformat()), T0) == T0


def test_no_next_run_time_after_do_not_run_after() -> None:
    until, after = T0 + timedelta(hours=2), T0 + timedelta(hours=1)
    assert next_run_time(config(doNotRunUntil=until.isoformat(),
                                doNotRunAfter=after.isoformat()), T0) is None
    assert next_run_time(config(doNotRunAfter=(T0 - timedelta(seconds=1)).isoformat()),
                         T0) is None
    assert next_run_time(config(doNotRunAfter=T0.isoformat()), T0) == T0


# ------------------------------------------------------------------ create


def test_create_is_active_and_due(sim: Sim) -> None:
    schedule = create(sim, "Sched-1")
    assert schedule.state == "active"
    assert schedule.creation_time == schedule.state_transition_time == sim.now
    assert schedule.last_modified == sim.now and schedule.etag
    assert schedule.previous_state is None
    assert schedule.next_run_time == sim.now
    assert rec(sim, "sched-1") is schedule


def test_create_records_a_change() -> None:
    sim = Sim(evict=False)  # the test takes the changes itself
    sim.send(CreateJobSchedule(schedule_spec("S")))
    changes = sim.core.take_changes()
    assert list(changes.job_schedules) == ["s"]
    assert changes.job_schedules["s"].id == "S"


def test_schedule_ids_are_unique_case_insensitively(sim: Sim) -> None:
    create(sim, "Sched-1")
    error = refused(sim, CreateJobSchedule(schedule_spec("SCHED-1")), "JobScheduleExists")
    assert error.details["JobScheduleId"] == "SCHED-1"


def test_jobs_and_schedules_do_not_share_ids(sim: Sim) -> None:
    sim.job("Shared")
    refused(sim, CreateJobSchedule(schedule_spec("shared")), "JobWithSameIdExists")
    create(sim, "Other")
    sim.fails(CreateJob(job_spec("OTHER")), "JobScheduleWithSameIdExists")


@pytest.mark.parametrize(("kwargs", "code", "prop"), [
    ({"schedule_id": "bad id"}, "InvalidPropertyValue", "id"),
    ({"schedule_id": "x" * 65}, "InvalidPropertyValue", "id"),
    ({"schedule_id": "a:b"}, "InvalidPropertyValue", "id"),
    ({"displayName": "d" * 1025}, "InvalidPropertyValue", "displayName"),
    ({"schedule": {"startWindow": "PT59S"}}, "InvalidPropertyValue", "schedule.startWindow"),
    ({"schedule": {"recurrenceInterval": "PT30S"}}, "InvalidPropertyValue",
     "schedule.recurrenceInterval"),
    ({"schedule": {"recurrenceInterval": "-PT5M"}}, "InvalidPropertyValue",
     "schedule.recurrenceInterval"),
    ({"job": {"priority": 1001}}, "InvalidPropertyValue", "jobSpecification.priority"),
    ({"job": {"maxParallelTasks": 0}}, "InvalidPropertyValue",
     "jobSpecification.maxParallelTasks"),
    ({"job": {"constraints": {"maxWallClockTime": "-PT1M"}}}, "InvalidPropertyValue",
     "jobSpecification.constraints.maxWallClockTime"),
    ({"job": {"constraints": {"maxTaskRetryCount": -2}}}, "InvalidPropertyValue",
     "jobSpecification.constraints.maxTaskRetryCount"),
    ({"job": {"displayName": "d" * 1025}}, "InvalidPropertyValue",
     "jobSpecification.displayName"),
    ({"pool_id": ""}, "MissingRequiredProperty", "jobSpecification.poolInfo.poolId"),
    ({"job": {"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job"}}}},
     "UnsupportedProperty", "jobSpecification.poolInfo.autoPoolSpecification"),
    ({"job": {"jobManagerTask": {"id": "jm", "commandLine": " "}}},
     "InvalidPropertyValue", "jobSpecification.jobManagerTask.commandLine"),
    ({"job": {"jobReleaseTask": {"commandLine": "/bin/true"}}},
     "InvalidPropertyValue", "jobSpecification.jobReleaseTask"),
])
def test_invalid_bodies_are_refused(sim: Sim, kwargs: dict[str, Any], code: str,
                                    prop: str) -> None:
    error = refused(sim, CreateJobSchedule(schedule_spec(**kwargs)), code)
    assert error.details["PropertyName"] == prop
    assert sim.core.state.job_schedules == {}


def test_minimum_intervals_are_accepted(sim: Sim) -> None:
    schedule = create(sim, schedule={"startWindow": "PT1M", "recurrenceInterval": "PT1M"})
    assert schedule.spec.schedule.recurrence_interval == timedelta(minutes=1)


def test_creation_with_do_not_run_until(sim: Sim) -> None:
    until = sim.now + timedelta(hours=3)
    schedule = create(sim, schedule={"doNotRunUntil": until.isoformat()})
    assert schedule.next_run_time == until


# ------------------------------------------------------------------ unknown ids, conditions


@pytest.mark.parametrize("message", [
    UpdateJobSchedule("nope", metadata=()),
    DisableJobSchedule("nope"),
    EnableJobSchedule("nope"),
    TerminateJobSchedule("nope"),
    DeleteJobSchedule("nope"),
])
def test_unknown_schedule_is_not_found(sim: Sim, message: Any) -> None:
    error = refused(sim, message, "JobScheduleNotFound")
    assert error.details["JobScheduleId"] == "nope"


def test_preconditions_guard_every_write(sim: Sim) -> None:
    schedule = create(sim)
    stale = Precondition(if_match="0xSTALE")
    for message in (UpdateJobSchedule("s", metadata=(), precondition=stale),
                    DisableJobSchedule("s", stale), EnableJobSchedule("s", stale),
                    TerminateJobSchedule("s", stale), DeleteJobSchedule("s", stale)):
        refused(sim, message, "ConditionNotMet")
    sim.send(DisableJobSchedule("s", Precondition(if_match=schedule.etag)))
    assert rec(sim).state == "disabled"


# ------------------------------------------------------------------ disable / enable


def test_disable_and_enable(sim: Sim) -> None:
    schedule = create(sim)
    created = sim.now
    first_etag = schedule.etag
    sim.advance(5)
    sim.send(DisableJobSchedule("S"))
    assert schedule.state == "disabled"
    assert schedule.previous_state == "active"
    assert schedule.previous_state_transition_time == created
    assert schedule.state_transition_time == schedule.last_modified == sim.now
    assert schedule.etag != first_etag
    disabled_etag = schedule.etag
    sim.advance(5)
    sim.send(DisableJobSchedule("s"))  # idempotent: nothing changes
    assert schedule.etag == disabled_etag and schedule.state == "disabled"
    sim.send(EnableJobSchedule("s"))
    assert schedule.state == "active" and schedule.previous_state == "disabled"
    active_etag = schedule.etag
    sim.send(EnableJobSchedule("s"))  # idempotent
    assert schedule.etag == active_etag


# ------------------------------------------------------------------ update


def test_patch_replaces_only_the_given_elements(sim: Sim) -> None:
    schedule = create(sim, metadata=[{"name": "a", "value": "1"}])
    sim.advance(60)
    until = sim.now + timedelta(hours=1)
    sim.send(UpdateJobSchedule("s", schedule=config(doNotRunUntil=until.isoformat())))
    assert schedule.spec.schedule.do_not_run_until == until
    assert schedule.spec.schedule.recurrence_interval is None  # the element is replaced
    assert schedule.next_run_time == until
    assert schedule.spec.metadata == [BatchMetadataItem(name="a", value="1")]
    assert schedule.spec.job_specification.pool_info.pool_id == "p"
    assert schedule.last_modified == sim.now

    sim.send(UpdateJobSchedule("s", job_specification=job_specification("p2", priority=7)))
    assert schedule.spec.job_specification.pool_info.pool_id == "p2"
    assert schedule.spec.job_specification.priority == 7
    assert schedule.next_run_time == until  # schedule untouched
    sim.send(UpdateJobSchedule("s", metadata=()))
    assert schedule.spec.metadata == []
    assert schedule.spec.job_specification.priority == 7


def test_put_replaces_everything(sim: Sim) -> None:
    schedule = create(sim, metadata=[{"name": "a", "value": "1"}],
                      schedule={"recurrenceInterval": "PT5M", "startWindow": "PT2M"})
    sim.advance(30)
    sim.send(UpdateJobSchedule("s", job_specification=job_specification("p3"), replace=True))
    assert schedule.spec.schedule == BatchJobScheduleConfiguration()
    assert schedule.spec.metadata is None
    assert schedule.spec.job_specification.pool_info.pool_id == "p3"
    assert schedule.next_run_time == sim.now
    assert schedule.spec.id == "s" and schedule.state == "active"


def test_put_needs_a_job_specification(sim: Sim) -> None:
    create(sim)
    error = refused(sim, UpdateJobSchedule("s", schedule=config(), replace=True),
                    "MissingRequiredProperty")
    assert error.details["PropertyName"] == "jobSpecification"


@pytest.mark.parametrize(("message", "prop"), [
    (UpdateJobSchedule("s", schedule=config(recurrenceInterval="PT10S")),
     "schedule.recurrenceInterval"),
    (UpdateJobSchedule("s", job_specification=job_specification(priority=-1001)),
     "jobSpecification.priority"),
    (UpdateJobSchedule("s", job_specification=job_specification(
        jobPreparationTask={"commandLine": " "}), replace=True),
     "jobSpecification.jobPreparationTask.commandLine"),
])
def test_invalid_updates_change_nothing(sim: Sim, message: UpdateJobSchedule,
                                        prop: str) -> None:
    create(sim)
    error = refused(sim, message, "InvalidPropertyValue")
    assert error.details["PropertyName"] == prop


def test_a_disabled_schedule_can_be_updated(sim: Sim) -> None:
    schedule = create(sim)
    sim.send(DisableJobSchedule("s"))
    sim.send(UpdateJobSchedule("s", metadata=(BatchMetadataItem(name="k", value="v"),)))
    assert schedule.state == "disabled"
    assert schedule.spec.metadata == [BatchMetadataItem(name="k", value="v")]


# ------------------------------------------------------------------ terminate


def test_terminate_without_jobs_completes_at_once(sim: Sim) -> None:
    schedule = create(sim)
    sim.advance(10)
    sim.send(TerminateJobSchedule("s"))
    assert schedule.state == "completed"
    assert schedule.previous_state == "terminating"
    assert schedule.end_time == sim.now
    assert schedule.next_run_time is None
    assert not sim.core.state.schedules_to_settle


@pytest.mark.parametrize("message", [
    TerminateJobSchedule("s"), DisableJobSchedule("s"), EnableJobSchedule("s"),
    UpdateJobSchedule("s", metadata=()),
])
def test_a_completed_schedule_refuses_changes(sim: Sim, message: Any) -> None:
    create(sim)
    sim.send(TerminateJobSchedule("s"))
    refused(sim, message, "JobScheduleCompleted")


def test_terminate_ends_the_schedules_jobs_first(sim: Sim) -> None:
    sim.pool("p", nodes=1)
    schedule = create(sim)
    job = scheduled_job(sim, "s", 1, "t1", "t2")
    other = sim.job("unrelated")
    sim.tasks("unrelated", "u1")
    sim.send(TerminateJobSchedule("s"))
    assert schedule.state == "terminating"
    assert job.state == "terminating" and job.terminate_reason == "TerminateJobSchedule"
    assert other.state == "active"
    assert sim.core.state.schedules_to_settle == {"s"}
    kills = [e for e in sim.last if isinstance(e, KillTask)]
    assert {k.task_id for k in kills} == {"t1"}  # t2 was waiting, never offered
    for message in (TerminateJobSchedule("s"), DisableJobSchedule("s"),
                    UpdateJobSchedule("s", metadata=())):
        refused(sim, message, "JobScheduleBeingTerminated")
    for kill in kills:
        sim.exit(kill.job_id, kill.task_id, -9, attempt=kill.attempt)
    assert job.state == "completed"
    assert schedule.state == "completed" and schedule.end_time == sim.now
    assert other.state == "active"
    sim.check()


def test_terminate_with_nothing_running_completes_jobs_and_schedule_at_once(sim: Sim) -> None:
    schedule = create(sim)
    idle = scheduled_job(sim, "s", 1, "waiting")  # no pool, so the task never starts
    sim.send(TerminateJobSchedule("s"))
    assert idle.state == "completed" and idle.terminate_reason == "TerminateJobSchedule"
    assert schedule.state == "completed"


def test_terminate_leaves_completed_jobs_alone(sim: Sim) -> None:
    schedule = create(sim)
    done = scheduled_job(sim, "s", 1)
    sim.send(TerminateJob(done.id))
    assert done.state == "completed" and done.terminate_reason == "UserTerminate"
    sim.send(TerminateJobSchedule("s"))
    assert done.terminate_reason == "UserTerminate"
    assert schedule.state == "completed"


# ------------------------------------------------------------------ delete


def test_delete_without_jobs_is_gone_at_once() -> None:
    sim = Sim(evict=False)  # the test takes the changes itself
    sim.send(CreateJobSchedule(schedule_spec("Gone")))
    sim.core.take_changes()
    sim.send(DeleteJobSchedule("gone"))
    assert "gone" not in sim.core.state.job_schedules
    changes = sim.core.take_changes()
    assert changes.deleted_job_schedules == {"gone"}
    assert "gone" not in changes.job_schedules
    refused(sim, DeleteJobSchedule("gone"), "JobScheduleNotFound")


def test_delete_cascades_to_the_schedules_jobs(sim: Sim) -> None:
    sim.pool("p", nodes=1)
    schedule = create(sim)
    first = scheduled_job(sim, "s", 1, "t1")
    second = scheduled_job(sim, "s", 2)
    create(sim, "keep")
    kept = scheduled_job(sim, "keep", 1)
    sim.send(DeleteJobSchedule("s"))
    assert schedule.state == "deleting"
    assert first.state == "deleting"
    assert "s:job-2" not in sim.core.state.jobs  # nothing running: gone at once
    assert second.state == "deleting"
    assert [type(e) for e in sim.last] == [KillTask]
    for message in (TerminateJobSchedule("s"), DisableJobSchedule("s"),
                    EnableJobSchedule("s"), UpdateJobSchedule("s", metadata=())):
        refused(sim, message, "JobScheduleBeingDeleted")
    kills = [e for e in sim.effects if isinstance(e, KillTask)]
    sim.send(DeleteJobSchedule("s"))  # idempotent while deleting
    assert schedule.state == "deleting"
    assert not sim.last
    for kill in kills:
        sim.exit(kill.job_id, kill.task_id, -9, attempt=kill.attempt)
    assert "s:job-1" not in sim.core.state.jobs
    assert "s" not in sim.core.state.job_schedules
    assert any(isinstance(e, DeleteTaskFiles) and e.task_id == "t1" for e in sim.effects)
    assert rec(sim, "keep").state == "active" and kept.key in sim.core.state.jobs
    sim.check()


def test_delete_of_a_completed_schedule_deletes_its_jobs(sim: Sim) -> None:
    create(sim)
    job = scheduled_job(sim, "s", 1)
    sim.send(TerminateJobSchedule("s"))
    assert rec(sim).state == "completed" and job.state == "completed"
    sim.send(DeleteJobSchedule("s"))
    assert "s" not in sim.core.state.job_schedules
    assert job.key not in sim.core.state.jobs


def test_a_job_of_a_schedule_is_cascaded_in_the_store_changes() -> None:
    sim = Sim(evict=False)  # the test takes the changes itself
    sim.send(CreateJobSchedule(schedule_spec("s")))
    scheduled_job(sim, "s", 1)
    sim.core.take_changes()
    sim.send(DeleteJobSchedule("s"))
    changes = sim.core.take_changes()
    assert changes.deleted_jobs == {"s:job-1"}
    assert changes.deleted_job_schedules == {"s"}


# ------------------------------------------------------------------ restore


def test_restore_settles_schedules_left_terminating_or_deleting() -> None:
    """A server stopped between a job finishing and the schedule settling: the first message
    after start-up (a tick) settles the schedules."""
    sim = Sim()
    create(sim, "ending")
    create(sim, "going")
    done = scheduled_job(sim, "ending", 1)
    done.state = "completed"
    ending = copy.deepcopy(rec(sim, "ending"))
    ending.state = "terminating"
    going = copy.deepcopy(rec(sim, "going"))
    going.state = "deleting"
    fresh = BatchCore(SeqIds())
    fresh.restore([], [], [copy.deepcopy(done)], [], [ending, going])
    assert fresh.state.schedules_to_settle == {"ending", "going"}
    fresh.handle(Tick(), sim.now)
    assert fresh.state.job_schedules["ending"].state == "completed"
    assert fresh.state.job_schedules["ending"].end_time == sim.now
    assert "going" not in fresh.state.job_schedules
    changes = fresh.take_changes()
    assert changes.deleted_job_schedules == {"going"}
    assert set(changes.job_schedules) == {"ending"}
    assert not fresh.state.schedules_to_settle


def test_restore_keeps_active_schedules_out_of_settling() -> None:
    sim = Sim()
    create(sim)
    fresh = BatchCore(SeqIds())
    fresh.restore([], [], [], [], [copy.deepcopy(rec(sim))])
    assert "s" in fresh.state.job_schedules
    assert not fresh.state.schedules_to_settle


# ------------------------------------------------------------------ presentation


def test_present_fills_job_specification_defaults(sim: Sim) -> None:
    schedule = create(sim, "Sched-1", displayName="nightly",
                      metadata=[{"name": "k", "value": "v"}])
    body = present_job_schedule(schedule, BASE_URL)
    assert body["id"] == "Sched-1" and body["displayName"] == "nightly"
    assert body["url"] == f"{BASE_URL}/jobschedules/Sched-1"
    assert body["eTag"] == schedule.etag
    assert body["state"] == "active"
    assert "previousState" not in body
    assert body["schedule"] == {"recurrenceInterval": "PT5M"}
    assert body["jobSpecification"] == {
        "poolInfo": {"poolId": "p"}, "priority": 0, "maxParallelTasks": -1,
        "allowTaskPreemption": False, "usesTaskDependencies": False,
        "onAllTasksComplete": "noaction", "onTaskFailure": "noaction",
        "constraints": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 0},
    }
    assert body["executionInfo"] == {"nextRunTime": body["creationTime"]}
    assert body["metadata"] == [{"name": "k", "value": "v"}]


def test_present_omits_an_empty_schedule_and_shows_the_end(sim: Sim) -> None:
    schedule = create(sim, schedule={})
    assert "schedule" not in present_job_schedule(schedule, BASE_URL)
    scheduled_job(sim, "s", 1)
    sim.send(TerminateJobSchedule("s"))
    body = present_job_schedule(schedule, BASE_URL)
    info = body["executionInfo"]
    assert isinstance(info, dict)
    assert "nextRunTime" not in info
    assert info["endTime"] == body["stateTransitionTime"]
    assert info["recentJob"] == {"id": "s:job-1", "url": f"{BASE_URL}/jobs/s%3Ajob-1"}
    assert body["previousState"] == "terminating"


def test_disabled_schedule_still_shows_its_next_run(sim: Sim) -> None:
    schedule = create(sim)
    sim.send(DisableJobSchedule("s"))
    info = present_job_schedule(schedule, BASE_URL)["executionInfo"]
    assert isinstance(info, dict) and "nextRunTime" in info


def test_tasks_can_be_added_to_a_schedules_job(sim: Sim) -> None:
    """The cascade helpers above drive real jobs: tasks of a scheduled job run normally."""
    sim.pool("p", nodes=1)
    create(sim)
    scheduled_job(sim, "s", 1)
    sim.send(AddTasks("s:job-1", (task_spec("t"),), single=True))
    assert sim.running_ids("s:job-1") == {"t"}
