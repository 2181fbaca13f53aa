"""Fuzz every operation of the Batch API against a live server with Schemathesis.

Non-negotiable property: whatever a user sends, every endpoint answers with a Batch error a
real client understands (never a 5xx other than the deliberate 501 ``NotImplemented``, never
a non-JSON error, never a hang), and nothing sent corrupts stored state: resources created
before fuzzing are unchanged, the data directory restarts cleanly, and a normal lifecycle
through the official SDK still works afterwards.

The schema is the spec file at ``<repo>/../shared/spec/`` when present; otherwise (and always
in the second test, so that path cannot rot) an OpenAPI description rebuilt from the
generated operations table and wire models (``synth_spec.py``). See README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential

from hybatch.schema._generated.operations import API_VERSION as SPEC_VERSION
from hybatch.schema._generated.operations import OPERATIONS
from tests.fuzz.campaign import API_VERSION, Budget, Campaign, Report, Targets
from tests.fuzz.signing import SharedKeyAuth
from tests.fuzz.synth_spec import build_spec
from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

SEED = 20250601
"""Hypothesis seed of every run: the same requests each time."""
BUDGET = Budget(targeted=12, free=8, raw=8, unsigned=3)
"""Requests per operation (campaign.py): 20 signed ones (12 addressing existing resources,
8 as generated), 8 with malformed bodies (operations with a body), 3 unsigned."""
FALLBACK_BUDGET = Budget(targeted=3, free=2, raw=2, unsigned=1)
"""The same for the schema rebuilt from the operations table."""
REQUEST_TIMEOUT_S = 10.0
"""A request without an answer by then is a hang."""

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO.parent / "shared" / "spec" / f"BatchService.{SPEC_VERSION}.json"

SENTINEL_POOL, SENTINEL_JOB, SENTINEL_TASK = "sentinel-pool", "sentinel-job", "sentinel-task"
TARGET_POOL, TARGET_JOB = "fz-pool", "fz-job"
TARGET_TASKS = ("fz-done", "fz-running")
# a sibling task's file through "..": must not be served through this task's file API
TARGET_FILES = ("stdout.txt", "wd", "../fz-running/stderr.txt",
                "../../../../../../../../etc/hostname")


def spec_schema() -> Any:
    if SPEC_PATH.is_file():
        return schemathesis.openapi.from_path(SPEC_PATH)
    return rebuilt_schema()


def rebuilt_schema() -> Any:
    return schemathesis.openapi.from_dict(build_spec())


# ---------------------------------------------------------------------- helpers


class Raw:
    """Signed JSON reads, to compare whole wire bodies."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.session = requests.Session()
        self.auth = SharedKeyAuth(ACCOUNT, KEY)

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.endpoint}{path}", params={"api-version": API_VERSION},
                                auth=self.auth, timeout=REQUEST_TIMEOUT_S)

    def json(self, path: str) -> dict[str, Any]:
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        body: dict[str, Any] = response.json()
        return body


def _pool(pool_id: str, nodes: int, slots: int = 1) -> m.BatchPoolCreateOptions:
    return m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                    target_dedicated_nodes=nodes, task_slots_per_node=slots)


def _idle_nodes(client: BatchClient, pool_id: str, count: int) -> list[str]:
    def ready() -> list[str] | None:
        nodes = list(client.list_nodes(pool_id))
        if len(nodes) == count and all(n.state in ("idle", "running") for n in nodes):
            return [str(n.id) for n in nodes]
        return None

    return wait_for(ready, timeout=60, what=f"{count} ready nodes in {pool_id}")


def _task_state(client: BatchClient, job_id: str, task_id: str, state: str) -> bool:
    return client.get_task(job_id, task_id).state == state


def make_sentinels(client: BatchClient, raw: Raw) -> dict[str, Any]:
    """Resources the fuzzer never names; returns their wire bodies once settled."""
    client.create_pool(_pool(SENTINEL_POOL, 1))
    _idle_nodes(client, SENTINEL_POOL, 1)
    client.create_job(m.BatchJobCreateOptions(id=SENTINEL_JOB,
                                              pool_info=m.BatchPoolInfo(pool_id=SENTINEL_POOL)))
    client.create_task(SENTINEL_JOB, m.BatchTaskCreateOptions(id=SENTINEL_TASK,
                                                              command_line="/bin/echo kept"))
    wait_for(lambda: _task_state(client, SENTINEL_JOB, SENTINEL_TASK, "completed"),
             what="the sentinel task to complete")
    wait_for(lambda: raw.json(f"/pools/{SENTINEL_POOL}/nodes")["value"][0]["state"] == "idle",
             what="the sentinel node to be idle")
    return sentinel_state(raw)


def sentinel_state(raw: Raw) -> dict[str, Any]:
    task = f"/jobs/{SENTINEL_JOB}/tasks/{SENTINEL_TASK}"
    out = raw.get(f"{task}/files/stdout.txt")
    nodes = raw.json(f"/pools/{SENTINEL_POOL}/nodes")["value"]
    return {
        "pool": raw.json(f"/pools/{SENTINEL_POOL}"),
        "nodes": sorted((n["id"], n["state"]) for n in nodes),
        "job": raw.json(f"/jobs/{SENTINEL_JOB}"),
        "task": raw.json(task),
        "stdout": (out.status_code, out.content),
    }


