"""Data for replaying the spec's request/response examples: what state each example needs,
the minimal request of every operation that takes conditional headers, the examples to use
when the spec's are not beside the repository, and the known differences between an
example's answer and ours.

Everything here is keyed by operation id or example name, so an operation built later slots
in by being implemented (the tests read the route table) and, at most, by a row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    """A request sent once the resources exist (``{name}`` in the path: the resource made for
    that parameter, as in ``CONDITIONAL_BODIES``), to bring one into the state an example
    needs."""

    method: str
    path: str
    body: dict[str, Any] | None = None


DISABLE_JOB = Step("POST", "/jobs/{jobId}/disable", {"disableTasks": "requeue"})


@dataclass(frozen=True)
class Needs:
    """State an example needs beyond what its path parameters imply.

    Path parameters imply: ``poolId`` a pool (with ``nodes`` nodes), ``nodeId`` a pool with a
    node, ``jobId`` a job, ``taskId`` a task in it (run to completion when ``run_task``),
    ``filePath`` a completed task that wrote the file, ``jobScheduleId`` a job schedule,
    ``userName`` a user on the node.
    """

    nodes: int = 0
    """Nodes in the pool; node ids in the request body are mapped onto them in order."""
    run_task: bool = False
    """The task runs to completion on a node (its job is on a pool with a node)."""
    task_command: str = "/bin/sh -c 'echo replayed > testFile.txt'"
    pool: bool = False
    """A pool even though no path parameter names one (list examples)."""
    job: bool = False
    tasks: tuple[str, ...] = ()
    """Ids of extra tasks (list examples compare their items with ours by id)."""
    job_extra: dict[str, Any] = field(default_factory=dict)
    """More properties for the job."""
    schedule: bool = False
    """A job schedule even though no path parameter names one (list examples)."""
    then: tuple[Step, ...] = ()
    """Requests sent after the resources are made, in order."""
    blob_container: bool = False
    """The body's ``containerUrl`` is replaced by a writable SAS URL of a new container in a
    real blob service (Azurite): the example's own storage account cannot be reached."""


NEEDS: dict[str, Needs] = {
    "Pools_ListPools": Needs(pool=True),
    "Pools_RemoveNodes": Needs(nodes=2),
    "Nodes_ListNodes": Needs(nodes=1),
    "Tasks_ListTasks": Needs(job=True, tasks=("task1", "task2")),
    "Tasks_GetTaskFile": Needs(run_task=True),
    "Tasks_GetTaskFileProperties": Needs(run_task=True),
    "Tasks_DeleteTaskFile": Needs(run_task=True),
    "Tasks_ListTaskFiles": Needs(run_task=True),
    "Nodes_GetNodeFile": Needs(run_task=True),
    "Nodes_GetNodeFileProperties": Needs(run_task=True),
    # the example moves the job to another pool, which Batch allows only while it is disabled
    "Jobs_UpdateJob": Needs(then=(DISABLE_JOB,)),
    "Jobs_EnableJob": Needs(then=(DISABLE_JOB,)),
    # disabled and enabled again, as the example's first item (previousState "disabled")
    "JobSchedules_ListJobSchedules": Needs(schedule=True, then=(
        Step("POST", "/jobschedules/{jobScheduleId}/disable"),
        Step("POST", "/jobschedules/{jobScheduleId}/enable"))),
    "Nodes_UploadNodeLogs": Needs(blob_container=True),
    "Jobs_ListJobPreparationAndReleaseTaskStatus": Needs(
        nodes=1, run_task=True, tasks=("prepared",), job_extra={
            "jobPreparationTask": {"commandLine": "/bin/true"},
            "jobReleaseTask": {"commandLine": "/bin/true"}}),
    "Tasks_ReactivateTask": Needs(run_task=True, task_command="/bin/sh -c 'exit 3'"),
}
"""Operation id -> extra needs. Operations not listed need only their path parameters."""


@dataclass(frozen=True)
class Gap:
    """A known difference between an example's answer and ours, with the reason.

    ``refusal`` (status, Batch code): we answer this error instead of the example's success;
    the test accepts exactly that error or the full example outcome, so implementing the
    feature never breaks it. ``missing``: dotted paths of the example's body our answer may
    lack (``value.*`` for list items).
    """

    reason: str
    refusal: tuple[int, str] | None = None
    missing: frozenset[str] = frozenset()


