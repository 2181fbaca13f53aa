"""The foundation SDK scenario on Dask workers that are separate hosts.

Two workers, each in its own network namespace (reaching the scheduler over a veth link) and
its own mount namespace (a private tmpfs over the node root), join an external scheduler.
The server's catalogue maps ``standard_d2s_v3`` to that scheduler, so the unchanged scenario
of ``tests/api/test_sdk_lifecycle.py`` (tasks, exit codes, retries, wall-clock timeout,
stdout/stderr downloads, paging, filters, deletion) runs on the workers. Whatever the service
shows of a node's files it can only have read through the worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from tests.api.test_sdk_lifecycle import (  # the scenario, run again on Dask
    scenario,
    test_environment_variables,
    test_failing_tasks_retried_once,
    test_filter_and_select,
    test_paging_lists_every_task_once,
    test_stdout_and_stderr,
    test_task_counts,
    test_wall_clock_timeout,
)
from tests.api.test_sdk_lifecycle import (
    test_delete_job_and_pool_with_pollers as delete_job_and_pool,
)
from tests.support.dask_hosts import SeparateHosts, separate_hosts
from tests.support.server import ACCOUNT, KEY, ServerProcess

__all__ = ["scenario", "test_environment_variables",
           "test_failing_tasks_retried_once", "test_filter_and_select",
           "test_paging_lists_every_task_once", "test_stdout_and_stderr", "test_task_counts",
           "test_wall_clock_timeout"]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeparateHosts]:
    with separate_hosts(tmp_path_factory.mktemp("dask-hosts"), count=2, slots=2) as made:
        yield made


@pytest.fixture(scope="module")
def server(hosts: SeparateHosts, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("dask-server")
    sizes = base / "sizes.toml"
    sizes.write_text(f'''
[sizes.standard_d2s_v3]
backend = "dask"
scheduler = "{hosts.scheduler}"
cores = 2
memoryGiB = 8
node_root = "{hosts.node_root}"
''')
    proc = ServerProcess(base / "data", vm_sizes=sizes).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> BatchClient:
    return BatchClient(server.endpoint, AzureNamedKeyCredential(ACCOUNT, KEY))


def test_node_files_exist_only_on_the_workers(client: BatchClient, scenario: dict[str, str],
                                              hosts: SeparateHosts) -> None:
    task = client.get_task(scenario["job"], "ok-003")
    node_id = task.node_info.node_id
    names = {f.name for f in client.list_node_files(scenario["pool"], node_id,
                                                    recursive=True)}
    assert f"workitems/{scenario['job']}/job-1/ok-003/stdout.txt" in names
    assert any(name.startswith("volatile/") for name in names)
    env = b"".join(client.download_task_file(scenario["job"], "env", "stdout.txt")).decode()
    assert f"AZ_BATCH_NODE_ROOT_DIR={hosts.node_root}/" in env
    assert os.listdir(hosts.node_root) == []  # as the service's host sees it: nothing
    assert not Path(f"{hosts.node_root}/{scenario['pool']}").exists()
    nodes = {n.id: n for n in client.list_nodes(scenario["pool"])}
    assert len(nodes) == 2 and all(n.state in ("idle", "running") for n in nodes.values())
    ran_on = {client.get_task(scenario["job"], f"ok-{i:03d}").node_info.node_id
              for i in range(0, 112, 7)}
    assert ran_on == set(nodes)  # both hosts worked


def test_last_delete_job_and_pool(client: BatchClient, scenario: dict[str, str],
                                  hosts: SeparateHosts) -> None:
    """After the file checks: deletion with the SDK's pollers; the workers stay (external)."""
    delete_job_and_pool(client, scenario)
    from tests.support.dask_hosts import wait_for_workers

    assert wait_for_workers(hosts.scheduler, 2) == hosts.addresses