def make_targets(client: BatchClient) -> Targets:
    """Resources the targeted cases address: a pool with a node, a job, two tasks."""
    client.create_pool(_pool(TARGET_POOL, 1, slots=2))
    node = _idle_nodes(client, TARGET_POOL, 1)[0]
    client.create_job(m.BatchJobCreateOptions(id=TARGET_JOB,
                                              pool_info=m.BatchPoolInfo(pool_id=TARGET_POOL)))
    done, running = TARGET_TASKS
    client.create_task(TARGET_JOB, m.BatchTaskCreateOptions(id=done, command_line="/bin/echo x"))
    client.create_task(TARGET_JOB, m.BatchTaskCreateOptions(id=running,
                                                            command_line="/bin/sleep 600"))
    wait_for(lambda: _task_state(client, TARGET_JOB, done, "completed")
             and _task_state(client, TARGET_JOB, running, "running"),
             what="target tasks to complete / run")
    return Targets(pool=TARGET_POOL, node=node, job=TARGET_JOB, tasks=TARGET_TASKS,
                   files=TARGET_FILES)


def lifecycle(client: BatchClient) -> None:
    """A normal pool/job/task round trip through the official SDK."""
    client.create_pool(_pool("after-pool", 1))
    _idle_nodes(client, "after-pool", 1)
    client.create_job(m.BatchJobCreateOptions(id="after-job",
                                              pool_info=m.BatchPoolInfo(pool_id="after-pool")))
    client.create_task("after-job", m.BatchTaskCreateOptions(
        id="after-task", command_line="/bin/sh -c 'echo still-works'"))
    wait_for(lambda: _task_state(client, "after-job", "after-task", "completed"), timeout=60,
             what="the post-fuzz task to complete")
    task = client.get_task("after-job", "after-task")
    assert task.execution_info is not None and task.execution_info.exit_code == 0
    out = b"".join(client.download_task_file("after-job", "after-task", "stdout.txt"))
    assert out == b"still-works\n"


def everything_readable(client: BatchClient) -> int:
    """Every stored pool, job and task (fuzzed ones included) is listed through the SDK."""
    seen = 0
    for pool in client.list_pools():
        assert pool.id
        seen += 1
    for job in client.list_jobs():
        assert job.id
        seen += 1
        for task in client.list_tasks(job.id):
            assert task.id
            seen += 1
    return seen


def run_and_verify(tmp_path: Path, schema: Any, budget: Budget) -> Report:
    server = ServerProcess(tmp_path / "data").start()
    try:
        client = BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
        raw = Raw(server.endpoint)
        before = make_sentinels(client, raw)
        targets = make_targets(client)

        def alive() -> bool:
            return server.proc is not None and server.proc.poll() is None

        report = Campaign(schema, server.endpoint, ACCOUNT, KEY, targets, seed=SEED,
                          budget=budget, timeout=REQUEST_TIMEOUT_S, alive=alive).run()
        print(report.summary())
        problems = list(report.failures)
        try:
            assert alive(), "the server died during fuzzing"
            assert set(report.statuses) == {op.operation_id for op in OPERATIONS}, \
                "some operations were never exercised"
            after = sentinel_state(raw)
            assert after == before, "fuzzing changed resources it never named:\n" + \
                json.dumps({"before": before, "after": after}, default=str)[:4000]
            log = server.log.read_text(errors="replace")
            assert "Traceback" not in log, f"the server logged a crash:\n{log[-6000:]}"
            assert server.stop() == 0, "the server did not stop cleanly"
            server.start()  # same data directory and port: recovery reads everything back
            assert sentinel_state(raw)["task"]["eTag"] == before["task"]["eTag"]
            assert everything_readable(client) > 0
            lifecycle(client)
        except AssertionError as error:
            problems.append(f"after fuzzing: {error}")
        assert not problems, "\n\n".join(problems) + "\n\n" + report.summary()
        return report
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()


@pytest.mark.timeout(900)  # ~2.5 min on an idle 2-core machine; room for a loaded one
def test_fuzz_every_operation(tmp_path: Path) -> None:
    """The spec (or, without it, the rebuilt schema): BUDGET requests per operation."""
    report = run_and_verify(tmp_path, spec_schema(), BUDGET)
    assert report.requests >= len(OPERATIONS) * (BUDGET.targeted + BUDGET.free) // 2


def test_fuzz_rebuilt_schema(tmp_path: Path) -> None:
    """The schema rebuilt from the operations table: the fallback stays usable, and its
    nullable optional properties probe the models differently from the spec."""
    report = run_and_verify(tmp_path, rebuilt_schema(), FALLBACK_BUDGET)
    assert report.requests >= len(OPERATIONS) * (FALLBACK_BUDGET.targeted
                                                 + FALLBACK_BUDGET.free) // 2
