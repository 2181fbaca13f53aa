"""The job schedule timer on a fake clock: the core is handed Ticks at chosen times (as the
writer loop does once a second) and creates, waits for, skips and completes runs."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from hybatch.core.commands import (
    CreateJobSchedule,
    DeleteJobSchedule,
    DisableJobSchedule,
    EnableJobSchedule,
    TerminateJob,
    TerminateJobSchedule,
    UpdateJobSchedule,
)
from hybatch.core.events import Tick
from hybatch.core.machine import BatchCore
from hybatch.core.present_schedules import present_job_schedule
from hybatch.core.records import JobRecord, JobScheduleRecord
from hybatch.schema import BatchJobScheduleConfiguration, BatchJobScheduleCreateOptions
from tests.unit.core.core_sim import BASE_URL, T0, SeqIds, Sim

MINUTE = 60.0


def create(sim: Sim, schedule: dict[str, Any], schedule_id: str = "s",
           **job: Any) -> JobScheduleRecord:
    body = {"id": schedule_id, "schedule": schedule,
            "jobSpecification": {"poolInfo": {"poolId": "p"}, **job}}
    record = sim.send(CreateJobSchedule(BatchJobScheduleCreateOptions.model_validate(body)))
    assert isinstance(record, JobScheduleRecord)
    return record


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def schedule_jobs(sim: Sim, schedule_id: str = "s") -> list[JobRecord]:
    return sorted(sim.core.state.jobs_of_schedule(schedule_id), key=lambda j: j.seq)


def run_for(sim: Sim, seconds: float, step: float = 1.0) -> list[tuple[float, str]]:
    """Tick every ``step`` seconds of fake time for ``seconds``; the jobs created, as
    (seconds after T0, id)."""
    created: list[tuple[float, str]] = []
    end = sim.now + timedelta(seconds=seconds)
    while sim.now < end:
        sim.advance(step)
        before = set(sim.core.state.jobs)
        sim.send(Tick())
        for key in sorted(set(sim.core.state.jobs) - before):
            created.append(((sim.now - T0).total_seconds(), sim.core.state.jobs[key].id))
    return created


def finish(sim: Sim, job: JobRecord) -> None:
    sim.send(TerminateJob(job.id))
    assert job.state == "completed"


# ------------------------------------------------------------------ recurrence


def test_one_minute_recurrence_makes_one_job_a_minute() -> None:
    """Jobs that finish at once (terminatejob, no tasks): one per minute, on the grid."""
    sim = Sim()
    schedule = create(sim, {"recurrenceInterval": "PT1M"}, onAllTasksComplete="terminatejob")
    assert not schedule_jobs(sim)  # created by the timer, not by the command
    sim.send(Tick())
    created = [(0.0, "s:job-1"), *run_for(sim, 5 * MINUTE)]
    assert created == [(0.0, "s:job-1"), (60.0, "s:job-2"), (120.0, "s:job-3"),
                       (180.0, "s:job-4"), (240.0, "s:job-5"), (300.0, "s:job-6")]
    assert schedule.next_run_time == T0 + timedelta(minutes=6)
    assert schedule.recent_job_id == "s:job-6" and schedule.jobs_created == 6
    assert schedule.state == "active"
    for job in schedule_jobs(sim):
        assert job.job_schedule_id == "s"
        assert job.spec.on_all_tasks_complete == "terminatejob"
        assert job.state == "completed"


def test_jobs_follow_the_job_specification() -> None:
    sim = Sim()
    create(sim, {}, priority=7, maxParallelTasks=2, displayName="nightly",
           commonEnvironmentSettings=[{"name": "A", "value": "1"}],
           metadata=[{"name": "k", "value": "v"}])
    sim.send(Tick())
    (job,) = schedule_jobs(sim)
    assert job.id == "s:job-1" and job.spec.id == "s:job-1"
    assert job.pool_id == "p" and job.priority == 7
    assert job.spec.max_parallel_tasks == 2 and job.spec.display_name == "nightly"
    assert job.spec.common_environment_settings is not None
    assert job.spec.metadata is not None and job.spec.metadata[0].name == "k"
    assert job.state == "active" and job.creation_time == job.start_time == T0


def test_at_most_one_active_job_a_run_waits_for_the_previous_job() -> None:
    sim = Sim()
    schedule = create(sim, {"recurrenceInterval": "PT1M"})
    sim.send(Tick())
    (first,) = schedule_jobs(sim)
    assert run_for(sim, 90) == []  # due at 60 s, but job-1 is still active
    assert schedule.next_run_time == T0 + timedelta(minutes=1)  # still waiting
    finish(sim, first)
    assert run_for(sim, 1) == [(91.0, "s:job-2")]  # created late, within its interval
    assert schedule.next_run_time == T0 + timedelta(minutes=2)  # the grid, not +1 min


def test_a_run_that_cannot_start_within_the_interval_is_skipped() -> None:
    sim = Sim()
    schedule = create(sim, {"recurrenceInterval": "PT1M"})
    sim.send(Tick())
    (first,) = schedule_jobs(sim)
    assert run_for(sim, 150) == []  # run 2 (due 60 s) missed at 120 s; run 3 waits
    assert schedule.next_run_time == T0 + timedelta(minutes=2)
    finish(sim, first)
    assert run_for(sim, 1) == [(151.0, "s:job-2")]  # run 3 within its interval
    assert schedule.next_run_time == T0 + timedelta(minutes=3)


def test_start_window_skips_runs_not_started_in_time() -> None:
    sim = Sim()
    schedule = create(sim, {"recurrenceInterval": "PT5M", "startWindow": "PT1M"})
    sim.send(Tick())
    (first,) = schedule_jobs(sim)
    assert run_for(sim, 5 * MINUTE + 90) == []  # due 300 s, window closed at 360 s
    assert schedule.next_run_time == T0 + timedelta(minutes=10)
    finish(sim, first)  # at 390 s: too late for the run due at 300 s
    assert run_for(sim, 200) == []  # up to 590 s
    created = run_for(sim, 60)
    assert created == [(600.0, "s:job-2")]


def test_start_window_within_the_window_still_runs() -> None:
    sim = Sim()
    create(sim, {"recurrenceInterval": "PT5M", "startWindow": "PT2M"})
    sim.send(Tick())
    (first,) = schedule_jobs(sim)
    run_for(sim, 5 * MINUTE + 60)
    finish(sim, first)  # at 360 s, inside the window of the run due at 300 s
    assert run_for(sim, 1) == [(361.0, "s:job-2")]


def test_coarse_ticks_after_a_long_stop_make_one_job_and_keep_the_grid() -> None:
    sim = Sim()
    schedule = create(sim, {"recurrenceInterval": "PT1M"},
                      onAllTasksComplete="terminatejob")
    sim.send(Tick())
    sim.advance(7 * 24 * 3600 + 30)  # a week and 30 s later
    sim.send(Tick())
    assert [j.id for j in schedule_jobs(sim)] == ["s:job-1", "s:job-2"]
    assert schedule.next_run_time == T0 + timedelta(days=7, minutes=1)


# ------------------------------------------------------------------ bounds


def test_do_not_run_until_delays_the_first_job() -> None:
    sim = Sim()
    schedule = create(sim, {"doNotRunUntil": at(2.5), "recurrenceInterval": "PT1M"},
                      onAllTasksComplete="terminatejob")
    created = run_for(sim, 4 * MINUTE)
    assert created == [(150.0, "s:job-1"), (210.0, "s:job-2")]
    assert schedule.next_run_time == T0 + timedelta(minutes=4.5)


def test_do_not_run_after_ends_the_schedule() -> None:
    sim = Sim()
    schedule = create(sim, {"doNotRunAfter": at(3.5), "recurrenceInterval": "PT1M"},
                      onAllTasksComplete="terminatejob")
    sim.send(Tick())
    created = [(0.0, "s:job-1"), *run_for(sim, 10 * MINUTE)]
    assert [c[0] for c in created] == [0.0, 60.0, 120.0, 180.0]
    assert schedule.state == "completed"
    assert schedule.end_time == T0 + timedelta(minutes=3)  # its last job ended at once
    assert schedule.next_run_time is None
    body = present_job_schedule(schedule, BASE_URL)
    assert body["executionInfo"] == {
        "recentJob": {"id": "s:job-4", "url": f"{BASE_URL}/jobs/s%3Ajob-4"},
        "endTime": body["stateTransitionTime"]}


def test_do_not_run_after_waits_for_the_active_job_then_completes() -> None:
    sim = Sim()
    schedule = create(sim, {"doNotRunAfter": at(1.5), "recurrenceInterval": "PT1M"})
    sim.send(Tick())
    (first,) = schedule_jobs(sim)
    run_for(sim, 5 * MINUTE)
    assert schedule.state == "active" and first.state == "active"  # not terminated
    assert schedule.next_run_time is None
    finish(sim, first)
    run_for(sim, 1)
    assert schedule.state == "completed" and len(schedule_jobs(sim)) == 1


def test_do_not_run_after_in_the_past_completes_without_a_job() -> None:
    sim = Sim()
    sim.advance(600)
    schedule = create(sim, {"doNotRunAfter": at(1)})
    assert schedule.next_run_time is None
    sim.send(Tick())
    assert schedule.state == "completed" and not schedule_jobs(sim)


def test_a_non_recurring_schedule_runs_once_then_completes() -> None:
    sim = Sim()
    schedule = create(sim, {"doNotRunUntil": at(1)})
    assert run_for(sim, 5 * MINUTE) == [(60.0, "s:job-1")]
    assert schedule.state == "active" and schedule.next_run_time is None
    finish(sim, schedule_jobs(sim)[0])
    run_for(sim, 1)
    assert schedule.state == "completed" and schedule.previous_state == "active"


def test_a_non_recurring_run_that_misses_its_window_completes_the_schedule() -> None:
    sim = Sim()
    schedule = create(sim, {"doNotRunUntil": at(1), "startWindow": "PT1M"})
    sim.advance(3 * MINUTE)  # the server was not ticking during the window
    sim.send(Tick())
    assert not schedule_jobs(sim) and schedule.state == "completed"


# ------------------------------------------------------------------ state


def test_a_disabled_schedule_creates_no_jobs_and_resumes_on_the_grid() -> None:
    sim = Sim()
    schedule = create(sim, {"recurrenceInterval": "PT1M"}, onAllTasksComplete="terminatejob")
    sim.send(DisableJobSchedule("s"))
    assert run_for(sim, 150) == []
    assert schedule.next_run_time == T0 + timedelta(minutes=2)  # runs passed, skipped
    sim.send(EnableJobSchedule("s"))
    assert run_for(sim, 60) == [(151.0, "s:job-1"), (180.0, "s:job-2")]


def test_updating_the_schedule_restarts_its_grid() -> None:
    sim = Sim()
    schedule = create(sim, {"recurrenceInterval": "PT1M"}, onAllTasksComplete="terminatejob")
    sim.send(Tick())
    sim.advance(10)
    sim.send(UpdateJobSchedule("s", schedule=BatchJobScheduleConfiguration.model_validate(
        {"recurrenceInterval": "PT2M", "doNotRunUntil": at(5)})))
    assert schedule.next_run_time == T0 + timedelta(minutes=5)
    created = run_for(sim, 8 * MINUTE)
    assert created == [(300.0, "s:job-2"), (420.0, "s:job-3")]


def test_terminate_and_delete_reach_the_jobs_the_timer_made() -> None:
    sim = Sim()
    sim.pool("p", nodes=1)
    schedule = create(sim, {"recurrenceInterval": "PT1M"})
    sim.send(Tick())
    (job,) = schedule_jobs(sim)
    sim.tasks(job.id, "t")
    assert sim.running_ids(job.id) == {"t"}
    sim.send(TerminateJobSchedule("s"))
    assert job.state == "terminating" and schedule.state == "terminating"
    sim.exit_killed()
    assert job.state == "completed" and schedule.state == "completed"
    run_for(sim, 3 * MINUTE)
    assert len(schedule_jobs(sim)) == 1  # a completed schedule makes no more jobs
    sim.send(DeleteJobSchedule("s"))
    assert "s" not in sim.core.state.job_schedules and job.key not in sim.core.state.jobs
    sim.check()


def test_restore_continues_numbering_and_the_grid() -> None:
    sim = Sim()
    create(sim, {"recurrenceInterval": "PT1M"}, onAllTasksComplete="terminatejob")
    sim.send(Tick())
    run_for(sim, 60)
    stored = copy.deepcopy(sim.core.state.job_schedules["s"])
    jobs = [copy.deepcopy(j) for j in schedule_jobs(sim)]
    fresh = BatchCore(SeqIds())
    fresh.restore([], [], jobs, [], [stored])
    fresh.handle(Tick(), T0 + timedelta(minutes=2, seconds=1))
    assert "s:job-3" in fresh.state.jobs
    assert fresh.state.job_schedules["s"].next_run_time == T0 + timedelta(minutes=3)


def test_schedules_run_independently() -> None:
    sim = Sim()
    create(sim, {"recurrenceInterval": "PT1M"}, "a", onAllTasksComplete="terminatejob")
    create(sim, {"recurrenceInterval": "PT2M"}, "b", onAllTasksComplete="terminatejob")
    sim.send(Tick())
    run_for(sim, 4 * MINUTE, step=5)
    assert len(schedule_jobs(sim, "a")) == 5 and len(schedule_jobs(sim, "b")) == 3
    sim.check()


def test_ticks_at_the_same_moment_create_one_job() -> None:
    sim = Sim()
    create(sim, {})
    now: datetime = sim.now
    for _ in range(3):
        sim.send(Tick())
    assert sim.now == now and len(schedule_jobs(sim)) == 1
