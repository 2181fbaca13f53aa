"""Job disable/enable, statistics, subtasks, preparation/release status and job update rules,
through the official azure-batch 15.1 SDK against a real server process (real task
processes on the local backend)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.support.server import wait_for


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _sh(script: str) -> str:
    return f"/bin/sh -c '{script}'"


# first run: record the shell's pid and sleep long; a later run of the same task ends at once
LONG_THEN_QUICK = _sh("if [ -e ran ]; then exit 0; fi; touch ran; echo $$ > pid; exec sleep 30")
BURN_CPU = _sh("i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done")


@pytest.fixture(scope="module")
def pool(client: BatchClient) -> Iterator[str]:
    """One node with two slots (tasks of a job run, and rerun, on the same node)."""
    pool_id = _uid("ctl")
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=1,
                                                task_slots_per_node=2))
    wait_for(lambda: (nodes := list(client.list_nodes(pool_id))) and nodes[0].state == "idle",
             what="an idle node")
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=0.2).result()


def _job(client: BatchClient, pool: str, **extra: object) -> str:
    job_id = _uid("job")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id=pool), **extra))  # type: ignore[arg-type]
    return job_id


def _task(client: BatchClient, job_id: str, task_id: str, command: str,
          **extra: object) -> None:
    client.create_task(job_id, m.BatchTaskCreateOptions(id=task_id, command_line=command,
                                                        **extra))  # type: ignore[arg-type]


def _state(client: BatchClient, job_id: str, task_id: str) -> object:
    """The task's state (an SDK enum: compares equal to the wire value)."""
    return client.get_task(job_id, task_id).state


def _running_pid(client: BatchClient, job_id: str, task_id: str) -> int:
    """Wait until the task runs and has written its pid; return it."""
    def pid() -> int | None:
        if _state(client, job_id, task_id) != "running":
            return None
        try:
            text = b"".join(client.download_task_file(job_id, task_id, "wd/pid")).strip()
        except ResourceNotFoundError:
            return None
        return int(text) if text else None

    return wait_for(pid, timeout=30, what=f"{task_id} running with its pid")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _end(client: BatchClient, job_id: str) -> None:
    client.begin_delete_job(job_id, polling_interval=0.2).result()


# ------------------------------------------------------------------ disable / enable


def test_disable_requeue_kills_the_process_and_enable_runs_it_again(
        client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool)
    _task(client, job_id, "long", LONG_THEN_QUICK)
    pid = _running_pid(client, job_id, "long")

    poller = client.begin_disable_job(job_id, m.BatchJobDisableOptions(
        disable_tasks=m.DisableBatchJobOption.REQUEUE), polling_interval=0.1)
    poller.result(timeout=30)
    job = client.get_job(job_id)
    assert job.state == "disabled"
    assert job.previous_state == "disabling"
    task = client.get_task(job_id, "long")
    assert task.state == "active"
    assert task.execution_info.requeue_count == 1
    assert task.execution_info.retry_count == 0
    assert task.execution_info.failure_info is None
    assert _gone(pid), "the requeued task's process still runs"
    # a task added to the disabled job waits too
    _task(client, job_id, "later", "/bin/true")
    assert _state(client, job_id, "later") == "active"

    client.begin_enable_job(job_id, polling_interval=0.1).result(timeout=30)
    job = client.get_job(job_id)
    assert (job.state, job.previous_state) == ("active", "enabling")
    wait_for(lambda: _state(client, job_id, "long") == "completed"
             and _state(client, job_id, "later") == "completed", what="both tasks completed")
    info = client.get_task(job_id, "long").execution_info
    assert (info.result, info.exit_code, info.requeue_count) == ("success", 0, 1)
    _end(client, job_id)


def test_disable_terminate_ends_running_tasks_with_task_ended(
        client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool)
    _task(client, job_id, "long", LONG_THEN_QUICK)
    pid = _running_pid(client, job_id, "long")
    client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="terminate"),
                             polling_interval=0.1).result(timeout=30)
    assert client.get_job(job_id).state == "disabled"
    task = client.get_task(job_id, "long")
    assert task.state == "completed"
    failure = task.execution_info.failure_info
    assert task.execution_info.result == "failure"
    assert failure is not None
    assert (failure.category, failure.code) == ("usererror", "TaskEnded")
    assert _gone(pid)
    counts = client.get_job_task_counts(job_id).task_counts
    assert (counts.completed, counts.failed) == (1, 1)
    _end(client, job_id)