GAPS: dict[str, Gap] = {
    "Pools_CreatePool_AcceleratedNetworking": Gap(
        "Standard_D1_v2 is not in the default VM size catalogue (checked first; "
        "networkConfiguration is not supported either)",
        refusal=(400, "InvalidPropertyValue")),
    "Pools_CreatePool_ResourceTags": Gap(
        "STANDARD_DC2s_V2 is not in the default VM size catalogue (docs/dask.md: a catalogue "
        "file adds sizes)", refusal=(400, "InvalidPropertyValue")),
    "Pools_CreatePool_VirtualMachineConfiguration": Gap(
        "nodeAgentSKUId 'batch.node.ubuntu 20.04' is not among the catalogue's supported images",
        refusal=(400, "InvalidPropertyValue")),
    "Tasks_CreateTask_ContainerSettings": Gap(
        "container tasks are not supported", refusal=(400, "UnsupportedProperty")),
    "Tasks_CreateTask_ContainerSettingsWithDataIsolation_DuplicateSources": Gap(
        "container tasks are not supported", refusal=(400, "UnsupportedProperty")),
    "Pools_GetPool_Basic": Gap("the replayed pool has no start task",
                               missing=frozenset({"startTask"})),
    "Pools_GetPool_SecurityProfile": Gap(
        "pools have no security profile or node communication mode",
        missing=frozenset({"virtualMachineConfiguration.securityProfile",
                           "currentNodeCommunicationMode"})),
    "Pools_ListPools_Basic": Gap("the replayed pools have no start task",
                                 missing=frozenset({"value.*.startTask"})),
    "Nodes_GetNode": Gap("the replayed pool has no start task",
                         missing=frozenset({"startTask", "startTaskInfo"})),
    "Nodes_ListNodes": Gap("the replayed pool has no start task",
                           missing=frozenset({"value.*.startTask", "value.*.startTaskInfo"})),
    "Jobs_ListJobPreparationAndReleaseTaskStatus": Gap(
        "the replayed job is still active: its release task runs when it ends",
        missing=frozenset({"value.*.jobReleaseTaskExecutionInfo"})),
    "Tasks_GetTask": Gap("multi-instance tasks are not supported",
                         missing=frozenset({"multiInstanceSettings"})),
    "Applications_ListApplications": Gap("no application packages: the list is empty",
                                         missing=frozenset({"value.*"})),
    "JobSchedules_ListJobSchedules": Gap(
        "no job is created on a schedule yet (the timer is not built)",
        missing=frozenset({"value.*.executionInfo.recentJob"})),
    "Nodes_ListNodeExtensions": Gap("local nodes have no VM extensions: the list is empty",
                                    missing=frozenset({"value.*"})),
}
"""Example name (file stem) -> known gap."""


CONDITIONAL_BODIES: dict[str, dict[str, Any]] = {
    "Jobs_ReplaceJob": {"poolInfo": {"poolId": "{jobPoolId}"}},
    "Jobs_UpdateJob": {"priority": 1},
    "Jobs_DisableJob": {"disableTasks": "requeue"},
    "Jobs_TerminateJob": {"terminateReason": "replay"},
    "Tasks_ReplaceTask": {"constraints": {"maxTaskRetryCount": 1}},
    "JobSchedules_ReplaceJobSchedule": {
        "schedule": {"recurrenceInterval": "PT1H", "doNotRunUntil": "2099-01-01T00:00:00Z"},
        "jobSpecification": {"poolInfo": {"poolId": "{poolId}"}}},
    "JobSchedules_UpdateJobSchedule": {"metadata": [{"name": "k", "value": "v"}]},
    "Pools_UpdatePool": {"metadata": [{"name": "k", "value": "v"}]},
    "Pools_EnablePoolAutoScale": {"autoScaleFormula": "$TargetDedicatedNodes=0;",
                                  "autoScaleEvaluationInterval": "PT5M"},
    "Pools_RemoveNodes": {"nodeList": ["{nodeId}"]},
    "Pools_ResizePool": {"targetDedicatedNodes": 0},
}
"""Operation id -> a minimal valid body, for every operation taking conditional headers and
a body (``{name}`` is replaced by the resource created for that path parameter,
``{jobPoolId}`` by the pool the job was created on)."""


