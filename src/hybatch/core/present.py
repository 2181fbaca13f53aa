"""Present records as wire JSON (camelCase dicts matching the spec's response models).

One function per entity. Output uses canonical enum spelling, ISO-8601 UTC dates with ``Z``
and canonical ISO durations; unset limits are rendered as Batch renders them.

Imports: standard library, core records, wire models.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from hybatch.core.records import (
    FailureInfoRecord,
    JobRecord,
    NodeRecord,
    PoolRecord,
    TaskCountsRecord,
    TaskRecord,
)

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
        "errors": [{"code": e.code, "message": e.message} for e in node.errors] or None,
        "nodeAgentInfo": {"version": NODE_AGENT_VERSION,
                          "lastUpdateTime": iso(node.creation_time)},
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