def test_disable_wait_lets_the_running_task_finish_and_starts_nothing(
        client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool)
    _task(client, job_id, "short", _sh("sleep 3"))
    wait_for(lambda: _state(client, job_id, "short") == "running", what="short running")
    poller = client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="wait"),
                                      polling_interval=0.1)
    assert client.get_job(job_id).state == "disabling"  # entered before the answer
    _task(client, job_id, "queued", "/bin/true")
    poller.result(timeout=30)
    assert client.get_job(job_id).state == "disabled"
    short = client.get_task(job_id, "short")
    assert (short.state, short.execution_info.result) == ("completed", "success")
    assert _state(client, job_id, "queued") == "active"  # a free slot, yet not started
    client.begin_enable_job(job_id, polling_interval=0.1).result(timeout=30)
    wait_for(lambda: _state(client, job_id, "queued") == "completed", what="queued completed")
    _end(client, job_id)


def test_disable_and_enable_errors(client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool)
    with pytest.raises(HttpResponseError) as bad_option:
        client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="pause"))
    assert bad_option.value.status_code == 400
    assert bad_option.value.error.code == "InvalidPropertyValue"
    with pytest.raises(HttpResponseError) as not_disabled:
        client.begin_enable_job(job_id)
    assert not_disabled.value.status_code == 409
    assert not_disabled.value.error.code == "OperationInvalidForCurrentState"
    with pytest.raises(HttpResponseError) as stale:
        client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="wait"),
                                 etag="0x8D0000000000000",
                                 match_condition=MatchConditions.IfNotModified)
    assert stale.value.status_code == 412
    with pytest.raises(ResourceNotFoundError) as unknown:
        client.begin_disable_job(_uid("nope"), m.BatchJobDisableOptions(disable_tasks="wait"))
    assert unknown.value.error.code == "JobNotFound"
    # 15.1 needs a non-empty options object here (an empty one fails client-side)
    options = m._models.BatchJobTerminateOptions(termination_reason="done")
    client.begin_terminate_job(job_id, options, polling_interval=0.1).result(timeout=30)
    assert client.get_job(job_id).state == "completed"
    with pytest.raises(HttpResponseError) as completed:
        client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="wait"))
    assert (completed.value.status_code, completed.value.error.code) == (409, "JobCompleted")
    _end(client, job_id)


# ------------------------------------------------------------------ job updates


def test_replace_and_update_follow_batch_rules(client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool, priority=7, metadata=[m.BatchMetadataItem(name="k", value="v")],
                  constraints=m.BatchJobConstraints(max_task_retry_count=3))
    _task(client, job_id, "hold", LONG_THEN_QUICK)  # keeps terminatejob from firing
    client.update_job(job_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    # PUT: what it leaves out goes back to its default (the pool may stay the same)
    client.replace_job(job_id, m.BatchJob(pool_info=m.BatchPoolInfo(pool_id=pool),
                                          max_parallel_tasks=2))
    job = client.get_job(job_id)
    assert (job.priority, job.max_parallel_tasks, job.metadata) == (0, 2, None)
    assert job.constraints.max_task_retry_count == 0
    assert job.all_tasks_complete_mode == "terminatejob"  # cannot be turned off
    with pytest.raises(HttpResponseError) as back:
        client.update_job(job_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="noaction"))
    assert (back.value.status_code, back.value.error.code) == (400, "InvalidPropertyValue")
    # PATCH merges: only what is sent changes
    client.update_job(job_id, m.BatchJobUpdateOptions(priority=5))
    job = client.get_job(job_id)
    assert (job.priority, job.max_parallel_tasks) == (5, 2)
    # another pool only while the job is disabled
    with pytest.raises(HttpResponseError) as moved:
        client.update_job(job_id, m.BatchJobUpdateOptions(
            pool_info=m.BatchPoolInfo(pool_id=_uid("elsewhere"))))
    assert (moved.value.status_code, moved.value.error.code) == (
        409, "OperationInvalidForCurrentState")
    client.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="requeue"),
                             polling_interval=0.1).result(timeout=30)
    other = _uid("elsewhere")
    client.update_job(job_id, m.BatchJobUpdateOptions(pool_info=m.BatchPoolInfo(
        pool_id=other)))
    assert client.get_job(job_id).pool_info.pool_id == other
    _end(client, job_id)