def _example(operation_id: str, parameters: dict[str, Any],
             responses: dict[str, Any]) -> dict[str, Any]:
    base = {"batchUrl": "account.region.batch.azure.com", "api-version": "2025-06-01.21.0",
            "client-request-id": "00000000-0000-0000-0000-000000000000",
            "ocp-date": "Fri, 17 Feb 2017 00:00:00 GMT"}
    return {"operationId": operation_id, "parameters": {**base, **parameters},
            "responses": responses}


BUILTIN_EXAMPLES: dict[str, dict[str, Any]] = {
    "Pools_GetPool_Basic": _example("Pools_GetPool", {"poolId": "pool"}, {"200": {"body": {
        "id": "pool", "url": "https://account.region.batch.azure.com/pools/pool",
        "eTag": "0x8D413091E739A56", "lastModified": "2016-11-22T18:55:25.2608598Z",
        "creationTime": "2016-11-22T18:55:24.2632496Z", "state": "active",
        "stateTransitionTime": "2016-11-22T18:55:24.2632496Z", "allocationState": "steady",
        "allocationStateTransitionTime": "2016-11-22T18:55:24.8154041Z",
        "vmSize": "standard_a1", "resizeTimeout": "PT15M", "currentDedicatedNodes": 0,
        "currentLowPriorityNodes": 0, "targetDedicatedNodes": 0, "targetLowPriorityNodes": 0,
        "enableAutoScale": False, "enableInterNodeCommunication": False,
        "taskSlotsPerNode": 1, "taskSchedulingPolicy": {"nodeFillType": "spread"}}}}),
    "Pools_PoolExists": _example("Pools_PoolExists", {"poolId": "poolId"},
                                 {"200": {}, "404": {}}),
    "Jobs_UpdateJob": _example("Jobs_UpdateJob", {"jobId": "jobId", "job": {
        "priority": 100, "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": -1},
        "poolInfo": {"poolId": "poolId"}}}, {"200": {}}),
    "Tasks_ReplaceTask": _example("Tasks_ReplaceTask", {
        "jobId": "jobId", "taskId": "taskId", "task": {"constraints": {
            "maxWallClockTime": "PT1H", "maxTaskRetryCount": 3, "retentionTime": "PT1H"}}},
        {"200": {}}),
    "Tasks_GetTaskFileProperties": _example("Tasks_GetTaskFileProperties", {
        "jobId": "jobId", "taskId": "taskId", "filePath": "wd\\testFile.txt"}, {"200": {
            "ocp-creation-time": "Fri, 17 Feb 2017 00:00:00 GMT",
            "Last-Modified": "Fri, 17 Feb 2017 00:00:00 GMT",
            "ocp-batch-file-isdirectory": "false", "Content-Length": "17",
            "Content-Type": "application/octet-stream"}}),
    "Tasks_ListTasks": _example("Tasks_ListTasks", {"jobId": "jobId"}, {"200": {"body": {
        "value": [{"id": "task1", "url": "https://account.region.batch.azure.com/jobs/jobId/"
                   "tasks/task1", "eTag": "0x8D4125FD1A825A4",
                   "creationTime": "2016-11-21T22:43:31.4733476Z",
                   "lastModified": "2016-11-21T22:43:31.4733476Z", "state": "active",
                   "stateTransitionTime": "2016-11-21T22:43:31.4733476Z",
                   "commandLine": "cmd /c echo task1",
                   "constraints": {"maxWallClockTime": "P10675199DT2H48M5.4775807S",
                                   "retentionTime": "P10675199DT2H48M5.4775807S",
                                   "maxTaskRetryCount": 0},
                   "executionInfo": {"retryCount": 0, "requeueCount": 0}}]}}}),
    "JobSchedules_TerminateJobSchedule": _example(
        "JobSchedules_TerminateJobSchedule", {"jobScheduleId": "jobScheduleId"}, {"202": {}}),
    "Certificates_DeleteCertificate": _example("Certificates_DeleteCertificate", {
        "thumbprintAlgorithm": "sha1",
        "thumbprint": "0123456789abcdef0123456789abcdef01234567"}, {"202": {}}),
}
"""Used when ``shared/spec/examples-*`` is absent: implemented and not-yet-implemented
operations, reads and writes, a file read and a list, so the replay never runs empty."""
