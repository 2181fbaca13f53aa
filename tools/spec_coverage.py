"""Write docs/coverage.md: every operation of the spec, implemented / partial / unsupported.

Run ``python tools/spec_coverage.py`` after changing the route table; ``--check`` fails when
the committed file differs (the test suite runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hybatch.api.app import IMPLEMENTED
from hybatch.schema._generated.operations import API_VERSION, OPERATIONS

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "coverage.md"

PARTIAL: dict[str, str] = {
    "Pools_CreatePool": "autoscale, start task and mount configuration answer 400 "
    "UnsupportedProperty; the VM size must be one of the server's catalogue (else 400 "
    "InvalidPropertyValue, PropertyName vmSize) and picks the backend (local or Dask); a "
    "nodeAgentSKUId must be a supported image's",
    "Jobs_CreateJob": "job manager/preparation/release tasks, auto pools and task "
                      "dependencies answer 400 UnsupportedProperty",
    "Tasks_CreateTask": "resource/output files, dependencies, multi-instance, containers and "
                        "application packages answer 400 UnsupportedProperty",
    "Tasks_CreateTaskCollection": "as Tasks_CreateTask, per task",
    "Jobs_ReplaceJob": "updates priority, maxParallelTasks, allowTaskPreemption, "
                       "onAllTasksComplete, constraints, poolInfo, metadata; an "
                       "onAllTasksComplete left out keeps terminatejob (it cannot be reset)",
    "Tasks_ReplaceTask": "updates constraints only (as Azure)",
    "Pools_ListSupportedImages": "the images of the VM size catalogue (built in: Ubuntu "
    "22.04 and 24.04; see docs/dask.md)",
    "Applications_ListApplications": "no application packages: always empty",
    "Applications_GetApplication": "always ApplicationNotFound",
    "Pools_UpdatePool": "startTask, application packages and mounts answer 400 "
                        "UnsupportedProperty; fields other than startTask, metadata, packages "
                        "and certificates change only while the pool has no nodes (else 409)",
    "Pools_ReplacePoolProperties": "a startTask or application packages answer 400 "
                                   "UnsupportedProperty; certificateReferences may be omitted",
    "Pools_ListPoolUsageMetrics": "30-minute intervals; the current interval is listed as it "
                                  "accrues (no 2.5-hour delay); core hours = cores read from "
                                  "vmSize x time nodes were allocated (not deallocated)",
    "Nodes_RebootNode": "retaineddata waits for running tasks but not for retention periods; "
                        "no start task reruns (start tasks are not built)",
    "Nodes_ReimageNode": "wipes the node's directories (all but volatile/) and its users; "
                         "retaineddata as for reboot",
    "Nodes_DeallocateNode": "a local node keeps its directory while deallocated; scheduling "
                            "and usage accounting stop",
    "Nodes_CreateNodeUser": "users are recorded on the node; no OS account is created and "
                            "passwords are not stored",
    "Nodes_ReplaceNodeUser": "as Nodes_CreateNodeUser",
    "Nodes_DeleteNodeUser": "as Nodes_CreateNodeUser",
    "Nodes_GetNodeRemoteLoginSettings": "the node's address (127.0.0.1 for local nodes) and "
                                        "SSH port 22; hybatch runs no SSH server",
    "Nodes_UploadNodeLogs": "uploads the node's own lifecycle log (volatile/logs) before "
                            "answering, to a container SAS URL; identityReference answers 400 "
                            "UnsupportedProperty",
    "Nodes_ListNodeExtensions": "local nodes have no VM extensions: always empty",
    "Nodes_GetNodeExtension": "local nodes have no VM extensions: always 404 ResourceNotFound",
    "Tasks_ListTasks": "$expand=stats: see Statistics below (IOps read 0)",
    "Tasks_GetTask": "$expand=stats: see Statistics below (IOps read 0)",
    "Jobs_ListJobs": "$expand=stats: see Statistics below (IOps read 0)",
    "Jobs_GetJob": "$expand=stats: see Statistics below (IOps read 0)",
    "Pools_ListPools": "$expand=stats: see Statistics below (memory, disk space, IOps and "
                       "network read 0)",
    "Pools_GetPool": "$expand=stats: see Statistics below (memory, disk space, IOps and "
                     "network read 0)",
    "Jobs_ListJobPreparationAndReleaseTaskStatus": "jobs cannot have preparation/release "
                                                   "tasks yet, so every job answers 409 "
                                                   "JobPreparationTaskNotSpecified",
    "Tasks_ListSubTasks": "tasks cannot be multi-instance yet: always an empty list",
    "JobSchedules_CreateJobSchedule": "stored and validated; no job is created on the schedule "
                                      "yet (the timer is not built); jobSpecification refuses "
                                      "what Jobs_CreateJob refuses (400 UnsupportedProperty)",
    "JobSchedules_GetJobSchedule": "executionInfo.nextRunTime is when the first job is due "
                                   "(doNotRunUntil, or creation/last schedule change); "
                                   "$expand=stats not built",
    "JobSchedules_ListJobSchedules": "as JobSchedules_GetJobSchedule; $expand is ignored",
    "Jobs_ListJobsFromSchedule": "empty until jobs are created on the schedule; $expand is "
                                 "ignored",
}

RETIRED: dict[str, str] = {
    # The certificate feature was retired by Azure Batch on 2024-02-29; the service answers
    # every certificate operation with this error, and so do we.
    op: "400 CertificateRetired, as Azure Batch since the feature's retirement (2024-02-29)"
    for op in (
        "Certificates_ListCertificates",
        "Certificates_CreateCertificate",
        "Certificates_GetCertificate",
        "Certificates_DeleteCertificate",
        "Certificates_CancelCertificateDeletion",
    )
}

NOTES: tuple[str, ...] = (
    "## Statistics (`$expand=stats`)",
    "",
    "Jobs, tasks and pools carry `stats` only when asked (`$expand=stats`, or `stats` in "
    "`$select`); any other `$expand` value is 400 `InvalidQueryParameterValue`. Values are "
    "computed when read (`lastUpdateTime` is the time of the request), not rolled up "
    "every 30 minutes as on Azure.",
    "",
    "- Measured exactly: `wallClockTime` (node start to end of every attempt, retries and "
    "requeues included; running attempts up to `lastUpdateTime`), `waitTime` (task creation "
    "to the start of its most recent attempt; a job sums its tasks', although Azure reports "
    "it for accounts only), `numSucceededTasks`, `numFailedTasks` and `numTaskRetries` "
    "(lifetime counts: a task reactivated and run again counts again).",
    "- Measured from the process: `userCPUTime`, `kernelCPUTime`, `readIOGiB` and "
    "`writeIOGiB` come from the rusage of the attempt's process tree when the node reaps it "
    "(`wait4`; bytes are storage reads/writes, `ru_inblock`/`ru_oublock` x 512, so page-cache "
    "hits and tmpfs writes do not count). They grow when attempts end, not while they run; "
    "attempts whose exit was never recorded (a lost node, a restart with no exit record) "
    "add none.",
    "- Not measured, reported as 0: `readIOps`, `writeIOps` (Linux exposes bytes, not "
    "operations, per process); for pools `avgMemoryGiB`, `peakMemoryGiB`, `avgDiskGiB`, "
    "`peakDiskGiB`, `diskReadIOps`, `diskWriteIOps`, `networkReadGiB`, `networkWriteGiB`.",
    "- Pools: `dedicatedCoreTime` counts a node's task slots as its cores, from the node's "
    "allocation to its release; `avgCPUPercentage` is the task processes' CPU time over the "
    "pool's core time (all nodes), capped at 100; `diskReadGiB`/`diskWriteGiB` sum the task "
    "processes' bytes. A pool's process-measured figures are saved once a second (not with "
    "every task exit), so they may trail the tasks' by up to a second.",
    "",
)


def render() -> str:
    lines = [
        "# Operation coverage",
        "",
        f"Every operation of the Azure Batch data-plane spec (api-version {API_VERSION}, "
        f"{len(OPERATIONS)} operations), generated by `tools/spec_coverage.py` from the route "
        "table. An unsupported operation answers HTTP 501 with a Batch error body "
        "`{\"code\": \"NotImplemented\", \"message\": {\"lang\": \"en-US\", \"value\": "
        "\"The operation <id> is not supported by this hybatch server ...\"}}`. A retired "
        "operation answers as Azure Batch does since its retirement.",
        "",
        "| operation | method | path | status | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    counts = {"implemented": 0, "partial": 0, "retired": 0, "unsupported": 0}
    for op in OPERATIONS:
        if op.operation_id not in IMPLEMENTED:
            status, note = "unsupported", "501 NotImplemented"
        elif op.operation_id in RETIRED:
            status, note = "retired", RETIRED[op.operation_id]
        elif op.operation_id in PARTIAL:
            status, note = "partial", PARTIAL[op.operation_id]
        else:
            status, note = "implemented", ""
        counts[status] += 1
        lines.append(f"| {op.operation_id} | {op.method} | `{op.path}` | {status} | {note} |")
    lines += ["", "Totals: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".", ""]
    lines += NOTES
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python tools/spec_coverage.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
