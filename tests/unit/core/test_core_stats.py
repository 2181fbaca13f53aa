"""Statistics accounting ($expand=stats): wall clock, wait time, retries, success/failure
counts and measured process usage, for tasks, jobs and pools."""

from __future__ import annotations

from datetime import timedelta

from hybatch.core.commands import DeleteTask, DisableJob, ResizePool
from hybatch.core.events import NodeLost
from hybatch.core.present import (
    GIB,
    present_job,
    present_job_stats,
    present_pool,
    present_pool_stats,
    present_task,
    present_task_stats,
)
from hybatch.core.records import ProcessUsage
from tests.unit.core.core_sim import BASE_URL, Sim, task_spec

USAGE = ProcessUsage(user_cpu_s=1.5, kernel_cpu_s=0.25, read_bytes=1 << 29,
                     write_bytes=1 << 30)


def test_a_task_that_waited_then_ran_once(sim: Sim) -> None:
    sim.pool(nodes=0)
    sim.job()
    sim.tasks("j", "t1")
    sim.advance(3)  # no node yet: the task waits
    sim.send(ResizePool("p", 1, None, None, None))
    assert sim.running_ids() == {"t1"}
    sim.advance(5)
    sim.exit("j", "t1", 0, usage=USAGE)
    task, job = sim.task("j", "t1"), sim.job_rec()
    wire = present_task_stats(task, BASE_URL, sim.now + timedelta(hours=1))
    assert wire["wallClockTime"] == "PT5S"  # finished: later reads do not grow it
    assert wire["waitTime"] == "PT3S"
    assert (wire["userCPUTime"], wire["kernelCPUTime"]) == ("PT1.5S", "PT0.25S")
    assert (wire["readIOGiB"], wire["writeIOGiB"]) == (0.5, 1.0)
    assert (wire["readIOps"], wire["writeIOps"]) == ("0", "0")
    assert wire["url"] == f"{BASE_URL}/jobs/j/tasks/t1/stats"
    assert wire["startTime"] == "2024-01-01T12:00:00.000000Z"
    jw = present_job_stats(job, BASE_URL, sim.now)
    assert (jw["wallClockTime"], jw["waitTime"]) == ("PT5S", "PT3S")
    assert (jw["numSucceededTasks"], jw["numFailedTasks"], jw["numTaskRetries"]) == (
        "1", "0", "0")
    assert (jw["userCPUTime"], jw["readIOGiB"], jw["writeIOGiB"]) == ("PT1.5S", 0.5, 1.0)
    assert jw["lastUpdateTime"] == "2024-01-01T12:00:08.000000Z"
    assert jw["url"] == f"{BASE_URL}/jobs/j/stats"


