"""Present records as wire JSON (camelCase dicts matching the spec's response models).

One function per entity. Output uses canonical enum spelling, ISO-8601 UTC dates with ``Z``
and canonical ISO durations; unset limits are rendered as Batch renders them.

Imports: standard library, core records, wire models.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from hybatch.core.job_specs import DEFAULT_PREPARATION_TASK_ID, DEFAULT_RELEASE_TASK_ID
from hybatch.core.records import (
    FailureInfoRecord,
    JobNodeRecord,
    JobRecord,
    NodeRecord,
    PoolRecord,
    PrepReleaseRunRecord,
    TaskCountsRecord,
    TaskRecord,
    TaskStatsRecord,
)
from hybatch.core.stats import running_wall_clock_s

Wire = dict[str, object]

UNLIMITED = "P10675199DT2H48M5.4775807S"
"""How Batch renders an unset time limit (.NET TimeSpan.MaxValue)."""
NODE_AGENT_VERSION = "hybatch-0.1.0"


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(seconds: float | None) -> str:
    """Canonical ISO-8601 duration (``PT1H``, ``P7D``, ``PT1M30.5S``); None -> unlimited."""
    if seconds is None:
        return UNLIMITED
    total = round(seconds, 6)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P"
    if days:
        out += f"{int(days)}D"
    time = ""
    if hours:
        time += f"{int(hours)}H"
    if minutes:
        time += f"{int(minutes)}M"
    if secs:
        time += f"{secs:g}S" if secs != int(secs) else f"{int(secs)}S"
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"


def _clean(d: Wire) -> Wire:
    return {k: v for k, v in d.items() if v is not None}


def _failure(info: FailureInfoRecord | None) -> Wire | None:
    if info is None:
        return None
    out: Wire = {"category": info.category, "code": info.code, "message": info.message}
    if info.details:
        out["details"] = [{"name": n, "value": v} for n, v in info.details]
    return out


def seg(value: str) -> str:
    return quote(value, safe="")


# ------------------------------------------------------------------ pools and nodes


def present_pool(pool: PoolRecord, nodes: list[NodeRecord], base_url: str) -> Wire:
    out: Wire = pool.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    out.setdefault("enableInterNodeCommunication", False)  # always present on Azure
    current = [n for n in nodes if not n.removing]
    out.update(_clean({
        "url": f"{base_url}/pools/{seg(pool.id)}",
        "eTag": pool.etag,
        "lastModified": iso(pool.last_modified),
        "creationTime": iso(pool.creation_time),
        "state": pool.state,
        "stateTransitionTime": iso(pool.state_transition_time),
        "allocationState": pool.allocation_state,
        "allocationStateTransitionTime": iso(pool.allocation_state_transition_time),
        "resizeTimeout": duration(pool.resize_timeout_s),
        "currentDedicatedNodes": sum(1 for n in current if n.is_dedicated),
        "currentLowPriorityNodes": sum(1 for n in current if not n.is_dedicated),
        "targetDedicatedNodes": pool.target_dedicated_nodes,
        "targetLowPriorityNodes": pool.target_low_priority_nodes,
        "enableAutoScale": False,
        "taskSlotsPerNode": pool.task_slots_per_node,
        "taskSchedulingPolicy": {"nodeFillType": pool.node_fill_type},
        "resizeErrors": [{"code": e.code, "message": e.message} for e in pool.resize_errors]
        if pool.resize_errors and pool.allocation_state == "steady" else None,
    }))
    return out


def present_node(node: NodeRecord, pool: PoolRecord | None, base_url: str) -> Wire:
    return _clean({
        "id": node.id,
        "url": f"{base_url}/pools/{seg(node.pool_id)}/nodes/{seg(node.id)}",
        "state": node.state,
        "schedulingState": node.scheduling_state,
        "stateTransitionTime": iso(node.state_transition_time),
        "lastBootTime": iso(node.last_boot_time),
        "allocationTime": iso(node.allocation_time),
        "ipAddress": node.ip_address,
        "affinityId": f"TVM:{node.id}",
        "vmSize": pool.spec.vm_size if pool is not None else None,
        "totalTasksRun": node.total_tasks_run,
        "runningTasksCount": node.running_tasks,
        "runningTaskSlotsCount": node.running_task_slots,
        "totalTasksSucceeded": node.total_tasks_succeeded,
        "isDedicated": node.is_dedicated,
        "startTask": node.start_task.model_dump(mode="json", by_alias=True, exclude_none=True)
        if node.start_task is not None else None,
        "startTaskInfo": _start_task_info(node.start_task_info),
        "errors": [{"code": e.code, "message": e.message} for e in node.errors] or None,
        "nodeAgentInfo": {"version": NODE_AGENT_VERSION,
                          "lastUpdateTime": iso(node.creation_time)},
    })


def _start_task_info(run: PrepReleaseRunRecord | None) -> Wire | None:
    """BatchStartTaskInfo of a node's latest start task run."""
    if run is None:
        return None
    return _clean({
        "state": run.state,
        "startTime": iso(run.start_time),
        "endTime": iso(run.end_time),
        "exitCode": run.exit_code,
        "failureInfo": _failure(run.failure_info),
        "retryCount": run.retry_count,
        "lastRetryTime": iso(run.last_retry_time),
        "result": run.result,
    })


