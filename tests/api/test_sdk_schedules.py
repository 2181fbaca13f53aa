"""Job schedules and the retired certificate operations through the official azure-batch 15.1
SDK against a real server process: create, get, exists, list, patch, put, disable, enable,
terminate, delete, the jobs of a schedule, and the error codes a client switches on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest

from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

API_VERSION = "2025-06-01"


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _spec(pool_id: str = "some-pool", **extra: Any) -> m.BatchJobSpecification:
    return m.BatchJobSpecification(pool_info=m.BatchPoolInfo(pool_id=pool_id), **extra)


FAR = datetime(2099, 1, 1, tzinfo=UTC)
"""``doNotRunUntil`` of the schedules these tests create: the timer makes no job for them."""


def _create(client: BatchClient, schedule_id: str, **extra: Any) -> None:
    extra.setdefault("schedule", m.BatchJobScheduleConfiguration(
        do_not_run_until=FAR, recurrence_interval=timedelta(minutes=5)))
    client.create_job_schedule(m.BatchJobScheduleCreateOptions(
        id=schedule_id, job_specification=_spec(), **extra))


def _details(error: HttpResponseError) -> dict[str, str]:
    """The Batch error body's ``values`` (azure-core's parsed error does not keep them)."""
    assert error.response is not None
    return {v["key"]: v["value"] for v in error.response.json().get("values", [])}


def _raw(client: BatchClient, method: str, path: str, **kwargs: Any) -> Any:
    """A request the 15.1 SDK has no method for, sent through the same signed pipeline; the
    response (the SDK's exception policy raises on errors: the response is taken from it)."""
    request = HttpRequest(method, path, params={"api-version": API_VERSION}, **kwargs)
    try:
        return client.send_request(request)
    except HttpResponseError as error:
        assert error.response is not None
        return error.response


# ------------------------------------------------------------------ create / get / exists


def test_create_get_and_exists(client: BatchClient) -> None:
    schedule_id = _uid("Sched")
    until = datetime.now(UTC) + timedelta(days=3)
    client.create_job_schedule(m.BatchJobScheduleCreateOptions(
        id=schedule_id, display_name="nightly",
        schedule=m.BatchJobScheduleConfiguration(do_not_run_until=until,
                                                 start_window=timedelta(minutes=30),
                                                 recurrence_interval=timedelta(hours=1)),
        job_specification=_spec(priority=10, constraints=m.BatchJobConstraints(
            max_task_retry_count=2)),
        metadata=[m.BatchMetadataItem(name="team", value="cfd")]))
    got = client.get_job_schedule(schedule_id.lower())  # lookups ignore case
    assert got.id == schedule_id and got.display_name == "nightly"
    assert got.state == m.BatchJobScheduleState.ACTIVE
    assert got.url.endswith(f"/jobschedules/{schedule_id}")
    assert got.etag and got.last_modified and got.creation_time
    assert got.previous_state is None
    assert got.schedule.recurrence_interval == timedelta(hours=1)
    assert got.schedule.start_window == timedelta(minutes=30)
    assert abs(got.schedule.do_not_run_until - until) < timedelta(milliseconds=1)
    assert got.execution_info.next_run_time == got.schedule.do_not_run_until
    spec = got.job_specification
    assert spec.pool_info.pool_id == "some-pool" and spec.priority == 10
    assert spec.max_parallel_tasks == -1 and spec.all_tasks_complete_mode == "noaction"
    assert spec.constraints.max_task_retry_count == 2
    assert got.metadata == [m.BatchMetadataItem(name="team", value="cfd")]
    assert client.job_schedule_exists(schedule_id.upper()) is True
    # 15.1 turns the 404 of HEAD into an exception (an SDK quirk; the server answers 404)
    with pytest.raises(ResourceNotFoundError):
        client.job_schedule_exists(_uid("missing"))


def test_a_schedule_due_at_once_creates_its_job(client: BatchClient) -> None:
    schedule_id = _uid("now")
    _create(client, schedule_id, schedule=m.BatchJobScheduleConfiguration())
    got = client.get_job_schedule(schedule_id)
    assert got.schedule is None  # an empty schedule is not shown, as Batch does
    # due at creation; the writer's next tick (within a second) creates the job
    jobs = wait_for(lambda: list(client.list_jobs_from_schedule(schedule_id)), timeout=10,
                    what="the schedule's job")
    assert [j.id for j in jobs] == [f"{schedule_id}:job-1"]
    assert jobs[0].pool_info.pool_id == "some-pool" and jobs[0].state == "active"
    got = client.get_job_schedule(schedule_id)
    assert got.execution_info.recent_job.id == f"{schedule_id}:job-1"
    assert got.execution_info.next_run_time is None  # a single run, already made
    assert got.state == "active"  # until its job completes
    # 15.1 needs a non-empty options object here (an empty one fails client-side)
    options = m._models.BatchJobTerminateOptions(termination_reason="done")
    client.begin_terminate_job(jobs[0].id, options, polling_interval=0.2).result(timeout=30)
    ended = wait_for(lambda: (s := client.get_job_schedule(schedule_id)).state == "completed"
                     and s, timeout=10, what="the schedule completed")
    assert ended.execution_info.end_time is not None


def test_select_on_get(client: BatchClient) -> None:
    schedule_id = _uid("sel")
    _create(client, schedule_id)
    got = client.get_job_schedule(schedule_id, select=["id", "state"])
    assert got.id == schedule_id and got.state == "active"
    assert got.etag is None and got.metadata is None


# ------------------------------------------------------------------ list


def test_list_filter_select_and_paging(client: BatchClient) -> None:
    prefix = _uid("lst")
    ids = [f"{prefix}-{i}" for i in range(5)]
    for schedule_id in ids:
        _create(client, schedule_id)
    client.disable_job_schedule(ids[1])
    mine = f"startswith(id, '{prefix}')"
    listed = list(client.list_job_schedules(filter=mine, max_results=2))
    assert [s.id for s in listed] == ids  # key order, over three pages
    disabled = list(client.list_job_schedules(filter=f"{mine} and state eq 'disabled'"))
    assert [s.id for s in disabled] == [ids[1]]
    selected = list(client.list_job_schedules(filter=mine, select=["id"]))
    assert [s.id for s in selected] == ids and all(s.state is None for s in selected)
    with pytest.raises(HttpResponseError) as bad:
        list(client.list_job_schedules(filter="displayName eq 'x'"))
    assert bad.value.status_code == 400
    assert bad.value.error.code == "InvalidQueryParameterValue"


# ------------------------------------------------------------------ patch / put


def test_patch_merges_and_put_replaces(client: BatchClient) -> None:
    schedule_id = _uid("upd")
    _create(client, schedule_id, metadata=[m.BatchMetadataItem(name="a", value="1")])
    before = client.get_job_schedule(schedule_id)

    client.update_job_schedule(schedule_id, m.BatchJobScheduleUpdateOptions(
        metadata=[m.BatchMetadataItem(name="b", value="2")]))
    patched = client.get_job_schedule(schedule_id)
    assert patched.metadata == [m.BatchMetadataItem(name="b", value="2")]
    assert patched.schedule.recurrence_interval == timedelta(minutes=5)  # left unchanged
    assert patched.etag != before.etag

    client.update_job_schedule(schedule_id, m.BatchJobScheduleUpdateOptions(
        job_specification=_spec("other-pool", priority=3)))
    patched = client.get_job_schedule(schedule_id)
    assert patched.job_specification.pool_info.pool_id == "other-pool"
    assert patched.job_specification.priority == 3
    assert patched.metadata == [m.BatchMetadataItem(name="b", value="2")]

    client.replace_job_schedule(schedule_id, m.BatchJobSchedule(job_specification=_spec("p3")))
    replaced = client.get_job_schedule(schedule_id)
    assert replaced.schedule is None and replaced.metadata is None  # PUT removes them
    assert replaced.job_specification.pool_info.pool_id == "p3"
    assert replaced.job_specification.priority == 0
    assert replaced.state == "active" and replaced.creation_time == before.creation_time


def test_patch_needs_a_complete_job_specification(client: BatchClient) -> None:
    schedule_id = _uid("upd")
    _create(client, schedule_id)
    etag = client.get_job_schedule(schedule_id).etag
    with pytest.raises(HttpResponseError) as caught:
        client.update_job_schedule(schedule_id, m.BatchJobScheduleUpdateOptions(
            job_specification=m.BatchJobSpecification(priority=5)))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "MissingRequiredProperty"
    assert _details(caught.value)["PropertyName"] == "jobSpecification.poolInfo"
    assert client.get_job_schedule(schedule_id).etag == etag  # nothing changed


def test_conditional_update(client: BatchClient) -> None:
    schedule_id = _uid("cond")
    _create(client, schedule_id)
    etag = client.get_job_schedule(schedule_id).etag
    client.update_job_schedule(schedule_id, m.BatchJobScheduleUpdateOptions(metadata=[]),
                               etag=etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError):
        client.update_job_schedule(schedule_id, m.BatchJobScheduleUpdateOptions(metadata=[]),
                                   etag=etag, match_condition=MatchConditions.IfNotModified)


# ------------------------------------------------------------------ state changes


def test_disable_enable_terminate(client: BatchClient) -> None:
    schedule_id = _uid("st")
    _create(client, schedule_id)
    client.disable_job_schedule(schedule_id)
    disabled = client.get_job_schedule(schedule_id)
    assert disabled.state == "disabled" and disabled.previous_state == "active"
    client.disable_job_schedule(schedule_id)  # idempotent
    client.enable_job_schedule(schedule_id)
    enabled = client.get_job_schedule(schedule_id)
    assert enabled.state == "active" and enabled.previous_state == "disabled"

    client.begin_terminate_job_schedule(schedule_id, polling_interval=1).result(timeout=30)
    ended = client.get_job_schedule(schedule_id)
    assert ended.state == "completed" and ended.previous_state == "terminating"
    assert ended.execution_info.end_time == ended.state_transition_time
    assert ended.execution_info.next_run_time is None
    for call in (client.disable_job_schedule, client.enable_job_schedule,
                 client.begin_terminate_job_schedule):
        with pytest.raises(ResourceExistsError) as caught:
            call(schedule_id)
        assert caught.value.status_code == 409
        assert caught.value.error.code == "JobScheduleCompleted"
    with pytest.raises(ResourceExistsError) as caught:
        client.update_job_schedule(schedule_id, m.BatchJobScheduleUpdateOptions(metadata=[]))
    assert caught.value.error.code == "JobScheduleCompleted"


def test_delete(client: BatchClient) -> None:
    schedule_id = _uid("del")
    _create(client, schedule_id)
    client.begin_delete_job_schedule(schedule_id, polling_interval=1).result(timeout=30)
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_job_schedule(schedule_id)
    assert caught.value.error.code == "JobScheduleNotFound"
    assert all(s.id != schedule_id for s in client.list_job_schedules())
    _create(client, schedule_id)  # the id is free again
    assert client.get_job_schedule(schedule_id).state == "active"


def test_jobs_from_schedule(client: BatchClient) -> None:
    schedule_id = _uid("jobs")
    _create(client, schedule_id)  # not due before 2099: no job
    assert list(client.list_jobs_from_schedule(schedule_id)) == []
    assert list(client.list_jobs_from_schedule(schedule_id, filter="state eq 'active'")) == []
    with pytest.raises(ResourceNotFoundError) as caught:
        list(client.list_jobs_from_schedule(_uid("missing")))
    assert caught.value.error.code == "JobScheduleNotFound"


# ------------------------------------------------------------------ errors


def test_duplicate_ids_differing_in_case(client: BatchClient) -> None:
    schedule_id = _uid("Dup")
    _create(client, schedule_id)
    with pytest.raises(ResourceExistsError) as caught:
        _create(client, schedule_id.swapcase())
    assert caught.value.status_code == 409
    assert caught.value.error.code == "JobScheduleExists"


def test_jobs_and_schedules_do_not_share_ids(client: BatchClient) -> None:
    job_id, schedule_id = _uid("shared"), _uid("shared")
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id="some-pool")))
    with pytest.raises(ResourceExistsError) as schedule_clash:
        _create(client, job_id.upper())
    assert schedule_clash.value.error.code == "JobWithSameIdExists"
    _create(client, schedule_id)
    with pytest.raises(ResourceExistsError) as job_clash:
        client.create_job(m.BatchJobCreateOptions(id=schedule_id, pool_info=m.BatchPoolInfo(
            pool_id="some-pool")))
    assert job_clash.value.error.code == "JobScheduleWithSameIdExists"


