"""What real clients send that the 15.1 SDK cannot produce, as raw signed requests (httpx):
query names in any case, empty and ``{}`` bodies, integers as strings, zero-padded
durations, legacy fields of older api-versions, 14.x-style (bare) and weak entity tags,
every HTTP-date form, and OData options or conditional headers an operation does not take.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.support.server import ServerProcess, wait_for
from tests.support.signed import client as signed_client
from tests.support.signed import send

V14 = "2024-02-01.19.0"
JSON14 = "application/json; odata=minimalmetadata; charset=utf-8"


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with signed_client(server.endpoint) as c:
        yield c


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(response: httpx.Response, status: int) -> httpx.Response:
    assert response.status_code == status, (response.request.method, response.request.url,
                                            response.text)
    return response


def error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    if response.request.method == "HEAD" or status == 304:
        assert response.content == b""
        return {}
    body = response.json()
    assert body["code"] == code, body
    return {v["key"]: v["value"] for v in body.get("values", [])}


def _pool(http: httpx.Client, nodes: int = 0, **extra: Any) -> str:
    pool_id = _uid("tol")
    ok(send(http, "POST", "/pools", body={"id": pool_id, "vmSize": "standard_d2s_v3",
                                          "targetDedicatedNodes": nodes, **extra}), 201)
    return pool_id


def _job(http: httpx.Client, **extra: Any) -> str:
    job_id = _uid("tolj")
    ok(send(http, "POST", "/jobs", body={"id": job_id, "poolInfo": {"poolId": _uid("none")},
                                         **extra}), 201)
    return job_id


def _get(http: httpx.Client, path: str, **query: str) -> dict[str, Any]:
    body: dict[str, Any] = ok(send(http, "GET", path, query=query), 200).json()
    return body


# ----------------------------------------------------------------------------- query names


def test_query_names_in_any_case_and_paging_links(http: httpx.Client) -> None:
    prefix = _uid("case")
    for i in range(3):
        ok(send(http, "POST", "/pools", body={"id": f"{prefix}-{i}", "vmSize": "standard_a1"}),
           201)
    first = ok(send(http, "GET", "/pools", version=None, query=[
        ("API-VERSION", "2025-06-01"), ("MaxResults", "2"), ("TimeOut", "30"),
        ("$Filter", f"startswith(id,'{prefix}')"), ("$SELECT", "id,State")]), 200).json()
    assert first["value"] == [{"id": f"{prefix}-0", "state": "active"},
                              {"id": f"{prefix}-1", "state": "active"}]
    link = first["odata.nextLink"]
    parts = urlsplit(link)
    names = [name for name, _ in parse_qsl(parts.query)]
    assert names.count("api-version") == 1 and "API-VERSION" not in names  # SDKs replace it
    assert {"$Filter", "$SELECT", "MaxResults", "$skiptoken"} <= set(names)
    # follow it verbatim, as 14.x does (its own host, its own api-version and options)
    second = ok(http.get(link), 200).json()
    assert second["value"] == [{"id": f"{prefix}-2", "state": "active"}]
    assert "odata.nextLink" not in second


def test_fourteen_x_query_spellings(http: httpx.Client) -> None:
    job_id = _job(http)
    ok(send(http, "POST", f"/jobs/{job_id}/tasks", body={"id": "a", "commandLine": "x"},
            version=V14, query={"timeout": "30"}), 201)
    listed = ok(send(http, "GET", f"/jobs/{job_id}/tasks", version=V14, query=[
        ("$filter", "state eq 'active'"), ("$select", "id,state"), ("maxresults", "1000"),
        ("timeout", "30")]), 200).json()
    assert listed["value"] == [{"id": "a", "state": "active"}]


# ----------------------------------------------------------------------------- bodies


def test_bodiless_posts_with_no_body_and_with_json_content_type(http: httpx.Client) -> None:
    pool_id = _pool(http)
    # 14.x: JSON content type, Content-Length 0; 15.x: no content type at all
    ok(send(http, "POST", f"/pools/{pool_id}/stopresize", raw=b"",
            headers={"Content-Type": JSON14}), 202)
    ok(send(http, "POST", f"/pools/{pool_id}/stopresize", raw=b""), 202)
    job_id = _job(http)
    ok(send(http, "POST", f"/jobs/{job_id}/tasks", body={"id": "t", "commandLine": "x"}), 201)
    ok(send(http, "POST", f"/jobs/{job_id}/tasks/t/terminate", raw=b"",
            headers={"Content-Type": JSON14}), 204)
    ok(send(http, "POST", f"/jobs/{job_id}/tasks/t/reactivate", raw=b""), 204)
    assert _get(http, f"/jobs/{job_id}/tasks/t")["state"] == "active"
    ok(send(http, "POST", f"/jobs/{job_id}/terminate", raw=b"",
            headers={"Content-Type": JSON14}), 202)
    job = _get(http, f"/jobs/{job_id}")
    assert job["state"] in ("terminating", "completed")
    assert job["executionInfo"]["terminateReason"] == "UserTerminate"


def test_empty_option_objects(http: httpx.Client) -> None:
    pool_id = _pool(http)
    ok(send(http, "POST", f"/pools/{pool_id}/resize", body={}), 202)  # every option absent
    job_id = _job(http, priority=3)
    before = _get(http, f"/jobs/{job_id}")
    ok(send(http, "PATCH", f"/jobs/{job_id}", body={}), 200)  # merge of nothing
    after = _get(http, f"/jobs/{job_id}")
    assert after["priority"] == 3 and after["poolInfo"] == before["poolInfo"]
    ok(send(http, "POST", f"/jobs/{job_id}/terminate", body={}), 202)


def test_integers_as_strings_and_zero_padded_durations(http: httpx.Client) -> None:
    pool_id = _pool(http, nodes="0", taskSlotsPerNode="2", resizeTimeout="PT15M00S",
                    enableInterNodeCommunication="true")
    pool = _get(http, f"/pools/{pool_id}")
    assert (pool["targetDedicatedNodes"], pool["taskSlotsPerNode"]) == (0, 2)
    assert pool["enableInterNodeCommunication"] is True
    assert pool["resizeTimeout"] == "PT15M"
    job_id = _job(http, priority="5", maxParallelTasks="4",
                  constraints={"maxWallClockTime": "PT01H00M00S", "maxTaskRetryCount": "2"})
    job = _get(http, f"/jobs/{job_id}")
    assert (job["priority"], job["maxParallelTasks"]) == (5, 4)
    assert job["constraints"] == {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 2}
    ok(send(http, "POST", f"/jobs/{job_id}/tasks", body={
        "id": "t", "commandLine": "x", "requiredSlots": "1",
        "constraints": {"maxWallClockTime": "PT01M30S", "retentionTime": "P7D",
                        "maxTaskRetryCount": "-1"}}), 201)
    task = _get(http, f"/jobs/{job_id}/tasks/t")
    assert task["constraints"] == {"maxWallClockTime": "PT1M30S", "retentionTime": "P7D",
                                   "maxTaskRetryCount": -1}
    ok(send(http, "PUT", f"/jobs/{job_id}/tasks/t",
            body={"constraints": {"maxWallClockTime": "PT02H00M00S", "maxTaskRetryCount": "3"}}),
       200)
    assert _get(http, f"/jobs/{job_id}/tasks/t")["constraints"]["maxWallClockTime"] == "PT2H"
    # not a number, even as a string: a property error naming the property
    details = error(send(http, "POST", "/jobs", body={
        "id": _uid("j"), "poolInfo": {"poolId": "p"}, "priority": "high"}),
        400, "InvalidPropertyValue")
    assert details["PropertyName"] == "priority"


def test_legacy_fields_of_older_versions(http: httpx.Client) -> None:
    pool_id = _uid("legacy")
    ok(send(http, "POST", "/pools", version=V14, headers={"Content-Type": JSON14}, body={
        "id": pool_id, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 0,
        "cloudServiceConfiguration": {"osFamily": "6"}, "certificateReferences": [],
        "resourceTags": {"team": "cfd"}, "targetNodeCommunicationMode": "default",
        "applicationLicenses": ["maya"], "maxTasksPerNode": 1}), 201)
    assert _get(http, f"/pools/{pool_id}")["id"] == pool_id
    job_id = _uid("legacyj")
    ok(send(http, "POST", "/jobs", version=V14, body={
        "id": job_id, "poolInfo": {"poolId": pool_id}, "maxParallelTasks": -1,
        "onAllTasksComplete": "noaction", "onTaskFailure": "performexitoptionsjobaction",
        "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 2}}), 201)
    ok(send(http, "PUT", f"/jobs/{job_id}", version=V14, body={
        "poolInfo": {"poolId": pool_id}, "priority": 1, "maxParallelTasks": -1,
        "onAllTasksComplete": "NoAction", "certificateReferences": []}), 200)
    ok(send(http, "POST", f"/jobs/{job_id}/tasks", version="2018-12-01.8.0", body={
        "id": "old", "commandLine": "x", "authenticationTokenSettings": {"access": ["job"]},
        "runElevated": False}), 201)
    job = _get(http, f"/jobs/{job_id}")
    # PUT replaced the updatable properties; onTaskFailure is not one of them
    assert (job["priority"], job["onTaskFailure"], job["onAllTasksComplete"]) == (
        1, "performexitoptionsjobaction", "noaction")
    assert _get(http, f"/jobs/{job_id}/tasks/old")["commandLine"] == "x"


def test_enums_any_case_in_bodies(http: httpx.Client) -> None:
    job_id = _job(http, onAllTasksComplete="TerminateJob",
                  onTaskFailure="PerformExitOptionsJobAction")
    job = _get(http, f"/jobs/{job_id}")
    assert (job["onAllTasksComplete"], job["onTaskFailure"]) == (
        "terminatejob", "performexitoptionsjobaction")
    wait_for(lambda: _get(http, f"/jobs/{job_id}")["state"] == "completed",
             what="a job without tasks to terminate itself")


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(("path", "query"), [
    ("/jobs/{job}/taskcounts", {"$select": "active"}),
    ("/nodecounts", {"$select": "poolId"}),
    ("/pools/{pool}", {"$filter": "id eq 'x'"}),
    ("/pools/{pool}/nodes", {"$expand": "stats"}),
    ("/jobs/{job}/tasks/{task}/files", {"$select": "name"}),
    ("/supportedimages", {"$expand": "stats"}),
    ("/applications", {"$filter": "id eq 'a'"}),
])
def test_odata_options_an_operation_does_not_take(http: httpx.Client, path: str,
                                                  query: dict[str, str]) -> None:
    job_id = _job(http)
    ok(send(http, "POST", f"/jobs/{job_id}/tasks", body={"id": "t", "commandLine": "x"}), 201)
    url = path.format(job=job_id, pool=_pool(http), task="t")
    details = error(send(http, "GET", url, query=query), 400, "UnsupportedQueryParameter")
    assert details["QueryParameterName"] == next(iter(query))


# ----------------------------------------------------------------------------- conditions


def test_entity_tags_bare_weak_listed_or_malformed(http: httpx.Client) -> None:
    pool_id = _pool(http)
    etag = ok(send(http, "GET", f"/pools/{pool_id}"), 200).headers["ETag"]
    assert etag == _get(http, f"/pools/{pool_id}")["eTag"] and '"' not in etag
    for match in (etag, f'"{etag}"', f'W/"{etag}"', f'"0xOTHER", "{etag}"', "*"):
        ok(send(http, "GET", f"/pools/{pool_id}", headers={"If-Match": match}), 200)
        error(send(http, "GET", f"/pools/{pool_id}", headers={"If-None-Match": match}), 304, "")
    error(send(http, "GET", f"/pools/{pool_id}", headers={"If-Match": '"0xOTHER"'}), 412,
          "ConditionNotMet")
    details = error(send(http, "GET", f"/pools/{pool_id}", headers={"If-Match": 'a"b'}), 400,
                    "InvalidHeaderValue")
    assert details["HeaderName"] == "If-Match"
    # a write with a bare (14.x) tag
    job_id = _job(http)
    job_etag = _get(http, f"/jobs/{job_id}")["eTag"]
    ok(send(http, "PATCH", f"/jobs/{job_id}", body={"priority": 9}, version=V14,
            headers={"If-Match": job_etag}), 200)
    error(send(http, "PATCH", f"/jobs/{job_id}", body={"priority": 8}, version=V14,
               headers={"If-Match": job_etag}), 412, "ConditionNotMet")
    assert _get(http, f"/jobs/{job_id}")["priority"] == 9


def test_not_modified_answers_carry_the_version_and_no_body(http: httpx.Client) -> None:
    pool_id = _pool(http)
    first = ok(send(http, "GET", f"/pools/{pool_id}"), 200)
    for method in ("GET", "HEAD"):
        again = send(http, method, f"/pools/{pool_id}",
                     headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"] == first.headers["ETag"]
        assert again.headers["Last-Modified"] == first.headers["Last-Modified"]
        assert again.headers["request-id"]
    stale = send(http, "HEAD", f"/pools/{pool_id}", headers={"If-Match": '"0xOTHER"'})
    assert stale.status_code == 412 and stale.content == b""


@pytest.mark.parametrize("form", [
    "%a, %d %b %Y %H:%M:%S GMT",    # RFC 1123
    "%A, %d-%b-%y %H:%M:%S GMT",    # RFC 850
    "%a %b %d %H:%M:%S %Y",         # asctime (no zone: UTC)
])
def test_http_date_forms(http: httpx.Client, form: str) -> None:
    pool_id = _pool(http)
    changed = parsedate_to_datetime(
        ok(send(http, "GET", f"/pools/{pool_id}"), 200).headers["Last-Modified"])
    later = (changed + timedelta(hours=1)).strftime(form)
    earlier = (changed - timedelta(hours=1)).strftime(form)
    error(send(http, "GET", f"/pools/{pool_id}", headers={"If-Modified-Since": later}), 304, "")
    ok(send(http, "GET", f"/pools/{pool_id}", headers={"If-Modified-Since": earlier}), 200)
    error(send(http, "GET", f"/pools/{pool_id}", headers={"If-Unmodified-Since": earlier}), 412,
          "ConditionNotMet")
    details = error(send(http, "GET", f"/pools/{pool_id}",
                         headers={"If-Modified-Since": "last tuesday"}), 400,
                    "InvalidHeaderValue")
    assert details["HeaderName"] == "If-Modified-Since"


def test_conditional_headers_an_operation_does_not_take_are_ignored(
        http: httpx.Client) -> None:
    pool_id = _pool(http, nodes=1)
    wait_for(lambda: _get(http, f"/pools/{pool_id}/nodes")["value"], what="a node")
    node_id = _get(http, f"/pools/{pool_id}/nodes")["value"][0]["id"]
    # Nodes_GetNode and Pools_CreatePool declare no conditional headers
    node = ok(send(http, "GET", f"/pools/{pool_id}/nodes/{node_id}",
                   headers={"If-Match": '"0xOTHER"', "If-Modified-Since": "bogus"}), 200)
    assert node.headers["ETag"]  # a node still has a version (spec: Hs headers)
    ok(send(http, "POST", "/pools", body={"id": _uid("tol"), "vmSize": "standard_a1"},
            headers={"If-None-Match": "*", "If-Match": "*"}), 201)
    # file reads declare only the dates: an If-Match there changes nothing
    job_id = _uid("tolf")
    ok(send(http, "POST", "/jobs", body={"id": job_id, "poolInfo": {"poolId": pool_id}}), 201)
    ok(send(http, "POST", f"/jobs/{job_id}/tasks", body={"id": "t", "commandLine": "/bin/true"}),
       201)
    wait_for(lambda: _get(http, f"/jobs/{job_id}/tasks/t")["state"] == "completed",
             what="the task")
    ok(send(http, "HEAD", f"/jobs/{job_id}/tasks/t/files/stdout.txt",
            headers={"If-Match": '"0xOTHER"'}), 200)