def present_node_counts(pool: PoolRecord, nodes: list[NodeRecord]) -> Wire:
    """One BatchPoolNodeCounts entry (dedicated and low-priority state histograms)."""
    names = ("creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running",
             "starting", "startTaskFailed", "leavingPool", "unknown", "unusable",
             "waitingForStartTask", "deallocated", "deallocating", "upgradingOS")

    def histogram(dedicated: bool) -> Wire:
        counts: dict[str, int] = dict.fromkeys(names, 0)
        for node in nodes:
            if node.is_dedicated == dedicated:
                for name in names:
                    if name.lower() == node.state:
                        counts[name] += 1
        out: Wire = dict(counts)
        out["total"] = sum(counts.values())
        return out

    return {"poolId": pool.id, "dedicated": histogram(True), "lowPriority": histogram(False)}


# ------------------------------------------------------------------ jobs and tasks


def present_job(job: JobRecord, base_url: str) -> Wire:
    out: Wire = job.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    constraints = out.get("constraints")
    c: dict[str, object] = dict(constraints) if isinstance(constraints, dict) else {}
    c.setdefault("maxWallClockTime", UNLIMITED)
    c.setdefault("maxTaskRetryCount", 0)
    out.update(_clean({
        "url": f"{base_url}/jobs/{seg(job.id)}",
        "eTag": job.etag,
        "lastModified": iso(job.last_modified),
        "creationTime": iso(job.creation_time),
        "state": job.state,
        "stateTransitionTime": iso(job.state_transition_time),
        "previousState": job.previous_state,
        "previousStateTransitionTime": iso(job.previous_state_transition_time),
        "priority": job.priority,
        "maxParallelTasks": job.spec.max_parallel_tasks
        if job.spec.max_parallel_tasks is not None else -1,
        "allowTaskPreemption": bool(job.spec.allow_task_preemption),
        "constraints": c,
        "usesTaskDependencies": bool(job.spec.uses_task_dependencies),
        "onAllTasksComplete": str(job.spec.on_all_tasks_complete or "noaction"),
        "onTaskFailure": str(job.spec.on_task_failure or "noaction"),
        "executionInfo": _clean({
            "startTime": iso(job.start_time or job.creation_time),
            "endTime": iso(job.end_time),
            "poolId": job.pool_id or None,
            "terminateReason": job.terminate_reason,
        }),
    }))
    return out


def _default_task_user() -> Wire:
    """Who a task runs as when it names no one (the spec: "a non-administrative user unique
    to the Task"); Azure shows it on every task."""
    return {"autoUser": {"scope": "task", "elevationLevel": "nonadmin"}}


def present_task(task: TaskRecord, base_url: str, node_root_url: str | None = None) -> Wire:
    out: Wire = task.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    out.setdefault("userIdentity", _default_task_user())
    out.update(_clean({
        "url": f"{base_url}/jobs/{seg(task.job_id)}/tasks/{seg(task.id)}",
        "eTag": task.etag,
        "lastModified": iso(task.last_modified),
        "creationTime": iso(task.creation_time),
        "state": task.state,
        "stateTransitionTime": iso(task.state_transition_time),
        "previousState": task.previous_state,
        "previousStateTransitionTime": iso(task.previous_state_transition_time),
        "requiredSlots": task.required_slots,
        "constraints": {
            "maxWallClockTime": duration(task.max_wall_clock_s),
            "retentionTime": duration(task.retention_s),
            "maxTaskRetryCount": task.max_task_retry_count,
        },
        "executionInfo": _clean({
            "startTime": iso(task.start_time),
            "endTime": iso(task.end_time),
            "exitCode": task.exit_code,
            "result": task.result,
            "failureInfo": _failure(task.failure_info),
            "retryCount": task.retry_count,
            "requeueCount": task.requeue_count,
            "lastRetryTime": iso(task.last_retry_time),
            "lastRequeueTime": iso(task.last_requeue_time),
        }),
    }))
    if task.node_id is not None and task.pool_id is not None and task.state != "active":
        node_url = f"{base_url}/pools/{seg(task.pool_id)}/nodes/{seg(task.node_id)}"
        task_dir = f"workitems/{task.job_id}/job-1/{task.id}"
        out["nodeInfo"] = {
            "affinityId": f"TVM:{task.node_id}",
            "nodeUrl": node_url,
            "poolId": task.pool_id,
            "nodeId": task.node_id,
            "taskRootDirectory": task_dir,
            "taskRootDirectoryUrl": f"{node_url}/files/{seg(task_dir)}",
        }
    return out


