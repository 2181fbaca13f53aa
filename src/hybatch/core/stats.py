"""Statistics accounting: the lifetime totals behind ``$expand=stats`` on jobs, tasks and pools.

What is measured, and where it comes from:

* wall clock: from the node's start and end times of every attempt (retries and requeues
  included); attempts still running count up to the moment the statistics are read;
* wait time: task creation to the start of its most recent attempt (a job sums its tasks');
* CPU (user/kernel) and bytes read/written: the ``ProcessUsage`` a node reports with an
  attempt's exit (``wait4`` rusage of the process tree), so they grow when attempts end;
* succeeded/failed tasks and retries: counted as they happen (a task reactivated and run
  again counts again, as in a lifetime total);
* pool core time: a node's cores are its task slots, counted from the node's allocation to
  its release.

Disk operation counts, memory, disk space and network figures are not measured; they are
reported as zero (docs/coverage.md).

Every function here is called by the core's handlers at the moment the fact happens.

Imports: standard library, core modules.
"""

from __future__ import annotations

from datetime import datetime

from hybatch.core.context import Ctx
from hybatch.core.records import (
    JobRecord,
    JobStatsRecord,
    NodeRecord,
    PoolStatsRecord,
    ProcessUsage,
    TaskRecord,
    TaskStatsRecord,
)


def _seconds(later: datetime, earlier: datetime) -> float:
    return max((later - earlier).total_seconds(), 0.0)


def attempt_started(job: JobRecord, task: TaskRecord, start_time: datetime) -> None:
    """An attempt of ``task`` started running at ``start_time`` (node clock)."""
    stats = task.stats
    if stats is None:
        stats = task.stats = TaskStatsRecord()
    wait = _seconds(start_time, task.creation_time)
    totals = job.stats
    totals.wait_s += wait - stats.wait_s  # the wait to the most recent start counts
    stats.wait_s = wait
    totals.running_attempts += 1
    totals.running_start_offset_s += (start_time - job.creation_time).total_seconds()


def attempt_ended(ctx: Ctx, job: JobRecord, task: TaskRecord, end_time: datetime,
                  usage: ProcessUsage | None) -> None:
    """The running attempt of ``task`` ended at ``end_time`` (called once per started
    attempt, before the task leaves the running state)."""
    start = task.start_time
    stats = task.stats
    if stats is None:
        stats = task.stats = TaskStatsRecord()
    totals = job.stats
    if start is not None:
        totals.running_attempts -= 1
        totals.running_start_offset_s -= (start - job.creation_time).total_seconds()
        if totals.running_attempts <= 0:
            totals.running_attempts = 0
            totals.running_start_offset_s = 0.0  # no float residue once nothing runs
        wall = _seconds(end_time, start)
        stats.wall_clock_s += wall
        totals.wall_clock_s += wall
    if usage is None:
        return
    _add_usage(stats, usage)
    _add_usage(totals, usage)
    pool = ctx.state.pools.get((task.pool_id or "").lower())
    if pool is not None:
        _add_usage(pool.stats, usage)
        ctx.state.save_on_tick(pool)


def _add_usage(target: TaskStatsRecord | JobStatsRecord | PoolStatsRecord,
               usage: ProcessUsage) -> None:
    """Add one attempt's measured usage to a totals record (task, job or pool stats)."""
    target.user_cpu_s += max(usage.user_cpu_s, 0.0)
    target.kernel_cpu_s += max(usage.kernel_cpu_s, 0.0)
    target.read_bytes += max(usage.read_bytes, 0)
    target.write_bytes += max(usage.write_bytes, 0)


def task_completed(job: JobRecord, result: str) -> None:
    if result == "success":
        job.stats.succeeded += 1
    else:
        job.stats.failed += 1


def task_retried(job: JobRecord) -> None:
    job.stats.retries += 1


def node_departed(ctx: Ctx, node: NodeRecord) -> None:
    """A node left its pool: keep the core time it contributed (slots x seconds)."""
    pool = ctx.state.pools.get(node.pool_id.lower())
    if pool is None:
        return
    core_s = node.slots * _seconds(ctx.now, node.allocation_time or node.creation_time)
    pool.stats.departed_core_s += core_s
    if node.is_dedicated:
        pool.stats.departed_dedicated_core_s += core_s
    ctx.state.save_quietly(pool)


def running_wall_clock_s(totals: JobStatsRecord, creation_time: datetime,
                         now: datetime) -> float:
    """Wall clock of a job's attempts still running, up to ``now``."""
    if totals.running_attempts <= 0:
        return 0.0
    elapsed = (now - creation_time).total_seconds()
    return max(totals.running_attempts * elapsed - totals.running_start_offset_s, 0.0)
