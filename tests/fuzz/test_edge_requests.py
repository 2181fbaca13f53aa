"""Requests the fuzzer found crashing the service (or corrupting what it stores), replayed
one by one: each must get its Batch error, the server must log no crash, and everything
stored must still be listable afterwards. See README.md for what each one broke."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fuzz.campaign import API_VERSION, describe
from tests.fuzz.checks import error_code, response_problems
from tests.fuzz.signing import SharedKeyAuth
from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

JOB, POOL, DONE, OTHER = "edge-job", "edge-pool", "done", "other"
TASK = f"/jobs/{JOB}/tasks/{DONE}"
DEEP = b"[" * 100_000 + b"]" * 100_000


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _task(**extra: Any) -> bytes:
    return _json({"id": "edge-new", "commandLine": "/bin/echo x", **extra})


def _job(**extra: Any) -> bytes:
    return _json({"id": "edge-new-job", "poolInfo": {"poolId": POOL}, **extra})


# (method, path, body, query, headers, expected status, expected code)
Edge = tuple[str, str, bytes | None, dict[str, str], dict[str, str], int, str]
EDGES: list[Edge] = [
    # bodies
    ("POST", "/pools", DEEP, {}, {}, 400, "InvalidRequestBody"),
    ("POST", f"/jobs/{JOB}/addtaskcollection", b'{"value": [' + DEEP + b"]}", {}, {}, 400,
     "InvalidRequestBody"),
    ("PUT", TASK, DEEP, {}, {}, 400, "InvalidRequestBody"),
    ("POST", "/pools", b'{"id": "edge-s", "vmSize": "s", "metadata": [{"name": "a", '
     b'"value": "\\ud800"}]}', {}, {}, 400, "InvalidRequestBody"),
    ("POST", "/pools", b'{"id": "edge-n", "vmSize": "s", "targetDedicatedNodes": NaN}', {}, {},
     400, "InvalidRequestBody"),
    ("POST", "/pools", _json({"id": "edge-z", "vmSize": "s\x00"}), {}, {}, 400,
     "InvalidPropertyValue"),
    ("POST", f"/jobs/{JOB}/tasks", _task(commandLine="/bin/echo \x00x"), {}, {}, 400,
     "InvalidPropertyValue"),
    ("POST", "/jobs", _job(constraints={"maxTaskRetryCount": 2**70}), {}, {}, 400,
     "InvalidPropertyValue"),
    ("POST", "/jobs", _job(constraints={"maxTaskRetryCount": 1e20}), {}, {}, 400,
     "InvalidPropertyValue"),
    ("POST", "/jobs", _job(constraints={"maxTaskRetryCount": "1" + "0" * 20}), {}, {}, 400,
     "InvalidPropertyValue"),
    ("POST", f"/jobs/{JOB}/tasks", _task(constraints={"maxTaskRetryCount": 2**63}), {}, {},
     400, "InvalidPropertyValue"),
    ("POST", f"/jobs/{JOB}/addtaskcollection",
     _json({"value": [{"id": "edge-c", "commandLine": "/bin/echo"}, 5]}), {}, {}, 400,
     "InvalidPropertyValue"),
    # query
    ("GET", f"{TASK}/files", None, {"$skiptoken": "abc"}, {}, 400,
     "InvalidQueryParameterValue"),
    ("GET", f"{TASK}/files", None, {"$skiptoken": "9" * 5000}, {}, 400,
     "InvalidQueryParameterValue"),
    ("GET", "/jobs", None, {"$filter": "priority gt " + "9" * 5000}, {}, 400,
     "InvalidQueryParameterValue"),
    # headers
    ("GET", f"{TASK}/files/stdout.txt", None, {}, {"ocp-range": "bytes=5-2"}, 400,
     "InvalidHeaderValue"),
    ("GET", f"{TASK}/files/stdout.txt", None, {}, {"ocp-range": "bytes=0-" + "9" * 25}, 400,
     "InvalidHeaderValue"),
    ("GET", f"{TASK}/files/stdout.txt", None, {}, {"ocp-range": "bytes=" + "9" * 5000 + "-"},
     400, "InvalidHeaderValue"),
    ("GET", f"{TASK}/files/stdout.txt", None, {}, {"ocp-range": "bytes=0-" + "9" * 18}, 200,
     ""),
    # paths
    ("GET", f"{TASK}/files/..%2F{OTHER}%2Fstdout.txt", None, {}, {}, 400, "InvalidUri"),
    ("DELETE", f"{TASK}/files/..%2F{OTHER}%2Fstdout.txt", None, {}, {}, 400, "InvalidUri"),
    ("GET", f"{TASK}/files/" + "a" * 5000, None, {}, {}, 404, "FileNotFound"),
    ("GET", f"{TASK}/files/stdout.txt%2Fx", None, {}, {}, 404, "FileNotFound"),
]


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("edge") / "data").start()
    yield server
    server.stop()


def _send(server: ServerProcess, method: str, path: str, body: bytes | None = None,
          query: dict[str, str] | None = None, headers: dict[str, str] | None = None
          ) -> requests.Response:
    return requests.request(
        method, f"{server.endpoint}{path}", params={"api-version": API_VERSION, **(query or {})},
        data=body, auth=SharedKeyAuth(ACCOUNT, KEY), timeout=10,
        headers={"Content-Type": "application/json; odata=minimalmetadata", **(headers or {})})


@pytest.fixture(scope="module")
def resources(edge_server: ServerProcess) -> ServerProcess:
    def ok(method: str, path: str, body: Any = None) -> requests.Response:
        response = _send(edge_server, method, path, _json(body) if body is not None else None)
        assert response.status_code < 300, (path, response.text)
        return response

    ok("POST", "/pools", {"id": POOL, "vmSize": "standard_a1", "targetDedicatedNodes": 1})
    ok("POST", "/jobs", {"id": JOB, "poolInfo": {"poolId": POOL}})
    for task in (DONE, OTHER):
        ok("POST", f"/jobs/{JOB}/tasks", {"id": task, "commandLine": "/bin/echo edge"})
    wait_for(lambda: all(ok("GET", f"/jobs/{JOB}/tasks/{t}").json()["state"] == "completed"
                         for t in (DONE, OTHER)), what="edge tasks to complete")
    return edge_server


@pytest.mark.parametrize("edge", EDGES, ids=[f"{e[0]} {e[1][:40]} {e[6]}" for e in EDGES])
def test_edge_request_gets_its_batch_error(resources: ServerProcess, edge: Edge) -> None:
    method, path, body, query, headers, status, code = edge
    response = _send(resources, method, path, body, query, headers)
    flat = {k.lower(): v for k, v in response.headers.items()}
    problems = response_problems(method=method, implemented=True,
                                 status=response.status_code, headers=flat,
                                 body=response.content)
    assert not problems, f"{problems}\n{describe(response.request)}"
    assert response.status_code == status, (response.status_code, response.text[:300])
    if code:
        assert error_code(response.content) == code, response.text[:300]


def test_after_the_edges_nothing_is_broken(resources: ServerProcess) -> None:
    """Runs after the edge requests (file order): stored state still reads back whole."""
    for path in ("/pools", "/jobs", f"/jobs/{JOB}/tasks"):
        response = _send(resources, "GET", path)
        assert response.status_code == 200, (path, response.text[:500])
    log = Path(resources.log).read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def test_huge_wall_clock_limit_does_not_stop_task_execution(resources: ServerProcess) -> None:
    """A maxWallClockTime of 200000 days (valid, below the "unlimited" sentinel) must not stop
    the node from reporting task exits: a task after it still completes."""
    for task, limit in (("edge-long", "P200000D"), ("edge-after", None)):
        # running while the node computes its next wake-up from the limit
        body: dict[str, Any] = {"id": task, "commandLine": "/bin/sleep 0.5"}
        if limit:
            body["constraints"] = {"maxWallClockTime": limit}
        assert _send(resources, "POST", f"/jobs/{JOB}/tasks", _json(body)).status_code == 201

    def completed() -> bool:
        return all(_send(resources, "GET", f"/jobs/{JOB}/tasks/{t}").json()["state"]
                   == "completed" for t in ("edge-long", "edge-after"))

    wait_for(completed, timeout=20, interval=0.1, what="both tasks to complete")