def present_task_counts(counts: TaskCountsRecord) -> Wire:
    return {
        "taskCounts": {"active": counts.active, "running": counts.running,
                       "completed": counts.completed, "succeeded": counts.succeeded,
                       "failed": counts.failed},
        "taskSlotCounts": {"active": counts.active_slots, "running": counts.running_slots,
                           "completed": counts.completed_slots,
                           "succeeded": counts.succeeded_slots, "failed": counts.failed_slots},
    }


# ------------------------------------------------------------------ node extras and usage

REMOTE_LOGIN_PORT = 22
"""Local nodes are processes on the server's host: remote login is SSH to that host."""


def present_remote_login(node: NodeRecord) -> Wire:
    """BatchNodeRemoteLoginSettings of a node: its address and the SSH port."""
    return {"remoteLoginIPAddress": node.ip_address, "remoteLoginPort": REMOTE_LOGIN_PORT}


def present_usage(pool_id: str, interval_start: datetime, interval_end: datetime,
                  vm_size: str, core_seconds: float) -> Wire:
    """One BatchPoolUsageMetrics entry."""
    return {"poolId": pool_id, "startTime": iso(interval_start), "endTime": iso(interval_end),
            "vmSize": vm_size, "totalCoreHours": round(core_seconds / 3600.0, 6)}
# ------------------------------------------------------------------ statistics ($expand=stats)

GIB = float(1 << 30)


def _int64(value: int) -> str:
    """int64 counters are strings on the wire (the spec's ``format: int64`` strings)."""
    return str(int(value))


def present_job_stats(job: JobRecord, base_url: str, now: datetime) -> Wire:
    """BatchJobStatistics from the job's lifetime totals (see core.stats for what is measured;
    disk operation counts are not, and read as 0)."""
    totals = job.stats
    wall = totals.wall_clock_s + running_wall_clock_s(totals, job.creation_time, now)
    return {
        "url": f"{base_url}/jobs/{seg(job.id)}/stats",
        "startTime": iso(job.creation_time),
        "lastUpdateTime": iso(now),
        "userCPUTime": duration(totals.user_cpu_s),
        "kernelCPUTime": duration(totals.kernel_cpu_s),
        "wallClockTime": duration(wall),
        "readIOps": _int64(0),
        "writeIOps": _int64(0),
        "readIOGiB": totals.read_bytes / GIB,
        "writeIOGiB": totals.write_bytes / GIB,
        "numSucceededTasks": _int64(totals.succeeded),
        "numFailedTasks": _int64(totals.failed),
        "numTaskRetries": _int64(totals.retries),
        "waitTime": duration(totals.wait_s),
    }


def present_task_stats(task: TaskRecord, base_url: str, now: datetime) -> Wire:
    """BatchTaskStatistics over every attempt of the task (a running one up to ``now``)."""
    totals = task.stats or TaskStatsRecord()
    wall = totals.wall_clock_s
    if task.state in ("running", "preparing") and task.start_time is not None:
        wall += max((now - task.start_time).total_seconds(), 0.0)
    return {
        "url": f"{base_url}/jobs/{seg(task.job_id)}/tasks/{seg(task.id)}/stats",
        "startTime": iso(task.creation_time),
        "lastUpdateTime": iso(now),
        "userCPUTime": duration(totals.user_cpu_s),
        "kernelCPUTime": duration(totals.kernel_cpu_s),
        "wallClockTime": duration(wall),
        "readIOps": _int64(0),
        "writeIOps": _int64(0),
        "readIOGiB": totals.read_bytes / GIB,
        "writeIOGiB": totals.write_bytes / GIB,
        "waitTime": duration(totals.wait_s),
    }