# ------------------------------------------------------------------ statistics


def test_statistics_after_tasks_ran(client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool)
    client.create_tasks(job_id, [
        m.BatchTaskCreateOptions(id="ok-1", command_line="/bin/true"),
        m.BatchTaskCreateOptions(id="burn", command_line=BURN_CPU),
        m.BatchTaskCreateOptions(id="bad", command_line=_sh("exit 4"),
                                 constraints=m.BatchTaskConstraints(max_task_retry_count=1)),
    ])
    wait_for(lambda: client.get_job_task_counts(job_id).task_counts.completed == 3,
             timeout=60, what="3 tasks completed")

    assert client.get_job(job_id).job_statistics is None  # only when asked
    stats = client.get_job(job_id, expand=["stats"]).job_statistics
    assert stats is not None
    assert (stats.succeeded_tasks_count, stats.failed_tasks_count,
            stats.task_retries_count) == (2, 1, 1)
    assert stats.wall_clock_time > timedelta(0)
    assert stats.user_cpu_time + stats.kernel_cpu_time > timedelta(0)  # the burner's CPU
    assert stats.wait_time >= timedelta(0)
    assert (stats.read_iops, stats.write_iops) == (0, 0)
    assert stats.url.endswith(f"/jobs/{job_id}/stats")
    assert stats.start_time <= stats.last_update_time
    listed = {j.id: j for j in client.list_jobs(expand=["stats"],
                                                filter=f"id eq '{job_id}'")}
    assert listed[job_id].job_statistics.succeeded_tasks_count == 2
    selected = client.get_job(job_id, select=["id", "stats"])
    assert selected.job_statistics is not None and selected.pool_info is None

    burn = client.get_task(job_id, "burn", expand=["stats"]).task_statistics
    assert burn.user_cpu_time + burn.kernel_cpu_time > timedelta(0)
    assert burn.wall_clock_time > timedelta(0)
    bad = client.get_task(job_id, "bad", expand=["stats"]).task_statistics
    info = client.get_task(job_id, "bad").execution_info
    # two attempts ran: the total holds at least the last one (to the microsecond)
    assert bad.wall_clock_time >= info.end_time - info.start_time - timedelta(microseconds=1)
    assert client.get_task(job_id, "burn").task_statistics is None
    assert all(t.task_statistics is not None for t in client.list_tasks(job_id,
                                                                         expand=["stats"]))

    pool_stats = client.get_pool(pool, expand=["stats"]).pool_statistics
    assert pool_stats.usage_statistics.dedicated_core_time > timedelta(0)
    assert 0 <= pool_stats.resource_statistics.avg_cpu_percentage <= 100
    assert client.get_pool(pool).pool_statistics is None
    with pytest.raises(HttpResponseError) as bad_expand:
        client.get_job(job_id, expand=["tasks"])
    assert (bad_expand.value.status_code, bad_expand.value.error.code) == (
        400, "InvalidQueryParameterValue")
    _end(client, job_id)


# ------------------------------------------------------------------ subtasks, prep/release


def test_subtasks_of_a_normal_task_are_empty(client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool)
    _task(client, job_id, "plain", "/bin/true")
    assert list(client.list_subtasks(job_id, "plain")) == []
    with pytest.raises(ResourceNotFoundError) as no_task:
        list(client.list_subtasks(job_id, "nosuchtask"))
    assert no_task.value.error.code == "TaskNotFound"
    with pytest.raises(ResourceNotFoundError) as no_job:
        list(client.list_subtasks(_uid("nojob"), "plain"))
    assert no_job.value.error.code == "JobNotFound"
    _end(client, job_id)


def test_preparation_and_release_status_needs_those_tasks(client: BatchClient,
                                                          pool: str) -> None:
    job_id = _job(client, pool)
    with pytest.raises(HttpResponseError) as unspecified:
        list(client.list_job_preparation_and_release_task_status(job_id))
    assert unspecified.value.status_code == 409
    assert unspecified.value.error.code == "JobPreparationTaskNotSpecified"
    with pytest.raises(ResourceNotFoundError) as unknown:
        list(client.list_job_preparation_and_release_task_status(_uid("nojob")))
    assert unknown.value.error.code == "JobNotFound"
    _end(client, job_id)
