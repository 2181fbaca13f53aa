"""Hypothesis state machine for job schedules: random schedule commands, time passing (the
schedule timer creating jobs), task exits and ticks against one ``BatchCore``.

After every step: each schedule is in a Batch state; a terminating schedule still has an
unfinished job and a deleting one still has a job (otherwise it would have settled); no job
names a schedule that is gone; a schedule has at most one active job; ``completed`` only ever
leads to ``deleting``; the cluster invariants hold; a refused command changed nothing.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hybatch.core.commands import (
    CreateJobSchedule,
    DeleteJobSchedule,
    DisableJobSchedule,
    EnableJobSchedule,
    TerminateJob,
    TerminateJobSchedule,
    UpdateJobSchedule,
)
from hybatch.core.effects import KillTask
from hybatch.core.errors import DomainError
from hybatch.core.events import Tick
from hybatch.schema import (
    BatchJobScheduleConfiguration,
    BatchJobScheduleCreateOptions,
    BatchJobSpecification,
)
from tests.unit.core.core_sim import Sim, snapshot, task_spec

SCHEDULE_IDS = st.sampled_from(["s0", "S0", "s1", "s2"])
INTERVALS = st.sampled_from([None, "PT1M", "PT5M", "P1D", "PT30S"])
STATES = {"active", "disabled", "terminating", "completed", "deleting"}


def _spec(schedule_id: str, interval: str | None, priority: int) -> BatchJobScheduleCreateOptions:
    schedule = {"recurrenceInterval": interval} if interval else {}
    return BatchJobScheduleCreateOptions.model_validate({
        "id": schedule_id, "schedule": schedule,
        "jobSpecification": {"poolInfo": {"poolId": "p"}, "priority": priority}})


class Schedules(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Sim()
        self.seen_completed: set[str] = set()

    @initialize()
    def pool_and_schedules(self) -> None:
        self.sim.pool("p", nodes=1, slots=2)
        for schedule_id in ("s0", "s1"):
            self.sim.send(CreateJobSchedule(_spec(schedule_id, "PT5M", 0)))

    def _try(self, message: Any) -> None:
        before = snapshot(self.sim.core)
        schedules_before = {k: (s.version, s.state)
                            for k, s in self.sim.core.state.job_schedules.items()}
        try:
            self.sim.send(message)
        except DomainError:
            assert snapshot(self.sim.core) == before
            assert {k: (s.version, s.state) for k, s in
                    self.sim.core.state.job_schedules.items()} == schedules_before

    @rule(schedule_id=SCHEDULE_IDS, interval=INTERVALS,
          priority=st.sampled_from([0, 5, 7, 1001]))
    def create(self, schedule_id: str, interval: str | None, priority: int) -> None:
        self._try(CreateJobSchedule(_spec(schedule_id, interval, priority)))

    @rule(schedule_id=SCHEDULE_IDS, interval=INTERVALS, replace=st.booleans())
    def update(self, schedule_id: str, interval: str | None, replace: bool) -> None:
        config = BatchJobScheduleConfiguration.model_validate(
            {"recurrenceInterval": interval} if interval else {})
        self._try(UpdateJobSchedule(
            schedule_id, schedule=config, replace=replace,
            job_specification=BatchJobSpecification.model_validate(
                {"poolInfo": {"poolId": "p"}})))

    @rule(schedule_id=SCHEDULE_IDS)
    def disable(self, schedule_id: str) -> None:
        self._try(DisableJobSchedule(schedule_id))

    @rule(schedule_id=SCHEDULE_IDS)
    def enable(self, schedule_id: str) -> None:
        self._try(EnableJobSchedule(schedule_id))

    @rule(schedule_id=SCHEDULE_IDS)
    def terminate(self, schedule_id: str) -> None:
        self._try(TerminateJobSchedule(schedule_id))

    @rule(schedule_id=SCHEDULE_IDS)
    def delete(self, schedule_id: str) -> None:
        self._try(DeleteJobSchedule(schedule_id))

    @rule(seconds=st.sampled_from([1, 30, 61, 300, 86400]), tasks=st.integers(0, 3))
    def timer(self, seconds: int, tasks: int) -> None:
        """Time passes and the timer runs (a Tick); tasks go to the jobs it created."""
        before = set(self.sim.core.state.jobs)
        self.sim.advance(seconds)
        self.sim.send(Tick())
        for key in sorted(set(self.sim.core.state.jobs) - before):
            job = self.sim.core.state.jobs[key]
            assert job.job_schedule_id is not None
            event("the timer created a job")
            if tasks and job.state == "active":
                self.sim.tasks(job.id, *(task_spec(f"t{i}") for i in range(tasks)))

    @rule(data=st.data())
    def end_a_job(self, data: st.DataObject) -> None:
        jobs = sorted(self.sim.core.state.jobs)
        if jobs:
            self._try(TerminateJob(data.draw(st.sampled_from(jobs))))

    @rule()
    def report_kills(self) -> None:
        for kill in [e for e in self.sim.effects if isinstance(e, KillTask)]:
            task = self.sim.core.state.tasks.get((kill.job_id.lower(), kill.task_id.lower()))
            if task is not None and task.attempt == kill.attempt and task.in_flight:
                self.sim.exit(kill.job_id, kill.task_id, -9, attempt=kill.attempt)

    @rule(data=st.data())
    def finish_a_task(self, data: st.DataObject) -> None:
        running = sorted(k for k, t in self.sim.core.state.tasks.items()
                         if t.state == "running")
        if running:
            job_key, task_key = data.draw(st.sampled_from(running))
            task = self.sim.core.state.tasks[(job_key, task_key)]
            self.sim.exit(task.job_id, task.id, 0)

    @rule()
    def tick(self) -> None:
        self.sim.advance(1)
        self.sim.send(Tick())

    @invariant()
    def schedules_are_consistent(self) -> None:
        state = self.sim.core.state
        for key, schedule in state.job_schedules.items():
            event(f"a schedule {schedule.state}")
            assert schedule.state in STATES
            assert key == schedule.id.lower()
            jobs = state.jobs_of_schedule(key)
            if schedule.state == "terminating":
                assert any(j.state not in ("completed", "deleting") for j in jobs)
                assert key in state.schedules_to_settle
            if schedule.state == "deleting":
                assert jobs and key in state.schedules_to_settle
            if key in self.seen_completed:
                assert schedule.state in ("completed", "deleting")
            if schedule.state == "completed":
                self.seen_completed.add(key)
                assert schedule.end_time is not None
        for job in state.jobs.values():
            if job.job_schedule_id is not None:
                assert job.job_schedule_id.lower() in state.job_schedules
        for key in state.job_schedules:
            # at most one active job per schedule
            active = [j for j in state.jobs_of_schedule(key)
                      if j.state not in ("completed", "deleting")]
            assert len(active) <= 1, [j.id for j in active]
        self.seen_completed &= set(state.job_schedules)
        problems = state.validate()
        assert not problems, problems


Schedules.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestSchedules = Schedules.TestCase
