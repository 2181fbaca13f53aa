"""Records for store tests, built on the real wire models.

``full_*`` records set every field to a non-default value (specs included, secrets too), so a
round trip through a store proves nothing is dropped; ``task``/``job``/... are small ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hybatch.core.records import (
    FailureInfoRecord,
    JobRecord,
    JobScheduleRecord,
    NodeRecord,
    NodeUserRecord,
    PoolRecord,
    ResizeErrorRecord,
    TaskCountsRecord,
    TaskRecord,
    UsageRecord,
)
from hybatch.schema import (
    BatchJobCreateOptions,
    BatchJobScheduleCreateOptions,
    BatchPoolCreateOptions,
    BatchTaskCreateOptions,
)

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
"""A fixed instant; records use offsets from it so timestamps differ per field."""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


POOL_SPEC = {
    "id": "Pool-A",
    "displayName": "pool A",
    "vmSize": "Standard_D2s_v3",
    "virtualMachineConfiguration": {
        "imageReference": {"publisher": "canonical", "offer": "ubuntu", "sku": "22_04-lts"},
        "nodeAgentSKUId": "batch.node.ubuntu 22.04",
    },
    "resizeTimeout": "PT15M",
    "targetDedicatedNodes": 2,
    "targetLowPriorityNodes": 1,
    "enableInterNodeCommunication": False,
    "startTask": {
        "commandLine": "/bin/sh -c 'echo start'",
        "waitForSuccess": True,
        "maxTaskRetryCount": 1,
        "environmentSettings": [{"name": "X", "value": "1"}],
    },
    "taskSlotsPerNode": 4,
    "taskSchedulingPolicy": {"nodeFillType": "pack"},
    "userAccounts": [
        {
            "name": "alice",
            "password": "pool-secret",
            "elevationLevel": "admin",
            "linuxUserConfiguration": {"uid": 1001, "gid": 1001, "sshPrivateKey": "ssh-secret"},
        }
    ],
    "metadata": [{"name": "owner", "value": "team ü"}],
    "mountConfiguration": [
        {
            "azureBlobFileSystemConfiguration": {
                "accountName": "acct",
                "containerName": "data",
                "accountKey": "blob-secret",
                "relativeMountPath": "data",
            }
        }
    ],
}

JOB_SPEC = {
    "id": "Job-1",
    "displayName": "job one",
    "poolInfo": {"poolId": "Pool-A"},
    "priority": 100,
    "usesTaskDependencies": True,
    "maxParallelTasks": 4,
    "constraints": {"maxWallClockTime": "PT2H", "maxTaskRetryCount": 3},
    "onAllTasksComplete": "terminatejob",
    "onTaskFailure": "performexitoptionsjobaction",
    "commonEnvironmentSettings": [{"name": "A", "value": "b"}],
    "metadata": [{"name": "k", "value": "v"}],
}

TASK_SPEC = {
    "id": "Task-1",
    "displayName": "task one",
    "commandLine": "/bin/sh -c 'exit 3'",
    "containerSettings": {
        "imageName": "busybox",
        "containerRunOptions": "--rm",
        "registry": {"registryServer": "registry.example", "username": "u", "password": "pw"},
    },
    "resourceFiles": [{"httpUrl": "https://example.com/a.txt", "filePath": "a.txt"}],
    "outputFiles": [
        {
            "filePattern": "*.txt",
            "destination": {"container": {"containerUrl": "https://example.com/c?sig=x"}},
            "uploadOptions": {"uploadCondition": "taskcompletion"},
        }
    ],
    "environmentSettings": [{"name": "E", "value": "\u00fc\u4e2d"}],
    "constraints": {"maxWallClockTime": "PT1H", "retentionTime": "P7D", "maxTaskRetryCount": 2},
    "requiredSlots": 2,
    "userIdentity": {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}},
    "dependsOn": {"taskIds": ["a"], "taskIdRanges": [{"start": 1, "end": 5}]},
    "exitConditions": {
        "exitCodes": [{"code": 3, "exitOptions": {"jobAction": "terminate"}}],
        "default": {"jobAction": "none"},
    },
}


SCHEDULE_SPEC = {
    "id": "Sched-1",
    "displayName": "nightly \u00fc",
    "schedule": {
        "doNotRunUntil": "2026-05-02T00:00:00Z",
        "doNotRunAfter": "2026-06-01T00:00:00.5Z",
        "startWindow": "PT30M",
        "recurrenceInterval": "P1DT2H",
    },
    "jobSpecification": {**{k: v for k, v in JOB_SPEC.items() if k != "id"},
                         "usesTaskDependencies": False},
    "metadata": [{"name": "team", "value": "cfd"}],
}


def pool_spec(pool_id: str, **extra: object) -> BatchPoolCreateOptions:
    return BatchPoolCreateOptions.model_validate(
        {"id": pool_id, "vmSize": "standard_d2s_v3", **extra}
    )


def job_spec(job_id: str, pool_id: str = "p", **extra: object) -> BatchJobCreateOptions:
    return BatchJobCreateOptions.model_validate(
        {"id": job_id, "poolInfo": {"poolId": pool_id}, **extra}
    )


def task_spec(task_id: str, **extra: object) -> BatchTaskCreateOptions:
    return BatchTaskCreateOptions.model_validate(
        {"id": task_id, "commandLine": "/bin/true", **extra}
    )


def schedule_spec(schedule_id: str, **extra: object) -> BatchJobScheduleCreateOptions:
    return BatchJobScheduleCreateOptions.model_validate(
        {"id": schedule_id, "schedule": {}, "jobSpecification": {"poolInfo": {"poolId": "p"}},
         **extra}
    )


def job_schedule(schedule_id: str, **fields: object) -> JobScheduleRecord:
    spec = schedule_spec(schedule_id)
    return JobScheduleRecord(id=schedule_id, spec=spec, creation_time=T0, **fields)  # type: ignore[arg-type]


def pool(pool_id: str, **fields: object) -> PoolRecord:
    return PoolRecord(id=pool_id, spec=pool_spec(pool_id), creation_time=T0, **fields)  # type: ignore[arg-type]


def node(node_id: str, pool_id: str, **fields: object) -> NodeRecord:
    values: dict[str, object] = {"is_dedicated": True, "slots": 1, "creation_time": T0}
    values.update(fields)
    return NodeRecord(id=node_id, pool_id=pool_id, **values)  # type: ignore[arg-type]


def job(job_id: str, seq: int = 0, **fields: object) -> JobRecord:
    return JobRecord(id=job_id, spec=job_spec(job_id), creation_time=T0, seq=seq, **fields)  # type: ignore[arg-type]


def task(job_id: str, task_id: str, seq: int = 0, **fields: object) -> TaskRecord:
    values: dict[str, object] = {"creation_time": T0 + timedelta(seconds=seq)}
    values.update(fields)
    return TaskRecord(
        job_id=job_id,
        id=task_id,
        spec=task_spec(task_id),
        seq=seq,
        **values,  # type: ignore[arg-type]
    )


def full_pool() -> PoolRecord:
    return PoolRecord(
        id="Pool-A",
        spec=BatchPoolCreateOptions.model_validate(POOL_SPEC),
        creation_time=at(0),
        state="deleting",
        state_transition_time=at(1),
        allocation_state="resizing",
        allocation_state_transition_time=at(2),
        target_dedicated_nodes=2,
        target_low_priority_nodes=1,
        resize_timeout_s=123.5,
        resize_started=at(3),
        node_deallocation_option="taskcompletion",
        resize_errors=[
            ResizeErrorRecord("AllocationFailed", "no capacity"),
            ResizeErrorRecord("X", "y"),
        ],
        task_slots_per_node=4,
        node_fill_type="pack",
        last_modified=at(4),
        version=7,
        etag="0x8DABC",
        core_seconds=1.25e6,
        usage_interval_start=at(-1800),
        usage_core_seconds=7200.5,
    )


def full_node() -> NodeRecord:
    return NodeRecord(
        id="TVM-0001_Node",
        pool_id="Pool-A",
        is_dedicated=False,
        slots=4,
        creation_time=at(0),
        state="running",
        state_transition_time=at(1),
        scheduling_state="disabled",
        allocation_time=at(2),
        last_boot_time=datetime(2026, 5, 1, 14, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        running_tasks=2,
        running_task_slots=3,
        total_tasks_run=17,
        total_tasks_succeeded=15,
        task_keys=[("Job-1", "Task-1"), ("job-2", "t\u00fc")],
        ip_address="10.0.0.4",
        errors=[ResizeErrorRecord("NodeError", "disk full")],
        removing=True,
        pending_action="reimage",
        users=[NodeUserRecord("alice", True, at(86400), True, "ssh-ed25519 AAAA x"),
               NodeUserRecord("bob")],
        accounted_until=at(5),
        version=3,
        etag="0x8DEF",
    )


def usage_record(pool_id: str, interval: int, core_seconds: float = 3600.0,
                 created: float = 0) -> UsageRecord:
    """Usage of ``pool_id`` in the ``interval``-th half hour after T0's hour."""
    start = T0.replace(minute=0, second=0, microsecond=0) + timedelta(minutes=30 * interval)
    return UsageRecord(pool_id=pool_id, pool_creation_time=at(created), interval_start=start,
                       vm_size="standard_d2s_v3", core_seconds=core_seconds)


