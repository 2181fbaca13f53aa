"""``$filter``, ``$select`` and ``$expand`` through the official 15.1 SDK (wire reference §7).

Filters: every property kind of §7.3 on pools, jobs, tasks, nodes, node counts, supported
images and files, values compared without regard to case; anything outside the table is 400
``InvalidQueryParameterValue`` naming ``$filter``. ``$select``: top-level and nested names,
any case, unknown names refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.exceptions import HttpResponseError

from tests.support.server import wait_for


def _sh(script: str) -> str:
    return f"/bin/sh -c '{script}'"


@pytest.fixture(scope="module")
def world(client: BatchClient) -> dict[str, str]:
    """Two pools (one with a node), a job that ran a good and a bad task, a job that waits."""
    u = uuid.uuid4().hex[:8]
    w = {"u": u, "busy": f"qa-{u}", "empty": f"qb-{u}", "ran": f"qr-{u}", "waits": f"qw-{u}"}
    client.create_pool(m.BatchPoolCreateOptions(id=w["busy"], vm_size="standard_d2s_v3",
                                                target_dedicated_nodes=1))
    client.create_pool(m.BatchPoolCreateOptions(id=w["empty"], vm_size="STANDARD_A1",
                                                target_dedicated_nodes=0))
    wait_for(lambda: [n.state for n in client.list_nodes(w["busy"])] == ["idle"],
             what="the node")
    client.create_job(m.BatchJobCreateOptions(id=w["ran"],
                                              pool_info=m.BatchPoolInfo(pool_id=w["busy"])))
    client.create_job(m.BatchJobCreateOptions(id=w["waits"],
                                              pool_info=m.BatchPoolInfo(pool_id=f"none-{u}")))
    client.create_task(w["ran"], m.BatchTaskCreateOptions(id="ok", command_line="/bin/true"))
    client.create_task(w["ran"], m.BatchTaskCreateOptions(id="bad", command_line=_sh("exit 3")))
    client.create_task(w["waits"], m.BatchTaskCreateOptions(id="later", command_line="/bin/true"))
    wait_for(lambda: all(t.state == "completed" for t in client.list_tasks(w["ran"])),
             what="both tasks")
    w["node"] = next(iter(client.list_nodes(w["busy"]))).id
    return w


def _keys(item: Any) -> set[str]:
    return set(dict(item)) - {"odata.metadata"}


def _refused(call: Callable[[], Any], parameter: str, fragment: str = "",
             code: str = "InvalidQueryParameterValue") -> None:
    with pytest.raises(HttpResponseError) as caught:
        result = call()
        if isinstance(result, Iterable):
            list(result)
    assert caught.value.status_code == 400
    assert caught.value.error.code == code
    details = {d.code: d.message for d in caught.value.error.details}
    assert details.get("QueryParameterName") == parameter, details
    assert fragment in details.get("Reason", ""), details


# ----------------------------------------------------------------------------- $select


def test_select_on_every_list_and_get(client: BatchClient, world: dict[str, str]) -> None:
    pool, job, node = world["busy"], world["ran"], world["node"]
    one_pool = client.list_pools(filter=f"id eq '{pool}'", select=["id", "state"])
    assert [_keys(p) for p in one_pool] == [{"id", "state"}]
    assert _keys(client.get_pool(pool, select=["id", "vmSize"])) == {"id", "vmSize"}
    one_job = client.list_jobs(filter=f"id eq '{job}'", select=["id", "poolInfo"])
    assert [_keys(j) for j in one_job] == [{"id", "poolInfo"}]
    assert _keys(client.get_job(job, select=["priority"])) == {"priority"}
    assert {_frozen(t) for t in client.list_tasks(job, select=["id"])} == {
        _frozen({"id": "ok"}), _frozen({"id": "bad"})}
    assert _keys(client.get_task(job, "ok", select=["id", "state"])) == {"id", "state"}
    assert [_keys(n) for n in client.list_nodes(pool, select=["id", "state"])] == [
        {"id", "state"}]
    assert _keys(client.get_node(pool, node, select=["state", "isDedicated"])) == {
        "state", "isDedicated"}


def _frozen(item: Any) -> frozenset[tuple[str, Any]]:
    return frozenset(dict(item).items())


def test_select_names_in_any_case_come_back_in_spec_spelling(
        client: BatchClient, world: dict[str, str]) -> None:
    task = client.get_task(world["ran"], "bad", select=["ID", "commandline", "State"])
    assert _keys(task) == {"id", "commandLine", "state"}
    assert task.command_line == _sh("exit 3")


def test_select_nested_paths(client: BatchClient, world: dict[str, str]) -> None:
    task = client.get_task(world["ran"], "bad", select=["id", "executionInfo/exitCode",
                                                         "executionInfo/result"])
    assert dict(task) | {"odata.metadata": None} == {
        "odata.metadata": None, "id": "bad",
        "executionInfo": {"exitCode": 3, "result": "failure"}}
    listed = client.list_tasks(world["ran"], select=["nodeInfo/nodeId", "id"])
    assert {t.id: dict(t)["nodeInfo"] for t in listed} == {
        "ok": {"nodeId": world["node"]}, "bad": {"nodeId": world["node"]}}


def test_select_star_and_whole_object(client: BatchClient, world: dict[str, str]) -> None:
    everything = client.get_task(world["ran"], "ok", select=["*"])
    assert {"id", "url", "commandLine", "executionInfo", "constraints"} <= _keys(everything)
    whole = client.get_task(world["ran"], "ok", select=["executionInfo", "executionInfo/result"])
    assert whole.execution_info.exit_code == 0 and whole.execution_info.retry_count == 0


@pytest.mark.parametrize(("name", "call"), [
    ("get_pool", lambda c, w: c.get_pool(w["busy"], select=["id", "colour"])),
    ("list_pools", lambda c, w: c.list_pools(select=["colour"])),
    ("get_job", lambda c, w: c.get_job(w["ran"], select=["poolInfo/nope"])),
    ("list_jobs", lambda c, w: c.list_jobs(select=["id/length"])),
    ("get_task", lambda c, w: c.get_task(w["ran"], "ok", select=["exitCode"])),
    ("list_tasks", lambda c, w: c.list_tasks(w["ran"], select=["executionInfo//exitCode"])),
    ("get_node", lambda c, w: c.get_node(w["busy"], w["node"], select=["nodeid"])),
    ("list_nodes", lambda c, w: c.list_nodes(w["busy"], select=["startTask/nope"])),
])
def test_select_of_unknown_properties_is_refused(
        client: BatchClient, world: dict[str, str], name: str,
        call: Callable[[BatchClient, dict[str, str]], Any]) -> None:
    _refused(lambda: call(client, world), "$select")


def test_expand_takes_stats_only(client: BatchClient, world: dict[str, str]) -> None:
    assert client.get_pool(world["busy"], expand=["stats"]).id == world["busy"]
    assert client.get_job(world["ran"], expand=["STATS"]).id == world["ran"]
    assert [t.id for t in client.list_tasks(world["ran"], expand=["stats"],
                                            filter="id eq 'ok'")] == ["ok"]
    _refused(lambda: client.get_pool(world["busy"], expand=["nodes"]), "$expand", "'nodes'")
    _refused(lambda: client.list_jobs(expand=["stats", "tasks"]), "$expand", "'tasks'")


# ----------------------------------------------------------------------------- $filter


def _created(client: BatchClient, pool_id: str, delta: float) -> str:
    when = client.get_pool(pool_id).creation_time + timedelta(seconds=delta)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


FILTERS: list[tuple[str, Callable[[BatchClient, dict[str, str]], Iterable[Any]], str,
                    Callable[[dict[str, str]], set[str]]]] = [
    # pools
    ("pools id/startswith/state", lambda c, w: c.list_pools(
        filter=f"startswith(id,'q') and state eq 'active' and id ge 'qa-{w['u']}' "
               f"and id le 'qb-{w['u']}'"), "pools", lambda w: {w["busy"], w["empty"]}),
    ("pools vmSize any case", lambda c, w: c.list_pools(
        filter=f"vmSize eq 'standard_a1' and startswith(id,'QB-{w['u']}')"),
     "pools", lambda w: {w["empty"]}),
    ("pools vmSize ne", lambda c, w: c.list_pools(
        filter=f"vmSize ne 'STANDARD_A1' and (id eq '{w['busy']}' or id eq '{w['empty']}')"),
     "pools", lambda w: {w["busy"]}),
    ("pools bool and allocationState", lambda c, w: c.list_pools(
        filter=f"enableAutoScale eq false and enableInterNodeCommunication ne true and "
               f"allocationState eq 'STEADY' and startswith(id,'qa-{w['u']}')"),
     "pools", lambda w: {w["busy"]}),
    ("pools datetime", lambda c, w: c.list_pools(
        filter=f"creationTime ge DateTime'{_created(c, w['busy'], -0.5)}' and "
               f"creationTime le DateTime'{_created(c, w['busy'], 0.5)}' and "
               f"startswith(id,'qa-{w['u']}')"), "pools", lambda w: {w["busy"]}),
    # jobs
    ("jobs executionInfo/poolId", lambda c, w: c.list_jobs(
        filter=f"executionInfo/poolId eq '{w['busy'].upper()}'"), "jobs",
     lambda w: {w["ran"]}),
    ("jobs state and lastModified", lambda c, w: c.list_jobs(
        filter=f"startswith(id,'qw-{w['u']}') and state eq 'Active' and "
               "lastModified gt DateTime'2020-01-01T00:00:00Z'"), "jobs",
     lambda w: {w["waits"]}),
    # tasks
    ("tasks exitCode", lambda c, w: c.list_tasks(w["ran"], filter="executionInfo/exitCode gt 0"),
     "tasks", lambda w: {"bad"}),
    ("tasks exitCode negative range", lambda c, w: c.list_tasks(
        w["ran"], filter="(executionInfo/exitCode lt 0) or (executionInfo/exitCode ge 0)"),
     "tasks", lambda w: {"ok", "bad"}),
    ("tasks result", lambda c, w: c.list_tasks(w["ran"],
                                               filter="executionInfo/result eq 'SUCCESS'"),
     "tasks", lambda w: {"ok"}),
    ("tasks result ne", lambda c, w: c.list_tasks(w["ran"],
                                                  filter="executionInfo/result ne 'success'"),
     "tasks", lambda w: {"bad"}),
    ("tasks state", lambda c, w: c.list_tasks(w["waits"], filter="state eq 'active'"),
     "tasks", lambda w: {"later"}),
    ("tasks lastModifiedTime alias", lambda c, w: c.list_tasks(
        w["ran"], filter="lastModifiedTime gt DateTime'Sat, 01 Jan 2000 00:00:00 GMT'"),
     "tasks", lambda w: {"ok", "bad"}),
    ("tasks endTime", lambda c, w: c.list_tasks(
        w["ran"], filter="executionInfo/endTime ge DateTime'2000-01-01'"),
     "tasks", lambda w: {"ok", "bad"}),
    ("tasks not", lambda c, w: c.list_tasks(w["ran"], filter="not (id eq 'ok')"),
     "tasks", lambda w: {"bad"}),
    # nodes
    ("nodes state", lambda c, w: c.list_nodes(w["busy"], filter="state eq 'idle'"),
     "nodes", lambda w: {w["node"]}),
    ("nodes state ne", lambda c, w: c.list_nodes(w["busy"], filter="state ne 'idle'"),
     "nodes", lambda w: set()),
    ("nodes allocationTime", lambda c, w: c.list_nodes(
        w["busy"], filter="allocationTime lt DateTime'2999-01-01T00:00:00Z'"),
     "nodes", lambda w: {w["node"]}),
]


@pytest.mark.parametrize(("name", "call", "kind", "expected"), FILTERS,
                         ids=[f[0] for f in FILTERS])
def test_filters(client: BatchClient, world: dict[str, str], name: str,
                 call: Callable[[BatchClient, dict[str, str]], Iterable[Any]], kind: str,
                 expected: Callable[[dict[str, str]], set[str]]) -> None:
    assert {item.id for item in call(client, world)} == expected(world)


FILTER_ERRORS: list[tuple[str, Callable[[BatchClient, dict[str, str]], Any], str]] = [
    ("unknown property", lambda c, w: c.list_pools(filter="displayName eq 'x'"),
     "cannot be used"),
    ("property case", lambda c, w: c.list_pools(filter="State eq 'active'"),
     "did you mean 'state'"),
    ("operator not in §7.3", lambda c, w: c.list_pools(filter="state ne 'active'"),
     "operator 'ne'"),
    ("ordering an enum", lambda c, w: c.list_tasks(w["ran"], filter="state gt 'a'"),
     "operator 'gt'"),
    ("startswith on vmSize", lambda c, w: c.list_pools(filter="startswith(vmSize,'s')"),
     "startswith"),
    ("string for a number", lambda c, w: c.list_tasks(w["ran"],
                                                       filter="executionInfo/exitCode eq '3'"),
     "whole number"),
    ("decimal for a number", lambda c, w: c.list_tasks(w["ran"],
                                                        filter="executionInfo/exitCode gt 0.5"),
     "whole number"),
    ("plain string for a date", lambda c, w: c.list_jobs(
        filter="creationTime gt '2024-01-01T00:00:00Z'"), "DateTime"),
    ("bad date", lambda c, w: c.list_jobs(filter="creationTime gt DateTime'2024-13-01'"),
     "invalid DateTime"),
    ("null", lambda c, w: c.list_tasks(w["ran"], filter="executionInfo/exitCode eq null"),
     "null"),
    ("upper-case keyword", lambda c, w: c.list_tasks(w["ran"], filter="state EQ 'active'"),
     "lower case"),
    ("other functions", lambda c, w: c.list_jobs(filter="endswith(id,'x')"), "unexpected"),
    ("syntax", lambda c, w: c.list_jobs(filter="id eq 'x' and"), "end of filter"),
    ("node id is not filterable", lambda c, w: c.list_nodes(w["busy"], filter="id eq 'n'"),
     "cannot be used"),
    ("files: startswith only", lambda c, w: c.list_task_files(w["ran"], "ok",
                                                               filter="name eq 'stdout.txt'"),
     "allowed: startswith"),
    ("node counts: poolId eq only", lambda c, w: c.list_pool_node_counts(
        filter="poolId ne 'p'"), "operator 'ne'"),
    ("supported images: no ordering", lambda c, w: c.list_supported_images(
        filter="osType gt 'a'"), "operator 'gt'"),
]


@pytest.mark.parametrize(("name", "call", "fragment"), FILTER_ERRORS,
                         ids=[f[0] for f in FILTER_ERRORS])
def test_filters_outside_the_subset_are_refused(
        client: BatchClient, world: dict[str, str], name: str,
        call: Callable[[BatchClient, dict[str, str]], Any], fragment: str) -> None:
    _refused(lambda: call(client, world), "$filter", fragment)


def test_node_counts_filter(client: BatchClient, world: dict[str, str]) -> None:
    counts = list(client.list_pool_node_counts(filter=f"poolId eq '{world['busy'].upper()}'"))
    assert [c.pool_id for c in counts] == [world["busy"]]
    assert counts[0].dedicated.idle == 1 and counts[0].dedicated.total == 1


def test_supported_images_filter(client: BatchClient) -> None:
    every = {i.node_agent_sku_id for i in client.list_supported_images()}
    assert len(every) >= 2
    assert {i.node_agent_sku_id for i in client.list_supported_images(
        filter="osType eq 'LINUX'")} == every
    assert list(client.list_supported_images(filter="osType eq 'windows'")) == []
    assert [i.node_agent_sku_id for i in client.list_supported_images(
        filter="nodeAgentSKUId eq 'batch.node.ubuntu 24.04'")] == ["batch.node.ubuntu 24.04"]
    paged = client.list_supported_images(max_results=1).by_page()
    assert sum(1 for page in paged for _ in page) == len(every)


def test_file_list_filter(client: BatchClient, world: dict[str, str]) -> None:
    names = {f.name for f in client.list_task_files(world["ran"], "ok",
                                                     filter="startswith(name,'STD')")}
    assert names == {"stdout.txt", "stderr.txt"}
    node_names = {f.name for f in client.list_node_files(world["busy"], world["node"],
                                                         filter="startswith(name,'work')")}
    assert node_names == {"workitems"}
