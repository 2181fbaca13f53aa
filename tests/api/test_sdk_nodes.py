"""Pool updates, compute node operations, node users, usage metrics and node logs through the
official azure-batch 15.1 SDK against a real server (local nodes in the node agent)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.batch.models import _models as internal
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from tests.support.azurite import Azurite
from tests.support.server import wait_for

POLL = 0.1
REQUEUE = internal.BatchNodeRebootOptions(node_reboot_kind="requeue")


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ssh_key() -> str:
    kind = b"ssh-ed25519"
    blob = len(kind).to_bytes(4, "big") + kind + bytes(36)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} test@hybatch"


def _pool(client: BatchClient, nodes: int, **extra: object) -> str:
    pool_id = _uid("np")
    client.create_pool(m.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=nodes, **extra))
    if nodes:
        wait_for(lambda: (found := list(client.list_nodes(pool_id))) and len(found) == nodes
                 and all(n.state == "idle" for n in found), what=f"{nodes} idle nodes")
    return pool_id


def _job(client: BatchClient, pool_id: str) -> str:
    job_id = _uid("nj")
    client.create_job(m.BatchJobCreateOptions(id=job_id,
                                              pool_info=m.BatchPoolInfo(pool_id=pool_id)))
    return job_id


def _running(client: BatchClient, job_id: str, task_id: str) -> m.BatchTask:
    return wait_for(lambda: (t := client.get_task(job_id, task_id)).state == "running" and t,
                    interval=POLL, what=f"{task_id} running")


def _node(client: BatchClient, pool_id: str, node_id: str) -> m.BatchNode:
    return client.get_node(pool_id, node_id)


@pytest.fixture
def single(client: BatchClient) -> Iterator[tuple[str, str, str]]:
    """A pool of one idle node and a job on it; deleted afterwards."""
    pool_id = _pool(client, 1)
    job_id = _job(client, pool_id)
    node_id = next(iter(client.list_nodes(pool_id))).id
    yield pool_id, job_id, node_id
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


# ------------------------------------------------------------------ pool update / replace


def test_patch_and_updateproperties_round_trip(client: BatchClient) -> None:
    pool_id = _pool(client, 0, display_name="before",
                    metadata=[m.BatchMetadataItem(name="a", value="1")])
    client.update_pool(pool_id, m.BatchPoolUpdateOptions(
        metadata=[m.BatchMetadataItem(name="b", value="2")], task_slots_per_node=3))
    pool = client.get_pool(pool_id)
    assert [(i.name, i.value) for i in pool.metadata] == [("b", "2")]
    assert pool.display_name == "before"  # not sent: unchanged
    assert pool.task_slots_per_node == 3
    etag = pool.etag
    client.replace_pool_properties(pool_id, m.BatchPoolReplaceOptions(
        application_package_references=[], metadata=[]))
    pool = client.get_pool(pool_id)
    assert not pool.metadata and pool.start_task is None
    assert pool.display_name == "before" and pool.task_slots_per_node == 3
    assert pool.etag != etag
    with pytest.raises(HttpResponseError) as unsupported:
        client.update_pool(pool_id, m.BatchPoolUpdateOptions(start_task=m.BatchStartTask(
            command_line="/bin/true", container_settings=m.BatchTaskContainerSettings(
                image_name="ubuntu"))))
    assert (unsupported.value.status_code, unsupported.value.error.code) == (
        400, "UnsupportedProperty")
    with pytest.raises(ResourceNotFoundError) as missing:
        client.update_pool(_uid("nope"), m.BatchPoolUpdateOptions(metadata=[]))
    assert missing.value.error.code == "PoolNotFound"
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_empty_pool_only_fields_are_refused_on_a_pool_with_nodes(
        client: BatchClient, single: tuple[str, str, str]) -> None:
    pool_id = single[0]
    with pytest.raises(ResourceExistsError) as caught:  # azure-core maps 409 to this
        client.update_pool(pool_id, m.BatchPoolUpdateOptions(vm_size="standard_d4s_v3"))
    assert caught.value.error.code == "OperationInvalidForCurrentState"
    client.update_pool(pool_id, m.BatchPoolUpdateOptions(
        metadata=[m.BatchMetadataItem(name="k", value="v")]))  # allowed any time
    assert client.get_pool(pool_id).metadata[0].name == "k"


# ------------------------------------------------------------------ scheduling


def test_disable_scheduling_requeues_a_running_task_which_completes_elsewhere(
        client: BatchClient) -> None:
    pool_id = _pool(client, 2)
    job_id = _job(client, pool_id)
    client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/sleep 2"))
    first = _running(client, job_id, "t").node_info.node_id
    client.disable_node_scheduling(pool_id, first, m.BatchNodeDisableSchedulingOptions(
        node_disable_scheduling_option="requeue"))
    assert _node(client, pool_id, first).scheduling_state == "disabled"
    done = wait_for(lambda: (t := client.get_task(job_id, "t")).state == "completed" and t,
                    timeout=30, interval=POLL, what="task completed")
    info = done.execution_info
    assert (info.exit_code, info.requeue_count, info.retry_count) == (0, 1, 0)
    assert done.node_info.node_id != first
    assert _node(client, pool_id, first).state == "offline"
    with pytest.raises(ResourceExistsError) as twice:
        client.disable_node_scheduling(pool_id, first, m.BatchNodeDisableSchedulingOptions(
            node_disable_scheduling_option="requeue"))
    assert twice.value.error.code == "NodeAlreadyInTargetSchedulingState"
    client.enable_node_scheduling(pool_id, first)
    node = _node(client, pool_id, first)
    assert (node.scheduling_state, node.state) == ("enabled", "idle")
    with pytest.raises(ResourceExistsError) as again:
        client.enable_node_scheduling(pool_id, first)
    assert again.value.error.code == "NodeAlreadyInTargetSchedulingState"
    client.begin_delete_job(job_id, polling_interval=POLL).result()
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()


def test_a_requeued_task_runs_again_once_scheduling_is_enabled(
        client: BatchClient, single: tuple[str, str, str]) -> None:
    pool_id, job_id, node_id = single
    client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/sleep 30"))
    _running(client, job_id, "t")
    client.disable_node_scheduling(pool_id, node_id, m.BatchNodeDisableSchedulingOptions(
            node_disable_scheduling_option="requeue"))
    wait_for(lambda: client.get_task(job_id, "t").state == "active", interval=POLL,
             what="task requeued")
    wait_for(lambda: _node(client, pool_id, node_id).state == "offline", interval=POLL,
             what="node offline")
    assert client.get_task(job_id, "t").execution_info.requeue_count == 1
    client.enable_node_scheduling(pool_id, node_id)
    assert _running(client, job_id, "t").node_info.node_id == node_id
    client.terminate_task(job_id, "t")


# ------------------------------------------------------------------ reboot / reimage / start


def test_reboot_with_requeue(client: BatchClient, single: tuple[str, str, str]) -> None:
    pool_id, job_id, node_id = single
    client.create_task(job_id, m.BatchTaskCreateOptions(id="t", command_line="/bin/sleep 30"))
    _running(client, job_id, "t")
    booted = _node(client, pool_id, node_id).last_boot_time
    client.begin_reboot_node(pool_id, node_id, internal.BatchNodeRebootOptions(
        node_reboot_kind="requeue"), polling_interval=POLL).result()
    node = _node(client, pool_id, node_id)
    assert node.state in ("idle", "running") and node.last_boot_time > booted
    task = _running(client, job_id, "t")  # requeued, then placed on the rebooted node
    assert (task.execution_info.requeue_count, task.execution_info.retry_count) == (1, 0)
    client.terminate_task(job_id, "t")


def test_reimage_cleans_the_node_and_its_users(client: BatchClient,
                                                single: tuple[str, str, str]) -> None:
    pool_id, job_id, node_id = single
    client.create_task(job_id, m.BatchTaskCreateOptions(id="w", command_line="/bin/true"))
    wait_for(lambda: client.get_task(job_id, "w").state == "completed", interval=POLL,
             what="task done")
    names = {f.name for f in client.list_node_files(pool_id, node_id, recursive=True)}
    assert any(n.startswith(f"workitems/{job_id}") for n in names)
    client.create_node_user(pool_id, node_id, m.BatchNodeUserCreateOptions(name="alice"))
    client.begin_reimage_node(pool_id, node_id, internal.BatchNodeReimageOptions(
        node_reimage_option="terminate"), polling_interval=POLL).result()
    assert _node(client, pool_id, node_id).state == "idle"
    names = {f.name for f in client.list_node_files(pool_id, node_id, recursive=True)}
    assert not any(n.startswith(f"workitems/{job_id}") for n in names)
    with pytest.raises(ResourceNotFoundError):
        client.delete_node_user(pool_id, node_id, "alice")  # the reimage removed it


def test_deallocate_and_start(client: BatchClient, single: tuple[str, str, str]) -> None:
    pool_id, _, node_id = single
    client.begin_deallocate_node(pool_id, node_id, internal.BatchNodeDeallocateOptions(
        node_deallocate_option="requeue"),
                                 polling_interval=POLL).result()
    assert _node(client, pool_id, node_id).state == "deallocated"
    with pytest.raises(ResourceExistsError) as refused:
        client.begin_reboot_node(pool_id, node_id, REQUEUE)
    assert refused.value.error.code == "OperationInvalidForCurrentState"
    client.begin_start_node(pool_id, node_id, polling_interval=POLL).result()
    assert _node(client, pool_id, node_id).state == "idle"


# ------------------------------------------------------------------ users, login, extensions


def test_node_users(client: BatchClient, single: tuple[str, str, str]) -> None:
    pool_id, _, node_id = single
    client.create_node_user(pool_id, node_id, m.BatchNodeUserCreateOptions(
        name="bob", is_admin=True, password="pw", ssh_public_key=_ssh_key(),
        expiry_time=datetime.now(UTC) + timedelta(days=2)))
    with pytest.raises(ResourceExistsError) as dup:
        client.create_node_user(pool_id, node_id, m.BatchNodeUserCreateOptions(name="BOB"))
    assert dup.value.error.code == "NodeUserExists"
    client.replace_node_user(pool_id, node_id, "bob",
                             m.BatchNodeUserReplaceOptions(password="new"))
    with pytest.raises(HttpResponseError) as bad_key:
        client.create_node_user(pool_id, node_id, m.BatchNodeUserCreateOptions(
            name="carol", ssh_public_key="not a key"))
    assert (bad_key.value.status_code, bad_key.value.error.code) == (400,
                                                                     "InvalidPropertyValue")
    client.delete_node_user(pool_id, node_id, "bob")
    with pytest.raises(ResourceNotFoundError) as gone:
        client.delete_node_user(pool_id, node_id, "bob")
    assert gone.value.error.code == "NodeUserNotFound"
    with pytest.raises(ResourceNotFoundError) as replace_gone:
        client.replace_node_user(pool_id, node_id, "bob", m.BatchNodeUserReplaceOptions())
    assert replace_gone.value.error.code == "NodeUserNotFound"


def test_remote_login_settings_and_extensions(client: BatchClient,
                                              single: tuple[str, str, str]) -> None:
    pool_id, _, node_id = single
    login = client.get_node_remote_login_settings(pool_id, node_id)
    assert (login.remote_login_ip_address, login.remote_login_port) == ("127.0.0.1", 22)
    assert list(client.list_node_extensions(pool_id, node_id)) == []
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_node_extension(pool_id, node_id, "CustomScript")
    assert missing.value.error.code == "ResourceNotFound"


def test_unknown_pools_nodes_and_bad_options(client: BatchClient,
                                             single: tuple[str, str, str]) -> None:
    pool_id, _, node_id = single
    calls = [
        lambda p, n: client.get_node_remote_login_settings(p, n),
        lambda p, n: client.enable_node_scheduling(p, n),
        lambda p, n: client.create_node_user(p, n, m.BatchNodeUserCreateOptions(name="x")),
        lambda p, n: list(client.list_node_extensions(p, n)),
        lambda p, n: client.begin_reboot_node(p, n, REQUEUE),
    ]
    for call in calls:
        with pytest.raises(ResourceNotFoundError) as no_pool:
            call(_uid("nopool"), node_id)
        assert no_pool.value.error.code == "PoolNotFound"
        with pytest.raises(ResourceNotFoundError) as no_node:
            call(pool_id, "tvmps_nonexistent_d")
        assert no_node.value.error.code == "NodeNotFound"
    with pytest.raises(HttpResponseError) as bad:
        client.begin_reboot_node(pool_id, node_id, internal.BatchNodeRebootOptions(
            node_reboot_kind="whenever"))
    assert (bad.value.status_code, bad.value.error.code) == (400, "InvalidPropertyValue")
    with pytest.raises(HttpResponseError) as bad_disable:
        client.disable_node_scheduling(pool_id, node_id, m.BatchNodeDisableSchedulingOptions(
            node_disable_scheduling_option="retaineddata"))
    assert bad_disable.value.status_code == 400
    assert _node(client, pool_id, node_id).state == "idle"  # nothing changed


# ------------------------------------------------------------------ usage metrics


def test_usage_metrics_count_node_time(client: BatchClient) -> None:
    pool_id = _pool(client, 2)
    def usage() -> list[m.BatchPoolUsageMetrics]:
        return list(client.list_pool_usage_metrics(filter=f"poolId eq '{pool_id}'"))

    entries = wait_for(lambda: (found := usage()) and found[0].total_core_hours > 0 and found,
                       what="usage for the pool")
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.pool_id, entry.vm_size) == (pool_id, "standard_d2s_v3")
    assert entry.end_time - entry.start_time == timedelta(minutes=30)
    assert entry.start_time <= datetime.now(UTC) < entry.end_time + timedelta(seconds=5)
    ranged = list(client.list_pool_usage_metrics(
        start_time=datetime.now(UTC) - timedelta(hours=2), end_time=datetime.now(UTC)))
    assert pool_id in {e.pool_id for e in ranged}
    client.begin_delete_pool(pool_id, polling_interval=POLL).result()
    wait_for(lambda: not list(client.list_pool_usage_metrics(filter=f"poolId eq 'x{pool_id}'"))
             and pool_id not in {p.id for p in client.list_pools()}, what="pool gone")
    after = usage()  # a deleted pool's usage stays listed
    assert len(after) == 1 and after[0].total_core_hours >= entry.total_core_hours
    with pytest.raises(HttpResponseError) as bad:
        list(client.list_pool_usage_metrics(start_time=datetime.now(UTC),
                                            end_time=datetime.now(UTC) - timedelta(hours=1)))
    assert bad.value.status_code == 400


# ------------------------------------------------------------------ service logs


def test_upload_node_logs_to_blob_storage(client: BatchClient, azurite: Azurite,
                                          single: tuple[str, str, str], tmp_path: Path) -> None:
    pool_id, _, node_id = single
    container = ContainerClient.from_connection_string(azurite.connection_string, "nodelogs")
    container.create_container()
    client.begin_reboot_node(pool_id, node_id, REQUEUE,
                             polling_interval=POLL).result()  # one more log line
    result = client.upload_node_logs(pool_id, node_id, m.UploadBatchServiceLogsOptions(
        container_url=azurite.container_sas_url("nodelogs"),
        start_time=datetime.now(UTC) - timedelta(hours=1)))
    assert result.number_of_files_uploaded == 1
    assert result.virtual_directory_name.startswith(f"{pool_id}/{node_id}/")
    blobs = [b.name for b in container.list_blobs()]
    assert blobs == [f"{result.virtual_directory_name}/hybatch-node.log"]
    text = container.download_blob(blobs[0]).readall().decode()
    assert f"node {node_id} of pool {pool_id} ready" in text and "restarted" in text
    none = client.upload_node_logs(pool_id, node_id, m.UploadBatchServiceLogsOptions(
        container_url=azurite.container_sas_url("nodelogs"),
        start_time=datetime.now(UTC) + timedelta(hours=1)))
    assert none.number_of_files_uploaded == 0
    with pytest.raises(HttpResponseError) as refused:  # read-only SAS: storage says no
        client.upload_node_logs(pool_id, node_id, m.UploadBatchServiceLogsOptions(
            container_url=azurite.container_sas_url("nodelogs", write=False),
            start_time=datetime.now(UTC) - timedelta(hours=1)))
    assert (refused.value.status_code, refused.value.error.code) == (400,
                                                                     "InvalidPropertyValue")
    with pytest.raises(HttpResponseError) as bad_url:
        client.upload_node_logs(pool_id, node_id, m.UploadBatchServiceLogsOptions(
            container_url="ftp://example/x", start_time=datetime.now(UTC)))
    assert bad_url.value.status_code == 400
