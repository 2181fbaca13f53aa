"""Conditional requests (wire reference §1.7) through the official 15.1 SDK: ``etag`` +
``match_condition`` (If-Match / If-None-Match, quoted, or ``*``) and ``if_modified_since`` /
``if_unmodified_since`` on every implemented read and write that takes them.

Reads answer 304 (If-None-Match, If-Modified-Since) or 412 (If-Match, If-Unmodified-Since);
writes answer 412 ``ConditionNotMet`` for any unmet condition and change nothing.

The exception classes are the SDK's own choice (its per-call policy, wire reference §1.7):
any failure with If-Match sent is ``ResourceModifiedError`` (``ResourceNotFoundError`` for
``If-Match: *`` / ``If-None-Match: *``), a 304 is ``ResourceModifiedError``; so the tests
assert the status and Batch error code each answer carries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError

from tests.support.server import wait_for

STALE = "0x8D0000000000000"
DAY = timedelta(days=1)
FAST: dict[str, Any] = {"polling_interval": 0.2}


def refused(status: int, call: Callable[[], Any]) -> HttpResponseError:
    """Run ``call``; it must fail with HTTP ``status``, and a 412 or 400 with a GET or write
    must carry its Batch error code (a HEAD answer has no body; a 304 never has one)."""
    with pytest.raises(HttpResponseError) as caught:
        result = call()
        if hasattr(result, "__next__"):  # a download: the answer comes with the first chunk
            b"".join(result)
    error = caught.value
    assert error.status_code == status, error
    response = error.response
    if response.request.method == "HEAD" or status == 304:
        response.read()
        assert response.text() == ""
    elif status == 412:
        code = error.error.code if error.error is not None else None
        if code is None:  # a streamed answer: the SDK left the body unread
            response.read()
            code = json.loads(response.text())["code"]
        assert code == "ConditionNotMet"
    return error


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _pool(client: BatchClient, nodes: int = 0) -> str:
    pool_id = _uid("cp")
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=nodes))
    if nodes:
        wait_for(lambda: client.get_pool(pool_id).allocation_state == "steady"
                 and len([n for n in client.list_nodes(pool_id) if n.state == "idle"]) == nodes,
                 what=f"{nodes} idle node(s)")
    return pool_id


def _job(client: BatchClient, pool_id: str) -> str:
    job_id = _uid("cj")
    client.create_job(m.BatchJobCreateOptions(id=job_id,
                                              pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    return job_id


def _task(client: BatchClient, job_id: str) -> str:
    client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    return "t"


# ----------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class Read:
    name: str
    make: Callable[[BatchClient], tuple[str, ...]]
    get: Callable[..., Any]


READS = [
    Read("get_pool", lambda c: (_pool(c),), lambda c, ids, **kw: c.get_pool(*ids, **kw)),
    Read("get_job", lambda c: (_job(c, _uid("nopool")),),
         lambda c, ids, **kw: c.get_job(*ids, **kw)),
    Read("get_task", lambda c: ((j := _job(c, _uid("nopool"))), _task(c, j)),
         lambda c, ids, **kw: c.get_task(*ids, **kw)),
]


@pytest.mark.parametrize("read", READS, ids=[r.name for r in READS])
def test_read_entity_tags(client: BatchClient, read: Read) -> None:
    ids = read.make(client)
    current = read.get(client, ids)
    etag = current.etag
    assert etag and not etag.startswith('"')  # bare in the body, quoted by the SDK when sent

    # If-Match: "<etag>" / "<stale>" / *
    assert read.get(client, ids, etag=etag, match_condition=MatchConditions.IfNotModified).id
    stale = refused(412, lambda: read.get(client, ids, etag=STALE,
                                          match_condition=MatchConditions.IfNotModified))
    assert isinstance(stale, ResourceModifiedError)
    assert read.get(client, ids, match_condition=MatchConditions.IfPresent).id

    # If-None-Match: "<etag>" / "<stale>" / *
    same = refused(304, lambda: read.get(client, ids, etag=etag,
                                         match_condition=MatchConditions.IfModified))
    assert same.response.headers["ETag"] == etag  # a 304 still names the version
    assert same.response.headers["Last-Modified"]
    assert read.get(client, ids, etag=STALE, match_condition=MatchConditions.IfModified).id
    refused(304, lambda: read.get(client, ids, match_condition=MatchConditions.IfMissing))


@pytest.mark.parametrize("read", READS, ids=[r.name for r in READS])
def test_read_dates(client: BatchClient, read: Read) -> None:
    ids = read.make(client)
    changed: datetime = read.get(client, ids).last_modified
    assert changed.tzinfo is not None

    refused(304, lambda: read.get(client, ids, if_modified_since=changed))
    refused(304, lambda: read.get(client, ids, if_modified_since=changed + DAY))
    assert read.get(client, ids, if_modified_since=changed - DAY).id
    assert read.get(client, ids, if_unmodified_since=changed).id
    assert read.get(client, ids, if_unmodified_since=changed + DAY).id
    refused(412, lambda: read.get(client, ids, if_unmodified_since=changed - DAY))


def test_combined_read_conditions(client: BatchClient) -> None:
    pool_id = _pool(client)
    pool = client.get_pool(pool_id)
    # If-None-Match + If-Modified-Since: only If-None-Match counts (a stale tag: modified)
    assert client.get_pool(pool_id, etag=STALE, match_condition=MatchConditions.IfModified,
                           if_modified_since=pool.last_modified + DAY).id == pool_id
    # If-Match + If-Unmodified-Since: only If-Match counts
    assert client.get_pool(pool_id, etag=pool.etag,
                           match_condition=MatchConditions.IfNotModified,
                           if_unmodified_since=pool.last_modified - DAY).id == pool_id
    # any other pair is refused
    caught = refused(400, lambda: client.get_pool(
        pool_id, etag=pool.etag, match_condition=MatchConditions.IfNotModified,
        if_modified_since=pool.last_modified - DAY))
    assert caught.error.code == "MultipleConditionHeadersNotSupported"


def test_pool_exists_is_conditional(client: BatchClient) -> None:
    pool_id = _pool(client)
    pool = client.get_pool(pool_id)
    assert client.pool_exists(pool_id, etag=pool.etag,
                              match_condition=MatchConditions.IfNotModified) is True
    refused(412, lambda: client.pool_exists(pool_id, etag=STALE,
                                            match_condition=MatchConditions.IfNotModified))
    refused(304, lambda: client.pool_exists(pool_id, etag=pool.etag,
                                            match_condition=MatchConditions.IfModified))
    refused(304, lambda: client.pool_exists(pool_id, if_modified_since=pool.last_modified))
    refused(412, lambda: client.pool_exists(pool_id,
                                            if_unmodified_since=pool.last_modified - DAY))
    assert client.pool_exists(pool_id, if_modified_since=pool.last_modified - DAY) is True


# ----------------------------------------------------------------------------- writes


@dataclass(frozen=True)
class Write:
    """One write: the resource it needs, the call, and how to read the resource's version."""

    name: str
    make: Callable[[BatchClient], tuple[str, ...]]
    call: Callable[..., Any]
    version: Callable[[BatchClient, tuple[str, ...]], Any]