def present_pool_stats(pool: PoolRecord, nodes: list[NodeRecord], base_url: str,
                       now: datetime) -> Wire:
    """BatchPoolStatistics: core time (a node's cores are its task slots, counted from its
    allocation), CPU percentage and disk bytes of the pool's task processes. Memory, disk
    space, disk operation counts and network are not measured and read as 0."""
    totals = pool.stats
    core_s = totals.departed_core_s
    dedicated_s = totals.departed_dedicated_core_s
    for node in nodes:
        since = node.allocation_time or node.creation_time
        node_s = node.slots * max((now - since).total_seconds(), 0.0)
        core_s += node_s
        if node.is_dedicated:
            dedicated_s += node_s
    cpu_s = totals.user_cpu_s + totals.kernel_cpu_s
    cpu_percent = min(100.0, 100.0 * cpu_s / core_s) if core_s > 0 else 0.0
    start, updated = iso(pool.creation_time), iso(now)
    return {
        "url": f"{base_url}/pools/{seg(pool.id)}/stats",
        "startTime": start,
        "lastUpdateTime": updated,
        "usageStats": {"startTime": start, "lastUpdateTime": updated,
                       "dedicatedCoreTime": duration(dedicated_s)},
        "resourceStats": {
            "startTime": start, "lastUpdateTime": updated,
            "avgCPUPercentage": cpu_percent,
            "avgMemoryGiB": 0.0, "peakMemoryGiB": 0.0,
            "avgDiskGiB": 0.0, "peakDiskGiB": 0.0,
            "diskReadIOps": _int64(0), "diskWriteIOps": _int64(0),
            "diskReadGiB": totals.read_bytes / GIB, "diskWriteGiB": totals.write_bytes / GIB,
            "networkReadGiB": 0.0, "networkWriteGiB": 0.0,
        },
    }


# ------------------------------------------------------------------ prep/release, subtasks



def _prep_release_run(run: PrepReleaseRunRecord, node_url: str, job_id: str, task_id: str,
                      retries: bool) -> Wire:
    task_dir = f"workitems/{job_id}/job-1/{task_id}"
    out = _clean({
        "startTime": iso(run.start_time),
        "endTime": iso(run.end_time),
        "state": run.state,
        "taskRootDirectory": task_dir,
        "taskRootDirectoryUrl": f"{node_url}/files/{seg(task_dir)}",
        "exitCode": run.exit_code,
        "failureInfo": _failure(run.failure_info),
        "result": run.result,
    })
    if retries:
        out["retryCount"] = run.retry_count
        if run.last_retry_time is not None:
            out["lastRetryTime"] = iso(run.last_retry_time)
    return out


def present_job_node(job: JobRecord, entry: JobNodeRecord, base_url: str) -> Wire:
    """One BatchJobPreparationAndReleaseTaskStatus: a node's preparation/release runs."""
    node_url = f"{base_url}/pools/{seg(entry.pool_id)}/nodes/{seg(entry.node_id)}"
    out: Wire = {"poolId": entry.pool_id, "nodeId": entry.node_id, "nodeUrl": node_url}
    prep, release = job.spec.job_preparation_task, job.spec.job_release_task
    if entry.preparation is not None:
        out["jobPreparationTaskExecutionInfo"] = _prep_release_run(
            entry.preparation, node_url, job.id,
            (prep.id if prep is not None else None) or DEFAULT_PREPARATION_TASK_ID, True)
    if entry.release is not None:
        out["jobReleaseTaskExecutionInfo"] = _prep_release_run(
            entry.release, node_url, job.id,
            (release.id if release is not None else None) or DEFAULT_RELEASE_TASK_ID, False)
    return out


_SUBTASK_STATES = {"offered": "preparing", "running": "running", "coordinated": "running",
                   "exited": "running", "completed": "completed"}


def present_subtasks(task: TaskRecord, base_url: str = "") -> list[Wire]:
    """BatchSubtask entries: instances 1..N-1 of a multi-instance task's current (or last)
    attempt (the primary is the task itself). Other tasks have none: an empty list, as
    Batch answers."""
    out: list[Wire] = []
    for instance in (task.instances or [])[1:]:
        node_url = f"{base_url}/pools/{seg(instance.pool_id)}/nodes/{seg(instance.node_id)}"
        task_dir = f"workitems/{task.job_id}/job-1/{task.id}"
        previous = instance.previous_state
        out.append(_clean({
            "id": instance.id,
            "nodeInfo": {
                "affinityId": f"TVM:{instance.node_id}", "nodeUrl": node_url,
                "poolId": instance.pool_id, "nodeId": instance.node_id,
                "taskRootDirectory": task_dir,
                "taskRootDirectoryUrl": f"{node_url}/files/{seg(task_dir)}",
            },
            "startTime": iso(instance.start_time),
            "endTime": iso(instance.end_time) if instance.state == "completed" else None,
            "exitCode": instance.exit_code if instance.state != "offered" else None,
            "failureInfo": _failure(instance.failure_info),
            "state": _SUBTASK_STATES[instance.state],
            "stateTransitionTime": iso(instance.state_transition_time),
            "previousState": _SUBTASK_STATES[previous] if previous else None,
            "previousStateTransitionTime": iso(instance.previous_state_transition_time),
            "result": instance.result if instance.state == "completed" else None,
        }))
    return out