def full_job() -> JobRecord:
    return JobRecord(
        id="Job-1",
        spec=BatchJobCreateOptions.model_validate(JOB_SPEC),
        creation_time=at(0),
        seq=42,
        state="terminating",
        state_transition_time=at(1),
        previous_state="active",
        previous_state_transition_time=at(0.5),
        start_time=at(0.25),
        end_time=at(9),
        terminate_reason="UserTerminate",
        last_modified=at(2),
        counts=TaskCountsRecord(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
        next_task_seq=1000,
        job_schedule_id="Sched-1",
        version=11,
        etag="0x8D123",
    )


def full_job_schedule() -> JobScheduleRecord:
    return JobScheduleRecord(
        id="Sched-1",
        spec=BatchJobScheduleCreateOptions.model_validate(SCHEDULE_SPEC),
        creation_time=at(0),
        state="completed",
        state_transition_time=at(3),
        previous_state="terminating",
        previous_state_transition_time=at(2),
        last_modified=at(3),
        next_run_time=at(86400),
        recent_job_id="Sched-1:job-7",
        end_time=at(3),
        version=5,
        etag="0x8D555",
    )


def full_task() -> TaskRecord:
    return TaskRecord(
        job_id="Job-1",
        id="Task-1",
        spec=BatchTaskCreateOptions.model_validate(TASK_SPEC),
        creation_time=at(0),
        seq=5,
        state="completed",
        state_transition_time=at(1),
        previous_state="running",
        previous_state_transition_time=at(0.5),
        last_modified=at(1),
        start_time=at(0.5),
        end_time=at(1),
        exit_code=-3,
        result="failure",
        failure_info=FailureInfoRecord(
            "usererror", "FailureExitCode", "exit code 3", [("Code", "3"), ("Detail", "x")]
        ),
        retry_count=2,
        requeue_count=1,
        last_retry_time=at(0.7),
        last_requeue_time=at(0.6),
        node_id="TVM-0001_Node",
        pool_id="Pool-A",
        attempt=3,
        kill_requested="timeout",
        max_wall_clock_s=3600.5,
        retention_s=86400.0,
        max_task_retry_count=2,
        version=9,
        etag="0x8D999",
    )