def _pool_version(c: BatchClient, ids: tuple[str, ...]) -> Any:
    return c.get_pool(ids[0])


def _job_version(c: BatchClient, ids: tuple[str, ...]) -> Any:
    return c.get_job(ids[0])


def _task_version(c: BatchClient, ids: tuple[str, ...]) -> Any:
    return c.get_task(ids[0], ids[1])


def _job_ids(c: BatchClient) -> tuple[str, ...]:
    """A job on a pool that does not exist (nothing runs) and that pool's id."""
    pool_id = _uid("nopool")
    return _job(c, pool_id), pool_id


def _disabled_job_ids(c: BatchClient) -> tuple[str, ...]:
    job_id, pool_id = _job_ids(c)
    c.begin_disable_job(job_id, m.BatchJobDisableOptions(disable_tasks="requeue"),
                        **FAST).result()
    return job_id, pool_id


def _schedule_ids(c: BatchClient) -> tuple[str, ...]:
    schedule_id = _uid("cs")
    c.create_job_schedule(m.BatchJobScheduleCreateOptions(
        id=schedule_id, schedule=m.BatchJobScheduleConfiguration(
            # far in the future: the schedule timer must not change it while the test
            # compares versions
            do_not_run_until=datetime(2099, 1, 1, tzinfo=UTC),
            recurrence_interval=timedelta(hours=1)),
        job_specification=m.BatchJobSpecification(pool_info=m.BatchPoolInfo(
            pool_id=_uid("nopool")))))
    return (schedule_id,)


def _schedule_version(c: BatchClient, ids: tuple[str, ...]) -> Any:
    return c.get_job_schedule(ids[0])


def _task_ids(c: BatchClient) -> tuple[str, ...]:
    job_id = _job(c, _uid("nopool"))  # no pool: the task stays active
    return job_id, _task(c, job_id)