@pytest.mark.parametrize("bad_id", ["bad id!", "x" * 65, "semi;colon", "dot.ted", "a:b"])
def test_malformed_ids_are_400(client: BatchClient, bad_id: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        _create(client, bad_id)
    assert caught.value.status_code == 400
    assert caught.value.error.code == "InvalidPropertyValue"


@pytest.mark.parametrize(("schedule", "prop"), [
    (m.BatchJobScheduleConfiguration(recurrence_interval=timedelta(seconds=30)),
     "schedule.recurrenceInterval"),
    (m.BatchJobScheduleConfiguration(start_window=timedelta(seconds=59)),
     "schedule.startWindow"),
])
def test_intervals_under_a_minute_are_400(client: BatchClient,
                                          schedule: m.BatchJobScheduleConfiguration,
                                          prop: str) -> None:
    schedule_id = _uid("short")
    with pytest.raises(HttpResponseError) as caught:
        _create(client, schedule_id, schedule=schedule)
    assert caught.value.status_code == 400
    assert caught.value.error.code == "InvalidPropertyValue"
    assert _details(caught.value)["PropertyName"] == prop
    with pytest.raises(ResourceNotFoundError):
        client.get_job_schedule(schedule_id)


@pytest.mark.parametrize("missing", ["never-created", "no such schedule!"])
def test_unknown_and_malformed_ids_are_404(client: BatchClient, missing: str) -> None:
    calls = [
        lambda: client.get_job_schedule(missing),
        lambda: client.update_job_schedule(missing, m.BatchJobScheduleUpdateOptions(
            metadata=[])),
        lambda: client.replace_job_schedule(missing, m.BatchJobSchedule(
            job_specification=_spec())),
        lambda: client.disable_job_schedule(missing),
        lambda: client.enable_job_schedule(missing),
        lambda: client.begin_terminate_job_schedule(missing),
        lambda: client.begin_delete_job_schedule(missing),
        lambda: list(client.list_jobs_from_schedule(missing)),
    ]
    for call in calls:
        with pytest.raises(ResourceNotFoundError) as caught:
            call()
        assert caught.value.error.code == "JobScheduleNotFound"


def test_missing_job_specification_is_400(client: BatchClient) -> None:
    response = _raw(client, "POST", "/jobschedules", json={"id": _uid("nospec"),
                                                          "schedule": {}})
    assert response.status_code == 400
    assert response.json()["code"] == "MissingRequiredProperty"


# ------------------------------------------------------------------ certificates (retired)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/certificates", None),
    ("POST", "/certificates", {"thumbprint": "ab" * 20, "thumbprintAlgorithm": "sha1",
                               "data": "AAAA", "certificateFormat": "cer"}),
    ("GET", "/certificates(thumbprintAlgorithm=sha1,thumbprint=abcdef)", None),
    ("DELETE", "/certificates(thumbprintAlgorithm=sha1,thumbprint=abcdef)", None),
    ("POST", "/certificates(thumbprintAlgorithm=sha1,thumbprint=abcdef)/canceldelete", None),
])
def test_certificate_operations_are_retired(client: BatchClient, method: str, path: str,
                                            body: dict[str, str] | None) -> None:
    response = _raw(client, method, path, json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "CertificateRetired"
    assert error["message"]["lang"] == "en-US"
    assert "retired on 02/29/2024" in error["message"]["value"]
    assert [v["key"] for v in error["values"]] == ["Reason"]
    assert response.headers["request-id"]


# ------------------------------------------------------------------ durability


def test_schedules_survive_a_restart(fresh_server: ServerProcess) -> None:
    client = BatchClient(fresh_server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    _create(client, "Kept")
    client.disable_job_schedule("kept")
    _create(client, "ended")
    client.begin_terminate_job_schedule("ended", polling_interval=1).result(timeout=30)
    before = {s.id: (s.state, s.etag) for s in client.list_job_schedules()}
    fresh_server.stop()
    fresh_server.start()
    after = {s.id: (s.state, s.etag) for s in client.list_job_schedules()}
    assert after == before == {"Kept": ("disabled", before["Kept"][1]),
                               "ended": ("completed", before["ended"][1])}
    with pytest.raises(ResourceExistsError) as caught:
        _create(client, "KEPT")  # the restored core still knows the id
    assert caught.value.error.code == "JobScheduleExists"
    client.enable_job_schedule("kept")
    assert client.get_job_schedule("kept").state == "active"
