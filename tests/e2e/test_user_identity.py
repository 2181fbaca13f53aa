"""userIdentity through a real server: which account a task's process runs as, and what it
may read. Run as root (as this project's machines run the tests), non-admin auto-users get
unprivileged accounts and cannot read other tasks' files, admin ones run as root; run as a
normal user, every task runs as that user (there is no account to switch to)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

POOL = "identity-pool"
JOB = "identity-job"
AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def id_client() -> Iterator[BatchClient]:
    # task accounts must be able to reach their own directories: the data directory lives
    # under a world-traversable directory (pytest's temporary directories are 0700)
    base = Path(tempfile.mkdtemp(prefix="hybatch-identity-", dir="/tmp"))
    base.chmod(0o755)
    server = ServerProcess(base / "data").start()
    (base / "data").chmod(0o755)
    client = BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))
    client.create_pool(m.BatchPoolCreateOptions(id=POOL, vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=1,
                                                task_slots_per_node=2))
    wait_for(lambda: [n for n in client.list_nodes(POOL) if n.state == "idle"],
             what="an idle node")
    client.create_job(m.BatchJobCreateOptions(id=JOB, pool_info=m.BatchPoolInfo(pool_id=POOL)))
    try:
        yield client
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _identity(scope: str, elevation: str) -> m.UserIdentity:
    return m.UserIdentity(auto_user=m.AutoUserSpecification(scope=scope,
                                                            elevation_level=elevation))


def _run(client: BatchClient, task_id: str, script: str,
         identity: m.UserIdentity | None = None) -> tuple[int, str, str]:
    """Run a shell script as a task; (exit code, stdout, stderr)."""
    client.create_task(JOB, m.BatchTaskCreateOptions(
        id=task_id, command_line=f"/bin/sh -c '{script}'", user_identity=identity))
    task = wait_for(lambda: (t := client.get_task(JOB, task_id)).state == "completed" and t,
                    timeout=30, what=f"task {task_id}")
    out = b"".join(client.download_task_file(JOB, task_id, "stdout.txt")).decode()
    err = b"".join(client.download_task_file(JOB, task_id, "stderr.txt")).decode()
    return task.execution_info.exit_code, out, err


SECRET = "s3cret-of-the-first-task"
READ_SECRET = ("id -u; id -G; "
               "cat $AZ_BATCH_NODE_ROOT_DIR/workitems/" + JOB + "/job-1/secret/stdout.txt; "
               "echo rc=$?; echo mine > $AZ_BATCH_TASK_WORKING_DIR/own.txt && "
               "cat $AZ_BATCH_TASK_DIR/wd/own.txt; "
               "echo shared > $AZ_BATCH_NODE_SHARED_DIR/$AZ_BATCH_TASK_ID && echo wrote-shared; "
               "echo user=$AZ_BATCH_TASK_USER")


def _uids(out: str) -> tuple[int, set[int]]:
    lines = out.splitlines()
    return int(lines[0]), {int(g) for g in lines[1].split()}


def test_who_runs_and_what_it_can_read(id_client: BatchClient) -> None:
    client = id_client
    code, out, _ = _run(client, "secret", f"echo {SECRET}")  # no identity: the service's user
    assert code == 0 and out.strip() == SECRET

    code, task_scoped, err = _run(client, "task-nonadmin", READ_SECRET,
                                  _identity("task", "nonadmin"))
    pool_code, pool_scoped, pool_err = _run(client, "pool-nonadmin", READ_SECRET,
                                            _identity("pool", "nonadmin"))
    admin_code, admin, _ = _run(client, "pool-admin", READ_SECRET, _identity("pool", "admin"))
    for result, output in ((code, task_scoped), (pool_code, pool_scoped),
                           (admin_code, admin)):
        assert result == 0, output
        assert "mine" in output and "wrote-shared" in output  # its own files, shared/

    if not AS_ROOT:  # a normal user: everything runs as the service's user
        me = os.geteuid()
        for output in (task_scoped, pool_scoped, admin):
            assert _uids(output)[0] == me and SECRET in output
        return

    task_uid, task_groups = _uids(task_scoped)
    pool_uid, pool_groups = _uids(pool_scoped)
    assert task_uid != 0 and pool_uid != 0 and task_uid != pool_uid
    assert 0 not in task_groups and 0 not in pool_groups  # no root group kept
    for output, error in ((task_scoped, err), (pool_scoped, pool_err)):
        assert SECRET not in output and "rc=1" in output
        assert "Permission denied" in error
    assert "user=_azbatch\n" in pool_scoped
    assert f"user=_azbatch_{task_uid - 1_500_000_000}" in task_scoped
    assert _uids(admin)[0] == 0 and SECRET in admin  # admin runs as root

    # two task-scoped tasks get accounts of their own and cannot read each other
    code, other, other_err = _run(
        client, "task-nonadmin-2",
        "id -u; cat $AZ_BATCH_NODE_ROOT_DIR/workitems/" + JOB + "/job-1/task-nonadmin/"
        "stdout.txt; echo rc=$?", _identity("task", "nonadmin"))
    assert code == 0
    other_uid = int(other.splitlines()[0])
    assert other_uid not in (0, task_uid, pool_uid)
    assert "rc=1" in other and "Permission denied" in other_err
    # pool-scoped tasks share their account (Batch: a pool auto-user is shared on the node)
    code, again, _ = _run(client, "pool-nonadmin-2",
                          "id -u; cat $AZ_BATCH_NODE_ROOT_DIR/workitems/" + JOB +
                          "/job-1/pool-nonadmin/wd/own.txt", _identity("pool", "nonadmin"))
    assert code == 0 and int(again.splitlines()[0]) == pool_uid and "mine" in again


def test_named_user_accounts_are_refused(id_client: BatchClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        id_client.create_task(JOB, m.BatchTaskCreateOptions(
            id="named", command_line="/bin/true", user_identity=m.UserIdentity(
                username="someone")))
    assert caught.value.status_code == 400
    assert caught.value.error.code == "UnsupportedProperty"