def _disabled_schedule_ids(c: BatchClient) -> tuple[str, ...]:
    ids = _schedule_ids(c)
    c.disable_job_schedule(ids[0])
    return ids


def _failed_task_ids(c: BatchClient) -> tuple[str, ...]:
    job_id, task_id = _task_ids(c)
    c.terminate_task(job_id, task_id)  # completed with result failure: reactivatable
    return job_id, task_id


def _node_ids(c: BatchClient) -> tuple[str, ...]:
    pool_id = _pool(c, nodes=1)
    return pool_id, next(iter(c.list_nodes(pool_id))).id


WRITES = [
    Write("update_job", _job_ids,
          lambda c, ids, **kw: c.update_job(ids[0], m.BatchJobUpdateOptions(priority=5), **kw),
          _job_version),
    Write("replace_job", _job_ids,  # the same pool: an active job cannot change pools
          lambda c, ids, **kw: c.replace_job(ids[0], m.BatchJob(
              pool_info=m.BatchPoolInfo(pool_id=ids[1]), priority=7), **kw),
          _job_version),
    Write("move_disabled_job", _disabled_job_ids,
          lambda c, ids, **kw: c.replace_job(ids[0], m.BatchJob(
              pool_info=m.BatchPoolInfo(pool_id="elsewhere"), priority=7), **kw),
          _job_version),
    Write("disable_job", _job_ids,
          lambda c, ids, **kw: c.begin_disable_job(
              ids[0], m.BatchJobDisableOptions(disable_tasks="requeue"), **FAST, **kw),
          _job_version),
    Write("enable_job", _disabled_job_ids,
          lambda c, ids, **kw: c.begin_enable_job(ids[0], **FAST, **kw), _job_version),
    Write("update_pool", lambda c: (_pool(c),),
          lambda c, ids, **kw: c.update_pool(ids[0], m.BatchPoolUpdateOptions(
              metadata=[m.BatchMetadataItem(name="k", value="v")]), **kw),
          _pool_version),
    Write("update_job_schedule", _schedule_ids,
          lambda c, ids, **kw: c.update_job_schedule(ids[0], m.BatchJobScheduleUpdateOptions(
              metadata=[m.BatchMetadataItem(name="k", value="v")]), **kw),
          _schedule_version),
    Write("disable_job_schedule", _schedule_ids,
          lambda c, ids, **kw: c.disable_job_schedule(ids[0], **kw), _schedule_version),
    Write("enable_job_schedule", _disabled_schedule_ids,
          lambda c, ids, **kw: c.enable_job_schedule(ids[0], **kw), _schedule_version),
    Write("terminate_job_schedule", _schedule_ids,
          lambda c, ids, **kw: c.begin_terminate_job_schedule(ids[0], **FAST, **kw),
          _schedule_version),
    Write("delete_job_schedule", _schedule_ids,
          lambda c, ids, **kw: c.begin_delete_job_schedule(ids[0], **FAST, **kw),
          _schedule_version),
    Write("terminate_job", _job_ids,
          lambda c, ids, **kw: c.begin_terminate_job(
              ids[0], BatchJobTerminateOptions(termination_reason="by test"), **FAST, **kw),
          _job_version),
    Write("delete_job", _job_ids,
          lambda c, ids, **kw: c.begin_delete_job(ids[0], **FAST, **kw), _job_version),
    Write("delete_pool", lambda c: (_pool(c),),
          lambda c, ids, **kw: c.begin_delete_pool(ids[0], **FAST, **kw), _pool_version),
    Write("resize_pool", lambda c: (_pool(c),),
          lambda c, ids, **kw: c.begin_resize_pool(
              ids[0], m.BatchPoolResizeOptions(target_dedicated_nodes=1), **FAST, **kw),
          _pool_version),
    Write("stop_pool_resize", lambda c: (_pool(c),),
          lambda c, ids, **kw: c.begin_stop_pool_resize(ids[0], **FAST, **kw),
          _pool_version),
    Write("remove_nodes", _node_ids,
          lambda c, ids, **kw: c.begin_remove_nodes(
              ids[0], m.BatchNodeRemoveOptions(node_ids=[ids[1]]), **FAST, **kw),
          _pool_version),
    Write("replace_task", _task_ids,
          lambda c, ids, **kw: c.replace_task(ids[0], ids[1], m.BatchTask(
              constraints=m.BatchTaskConstraints(max_task_retry_count=3)), **kw),
          _task_version),
    Write("terminate_task", _task_ids,
          lambda c, ids, **kw: c.terminate_task(ids[0], ids[1], **kw), _task_version),
    Write("reactivate_task", _failed_task_ids,
          lambda c, ids, **kw: c.reactivate_task(ids[0], ids[1], **kw), _task_version),
    Write("delete_task", _task_ids,
          lambda c, ids, **kw: c.delete_task(ids[0], ids[1], **kw), _task_version),
]