def test_retries_add_their_wall_clock_and_usage(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", task_spec("t1", retries=1))
    sim.advance(2)
    sim.exit("j", "t1", 1, usage=USAGE)  # first attempt fails after 2 s; retried at once
    sim.advance(4)
    sim.exit("j", "t1", 1, usage=USAGE)  # the retry fails after 4 s: retries exhausted
    task, job = sim.task("j", "t1"), sim.job_rec()
    assert (task.state, task.retry_count) == ("completed", 1)
    wire = present_task_stats(task, BASE_URL, sim.now)
    assert wire["wallClockTime"] == "PT6S"
    assert wire["userCPUTime"] == "PT3S"
    assert wire["waitTime"] == "PT2S"  # to the most recent start
    jw = present_job_stats(job, BASE_URL, sim.now)
    assert (jw["numSucceededTasks"], jw["numFailedTasks"], jw["numTaskRetries"]) == (
        "0", "1", "1")
    assert jw["wallClockTime"] == "PT6S"


def test_running_attempts_count_up_to_the_read(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", "a", "b")
    sim.advance(7)
    job = sim.job_rec()
    assert job.stats.running_attempts == 2
    assert present_job_stats(job, BASE_URL, sim.now)["wallClockTime"] == "PT14S"
    later = sim.now + timedelta(seconds=3)
    assert present_job_stats(job, BASE_URL, later)["wallClockTime"] == "PT20S"
    assert present_task_stats(sim.task("j", "a"), BASE_URL, later)["wallClockTime"] == "PT10S"
    sim.exit("j", "a", 0)
    assert present_job_stats(job, BASE_URL, sim.now)["wallClockTime"] == "PT14S"
    assert job.stats.running_attempts == 1


def test_requeues_are_not_retries_and_deletes_settle_running_attempts(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", "a", "b")
    sim.advance(2)
    sim.send(DisableJob("j", "requeue"))
    sim.exit_killed()
    job = sim.job_rec()
    assert job.stats.retries == 0
    assert job.stats.running_attempts == 0 and job.stats.running_start_offset_s == 0.0
    assert job.stats.wall_clock_s == 4.0  # both attempts ran 2 s before the kill
    assert present_task_stats(sim.task("j", "a"), BASE_URL, sim.now)["wallClockTime"] == "PT2S"


def test_deleted_and_lost_attempts_end_their_wall_clock(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2)
    sim.job()
    sim.tasks("j", "a", "b")
    sim.advance(3)
    sim.send(DeleteTask("j", "a"))
    sim.send(NodeLost(sim.nodes()[0].id, "gone"))
    job = sim.job_rec()
    assert job.stats.running_attempts == 0
    assert job.stats.wall_clock_s == 6.0
    assert job.stats.user_cpu_s == 0.0  # nothing measured for attempts that never reported


def test_a_task_never_started_has_zero_statistics(sim: Sim) -> None:
    sim.job()
    sim.tasks("j", "t1")
    wire = present_task_stats(sim.task("j", "t1"), BASE_URL, sim.now + timedelta(seconds=9))
    assert (wire["wallClockTime"], wire["waitTime"], wire["userCPUTime"]) == (
        "PT0S", "PT0S", "PT0S")


def test_pool_core_time_cpu_and_disk(sim: Sim) -> None:
    sim.pool(nodes=1, slots=2, low=1)
    sim.job()
    sim.tasks("j", "t1")
    sim.advance(10)
    sim.exit("j", "t1", 0, usage=ProcessUsage(user_cpu_s=8.0, kernel_cpu_s=2.0,
                                              read_bytes=1 << 30, write_bytes=0))
    pool = sim.pool_rec()
    wire = present_pool_stats(pool, sim.nodes(), BASE_URL, sim.now)
    assert wire["usageStats"]["dedicatedCoreTime"] == "PT20S"  # 2 slots x 10 s
    res = wire["resourceStats"]
    assert res["avgCPUPercentage"] == 25.0  # 10 CPU s over 40 core s (both nodes)
    assert (res["diskReadGiB"], res["diskWriteGiB"]) == (1.0, 0.0)
    assert (res["diskReadIOps"], res["avgMemoryGiB"], res["networkReadGiB"]) == ("0", 0.0, 0.0)
    assert wire["url"] == f"{BASE_URL}/pools/p/stats"
    # a node that leaves keeps the core time it gave
    sim.advance(5)
    sim.send(ResizePool("p", 0, 0, None, None))
    assert sim.nodes() == []
    wire = present_pool_stats(pool, [], BASE_URL, sim.now + timedelta(hours=1))
    assert wire["usageStats"]["dedicatedCoreTime"] == "PT30S"
    assert wire["resourceStats"]["avgCPUPercentage"] == 100.0 * 10 / 60


def test_stats_appear_only_when_asked(sim: Sim) -> None:
    sim.pool(nodes=1)
    sim.job()
    sim.tasks("j", "t1")
    assert "stats" not in present_job(sim.job_rec(), BASE_URL)
    assert "stats" not in present_task(sim.task("j", "t1"), BASE_URL)
    assert "stats" not in present_pool(sim.pool_rec(), sim.nodes(), BASE_URL)
    assert GIB == 1024.0 ** 3
