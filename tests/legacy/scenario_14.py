"""Acceptance scenario for the legacy, msrest-based Azure Batch SDK (azure-batch 14.2.0).

Run by the legacy virtualenv's python (``scripts/legacy_venv.sh``), never by the project's own:
it imports nothing but the standard library and azure-batch 14.2, exactly as an unmodified
user script would::

    .venv-legacy/bin/python tests/legacy/scenario_14.py \
        --endpoint http://127.0.0.1:8642 --account ACCOUNT --key BASE64KEY

It creates a 2-node x 2-slot pool, waits for idle nodes, creates a job and 124 tasks (passing,
failing with one retry, one printing its environment, one exceeding its wall clock), checks the
task counts, retries, exit codes, output files, AZ_BATCH_* variables, paging, $filter and
$select, a set of error responses, then deletes the job and the pool. Exit status 0 when every
check passed; otherwise 1, with the failed checks listed.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlparse

import azure.batch
import azure.batch.models as batchmodels
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials

T = TypeVar("T")

EXPECTED_SDK_VERSION = "14.2.0"
EXPECTED_API_VERSION = "2024-02-01.19.0"  # what 14.2 sends as api-version
VM_SIZE = "standard_d2s_v3"
NODES = 2
SLOTS_PER_NODE = 2

OK_TASKS = 114  # ok-0 .. ok-113: succeed, print their id on stdout and a line on stderr
FAIL_TASKS = 8  # fail-0 .. fail-7: exit 3, maxTaskRetryCount 1
ENV_TASK = "env-0"  # prints its environment
TIMEOUT_TASK = "timeout-0"  # sleep 30 under a 2 s maxWallClockTime
TOTAL_TASKS = OK_TASKS + FAIL_TASKS + 2
FAIL_EXIT_CODE = 3
WALL_CLOCK_LIMIT = timedelta(seconds=2)
TASK_SETTING = ("LEGACY_SCENARIO_SETTING", "value from a 14.2 client")

NODES_IDLE_TIMEOUT = 90.0
TIMEOUT_TASK_DEADLINE = 25.0  # `sleep 30` must have been stopped well before it could finish
TASKS_DONE_TIMEOUT = 150.0
DELETE_TIMEOUT = 60.0

OK_COMMAND = (
    '/bin/sh -c \'echo "hello from $AZ_BATCH_TASK_ID"; echo "warning from $AZ_BATCH_TASK_ID" >&2\''
)
FAIL_COMMAND = (
    '/bin/sh -c \'echo "attempt of $AZ_BATCH_TASK_ID"; echo "failing on purpose" >&2;'
    f" exit {FAIL_EXIT_CODE}'"
)
ENV_COMMAND = "/bin/sh -c 'env | sort'"
TIMEOUT_COMMAND = "/bin/sh -c 'sleep 30'"

REQUIRED_VARIABLES = (
    "AZ_BATCH_NODE_ROOT_DIR",
    "AZ_BATCH_NODE_SHARED_DIR",
    "AZ_BATCH_NODE_STARTUP_DIR",
    "AZ_BATCH_NODE_ID",
    "AZ_BATCH_POOL_ID",
    "AZ_BATCH_JOB_ID",
    "AZ_BATCH_TASK_ID",
    "AZ_BATCH_TASK_DIR",
    "AZ_BATCH_TASK_WORKING_DIR",
    "AZ_BATCH_ACCOUNT_NAME",
    "AZ_BATCH_ACCOUNT_URL",
)


class ScenarioAbort(Exception):
    """A step the rest of the scenario depends on did not happen."""


class Checks:
    """Collects the outcome of every check; failures do not stop the scenario."""

    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []

    def check(self, condition: bool, what: str, detail: object = "") -> bool:
        if condition:
            self.passed += 1
        else:
            message = f"{what}: {detail}" if detail != "" else what
            self.failures.append(message)
            log(f"FAILED: {message}")
        return condition

    def equal(self, actual: object, expected: object, what: str) -> bool:
        return self.check(actual == expected, what, f"expected {expected!r}, got {actual!r}")

    def fail(self, what: str) -> None:
        self.check(False, what)


_START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _START:6.1f}s] {message}", flush=True)


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``check`` until it returns something truthy; ScenarioAbort after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise ScenarioAbort(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


def error_of(call: Callable[[], Any]) -> batchmodels.BatchErrorException | None:
    try:
        call()
    except batchmodels.BatchErrorException as exc:
        return exc
    return None


def expect_error(
    checks: Checks,
    what: str,
    call: Callable[[], Any],
    status: int,
    code: str | None = None,
) -> None:
    """``call`` must raise BatchErrorException with this HTTP status (and error code)."""
    exc = error_of(call)
    if exc is None:
        checks.fail(f"{what}: expected BatchErrorException {status} {code or ''}, no error")
        return
    got_status = exc.response.status_code if exc.response is not None else None
    got_code = exc.error.code if exc.error is not None else None
    checks.equal(got_status, status, f"{what}: HTTP status")
    if code is not None:
        checks.equal(got_code, code, f"{what}: error code")
    message = exc.error.message.value if exc.error is not None and exc.error.message else None
    checks.check(bool(message), f"{what}: error carries a message", repr(exc.error))
    log(f"{what}: {got_status} {got_code}")


def pages(paged: Any) -> Iterator[list[Any]]:
    """The pages of an msrest ``Paged`` result, one list per HTTP response."""
    while True:
        try:
            page = paged.advance_page()
        except StopIteration:
            return
        yield list(page)


def task_ids(tasks: Iterable[Any]) -> list[str]:
    return [task.id for task in tasks]


def random_suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=8))


def read_task_file(client: BatchServiceClient, job_id: str, task_id: str, path: str) -> str:
    chunks = client.file.get_from_task(job_id, task_id, path)
    return b"".join(chunks).decode("utf-8", errors="replace")


def max_concurrency(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The largest number of [start, end) intervals that overlap at any instant."""
    events: list[tuple[datetime, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda event: (event[0], event[1]))  # an end before a start at a tie
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


class Scenario:
    def __init__(self, endpoint: str, account: str, key: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.account = account
        self.client = BatchServiceClient(
            SharedKeyCredentials(account, key), batch_url=self.endpoint
        )
        self.checks = Checks()
        suffix = random_suffix()
        self.pool_id = f"legacy-pool-{suffix}"
        self.job_id = f"legacy-job-{suffix}"
        self.pool_created = False
        self.job_created = False
        self.ok_ids = [f"ok-{i}" for i in range(OK_TASKS)]
        self.fail_ids = [f"fail-{i}" for i in range(FAIL_TASKS)]
        self.all_ids = {*self.ok_ids, *self.fail_ids, ENV_TASK, TIMEOUT_TASK}
        self.node_ids: set[str] = set()

    # -- the steps ------------------------------------------------------------------------

    def run(self) -> None:
        checks = self.checks
        checks.equal(azure.batch.__version__, EXPECTED_SDK_VERSION, "azure-batch version")
        checks.equal(self.client.api_version, EXPECTED_API_VERSION, "client api-version")
        self.create_pool()
        self.wait_for_idle_nodes()
        self.create_job()
        self.add_tasks()
        self.wait_for_timeout_task()
        self.wait_for_all_tasks()
        tasks = self.check_tasks()
        self.check_output_files()
        self.check_environment(tasks[ENV_TASK])
        self.check_paging()
        self.check_filters()
        self.check_select()
        self.check_errors()
        self.delete_job_and_pool()

    def create_pool(self) -> None:
        client = self.client
        checks = self.checks
        checks.equal(client.pool.exists(self.pool_id), False, "pool.exists before creation")
        client.pool.add(
            batchmodels.PoolAddParameter(
                id=self.pool_id,
                vm_size=VM_SIZE,
                virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
                    image_reference=batchmodels.ImageReference(
                        publisher="canonical",
                        offer="0001-com-ubuntu-server-jammy",
                        sku="22_04-lts",
                        version="latest",
                    ),
                    node_agent_sku_id="batch.node.ubuntu 22.04",
                ),
                target_dedicated_nodes=NODES,
                task_slots_per_node=SLOTS_PER_NODE,
            )
        )
        self.pool_created = True
        log(f"pool {self.pool_id} created")
        checks.equal(client.pool.exists(self.pool_id), True, "pool.exists after creation")

    def wait_for_idle_nodes(self) -> None:
        client = self.client
        checks = self.checks

        def idle_nodes() -> list[Any] | None:
            nodes = list(client.compute_node.list(self.pool_id))
            idle = [node for node in nodes if node.state == batchmodels.ComputeNodeState.idle]
            return nodes if len(nodes) == NODES and len(idle) == NODES else None

        nodes = poll(idle_nodes, NODES_IDLE_TIMEOUT, f"{NODES} idle nodes in {self.pool_id}")
        self.node_ids = {node.id for node in nodes}
        checks.equal(len(self.node_ids), NODES, "distinct node ids")
        log(f"{NODES} idle nodes: {sorted(self.node_ids)}")

        pool = client.pool.get(self.pool_id)
        checks.equal(pool.id, self.pool_id, "pool.get id")
        checks.equal(pool.state, batchmodels.PoolState.active, "pool state")
        checks.equal(pool.allocation_state, batchmodels.AllocationState.steady, "allocation state")
        checks.equal(pool.current_dedicated_nodes, NODES, "pool currentDedicatedNodes")
        checks.equal(pool.target_dedicated_nodes, NODES, "pool targetDedicatedNodes")
        checks.equal(pool.task_slots_per_node, SLOTS_PER_NODE, "pool taskSlotsPerNode")
        checks.equal((pool.vm_size or "").lower(), VM_SIZE, "pool vmSize")
        checks.check(bool(pool.e_tag), "pool has an eTag", pool.e_tag)

    def create_job(self) -> None:
        self.client.job.add(
            batchmodels.JobAddParameter(
                id=self.job_id, pool_info=batchmodels.PoolInformation(pool_id=self.pool_id)
            )
        )
        self.job_created = True
        job = self.client.job.get(self.job_id)
        self.checks.equal(job.state, batchmodels.JobState.active, "job state after creation")
        self.checks.equal(job.pool_info.pool_id, self.pool_id, "job poolInfo.poolId")
        log(f"job {self.job_id} created")

    def add_tasks(self) -> None:
        client = self.client
        checks = self.checks
        # The wall-clock task goes first, alone, so that it starts at once on a free slot.
        client.task.add(
            self.job_id,
            batchmodels.TaskAddParameter(
                id=TIMEOUT_TASK,
                command_line=TIMEOUT_COMMAND,
                constraints=batchmodels.TaskConstraints(
                    max_wall_clock_time=WALL_CLOCK_LIMIT, max_task_retry_count=0
                ),
            ),
        )
        self.timeout_added_at = time.monotonic()
        tasks = [
            batchmodels.TaskAddParameter(id=task_id, command_line=OK_COMMAND)
            for task_id in self.ok_ids
        ]
        tasks += [
            batchmodels.TaskAddParameter(
                id=task_id,
                command_line=FAIL_COMMAND,
                constraints=batchmodels.TaskConstraints(max_task_retry_count=1),
            )
            for task_id in self.fail_ids
        ]
        tasks.append(
            batchmodels.TaskAddParameter(
                id=ENV_TASK,
                command_line=ENV_COMMAND,
                environment_settings=[
                    batchmodels.EnvironmentSetting(name=TASK_SETTING[0], value=TASK_SETTING[1])
                ],
            )
        )
        # 14.2 splits this into requests of at most 100 tasks.
        result = client.task.add_collection(self.job_id, tasks)
        statuses = {entry.task_id: entry.status for entry in result.value}
        checks.equal(len(statuses), len(tasks), "add_collection result count")
        checks.equal(set(statuses), {task.id for task in tasks}, "add_collection result task ids")
        not_success = {
            task_id: status
            for task_id, status in statuses.items()
            if status != batchmodels.TaskAddStatus.success
        }
        checks.equal(not_success, {}, "add_collection statuses other than success")
        log(f"added {TIMEOUT_TASK} and {len(tasks)} tasks with add_collection")

    def wait_for_timeout_task(self) -> None:
        """``sleep 30`` under a 2 s wall clock must end long before 30 s have passed."""

        def completed() -> Any:
            task = self.client.task.get(self.job_id, TIMEOUT_TASK)
            return task if task.state == batchmodels.TaskState.completed else None

        remaining = TIMEOUT_TASK_DEADLINE - (time.monotonic() - self.timeout_added_at)
        try:
            poll(completed, max(remaining, 0.0), f"{TIMEOUT_TASK} to complete", interval=0.25)
        except ScenarioAbort as exc:
            self.checks.fail(f"wall-clock timeout not enforced: {exc}")
            return
        took = time.monotonic() - self.timeout_added_at
        self.checks.check(took < TIMEOUT_TASK_DEADLINE, "timeout task ended in time", took)
        log(f"{TIMEOUT_TASK} completed {took:.1f}s after it was added")

    def wait_for_all_tasks(self) -> None:
        def all_completed() -> Any:
            counts = self.client.job.get_task_counts(self.job_id)
            return counts if counts.task_counts.completed >= TOTAL_TASKS else None

        result = poll(all_completed, TASKS_DONE_TIMEOUT, f"{TOTAL_TASKS} completed tasks", 0.5)
        counts = result.task_counts
        log(
            f"task counts: active={counts.active} running={counts.running} "
            f"completed={counts.completed} succeeded={counts.succeeded} failed={counts.failed}"
        )
        checks = self.checks
        expected = {
            "active": 0,
            "running": 0,
            "completed": TOTAL_TASKS,
            "succeeded": OK_TASKS + 1,  # the ok tasks and the env task
            "failed": FAIL_TASKS + 1,  # the failing tasks and the timed-out one
        }
        for name, value in expected.items():
            checks.equal(getattr(counts, name), value, f"taskCounts.{name}")
        slots = result.task_slot_counts
        checks.check(slots is not None, "taskSlotCounts present")
        if slots is not None:
            checks.equal(slots.completed, TOTAL_TASKS, "taskSlotCounts.completed")
            checks.equal(slots.running, 0, "taskSlotCounts.running")
            checks.equal(slots.active, 0, "taskSlotCounts.active")

    def check_tasks(self) -> dict[str, Any]:
        checks = self.checks
        tasks = {task.id: task for task in self.client.task.list(self.job_id)}
        checks.equal(set(tasks), self.all_ids, "task ids listed")

        for task_id in [*self.ok_ids, ENV_TASK]:
            task = tasks.get(task_id)
            if task is None:
                continue
            info = task.execution_info
            checks.equal(task.state, batchmodels.TaskState.completed, f"{task_id} state")
            if not checks.check(info is not None, f"{task_id} has executionInfo"):
                continue
            checks.equal(info.exit_code, 0, f"{task_id} exitCode")
            checks.equal(info.result, batchmodels.TaskExecutionResult.success, f"{task_id} result")
            checks.equal(info.retry_count, 0, f"{task_id} retryCount")
            checks.check(info.failure_info is None, f"{task_id} no failureInfo", info.failure_info)
            node = task.node_info.node_id if task.node_info is not None else None
            checks.check(node in self.node_ids, f"{task_id} ran on a pool node", node)

        for task_id in self.fail_ids:
            task = tasks.get(task_id)
            if task is None:
                continue
            info = task.execution_info
            checks.equal(task.state, batchmodels.TaskState.completed, f"{task_id} state")
            checks.equal(task.constraints.max_task_retry_count, 1, f"{task_id} maxTaskRetryCount")
            if not checks.check(info is not None, f"{task_id} has executionInfo"):
                continue
            checks.equal(info.exit_code, FAIL_EXIT_CODE, f"{task_id} exitCode")
            checks.equal(info.retry_count, 1, f"{task_id} retryCount")
            checks.equal(info.result, batchmodels.TaskExecutionResult.failure, f"{task_id} result")
            checks.check(info.last_retry_time is not None, f"{task_id} lastRetryTime set")
            failure = info.failure_info
            if checks.check(failure is not None, f"{task_id} has failureInfo"):
                checks.equal(
                    failure.category, batchmodels.ErrorCategory.user_error, f"{task_id} category"
                )
                checks.check(bool(failure.code), f"{task_id} failureInfo.code", failure.code)

        task = tasks.get(TIMEOUT_TASK)
        if task is not None:
            info = task.execution_info
            checks.equal(task.state, batchmodels.TaskState.completed, f"{TIMEOUT_TASK} state")
            checks.equal(
                task.constraints.max_wall_clock_time,
                WALL_CLOCK_LIMIT,
                f"{TIMEOUT_TASK} maxWallClockTime",
            )
            if checks.check(info is not None, f"{TIMEOUT_TASK} has executionInfo"):
                checks.equal(
                    info.result, batchmodels.TaskExecutionResult.failure, f"{TIMEOUT_TASK} result"
                )
                checks.equal(info.retry_count, 0, f"{TIMEOUT_TASK} retryCount")
                checks.check(
                    info.failure_info is not None and bool(info.failure_info.code),
                    f"{TIMEOUT_TASK} has failureInfo with a code",
                    info.failure_info,
                )
                checks.check(
                    info.exit_code != 0, f"{TIMEOUT_TASK} exitCode is not 0", info.exit_code
                )
                if info.start_time is not None and info.end_time is not None:
                    ran = (info.end_time - info.start_time).total_seconds()
                    checks.check(1.5 <= ran < 15, f"{TIMEOUT_TASK} ran about 2 s", f"{ran:.2f}s")
                    log(f"{TIMEOUT_TASK} ran {ran:.2f}s: {info.failure_info.code}")
                else:
                    checks.fail(f"{TIMEOUT_TASK} has startTime and endTime")

        sample = tasks.get("ok-7")
        if sample is not None:
            checks.equal(sample.url, f"{self.endpoint}/jobs/{self.job_id}/tasks/ok-7", "task url")
            checks.check(bool(sample.e_tag), "task has an eTag", sample.e_tag)
            checks.equal(sample.command_line, OK_COMMAND, "task commandLine round trip")

        # Slots: at most SLOTS_PER_NODE tasks at once on a node, and both nodes used.
        per_node: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        for task in tasks.values():
            info = task.execution_info
            if task.node_info is None or info is None or not info.start_time or not info.end_time:
                continue
            per_node[task.node_info.node_id].append((info.start_time, info.end_time))
        checks.equal(set(per_node), self.node_ids, "nodes that ran tasks")
        for node_id, intervals in per_node.items():
            peak = max_concurrency(intervals)
            checks.check(
                peak <= SLOTS_PER_NODE, f"at most {SLOTS_PER_NODE} tasks at once on {node_id}", peak
            )
        log(
            f"checked {len(tasks)} tasks; tasks per node: "
            f"{ {node: len(runs) for node, runs in per_node.items()} }"
        )
        return tasks

    def check_output_files(self) -> None:
        checks = self.checks
        client = self.client
        for task_id in self.ok_ids:
            stdout = read_task_file(client, self.job_id, task_id, "stdout.txt")
            stderr = read_task_file(client, self.job_id, task_id, "stderr.txt")
            checks.equal(stdout, f"hello from {task_id}\n", f"{task_id} stdout.txt")
            checks.equal(stderr, f"warning from {task_id}\n", f"{task_id} stderr.txt")
        for task_id in self.fail_ids:
            stdout = read_task_file(client, self.job_id, task_id, "stdout.txt")
            stderr = read_task_file(client, self.job_id, task_id, "stderr.txt")
            checks.check(f"attempt of {task_id}" in stdout, f"{task_id} stdout.txt", stdout)
            checks.check("failing on purpose" in stderr, f"{task_id} stderr.txt", stderr)
        props = client.file.get_properties_from_task(self.job_id, "ok-3", "stdout.txt", raw=True)
        length = props.headers.get("Content-Length")
        checks.equal(str(length), str(len(b"hello from ok-3\n")), "file properties Content-Length")
        expect_error(
            checks,
            "missing task file",
            lambda: read_task_file(client, self.job_id, "ok-3", "no-such-file.txt"),
            404,
        )
        log(f"checked stdout.txt/stderr.txt of {OK_TASKS + FAIL_TASKS} tasks")

    def check_environment(self, task: Any) -> None:
        checks = self.checks
        stdout = read_task_file(self.client, self.job_id, ENV_TASK, "stdout.txt")
        env = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
        missing = [name for name in REQUIRED_VARIABLES if not env.get(name)]
        checks.equal(missing, [], "AZ_BATCH_* variables missing or empty")
        checks.equal(env.get(TASK_SETTING[0]), TASK_SETTING[1], "task environment setting")
        checks.equal(env.get("AZ_BATCH_TASK_ID"), ENV_TASK, "AZ_BATCH_TASK_ID")
        checks.equal(env.get("AZ_BATCH_JOB_ID"), self.job_id, "AZ_BATCH_JOB_ID")
        checks.equal(env.get("AZ_BATCH_POOL_ID"), self.pool_id, "AZ_BATCH_POOL_ID")
        checks.equal(env.get("AZ_BATCH_ACCOUNT_NAME"), self.account, "AZ_BATCH_ACCOUNT_NAME")
        node_id = task.node_info.node_id if task.node_info is not None else None
        checks.equal(env.get("AZ_BATCH_NODE_ID"), node_id, "AZ_BATCH_NODE_ID = nodeInfo.nodeId")
        url = env.get("AZ_BATCH_ACCOUNT_URL", "")
        parsed = urlparse(url)
        checks.check(
            parsed.scheme in ("http", "https") and bool(parsed.netloc),
            "AZ_BATCH_ACCOUNT_URL is a URL",
            url,
        )
        checks.equal(url.rstrip("/"), self.endpoint, "AZ_BATCH_ACCOUNT_URL = the endpoint")

        root = env.get("AZ_BATCH_NODE_ROOT_DIR", "")
        checks.check(root.startswith("/"), "AZ_BATCH_NODE_ROOT_DIR is absolute", root)
        for name in ("AZ_BATCH_NODE_SHARED_DIR", "AZ_BATCH_NODE_STARTUP_DIR", "AZ_BATCH_TASK_DIR"):
            value = env.get(name, "")
            checks.check(
                bool(root) and value.startswith(root.rstrip("/") + "/"),
                f"{name} is inside AZ_BATCH_NODE_ROOT_DIR",
                f"{value!r} (root {root!r})",
            )
        task_dir = env.get("AZ_BATCH_TASK_DIR", "")
        checks.check(
            task_dir.rstrip("/").endswith("/" + ENV_TASK),
            "AZ_BATCH_TASK_DIR ends with the task id",
            task_dir,
        )
        checks.equal(
            env.get("AZ_BATCH_TASK_WORKING_DIR", "").rstrip("/"),
            task_dir.rstrip("/") + "/wd",
            "AZ_BATCH_TASK_WORKING_DIR = AZ_BATCH_TASK_DIR/wd",
        )
        log(f"{ENV_TASK}: {sum(name.startswith('AZ_BATCH_') for name in env)} AZ_BATCH_* vars")

    def list_options(self, **kwargs: Any) -> batchmodels.TaskListOptions:
        return batchmodels.TaskListOptions(**kwargs)

    def check_paging(self) -> None:
        checks = self.checks
        paged = self.client.task.list(
            self.job_id, task_list_options=self.list_options(max_results=10)
        )
        all_pages = list(pages(paged))
        ids = [task_id for page in all_pages for task_id in task_ids(page)]
        sizes = [len(page) for page in all_pages]
        checks.equal(len(ids), TOTAL_TASKS, "paged list: number of tasks")
        checks.equal(set(ids), self.all_ids, "paged list: distinct task ids")
        checks.check(all(size <= 10 for size in sizes), "paged list: pages of at most 10", sizes)
        checks.check(len(all_pages) >= TOTAL_TASKS // 10, "paged list: page count", sizes)
        # A filtered, selected listing keeps its query across nextLinks.
        paged = self.client.task.list(
            self.job_id,
            task_list_options=self.list_options(
                filter=f"executionInfo/exitCode eq {FAIL_EXIT_CODE}", select="id", max_results=3
            ),
        )
        filtered_pages = list(pages(paged))
        ids = [task_id for page in filtered_pages for task_id in task_ids(page)]
        checks.equal(sorted(ids), sorted(self.fail_ids), "paged filtered list: ids")
        checks.check(
            len(filtered_pages) >= 3,
            "paged filtered list: 3 or more pages",
            [len(page) for page in filtered_pages],
        )
        log(f"paging: {len(all_pages)} pages {sizes}; filtered: {len(filtered_pages)} pages")

    def filtered_ids(self, odata_filter: str) -> list[str]:
        options = self.list_options(filter=odata_filter)
        return task_ids(self.client.task.list(self.job_id, task_list_options=options))

    def check_filters(self) -> None:
        checks = self.checks
        expectations = {
            "state eq 'completed'": self.all_ids,
            f"executionInfo/exitCode eq {FAIL_EXIT_CODE}": set(self.fail_ids),
            "startswith(id,'ok-1')": {i for i in self.ok_ids if i.startswith("ok-1")},
            "executionInfo/result eq 'failure'": {*self.fail_ids, TIMEOUT_TASK},
            "state eq 'active'": set(),
        }
        for odata_filter, expected in expectations.items():
            ids = self.filtered_ids(odata_filter)
            checks.equal(len(ids), len(set(ids)), f"$filter={odata_filter}: no duplicates")
            checks.equal(set(ids), expected, f"$filter={odata_filter}")
        log(f"checked {len(expectations)} $filter expressions")

    def check_select(self) -> None:
        checks = self.checks
        options = self.list_options(select="id,state", filter="startswith(id,'fail-')")
        tasks = list(self.client.task.list(self.job_id, task_list_options=options))
        checks.equal(sorted(task_ids(tasks)), sorted(self.fail_ids), "$select listing ids")
        for task in tasks:
            checks.equal(task.state, batchmodels.TaskState.completed, f"$select {task.id} state")
            others = {
                "command_line": task.command_line,
                "url": task.url,
                "e_tag": task.e_tag,
                "creation_time": task.creation_time,
                "execution_info": task.execution_info,
                "constraints": task.constraints,
                "node_info": task.node_info,
            }
            present = sorted(name for name, value in others.items() if value is not None)
            checks.equal(present, [], f"$select=id,state {task.id}: unselected fields present")
        selected = self.client.task.get(
            self.job_id, "ok-5", task_get_options=batchmodels.TaskGetOptions(select="id,state")
        )
        checks.equal(
            (selected.id, selected.command_line, selected.execution_info),
            ("ok-5", None, None),
            "task.get with $select=id,state",
        )
        log(f"$select=id,state returned {len(tasks)} trimmed tasks")

    def check_errors(self) -> None:
        checks = self.checks
        client = self.client
        pool_info = batchmodels.PoolInformation(pool_id=self.pool_id)
        checks.equal(client.job.get(self.job_id.upper()).id, self.job_id, "job lookup ignores case")
        expect_error(
            checks,
            "job add, id differing only in case",
            lambda: client.job.add(
                batchmodels.JobAddParameter(id=self.job_id.upper(), pool_info=pool_info)
            ),
            409,
            "JobExists",
        )
        expect_error(
            checks,
            "pool add, id differing only in case",
            lambda: client.pool.add(
                batchmodels.PoolAddParameter(
                    id=self.pool_id.upper(), vm_size=VM_SIZE, target_dedicated_nodes=0
                )
            ),
            409,
            "PoolExists",
        )
        expect_error(
            checks,
            "task add, existing id in other case",
            lambda: client.task.add(
                self.job_id, batchmodels.TaskAddParameter(id="OK-1", command_line="/bin/true")
            ),
            409,
            "TaskExists",
        )
        # 14.2's add_collection reports TaskExists per task instead of raising.
        result = client.task.add_collection(
            self.job_id, [batchmodels.TaskAddParameter(id="ok-2", command_line="/bin/true")]
        )
        entry = result.value[0] if result.value else None
        checks.check(
            entry is not None
            and entry.status == batchmodels.TaskAddStatus.client_error
            and entry.error is not None
            and entry.error.code == "TaskExists",
            "add_collection of an existing task: clienterror TaskExists",
            entry and (entry.status, entry.error and entry.error.code),
        )
        missing_job = f"no-such-job-{random_suffix()}"
        expect_error(
            checks, "get unknown job", lambda: client.job.get(missing_job), 404, "JobNotFound"
        )
        expect_error(
            checks,
            "add task to unknown job",
            lambda: client.task.add(
                missing_job, batchmodels.TaskAddParameter(id="t", command_line="/bin/true")
            ),
            404,
            "JobNotFound",
        )
        expect_error(
            checks,
            "get unknown task",
            lambda: client.task.get(self.job_id, "no-such-task"),
            404,
            "TaskNotFound",
        )
        expect_error(
            checks,
            "get unknown pool",
            lambda: client.pool.get(f"no-such-pool-{random_suffix()}"),
            404,
            "PoolNotFound",
        )
        checks.equal(
            client.pool.exists(f"no-such-pool-{random_suffix()}"), False, "pool.exists unknown"
        )
        expect_error(
            checks,
            "job add, malformed id",
            lambda: client.job.add(batchmodels.JobAddParameter(id="bad id!", pool_info=pool_info)),
            400,
        )
        expect_error(
            checks,
            "pool add, malformed id",
            lambda: client.pool.add(batchmodels.PoolAddParameter(id="bad id!", vm_size=VM_SIZE)),
            400,
        )
        expect_error(
            checks,
            "task add, malformed id",
            lambda: client.task.add(
                self.job_id, batchmodels.TaskAddParameter(id="bad id!", command_line="/bin/true")
            ),
            400,
        )
        counts = client.job.get_task_counts(self.job_id).task_counts
        checks.equal(
            counts.completed + counts.active + counts.running,
            TOTAL_TASKS,
            "no task added by the error cases",
        )

    def delete_job_and_pool(self) -> None:
        client = self.client
        checks = self.checks
        client.job.delete(self.job_id)
        log(f"job {self.job_id} delete requested")

        def job_gone() -> bool:
            exc = error_of(lambda: client.job.get(self.job_id))
            if exc is None:
                return False
            return exc.error is not None and exc.error.code == "JobNotFound"

        try:
            poll(job_gone, DELETE_TIMEOUT, f"job {self.job_id} to be deleted", 0.25)
            self.job_created = False
            checks.check(True, "job deleted")
        except ScenarioAbort as exc:
            checks.fail(str(exc))

        client.pool.delete(self.pool_id)
        log(f"pool {self.pool_id} delete requested")
        try:
            poll(
                lambda: not client.pool.exists(self.pool_id),
                DELETE_TIMEOUT,
                f"pool {self.pool_id} to be deleted",
                0.25,
            )
            self.pool_created = False
            checks.check(True, "pool deleted")
        except ScenarioAbort as exc:
            checks.fail(str(exc))
        expect_error(
            checks, "get deleted pool", lambda: client.pool.get(self.pool_id), 404, "PoolNotFound"
        )
        log("job and pool deleted")

    def cleanup(self) -> None:
        """Best effort, after a failure: leave no pool or job behind."""
        for created, delete in (
            (self.job_created, lambda: self.client.job.delete(self.job_id)),
            (self.pool_created, lambda: self.client.pool.delete(self.pool_id)),
        ):
            if created:
                try:
                    delete()
                except Exception as exc:
                    log(f"cleanup: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:8642")
    parser.add_argument("--account", required=True)
    parser.add_argument("--key", required=True, help="base64 account key")
    args = parser.parse_args(argv)

    scenario = Scenario(args.endpoint, args.account, args.key)
    log(f"azure-batch {azure.batch.__version__} against {scenario.endpoint}")
    try:
        scenario.run()
    except Exception as exc:
        traceback.print_exc()
        scenario.checks.fail(f"scenario aborted: {type(exc).__name__}: {exc}")
        scenario.cleanup()

    checks = scenario.checks
    elapsed = time.monotonic() - _START
    if checks.failures:
        print(
            f"\nscenario_14: {len(checks.failures)} FAILED, {checks.passed} passed ({elapsed:.1f}s)"
        )
        for failure in checks.failures:
            print(f"  - {failure}")
        return 1
    print(
        f"\nscenario_14: all {checks.passed} checks passed with azure-batch "
        f"{azure.batch.__version__}: pool {NODES}x{SLOTS_PER_NODE} slots, {TOTAL_TASKS} tasks "
        f"({elapsed:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