@pytest.mark.parametrize("write", WRITES, ids=[w.name for w in WRITES])
def test_unmet_write_conditions_change_nothing(client: BatchClient, write: Write) -> None:
    ids = write.make(client)
    before = write.version(client, ids)

    def attempt(**conditions: Any) -> Callable[[], Any]:
        return lambda: write.call(client, ids, **conditions)

    refused(412, attempt(etag=STALE, match_condition=MatchConditions.IfNotModified))
    refused(412, attempt(match_condition=MatchConditions.IfMissing))  # If-None-Match: *
    refused(412, attempt(etag=before.etag, match_condition=MatchConditions.IfModified))
    refused(412, attempt(if_unmodified_since=before.last_modified - DAY))
    refused(412, attempt(if_modified_since=before.last_modified))  # not modified since
    refused(400, attempt(etag=before.etag, match_condition=MatchConditions.IfNotModified,
                         if_modified_since=before.last_modified - DAY))

    after = write.version(client, ids)
    assert (after.etag, after.last_modified) == (before.etag, before.last_modified)


@pytest.mark.parametrize("write", WRITES, ids=[w.name for w in WRITES])
def test_met_write_conditions_proceed(client: BatchClient, write: Write) -> None:
    ids = write.make(client)
    before = write.version(client, ids)
    result = write.call(client, ids, etag=before.etag,
                        match_condition=MatchConditions.IfNotModified,
                        if_unmodified_since=before.last_modified)  # If-Match decides
    if hasattr(result, "result"):
        result.result()  # a long-running operation: it completes
    if write.name in ("update_job", "replace_job", "move_disabled_job", "disable_job",
                      "enable_job", "update_pool", "update_job_schedule",
                      "disable_job_schedule", "enable_job_schedule", "terminate_job_schedule",
                      "replace_task", "terminate_task", "reactivate_task", "resize_pool",
                      "remove_nodes", "terminate_job"):
        assert write.version(client, ids).etag != before.etag


def test_concurrent_writers_one_wins(client: BatchClient) -> None:
    """Optimistic concurrency: two clients read the same version; the second write fails."""
    job_id = _job(client, _uid("nopool"))
    seen = client.get_job(job_id).etag
    client.update_job(job_id, m.BatchJobUpdateOptions(priority=1), etag=seen,
                      match_condition=MatchConditions.IfNotModified)
    refused(412, lambda: client.update_job(job_id, m.BatchJobUpdateOptions(priority=2),
                                           etag=seen,
                                           match_condition=MatchConditions.IfNotModified))
    assert client.get_job(job_id).priority == 1


# ----------------------------------------------------------------------------- files


def test_file_reads_honour_modified_since(client: BatchClient) -> None:
    pool_id = _pool(client, nodes=1)
    job_id = _job(client, pool_id)
    client.create_task(job_id, m.BatchTaskCreateOptions(id="f", command_line="/bin/echo file"))
    wait_for(lambda: client.get_task(job_id, "f").state == "completed", what="task f")
    modified = client.get_task_file_properties(job_id, "f", "stdout.txt").last_modified
    assert isinstance(modified, datetime)

    assert b"".join(client.download_task_file(job_id, "f", "stdout.txt",
                                              if_modified_since=modified - DAY)) == b"file\n"
    refused(304, lambda: client.download_task_file(job_id, "f", "stdout.txt",
                                                   if_modified_since=modified))
    refused(412, lambda: client.download_task_file(job_id, "f", "stdout.txt",
                                                   if_unmodified_since=modified - DAY))
    refused(412, lambda: client.get_task_file_properties(job_id, "f", "stdout.txt",
                                                         if_unmodified_since=modified - DAY))
    node_id = client.get_task(job_id, "f").node_info.node_id
    path = f"workitems/{job_id}/job-1/f/stdout.txt"
    refused(304, lambda: client.get_node_file_properties(pool_id, node_id, path,
                                                         if_modified_since=modified))
    assert b"".join(client.download_node_file(pool_id, node_id, path,
                                              if_unmodified_since=modified)) == b"file\n"
