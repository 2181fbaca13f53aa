"""Error answers a real client relies on, through the official SDK: duplicate ids (case-
insensitive), malformed ids, unknown ids, bad credentials, unsupported features."""

from __future__ import annotations

import uuid

import httpx
import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from tests.support.server import ACCOUNT, ServerProcess


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _pool(pool_id: str, nodes: int = 0) -> m.BatchPoolCreateOptions:
    return m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                    target_dedicated_nodes=nodes)


def test_duplicate_pool_id_differing_in_case(client: BatchClient) -> None:
    pool_id = _uid("Dup")
    client.create_pool(_pool(pool_id))
    with pytest.raises(ResourceExistsError) as caught:
        client.create_pool(_pool(pool_id.upper()))
    assert caught.value.error.code == "PoolExists"
    assert client.get_pool(pool_id.lower()).id == pool_id  # lookups ignore case too


def test_duplicate_job_and_task_ids(client: BatchClient) -> None:
    pool_id, job_id = _uid("p"), _uid("Job")
    client.create_pool(_pool(pool_id))
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id=pool_id)))
    with pytest.raises(ResourceExistsError) as job_dup:
        client.create_job(m.BatchJobCreateOptions(id=job_id.swapcase(),
                                                  pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    assert job_dup.value.error.code == "JobExists"
    client.create_task(job_id, m.BatchTaskCreateOptions(id="Task-A", command_line="/bin/true"))
    with pytest.raises(ResourceExistsError) as task_dup:
        client.create_task(job_id, m.BatchTaskCreateOptions(id="task-a",
                                                            command_line="/bin/true"))
    assert task_dup.value.error.code == "TaskExists"
    # in a collection the duplicate is reported per task and the others are created
    result = client.create_task_collection(job_id, m.BatchTaskGroup(task_values=[
        m.BatchTaskCreateOptions(id="TASK-A", command_line="/bin/true"),
        m.BatchTaskCreateOptions(id="task-b", command_line="/bin/true")]))
    by_id = {r.task_id: r for r in result.result_values}
    assert by_id["TASK-A"].status == "clienterror"
    assert by_id["TASK-A"].error.code == "TaskExists"
    assert by_id["task-b"].status == "success"


@pytest.mark.parametrize("bad_id", ["bad id!", "x" * 65, "semi;colon", "dot.ted"])
def test_malformed_ids_are_400(client: BatchClient, bad_id: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.create_pool(_pool(bad_id))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "InvalidPropertyValue"


def test_missing_required_property(client: BatchClient, server: ServerProcess) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.create_job(m.BatchJobCreateOptions(id=_uid("j"), pool_info=m.BatchPoolInfo()))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "MissingRequiredProperty"


def test_unknown_ids_are_404(client: BatchClient) -> None:
    with pytest.raises(ResourceNotFoundError) as pool:
        client.get_pool("no-such-pool")
    assert pool.value.error.code == "PoolNotFound"
    with pytest.raises(ResourceNotFoundError) as job:
        client.get_job("no-such-job")
    assert job.value.error.code == "JobNotFound"
    pool_id, job_id = _uid("p"), _uid("j")
    client.create_pool(_pool(pool_id))
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id=pool_id)))
    with pytest.raises(ResourceNotFoundError) as task:
        client.get_task(job_id, "no-such-task")
    assert task.value.error.code == "TaskNotFound"
    with pytest.raises(ResourceNotFoundError) as node:
        client.get_node(pool_id, "tvmps_missing_d")
    assert node.value.error.code == "NodeNotFound"


def test_wrong_key_is_403(server: ServerProcess) -> None:
    import base64

    bad = BatchClient(server.endpoint, AzureNamedKeyCredential(
        ACCOUNT, base64.b64encode(b"not-the-key").decode()))
    with pytest.raises(HttpResponseError) as caught:
        list(bad.list_pools())
    assert caught.value.status_code == 403
    assert caught.value.error.code == "AuthenticationFailed"


def test_no_credentials_is_401(server: ServerProcess) -> None:
    response = httpx.get(f"{server.endpoint}/pools?api-version=2025-06-01")
    assert response.status_code == 401
    body = response.json()
    assert isinstance(body["message"], dict) and body["message"]["lang"] == "en-US"
    assert response.headers["request-id"]


def test_unsupported_feature_is_a_clear_batch_error(client: BatchClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.create_pool(m.BatchPoolCreateOptions(
            id=_uid("auto"), vm_size="standard_d2s_v3", enable_auto_scale=True,
            auto_scale_formula="$TargetDedicatedNodes=1;"))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "UnsupportedProperty"
    assert "not supported" in caught.value.error.message


def test_unimplemented_operation_is_501(client: BatchClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.disable_pool_auto_scale("any-pool")
    assert caught.value.status_code == 501
    assert caught.value.error.code == "NotImplemented"


def test_pool_exists_and_old_api_version(client: BatchClient, server: ServerProcess) -> None:
    pool_id = _uid("ex")
    client.create_pool(_pool(pool_id))
    assert client.pool_exists(pool_id) is True
    old = BatchClient(server.endpoint, client._config.credential, api_version="2018-12-01.8.0")
    assert old.get_pool(pool_id).id == pool_id
    too_new = BatchClient(server.endpoint, client._config.credential, api_version="2099-01-01")
    with pytest.raises(HttpResponseError) as caught:
        too_new.get_pool(pool_id)
    assert caught.value.error.code == "UnsupportedRequestVersion"


def test_task_files_cleaned_up_after_retention_time(client: BatchClient) -> None:
    import time

    from tests.support.server import wait_for

    pool_id, job_id = _uid("ret"), _uid("ret")
    client.create_pool(_pool(pool_id, nodes=1))
    client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
        pool_id=pool_id)))
    client.create_task(job_id, m.BatchTaskCreateOptions(
        id="short-lived", command_line="/bin/echo kept for a second",
        constraints=m.BatchTaskConstraints(retention_time="PT1S")))
    wait_for(lambda: client.get_task(job_id, "short-lived").state == "completed",
             what="the task to complete")
    out = b"".join(client.download_task_file(job_id, "short-lived", "stdout.txt"))
    assert out == b"kept for a second\n"  # still within its retention time
    ended = client.get_task(job_id, "short-lived").execution_info.end_time

    def cleaned() -> bool:
        try:
            b"".join(client.download_task_file(job_id, "short-lived", "stdout.txt"))
        except HttpResponseError as error:
            # a streamed download leaves the Batch error body unparsed: read it ourselves
            assert error.status_code == 409
            error.response.read()
            assert '"TaskFilesCleanedup"' in error.response.text()
            return True
        return False

    wait_for(cleaned, timeout=15, interval=0.2, what="retention to expire")
    assert time.time() - ended.timestamp() > 1.0


def test_unknown_vm_size_refused_as_batch_does(client: BatchClient) -> None:
    pool_id = _uid("size")
    with pytest.raises(HttpResponseError) as caught:
        client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_q9000",
                                                    target_dedicated_nodes=0))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "InvalidPropertyValue"
    with pytest.raises(ResourceNotFoundError):
        client.get_pool(pool_id)  # nothing was created
    raw = caught.value.response.json()
    values = {v["key"]: v["value"] for v in raw.get("values", [])}
    assert values.get("PropertyName") == "vmSize"
    assert values.get("PropertyValue") == "standard_q9000"
