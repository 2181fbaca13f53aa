"""Write docs/coverage.md: every operation of the spec, implemented / partial / unsupported.

Run ``python tools/spec_coverage.py`` after changing the route table; ``--check`` fails when
the committed file differs (the test suite runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hybatch.api.app import IMPLEMENTED, RETIRED
from hybatch.api.errors import status_for
from hybatch.schema._generated.operations import API_VERSION, OPERATIONS

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "coverage.md"

PARTIAL: dict[str, str] = {
    "Pools_CreatePool": "autoscale and mount configuration answer 400 UnsupportedProperty; "
                        "the VM size must be one of the server's catalogue (else 400 "
                        "InvalidPropertyValue, PropertyName vmSize) and picks the backend "
                        "(local or Dask); a nodeAgentSKUId must be a supported image's; a "
                        "start task's resource files or container answer 400 "
                        "UnsupportedProperty (see Node and job tasks below)",
    "Jobs_CreateJob": "auto pools answer 400 UnsupportedProperty; job "
                      "manager/preparation/release tasks run (see Node and job tasks below), "
                      "their resource files, output files, containers and application "
                      "packages answer 400 UnsupportedProperty; task dependencies and "
                      "onTaskFailure: see Task dependencies below",
    "Tasks_CreateTask": "resource/output files, containers and application packages answer "
                        "400 UnsupportedProperty; dependsOn and exitConditions: see Task "
                        "dependencies below (fileUploadError is accepted but never applies: "
                        "there are no output files); multi-instance tasks run "
                        "(docs/adr/0009): commonResourceFiles take httpUrl (http/https) only; "
                        "userIdentity: auto-users only (see docs/nodes.md), a username answers "
                        "400 UnsupportedProperty",
    "Tasks_CreateTaskCollection": "as Tasks_CreateTask, per task",
    "Jobs_ReplaceJob": "updates priority, maxParallelTasks, allowTaskPreemption, "
                       "onAllTasksComplete, constraints, poolInfo, metadata; an "
                       "onAllTasksComplete left out keeps terminatejob (it cannot be reset)",
    "Tasks_ReplaceTask": "updates constraints only (as Azure)",
    "Pools_ListSupportedImages": "the images of the VM size catalogue (built in: Ubuntu "
    "22.04 and 24.04; see docs/dask.md)",
    "Applications_ListApplications": "no application packages: always empty",
    "Applications_GetApplication": "always ApplicationNotFound",
    "Pools_UpdatePool": "application packages and mounts answer 400 UnsupportedProperty; a "
                        "new startTask runs on nodes as they join, reboot or are reimaged; "
                        "fields other than startTask, metadata, packages and certificates "
                        "change only while the pool has no nodes (else 409)",
    "Pools_ReplacePoolProperties": "application packages answer 400 UnsupportedProperty; "
                                   "certificateReferences may be omitted",
    "Pools_ListPoolUsageMetrics": "30-minute intervals; the current interval is listed as it "
                                  "accrues (no 2.5-hour delay); core hours = cores read from "
                                  "vmSize x time nodes were allocated (not deallocated)",
    "Nodes_RebootNode": "retaineddata waits for running tasks but not for retention periods; "
                        "the start task runs again, job preparation tasks as their "
                        "rerunOnNodeRebootAfterSuccess says",
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
    "Jobs_ListJobPreparationAndReleaseTaskStatus": "one entry per node where the preparation "
                                                   "task ran, kept after the node leaves; "
                                                   "containerInfo is never set",
    "Tasks_ListSubTasks": "instances 1..N-1 of the task's current or last attempt; a subtask "
                          "still offered to its node shows as preparing",
    "JobSchedules_CreateJobSchedule": "jobs are created on the schedule by the writer's "
                                      "once-a-second tick (at most a second late); "
                                      "jobSpecification refuses what Jobs_CreateJob refuses "
                                      "(400 UnsupportedProperty) and validates its "
                                      "manager/preparation/release tasks as Jobs_CreateJob "
                                      "does",
    "JobSchedules_GetJobSchedule": "executionInfo.nextRunTime is the next run's due time (it "
                                   "stays in the past while that run waits for the previous "
                                   "job); $expand=stats is accepted but no stats are shown",
    "JobSchedules_ListJobSchedules": "as JobSchedules_GetJobSchedule",
    "Jobs_ListJobsFromSchedule": "$expand=stats is accepted but no stats are shown",
}

NOTES: tuple[str, ...] = (
    "## Task dependencies and exit conditions",
    "",
    "Jobs with `usesTaskDependencies`; tasks with `dependsOn.taskIds` and `taskIdRanges`; "
    "`exitConditions` (`exitCodes`, `exitCodeRanges`, `preProcessingError`, `default`) "
    "choosing `dependencyAction` and, under `onTaskFailure=performexitoptionsjobaction`, "
    "`jobAction` (`disable`: job disable with requeue; `terminate`: terminateReason "
    "`TaskFailed`). A task waits (state `active`) until every parent completed with "
    "`satisfy`; it is released in the same writer turn as its last parent's exit. Errors: "
    "`TaskDependenciesNotSpecifiedOnJob`, `TaskDependencyListTooLong` (ids over 64000 "
    "characters), `TaskDependencyRangesTooLong` (more than 100 ranges: hybatch's limit), "
    "`InvalidPropertyValue` for a self-dependency, a range bound outside 32 bits, "
    "`jobAction` on a job whose `onTaskFailure` is `noaction` and `dependencyAction` on a job "
    "without dependencies.",
    "",
    "- Parents may be added after their dependents. A range requires every integer value in "
    "it (`7` and `07` both hold 7; non-integer ids never match); values no task holds yet are "
    "waited for, so the submission order never matters (the 15.x SDK sends `create_tasks` "
    "chunks last-first). A range never waits for the task itself.",
    "- A parent completed with `block` leaves its dependents active until it is reactivated "
    "and satisfies them (Batch does not cancel them). Reactivating a parent that had "
    "satisfied makes tasks still waiting on it wait for its next completion; a reactivated "
    "dependent waits for its parents again. Deleting a parent keeps a satisfaction it gave to "
    "tasks already waiting; otherwise they wait for a task of that id.",
    "- Terminated tasks (and tasks of a terminated job) block their dependents and take no "
    "job action.",
    "- hybatch extension: job metadata `hybatch.failBlockedDependents` = `true` fails every "
    "task waiting under a parent that blocked (when it blocks, when the task is added, or "
    "when the metadata is set later), recursively, with failureInfo category `usererror`, "
    "code `DependencyFailed`, detail `ParentTaskId`.",
    "",
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
    "## Node and job tasks",
    "",
    "Pool start tasks, job preparation and release tasks and job manager tasks run as Azure "
    "Batch runs them (docs/node-tasks.md): node states `waitingforstarttask` and "
    "`starttaskfailed`, `startTaskInfo`, tasks in `preparing`, release tasks holding a job in "
    "`terminating`/`deleting`, `killJobOnCompletion`, `runExclusive`, "
    "`allowLowPriorityNode`. `authenticationTokenSettings` gives the task "
    "`AZ_BATCH_AUTHENTICATION_TOKEN`, accepted as `Authorization: Bearer` for its own job "
    "(docs/authentication.md). Every process runs as the service's user (`userIdentity` is "
    "recorded only); resource files, output files, containers and application packages of "
    "these tasks answer 400 UnsupportedProperty.",
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
            refusal = RETIRED[op.operation_id]()
            status, note = "retired", (f"{status_for(refusal.code)} {refusal.code}, as Azure "
                                       f"Batch answers: {refusal.message}")
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
