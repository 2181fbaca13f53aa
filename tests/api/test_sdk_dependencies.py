"""Task dependencies and exit conditions through the official azure-batch 15.1 SDK against a
real server process (real task processes on the local backend): a 200-task DAG, the
``hybatch.failBlockedDependents`` opt-in, jobAction, the Batch errors, and a restart with
tasks still waiting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

TRUE = "/bin/true"


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _exit(code: int) -> str:
    return f"/bin/sh -c 'exit {code}'"


@pytest.fixture(scope="module")
def pool(client: BatchClient) -> Iterator[str]:
    pool_id = _uid("deps")
    _create_pool(client, pool_id)
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=0.2).result()


def _create_pool(client: BatchClient, pool_id: str) -> None:
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=1,
                                                task_slots_per_node=4))
    wait_for(lambda: (nodes := list(client.list_nodes(pool_id))) and nodes[0].state == "idle",
             what="an idle node")


def _job(client: BatchClient, pool: str, **extra: Any) -> str:
    job_id = _uid("dag")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id=pool), uses_task_dependencies=True, **extra))
    return job_id


def _task(task_id: str, command: str = TRUE, *, ids: list[str] | None = None,
          ranges: list[tuple[int, int]] | None = None,
          exit_conditions: m.ExitConditions | None = None) -> m.BatchTaskCreateOptions:
    depends_on = None
    if ids or ranges:
        depends_on = m.BatchTaskDependencies(
            task_ids=ids, task_id_ranges=[m.BatchTaskIdRange(start=s, end=e)
                                          for s, e in ranges or []] or None)
    return m.BatchTaskCreateOptions(id=task_id, command_line=command, depends_on=depends_on,
                                    exit_conditions=exit_conditions)


def _add(client: BatchClient, job_id: str, tasks: list[m.BatchTaskCreateOptions]) -> None:
    result = client.create_tasks(job_id, tasks)
    failed = [(r.task_id, r.error) for r in result.result_values or []
              if r.status != m.BatchTaskAddStatus.SUCCESS]
    assert not failed, failed


def _tasks(client: BatchClient, job_id: str) -> dict[str, m.BatchTask]:
    return {t.id: t for t in client.list_tasks(job_id)}


def _settled(client: BatchClient, job_id: str, done: set[str]) -> dict[str, m.BatchTask]:
    """Wait until exactly the tasks in ``done`` are completed (the others still active)."""
    def check() -> dict[str, m.BatchTask] | None:
        tasks = _tasks(client, job_id)
        completed = {i for i, t in tasks.items() if t.state == "completed"}
        return tasks if completed == done else None

    return wait_for(check, timeout=120, interval=0.2, what=f"{len(done)} tasks of {job_id}")


def _summary(tasks: dict[str, m.BatchTask]) -> dict[str, tuple[Any, ...]]:
    """id -> (state, result, exit code, failure code)."""
    out: dict[str, tuple[Any, ...]] = {}
    for task_id, task in tasks.items():
        info = task.execution_info
        failure = info.failure_info.code if info and info.failure_info else None
        out[task_id] = (task.state, info.result if info else None,
                        info.exit_code if info else None, failure)
    return out


def _started_after(child: m.BatchTask, parents: list[m.BatchTask]) -> bool:
    start = child.execution_info.start_time
    ends: list[datetime] = [p.execution_info.end_time for p in parents]
    return start is not None and all(end is not None and start >= end for end in ends)


def test_a_200_task_dag(client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool)
    fan = [str(i) for i in range(1, 168)]
    chain = [f"c{i:02d}" for i in range(1, 21)]
    satisfy = m.ExitConditions(default=m.ExitOptions(dependency_action="satisfy"))
    tasks = [
        _task("root"),
        *[_task(i, ids=["root"]) for i in fan],                  # fan-out by id
        _task("merge", ids=["root"], ranges=[(1, 167)]),         # fan-in by range
        _task("final", ids=["merge"]),
        _task("bad", _exit(3), ids=["root"]),                    # fails: blocks by default
        _task("bad-child", ids=["bad"]),
        _task("bad-grandchild", ids=["bad-child", "final"]),
        _task("soft", _exit(4), ids=["root"], exit_conditions=satisfy),
        _task("soft-child", ids=["soft"]),
        _task("zero-blocks", exit_conditions=m.ExitConditions(exit_codes=[
            m.ExitCodeMapping(code=0, exit_options=m.ExitOptions(dependency_action="block"))])),
        _task("zero-child", ids=["zero-blocks"]),
        *[_task(c, ids=[chain[n - 1]] if n else ["root"]) for n, c in enumerate(chain)],
        _task("waits-late", ids=["late-parent", "c20"]),
        _task("range-gap", ranges=[(167, 168)]),                 # 168 never exists
    ]
    assert len(tasks) + 1 == 200  # late-parent comes later
    _add(client, job_id, tasks)  # the SDK sends its 100-task chunks last-first
    blocked = {"bad-child", "bad-grandchild", "zero-child", "waits-late", "range-gap"}
    ids = {t.id for t in tasks}
    first = _settled(client, job_id, ids - blocked)
    assert {i for i, t in first.items() if t.state == "active"} == blocked

    _add(client, job_id, [_task("late-parent", ids=["merge"])])  # a parent added late
    done = ids - blocked | {"late-parent", "waits-late"}
    final = _settled(client, job_id, done)
    summary = _summary(final)
    ok = ("completed", "success", 0, None)
    expected = {i: ok for i in done}
    expected.update({
        "bad": ("completed", "failure", 3, "FailureExitCode"),
        "soft": ("completed", "failure", 4, "FailureExitCode"),
        **{i: ("active", None, None, None) for i in blocked - {"waits-late"}},
    })
    assert summary == expected
    counts = client.get_job_task_counts(job_id).task_counts
    assert (counts.active, counts.running, counts.completed, counts.succeeded,
            counts.failed) == (4, 0, 196, 194, 2)

    # no task started before every parent had ended (the node's clock for both)
    assert _started_after(final["merge"], [final[i] for i in fan] + [final["root"]])
    assert _started_after(final["final"], [final["merge"]])
    assert _started_after(final["soft-child"], [final["soft"]])
    assert _started_after(final["waits-late"], [final["late-parent"], final["c20"]])
    for n, c in enumerate(chain[1:], start=1):
        assert _started_after(final[c], [final[chain[n - 1]]])
    # dependsOn and exitConditions are echoed as sent
    merge = client.get_task(job_id, "merge")
    assert merge.depends_on.task_ids == ["root"]
    assert [(r.start, r.end) for r in merge.depends_on.task_id_ranges] == [(1, 167)]
    assert client.get_task(job_id, "soft").exit_conditions.default.dependency_action == (
        "satisfy")
    # blocked tasks are active, so onAllTasksComplete=terminatejob does not fire
    client.update_job(job_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    assert client.get_job(job_id).state == "active"
    # reactivating the failed parent with a passing command is not possible (Batch keeps
    # the command); terminating the blocked tasks lets the job finish
    for task_id in sorted(blocked - {"waits-late"}):
        client.terminate_task(job_id, task_id)
    wait_for(lambda: client.get_job(job_id).state == "completed", what="job completed")
    assert client.get_job(job_id).execution_info.termination_reason == "AllTasksComplete"
    client.begin_delete_job(job_id, polling_interval=0.2).result()


def test_opt_in_fails_blocked_dependents(client: BatchClient, pool: str) -> None:
    job_id = _job(client, pool, metadata=[m.BatchMetadataItem(
        name="hybatch.failBlockedDependents", value="true")])
    _add(client, job_id, [
        _task("1", _exit(2)), _task("2"), _task("ok-child", ids=["2"]),
        _task("child", ids=["1"]), _task("grandchild", ids=["child"]),
        _task("ranged", ranges=[(1, 2)]),
    ])
    client.update_job(job_id, m.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))
    wait_for(lambda: client.get_job(job_id).state == "completed", what="job completed")
    tasks = _tasks(client, job_id)
    assert _summary(tasks) == {
        "1": ("completed", "failure", 2, "FailureExitCode"),
        "2": ("completed", "success", 0, None),
        "ok-child": ("completed", "success", 0, None),
        "child": ("completed", "failure", None, "DependencyFailed"),
        "grandchild": ("completed", "failure", None, "DependencyFailed"),
        "ranged": ("completed", "failure", None, "DependencyFailed"),
    }
    parents = {i: [(d.name, d.value) for d in tasks[i].execution_info.failure_info.details]
               for i in ("child", "grandchild", "ranged")}
    assert parents == {"child": [("ParentTaskId", "1")],
                       "grandchild": [("ParentTaskId", "child")],
                       "ranged": [("ParentTaskId", "1")]}
    failure = tasks["grandchild"].execution_info.failure_info
    assert failure.category == "usererror"
    assert "hybatch.failBlockedDependents" in failure.message
    assert tasks["child"].execution_info.start_time is None
    assert client.get_job(job_id).execution_info.termination_reason == "AllTasksComplete"
    client.begin_delete_job(job_id, polling_interval=0.2).result()


def test_job_actions(client: BatchClient, pool: str) -> None:
    terminating = _job(client, pool, task_failure_mode="performexitoptionsjobaction")
    _add(client, terminating, [_task("fails", _exit(1))])
    wait_for(lambda: client.get_job(terminating).state == "completed", what="terminated")
    assert client.get_job(terminating).execution_info.termination_reason == "TaskFailed"

    disabling = _job(client, pool, task_failure_mode="performexitoptionsjobaction")
    _add(client, disabling, [_task("fails", _exit(5), exit_conditions=m.ExitConditions(
        exit_code_ranges=[m.ExitCodeRangeMapping(start=5, end=9, exit_options=m.ExitOptions(
            job_action="disable"))]))])
    wait_for(lambda: client.get_job(disabling).state == "disabled", what="disabled")

    quiet = _job(client, pool)  # onTaskFailure noaction: no job action at all
    _add(client, quiet, [_task("fails", _exit(1))])
    wait_for(lambda: client.get_task(quiet, "fails").state == "completed", what="completed")
    assert client.get_job(quiet).state == "active"
    for job_id in (terminating, disabling, quiet):
        client.begin_delete_job(job_id, polling_interval=0.2).result()


def test_batch_errors(client: BatchClient, pool: str) -> None:
    plain = _uid("plain")
    client.create_job(m.BatchJobCreateOptions(id=plain, pool_info=m.BatchPoolInfo(
        pool_id=pool)))
    cases: list[tuple[str, m.BatchTaskCreateOptions, str]] = [
        (plain, _task("t", ids=["a"]), "TaskDependenciesNotSpecifiedOnJob"),
        (plain, _task("t", exit_conditions=m.ExitConditions(default=m.ExitOptions(
            job_action="terminate"))), "InvalidPropertyValue"),
        (plain, _task("t", exit_conditions=m.ExitConditions(default=m.ExitOptions(
            dependency_action="satisfy"))), "InvalidPropertyValue"),
    ]
    dag = _job(client, pool)
    cases += [
        (dag, _task("t", ids=["x" * 64] * 1001), "TaskDependencyListTooLong"),
        (dag, _task("t", ranges=[(i, i) for i in range(101)]), "TaskDependencyRangesTooLong"),
        (dag, _task("t", ids=["T"]), "InvalidPropertyValue"),
    ]
    for job_id, task, code in cases:
        with pytest.raises(HttpResponseError) as error:
            client.create_task(job_id, task)
        assert (error.value.status_code, error.value.error.code) == (400, code), task.id
    result = client.create_task_collection(plain, m.BatchTaskGroup(
        task_values=[_task("in-collection", ids=["a"])]))
    (entry,) = result.result_values
    assert entry.status == m.BatchTaskAddStatus.CLIENT_ERROR
    assert entry.error.code == "TaskDependenciesNotSpecifiedOnJob"
    assert list(client.list_tasks(plain)) == [] and list(client.list_tasks(dag)) == []
    for job_id in (plain, dag):
        client.begin_delete_job(job_id, polling_interval=0.2).result()


def test_waiting_tasks_survive_a_restart(fresh_server: ServerProcess, tmp_path: Path) -> None:
    client = BatchClient(fresh_server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    _create_pool(client, "p")
    job_id = _job(client, "p")
    _add(client, job_id, [
        _task("1"), _task("bad", _exit(1)),
        _task("absent-wait", ids=["later", "1"]), _task("blocked-wait", ids=["bad"]),
        _task("range-wait", ranges=[(1, 2)]),
    ])
    _settled(client, job_id, {"1", "bad"})
    fresh_server.stop()
    fresh_server.start()
    client = BatchClient(fresh_server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    wait_for(lambda: (nodes := list(client.list_nodes("p"))) and nodes[0].state == "idle",
             what="the node back")
    assert {t.id for t in client.list_tasks(job_id) if t.state == "active"} == {
        "absent-wait", "blocked-wait", "range-wait"}
    _add(client, job_id, [_task("later"), _task("2")])
    final = _settled(client, job_id, {"1", "bad", "later", "2", "absent-wait", "range-wait"})
    assert final["blocked-wait"].state == "active"
    assert _started_after(final["absent-wait"], [final["later"], final["1"]])
    assert _started_after(final["range-wait"], [final["1"], final["2"]])
