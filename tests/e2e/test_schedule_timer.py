"""A job schedule really runs: a real server, a one-minute recurrence starting a few seconds
ahead. The first job appears at its due time and its task runs; the second appears a minute
after the first was due (the writer ticks once a second, which bounds the lateness)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from azure.batch import BatchClient
from azure.batch import models as m

from tests.support.server import wait_for

LATENESS_S = 3.0
"""How late a job may appear after its due time: one tick (1 s) plus polling and slack."""


def test_a_one_minute_schedule_creates_a_job_each_minute(client: BatchClient) -> None:
    pool_id = f"sched-pool-{uuid.uuid4().hex[:6]}"
    schedule_id = f"every-minute-{uuid.uuid4().hex[:6]}"
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=1))
    wait_for(lambda: [n for n in client.list_nodes(pool_id) if n.state == "idle"],
             what="an idle node")
    until = datetime.now(UTC) + timedelta(seconds=3)
    client.create_job_schedule(m.BatchJobScheduleCreateOptions(
        id=schedule_id,
        schedule=m.BatchJobScheduleConfiguration(do_not_run_until=until,
                                                 recurrence_interval=timedelta(minutes=1)),
        job_specification=m.BatchJobSpecification(pool_info=m.BatchPoolInfo(pool_id=pool_id),
                                                  priority=5)))
    assert client.get_job_schedule(schedule_id).execution_info.next_run_time == until
    assert list(client.list_jobs_from_schedule(schedule_id)) == []  # not due yet

    first_id = f"{schedule_id}:job-1"
    (first,) = wait_for(lambda: list(client.list_jobs_from_schedule(schedule_id)),
                        timeout=3 + LATENESS_S + 5, interval=0.2, what="the first job")
    assert first.id == first_id and first.priority == 5
    assert until <= first.creation_time <= until + timedelta(seconds=LATENESS_S)
    got = client.get_job_schedule(schedule_id)
    assert got.execution_info.recent_job.id == first_id
    assert got.execution_info.recent_job.url.endswith("/jobs/" + first_id.replace(":", "%3A"))
    assert got.execution_info.next_run_time == until + timedelta(minutes=1)

    # the job runs tasks like any other; ending it lets the next run start on time
    client.create_task(first_id, m.BatchTaskCreateOptions(
        id="hello", command_line="/bin/sh -c 'echo hello from $AZ_BATCH_JOB_ID'"))
    client.update_job(first_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    task = wait_for(lambda: (t := client.get_task(first_id, "hello")).state == "completed"
                    and t, timeout=20, what="the task of the first job")
    assert task.execution_info.exit_code == 0
    out = b"".join(client.download_task_file(first_id, "hello", "stdout.txt")).decode()
    assert out.strip() == f"hello from {first_id}"
    wait_for(lambda: client.get_job(first_id).state == "completed", timeout=10,
             what="the first job completed")

    due = until + timedelta(minutes=1)
    remaining = (due - datetime.now(UTC)).total_seconds()
    jobs = wait_for(lambda: [j for j in client.list_jobs_from_schedule(schedule_id)
                             if j.id != first_id],
                    timeout=max(0.0, remaining) + LATENESS_S + 5, interval=0.25,
                    what="the second job")
    (second,) = jobs
    assert second.id == f"{schedule_id}:job-2"
    assert due <= second.creation_time <= due + timedelta(seconds=LATENESS_S)
    assert client.get_job_schedule(schedule_id).execution_info.next_run_time == (
        due + timedelta(minutes=1))

    client.begin_delete_job_schedule(schedule_id, polling_interval=1).result(timeout=30)
    assert all(not j.id.startswith(schedule_id) for j in client.list_jobs())
    client.begin_delete_pool(pool_id, polling_interval=1).result(timeout=60)
