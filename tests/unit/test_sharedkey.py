"""SharedKey verification against the signing code of the real clients (wire reference §8).

The strongest tests here run the *installed* azure-batch 15.1 SDK (its
``BatchSharedKeyAuthPolicy``) against a loopback HTTP recorder and verify the exact bytes
that arrive, as an ASGI server would see them. 14.x (not installed) and .NET signing are
covered by vectors built from the reference's description of their algorithms, and the
reference's captured signatures are checked verbatim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import requests
from azure.batch import BatchClient, models
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.rest import HttpRequest

from hybatch.api.auth import (
    MAX_CLOCK_SKEW,
    AuthResult,
    candidate_strings_to_sign,
    request_parts_from_asgi,
    shared_key_account,
    sign,
    verify_asgi,
    verify_shared_key,
)

ACCOUNT = "acct"
KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # the reference's made-up key
OTHER_KEY = base64.b64encode(b"another key, 32 bytes long......").decode()
OCP_DATE = "Sat, 21 Nov 2026 19:10:31 GMT"
SIGNED_AT = datetime(2026, 11, 21, 19, 10, 31, tzinfo=UTC)
NOW = SIGNED_AT + timedelta(seconds=42)


# --------------------------------------------------------------------------- wire recorder


@dataclass(frozen=True)
class Captured:
    """One request exactly as it crossed the socket."""

    method: str
    target: str  # raw request-target: still-encoded path + '?' + query
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def raw_path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        # What Starlette's QueryParams (and our ASGI adapter) produce.
        return parse_qsl(self.target.partition("?")[2], keep_blank_values=True)

    @property
    def header_map(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers}

    def asgi_scope(self) -> dict[str, object]:
        """The scope uvicorn would build for this request."""
        path, _, query = self.target.partition("?")
        return {
            "type": "http",
            "method": self.method,
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in self.headers],
        }

    def verify(self, key: str | list[str] = KEY, now: datetime = NOW, *,
               method: str | None = None, raw_path: str | None = None,
               query_pairs: list[tuple[str, str]] | None = None,
               headers: dict[str, str] | None = None) -> AuthResult:
        """verify_shared_key on this request, optionally with parts replaced (tampering)."""
        h = self.header_map if headers is None else headers
        return verify_shared_key(
            h.get("authorization"), method or self.method, raw_path or self.raw_path,
            self.query_pairs if query_pairs is None else query_pairs, h, ACCOUNT, key, now=now,
        )


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    captured: list[Captured]

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.captured.append(Captured(self.command, self.path, list(self.headers.items()), body))
        payload = b"" if self.command == "HEAD" else json.dumps({"value": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json;odata=minimalmetadata")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: object) -> None:
        """Keep pytest output quiet."""


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[str, list[Captured]]]:
    captured: list[Captured] = []
    handler = type("Recorder", (_Recorder,), {"captured": captured})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", captured
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sdk15(recorder: tuple[str, list[Captured]]) -> BatchClient:
    endpoint, _ = recorder
    return BatchClient(endpoint, AzureNamedKeyCredential(ACCOUNT, KEY), retry_total=0)


def _capture(recorder: tuple[str, list[Captured]], call: Callable[[], object]) -> Captured:
    """Run one client call and return the single request it put on the wire. The recorder's
    answers do not satisfy every operation's response contract, so client-side errors after
    the request was sent are expected and ignored."""
    _, captured = recorder
    captured.clear()
    try:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, bytes | str):
            list(result)  # paged lists and downloads send their request lazily
    except Exception:
        if not captured:  # failed before sending: a broken test, not a response problem
            raise
    assert len(captured) == 1, captured
    return captured[0]


# --------------------------------------------------------------------------- 15.x (real SDK)

D = SIGNED_AT  # ocp_date passed to every call so the signed date is deterministic

SDK15_CALLS: dict[str, Callable[[BatchClient], object]] = {
    "list tasks: $filter/$select/$expand with spaces, quotes, commas, parentheses":
        lambda c: c.list_tasks(
            "job-1", ocp_date=D, max_results=10, service_timeout=20,
            filter="(state eq 'completed') and startswith(id, 'a,b''c') "
                   "and executionInfo/exitCode ne 0",
            select=["id", "state", "executionInfo"], expand=["stats"]),
    "list pools: filter with + & = # % and non-ASCII":
        lambda c: c.list_pools(ocp_date=D, filter="id eq 'a+b&c=d#e%f é'",
                               select=["id", "state"]),
    "list node files: recursive, startswith filter":
        lambda c: c.list_node_files("p1", "tvm-1_2-20240101t000000z", ocp_date=D,
                                    recursive=True, filter="startswith(name,'wd')"),
    "pool usage metrics: datetimes in the query":
        lambda c: c.list_pool_usage_metrics(
            ocp_date=D, start_time=datetime(2024, 1, 1, tzinfo=UTC),
            end_time=datetime(2024, 1, 2, tzinfo=UTC)),
    "create job: POST with a JSON body":
        lambda c: c.create_job(models.BatchJobCreateOptions(
            id="j", display_name="naïve — job", pool_info=models.BatchPoolInfo(pool_id="p1"),
            uses_task_dependencies=True, all_tasks_complete_mode="terminatejob"), ocp_date=D),
    "create task: unicode command line":
        lambda c: c.create_task("j", models.BatchTaskCreateOptions(
            id="t1", command_line="echo héllo 'x' \"y\""), ocp_date=D),
    "file properties: HEAD with %2F, spaces and + in the path":
        lambda c: c.get_task_file_properties("j", "t1", "wd/out dir/a+b.txt", ocp_date=D),
    "file download: ocp-range header, percent-encoded path":
        lambda c: c.download_task_file("j", "t1", "wd/sub dir/ü%.txt", ocp_date=D,
                                       ocp_range="bytes=0-4"),
    "file delete: DELETE with recursive=true":
        lambda c: c.delete_task_file("j", "t1", "wd/x", ocp_date=D, recursive=True),
    "reactivate task: bodiless POST":
        lambda c: c.reactivate_task("j", "t1", ocp_date=D),
    "delete task: If-Match with quotes":
        lambda c: c.delete_task("j", "t1", ocp_date=D, etag="0x8D1",
                                match_condition=MatchConditions.IfNotModified),
    "update job: PATCH with If-Unmodified-Since":
        lambda c: c.update_job("j", models.BatchJobUpdateOptions(priority=5), ocp_date=D,
                               if_unmodified_since=datetime(2024, 1, 1, tzinfo=UTC)),
    "job id with a colon (schedule job)":
        lambda c: c.get_job("sched:job-1", ocp_date=D, select=["id"]),
    "raw request: empty query values, upper-case name, + and %2B":
        lambda c: c.send_request(HttpRequest(
            "GET", "/pools?api-version=2025-06-01&b=2&a=&c=%2B+d&Z=up&flag",
            headers={"ocp-date": OCP_DATE})),
}


@pytest.mark.parametrize("name", list(SDK15_CALLS))
def test_sdk15_signature_verifies(name: str, recorder: tuple[str, list[Captured]],
                                  sdk15: BatchClient) -> None:
    req = _capture(recorder, lambda: SDK15_CALLS[name](sdk15))
    assert req.header_map["authorization"].startswith(f"SharedKey {ACCOUNT}:")
    assert req.header_map["ocp-date"] == OCP_DATE

    result = verify_asgi(req.asgi_scope(), ACCOUNT, KEY, now=NOW)
    assert result.ok, (result, req)
    assert result.outcome == "ok" and result.account == ACCOUNT and result.code == ""
    # The SDK's own canonical form is the first candidate (no variant was needed).
    assert result.string_to_sign == candidate_strings_to_sign(
        req.method, req.raw_path, req.query_pairs, req.header_map, ACCOUNT)[0]
    assert req.verify().ok


def test_sdk15_requests_exercise_the_hard_cases(recorder: tuple[str, list[Captured]],
                                                sdk15: BatchClient) -> None:
    """Guard against the vectors above silently becoming easy (e.g. an SDK change)."""
    head = _capture(recorder, lambda: SDK15_CALLS[
        "file properties: HEAD with %2F, spaces and + in the path"](sdk15))
    assert head.raw_path == "/jobs/j/tasks/t1/files/wd%2Fout%20dir%2Fa%2Bb.txt"
    listing = _capture(recorder, lambda: SDK15_CALLS[
        "list tasks: $filter/$select/$expand with spaces, quotes, commas, parentheses"](sdk15))
    assert "%20" in listing.target and "%27" in listing.target and "timeOut=20" in listing.target
    bodiless = _capture(recorder, lambda: SDK15_CALLS["reactivate task: bodiless POST"](sdk15))
    assert bodiless.method == "POST" and bodiless.header_map["content-length"] == "0"
    deleted = _capture(recorder, lambda: SDK15_CALLS["delete task: If-Match with quotes"](sdk15))
    assert deleted.header_map["if-match"] == '"0x8D1"'


TAMPERING: dict[str, Callable[[Captured], dict[str, Any]]] = {
    "method": lambda r: {"method": "PUT" if r.method != "PUT" else "POST"},
    "path": lambda r: {"raw_path": r.raw_path.replace("/j", "/k", 1)
                       if "/j" in r.raw_path else r.raw_path + "x"},
    "path decoded": lambda r: {"raw_path": unquote(r.raw_path) + ("" if "%" in r.raw_path
                                                                  else "/")},
    "query value": lambda r: {"query_pairs": [
        (n, v + "x") if n == "api-version" else (n, v) for n, v in r.query_pairs]},
    "query dropped": lambda r: {"query_pairs": r.query_pairs[:-1]},
    "query added": lambda r: {"query_pairs": [*r.query_pairs, ("recursive", "true")]},
    "body length": lambda r: {"headers": {**r.header_map, "content-length": str(
        len(r.body) + 1)}},
    "content type": lambda r: {"headers": {**r.header_map, "content-type": "text/plain"}},
    "ocp-date": lambda r: {"headers": {**r.header_map,
                                       "ocp-date": "Sat, 21 Nov 2026 19:10:32 GMT"}},
    "if-match added": lambda r: {"headers": {**r.header_map, "if-match": "*"}},
    "ocp-range added": lambda r: {"headers": {**r.header_map, "ocp-range": "bytes=0-1"}},
}


@pytest.mark.parametrize("tamper", list(TAMPERING))
@pytest.mark.parametrize("name", [
    "list tasks: $filter/$select/$expand with spaces, quotes, commas, parentheses",
    "create job: POST with a JSON body",
    "file properties: HEAD with %2F, spaces and + in the path",
    "reactivate task: bodiless POST",
    "delete task: If-Match with quotes",
])
def test_sdk15_tampered_requests_fail(name: str, tamper: str,
                                      recorder: tuple[str, list[Captured]],
                                      sdk15: BatchClient) -> None:
    req = _capture(recorder, lambda: SDK15_CALLS[name](sdk15))
    changes = TAMPERING[tamper](req)
    result = req.verify(**changes)
    assert result.outcome == "failed", (tamper, changes)
    assert result.status == 403 and result.code == "AuthenticationFailed"


@pytest.mark.parametrize("name", list(SDK15_CALLS))
def test_sdk15_wrong_key_fails(name: str, recorder: tuple[str, list[Captured]],
                               sdk15: BatchClient) -> None:
    req = _capture(recorder, lambda: SDK15_CALLS[name](sdk15))
    result = req.verify(key=OTHER_KEY)
    assert result.outcome == "failed" and result.status == 403
    assert "signature" in result.reason and result.string_to_sign
    # primary/secondary: accepted when the right key is among the configured ones
    assert req.verify(key=[OTHER_KEY, KEY]).ok


def test_query_name_case_is_tolerated(recorder: tuple[str, list[Captured]],
                                     sdk15: BatchClient) -> None:
    """By design (§8.2: .NET signs lower-cased names but sends them as given), names that
    were signed all lower-case may arrive in any case; routing lower-cases names anyway. The
    converse cannot be reconstructed, and values stay case-sensitive."""
    req = _capture(recorder, lambda: sdk15.get_job("j", ocp_date=D))
    assert req.query_pairs == [("api-version", "2025-06-01")]
    assert req.verify(query_pairs=[("API-Version", "2025-06-01")]).ok
    assert req.verify(query_pairs=[("api-version", "2025-06-01".upper() + "x")]).outcome \
        == "failed"
    timed = _capture(recorder, lambda: sdk15.get_job("j", ocp_date=D, service_timeout=5))
    assert timed.query_pairs == [("api-version", "2025-06-01"), ("timeOut", "5")]
    assert timed.verify(query_pairs=[("api-version", "2025-06-01"), ("timeout", "5")]).outcome \
        == "failed"


def test_repeated_query_names_are_refused(recorder: tuple[str, list[Captured]],
                                          sdk15: BatchClient) -> None:
    """The SDK signs only the first value of a repeated name, so the rest would be unsigned
    (an appended `&$filter=...` would pass). Real clients never repeat names."""
    req = _capture(recorder, lambda: sdk15.send_request(HttpRequest(
        "GET", "/pools?api-version=2025-06-01&$filter=id%20eq%20'a'",
        headers={"ocp-date": OCP_DATE})))
    assert req.verify().ok
    for extra in [("$filter", "id eq 'b'"), ("$Filter", "x"), ("api-version", "")]:
        result = req.verify(query_pairs=[*req.query_pairs, extra])
        assert result.outcome == "malformed" and result.status == 400, extra
        assert result.code == "InvalidQueryParameterValue" and result.header == extra[0]


def test_sdk15_stale_ocp_date_is_rejected(recorder: tuple[str, list[Captured]],
                                          sdk15: BatchClient) -> None:
    req = _capture(recorder, lambda: sdk15.get_job("j", ocp_date=D))
    assert req.verify(now=SIGNED_AT + MAX_CLOCK_SKEW).ok
    assert req.verify(now=SIGNED_AT - MAX_CLOCK_SKEW).ok
    for now in (SIGNED_AT + MAX_CLOCK_SKEW + timedelta(seconds=1),
                SIGNED_AT - timedelta(minutes=16), SIGNED_AT + timedelta(days=1)):
        result = req.verify(now=now)
        assert result.outcome == "failed" and result.status == 403, now
        assert result.header == "ocp-date" and "15 minutes" in result.reason


def test_sdk15_default_ocp_date_is_now(recorder: tuple[str, list[Captured]],
                                       sdk15: BatchClient) -> None:
    """Without ocp_date the SDK stamps the real clock; verify against the real clock too."""
    req = _capture(recorder, lambda: sdk15.get_pool("p1"))
    assert req.verify(now=datetime.now(UTC)).ok
    assert req.verify(now=datetime.now(UTC) + timedelta(hours=1)).outcome == "failed"


# --------------------------------------------------------------------------- 14.x style


class Legacy14SharedKey(requests.auth.AuthBase):
    """The 14.x signer as §8.1 describes it: msrest/requests auth hook, so it signs the
    *prepared* request (requests has already set Content-Length, including ``0`` for
    bodiless POST/DELETE) and does not pre-fill a content-length itself."""

    _signed = ("content-encoding", "content-language", "content-length", "content-md5",
               "content-type", "date", "if-modified-since", "if-match", "if-none-match",
               "if-unmodified-since", "range")

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.setdefault("ocp-date", OCP_DATE)
        assert isinstance(r.url, str) and isinstance(r.method, str)
        url = urlsplit(r.url)
        items = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in r.headers.items()]
        present = {k.lower(): v for k, v in items if v}
        text = r.method + "\n" + "".join(f"{present.get(h, '')}\n" for h in self._signed)
        ocp = sorted((k.lower(), v) for k, v in items if "ocp-" in k and v)
        text += "".join(f"{k}:{v}\n" for k, v in ocp)
        text += f"/{ACCOUNT}{url.path}"
        first: dict[str, str] = {}
        for k, v in parse_qsl(url.query):  # parse_qs semantics: blank values dropped
            first.setdefault(k, v)
        text += "".join(f"\n{k}:{first[k]}" for k in sorted(first))
        r.headers["Authorization"] = f"SharedKey {ACCOUNT}:{sign(KEY, text)}"
        return r


V14 = "2024-02-01.19.0"
JSON14 = "application/json; odata=minimalmetadata; charset=utf-8"

# (method, path+query as 14.x puts it on the wire (§12.1), headers, body)
SDK14_REQUESTS: dict[str, tuple[str, str, dict[str, str], bytes | None]] = {
    "list tasks, $select comma encoded, lower-case timeout": (
        "GET", f"/jobs/j/tasks?api-version={V14}&$filter=state%20eq%20%27completed%27"
               "&$select=id%2Cstate&maxresults=1000&timeout=30",
        {"accept-language": "en-US"}, None),
    "nextLink followed verbatim": (
        "GET", "/pools?api-version=xx&$skiptoken=abc%20def&$filter=startswith(id%2C'p')", {},
        None),
    "pool usage metrics": (
        "GET", f"/poolusagemetrics?api-version={V14}&starttime=2024-01-01T00%3A00%3A00.000Z"
               "&maxresults=1000&timeout=30", {}, None),
    "bodiless reboot with a JSON content type": (
        "POST", f"/pools/p1/nodes/n1/reboot?api-version={V14}",
        {"Content-Type": JSON14}, None),
    "delete pool, unquoted If-Match": (
        "DELETE", f"/pools/p1?api-version={V14}&timeout=30", {"If-Match": "0x8D1"}, None),
    "create job with JSON body": (
        "POST", f"/jobs?api-version={V14}", {"Content-Type": JSON14},
        json.dumps({"id": "j", "maxParallelTasks": -1, "poolInfo": {"poolId": "p1"},
                    "displayName": "h\u00e9llo"}).encode()),
    "file HEAD with %2F path": (
        "HEAD", f"/jobs/j/tasks/t1/files/wd%2Fout%20dir%2Fa%2Bb.txt?api-version={V14}", {}, None),
    "file GET with ocp-range": (
        "GET", f"/jobs/j/tasks/t1/files/stdout.txt?api-version={V14}",
        {"ocp-range": "bytes=0-4"}, None),
}


@pytest.mark.parametrize("name", list(SDK14_REQUESTS))
def test_sdk14_style_signature_verifies(name: str, recorder: tuple[str, list[Captured]]) -> None:
    endpoint, _ = recorder
    method, target, headers, body = SDK14_REQUESTS[name]

    def send() -> object:
        with requests.Session() as session:
            return session.request(method, endpoint + target, headers=headers, data=body,
                                   auth=Legacy14SharedKey(), timeout=10)

    req = _capture(recorder, send)
    assert req.target == target  # requests sent the URL unchanged
    if method in ("POST", "DELETE") and body is None:
        assert req.header_map["content-length"] == "0"
    assert verify_asgi(req.asgi_scope(), ACCOUNT, KEY, now=NOW).ok
    assert not req.verify(key=OTHER_KEY).ok
    assert not req.verify(raw_path=req.raw_path + "x").ok


# --------------------------------------------------------------------------- reference vectors

GET_POOL_STRING = ("GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Sat, 21 Nov 2026 19:10:31 GMT\n"
                   "/acct/pools/p1\n$expand:stats\n$select:id,state\napi-version:2025-06-01\n"
                   "timeOut:20")
POST_JOBS_STRING = ("POST\n\n\n185\n\napplication/json; odata=minimalmetadata\n\n\n\n\n\n\n"
                    "ocp-date:Sat, 21 Nov 2026 19:10:31 GMT\n/acct/jobs\napi-version:2025-06-01")
DELETE_POOL_STRING = ("DELETE\n\n\n0\n\n\n\n\n\"0x8D1\"\n\n\n\n"
                      "ocp-date:Sat, 21 Nov 2026 19:10:31 GMT\n/acct/pools/p1\n"
                      "api-version:2025-06-01")
GET_POOL_QUERY = [("api-version", "2025-06-01"), ("timeOut", "20"), ("$select", "id,state"),
                  ("$expand", "stats")]


def test_reference_signatures() -> None:
    """§8.1's captured signatures, byte for byte."""
    assert sign(KEY, GET_POOL_STRING) == "h6MZD9zRxIylef07j2rMuFjxAqo7alkY0vgjT0UIlrw="
    assert sign(KEY, GET_POOL_STRING.replace("timeOut", "timeout")) == (
        "yQ7RSfRK0MqBhdLxff0+2R7L9F/W1G2lZJLFJNaGlWs=")
    assert sign(KEY, POST_JOBS_STRING) == "a1PpVIM5Q4LNSQvzrVd8ZpOV3CPcT6byRa0YHTL4Fis="


def test_reference_canonical_strings() -> None:
    ocp = {"ocp-date": OCP_DATE}
    assert candidate_strings_to_sign("GET", "/pools/p1", GET_POOL_QUERY, ocp,
                                     ACCOUNT)[0] == GET_POOL_STRING
    post = {"Content-Length": "185", "Content-Type": "application/json; odata=minimalmetadata",
            "OCP-Date": OCP_DATE}
    assert candidate_strings_to_sign("POST", "/jobs", [("api-version", "2025-06-01")], post,
                                     ACCOUNT)[0] == POST_JOBS_STRING
    delete = {"content-length": "0", "if-match": '"0x8D1"', "ocp-date": OCP_DATE}
    assert candidate_strings_to_sign("DELETE", "/pools/p1", [("api-version", "2025-06-01")],
                                     delete, ACCOUNT)[0] == DELETE_POOL_STRING
    # absent Content-Length on a DELETE: the 15.x policy signs "0"
    no_length = {"if-match": '"0x8D1"', "ocp-date": OCP_DATE}
    assert DELETE_POOL_STRING in candidate_strings_to_sign(
        "DELETE", "/pools/p1", [("api-version", "2025-06-01")], no_length, ACCOUNT)


@pytest.mark.parametrize(("signature", "query"), [
    ("h6MZD9zRxIylef07j2rMuFjxAqo7alkY0vgjT0UIlrw=", GET_POOL_QUERY),
    # the same request signed with lower-cased query names (.NET / documented)
    ("yQ7RSfRK0MqBhdLxff0+2R7L9F/W1G2lZJLFJNaGlWs=", GET_POOL_QUERY),
    # 14.x sends `timeout`; its signature is the lower-case one
    ("yQ7RSfRK0MqBhdLxff0+2R7L9F/W1G2lZJLFJNaGlWs=",
     [(n.lower(), v) for n, v in GET_POOL_QUERY]),
])
def test_reference_requests_verify(signature: str, query: list[tuple[str, str]]) -> None:
    result = verify_shared_key(f"SharedKey acct:{signature}", "GET", "/pools/p1", query,
                               {"ocp-date": OCP_DATE}, "acct", KEY, now=NOW)
    assert result.ok, result


# --------------------------------------------------------------------------- .NET style


def _hmac(text: str) -> str:
    key = base64.b64decode(KEY)
    return base64.b64encode(hmac.new(key, text.encode(), hashlib.sha256).digest()).decode()


DOTNET_VECTORS: list[tuple[str, str, str, list[tuple[str, str]], dict[str, str]]] = [
    # (string the .NET policy signs, method, raw path, query pairs, headers)
    (  # zero-length body signs an empty Content-Length; names lower-cased
        "POST\n\n\n\n\napplication/json; odata=minimalmetadata\n\n\n\n\n\n\n"
        f"ocp-date:{OCP_DATE}\n/acct/pools/p1/nodes/n1/reboot\napi-version:2025-06-01\n"
        "timeout:30",
        "POST", "/pools/p1/nodes/n1/reboot", [("api-version", "2025-06-01"), ("timeOut", "30")],
        {"Content-Type": "application/json; odata=minimalmetadata", "Content-Length": "0",
         "ocp-date": OCP_DATE}),
    (  # empty values included; sorted by the names as sent (ordinal), emitted lower-cased
        f"GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:{OCP_DATE}\n/acct/pools\n$filter:\n"
        "zeta:1\napi-version:2025-06-01",
        "GET", "/pools", [("api-version", "2025-06-01"), ("Zeta", "1"), ("$filter", "")],
        {"ocp-date": OCP_DATE}),
    (  # documented algorithm: lower-cased names sorted, empty values included
        f"GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:{OCP_DATE}\n/acct/pools\n$filter:\n"
        "api-version:2025-06-01\nzeta:1",
        "GET", "/pools", [("api-version", "2025-06-01"), ("Zeta", "1"), ("$filter", "")],
        {"ocp-date": OCP_DATE}),
    (  # prefix-only ocp- match: an empty ocp- header is still signed
        f"GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:{OCP_DATE}\nocp-range:\n/acct/jobs/j\n"
        "api-version:2025-06-01",
        "GET", "/jobs/j", [("api-version", "2025-06-01")],
        {"ocp-date": OCP_DATE, "ocp-range": ""}),
]


@pytest.mark.parametrize(("text", "method", "path", "query", "headers"), DOTNET_VECTORS)
def test_other_client_canonicalisations_verify(text: str, method: str, path: str,
                                               query: list[tuple[str, str]],
                                               headers: dict[str, str]) -> None:
    assert text in candidate_strings_to_sign(method, path, query, headers, ACCOUNT)
    result = verify_shared_key(f"SharedKey {ACCOUNT}:{_hmac(text)}", method, path, query,
                               headers, ACCOUNT, KEY, now=NOW)
    assert result.ok and result.string_to_sign == text


def test_proxy_added_date_header_is_tolerated() -> None:
    """A Date header added after signing (the SDKs sign an empty Date line)."""
    query = [("api-version", "2025-06-01")]
    text = candidate_strings_to_sign("GET", "/pools", query, {"ocp-date": OCP_DATE}, ACCOUNT)[0]
    headers = {"ocp-date": OCP_DATE, "Date": "Sat, 21 Nov 2026 19:10:40 GMT"}
    assert verify_shared_key(f"SharedKey {ACCOUNT}:{_hmac(text)}", "GET", "/pools", query,
                             headers, ACCOUNT, KEY, now=NOW).ok


# --------------------------------------------------------------------------- header handling

GOOD_SIG = _hmac(candidate_strings_to_sign("GET", "/pools", [], {"ocp-date": OCP_DATE},
                                           ACCOUNT)[0])

# (Authorization, extra headers, expected status, error code, reason fragment)
HEADER_CASES: list[tuple[str | None, dict[str, str], str, str, str]] = [
    (None, {}, "missing", "AuthenticationFailed", "no Authorization"),
    ("", {}, "missing", "AuthenticationFailed", "no Authorization"),
    ("   ", {}, "missing", "AuthenticationFailed", "no Authorization"),
    ("Bearer eyJ0eXAi", {}, "malformed", "InvalidAuthenticationInfo", "not SharedKey"),
    ("SharedKey", {}, "malformed", "InvalidAuthenticationInfo", "SharedKey {account}"),
    ("SharedKey acct", {}, "malformed", "InvalidAuthenticationInfo", "SharedKey {account}"),
    ("SharedKey :" + GOOD_SIG, {}, "malformed", "InvalidAuthenticationInfo", "{account}"),
    ("SharedKey acct:", {}, "malformed", "InvalidAuthenticationInfo", "{account}"),
    ("SharedKey acct:not*base64!", {}, "malformed", "InvalidAuthenticationInfo", "base64"),
    ("SharedKey acct:" + base64.b64encode(b"short").decode(), {}, "malformed",
     "InvalidAuthenticationInfo", "HMAC"),
    ("SharedKey other:" + GOOD_SIG, {}, "failed", "AuthenticationFailed", "Unknown account"),
    ("SharedKey acct:" + GOOD_SIG, {"ocp-date": ""}, "malformed", "MissingRequiredHeader",
     "neither"),
    ("SharedKey acct:" + GOOD_SIG, {"ocp-date": "yesterday"}, "malformed",
     "InvalidHeaderValue", "RFC 1123"),
    ("SharedKey acct:" + GOOD_SIG, {}, "ok", "", "verified"),
    ("sharedkey ACCT:" + GOOD_SIG, {}, "failed", "AuthenticationFailed", "signature"),
    ("  SharedKey   acct:" + GOOD_SIG + "  ", {}, "ok", "", "verified"),
]


@pytest.mark.parametrize(("authorization", "extra", "status", "code", "fragment"),
                         HEADER_CASES)
def test_authorization_header_handling(authorization: str | None, extra: dict[str, str],
                                       status: str, code: str, fragment: str) -> None:
    headers = {"ocp-date": OCP_DATE, **extra}
    result = verify_shared_key(authorization, "GET", "/pools", [], headers, ACCOUNT, KEY,
                               now=NOW)
    assert (result.outcome, result.code) == (status, code), result
    assert fragment in result.reason and result.message == result.reason
    assert result.status == {"ok": 200, "missing": 401, "malformed": 400,
                                  "failed": 403}[status]


def test_account_name_case_follows_the_header() -> None:
    """The client signs `/{its account name}`; account names match case-insensitively."""
    text = candidate_strings_to_sign("GET", "/pools", [], {"ocp-date": OCP_DATE}, "ACCT")[0]
    result = verify_shared_key(f"SharedKey ACCT:{_hmac(text)}", "GET", "/pools", [],
                               {"ocp-date": OCP_DATE}, "acct", KEY, now=NOW)
    assert result.ok and result.account == "ACCT"


def test_date_header_is_used_without_ocp_date() -> None:
    headers = {"Date": OCP_DATE}
    text = candidate_strings_to_sign("GET", "/pools", [], headers, ACCOUNT)[0]
    assert text.startswith(f"GET\n\n\n\n\n\n{OCP_DATE}\n")
    auth = f"SharedKey {ACCOUNT}:{_hmac(text)}"
    assert verify_shared_key(auth, "GET", "/pools", [], headers, ACCOUNT, KEY, now=NOW).ok
    late = verify_shared_key(auth, "GET", "/pools", [], headers, ACCOUNT, KEY,
                             now=NOW + timedelta(hours=2))
    assert late.outcome == "failed" and late.header == "date"


def test_naive_now_is_utc_and_now_may_be_positional() -> None:
    auth = f"SharedKey {ACCOUNT}:{GOOD_SIG}"
    headers = {"ocp-date": OCP_DATE}
    naive = NOW.replace(tzinfo=None)
    assert verify_shared_key(auth, "GET", "/pools", [], headers, ACCOUNT, KEY, naive).ok
    late = verify_shared_key(auth, "GET", "/pools", [], headers, ACCOUNT, KEY,
                             NOW + timedelta(minutes=20), max_skew=timedelta(minutes=30))
    assert late.ok


def test_invalid_configured_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="base64"):
        sign("not base64!", "x")
    with pytest.raises(ValueError, match="base64"):
        verify_shared_key(None, "GET", "/", [], {}, ACCOUNT, "###", now=NOW)


def test_shared_key_account() -> None:
    assert shared_key_account(f"SharedKey myacct:{GOOD_SIG}") == "myacct"
    assert shared_key_account("Bearer x") is None
    assert shared_key_account(None) is None


def test_candidates_are_unique_and_canonical_first() -> None:
    query = [("api-version", "2025-06-01"), ("timeOut", "30"), ("x", ""), ("B", "1")]
    headers = {"content-length": "0", "ocp-date": OCP_DATE, "Date": OCP_DATE}
    candidates = candidate_strings_to_sign("POST", "/jobs/j/disable", query, headers, ACCOUNT)
    assert len(candidates) == len(set(candidates))
    assert candidates[0] == (f"POST\n\n\n0\n\n\n{OCP_DATE}\n\n\n\n\n\nocp-date:{OCP_DATE}\n"
                             "/acct/jobs/j/disable\nB:1\napi-version:2025-06-01\ntimeOut:30")
    assert len(candidates) <= 32


def test_asgi_adapter_parts() -> None:
    scope: dict[str, object] = {
        "type": "http", "method": "GET", "path": "/jobs/j/tasks/t1/files/wd/a b",
        "raw_path": b"/jobs/j/tasks/t1/files/wd%2Fa%20b",
        "query_string": b"api-version=2025-06-01&%24filter=a+eq+%27x%2By%27&e=",
        "headers": [(b"ocp-date", OCP_DATE.encode()), (b"x-dup", b"1"), (b"x-dup", b"2")],
    }
    method, raw_path, pairs, headers = request_parts_from_asgi(scope)
    assert (method, raw_path) == ("GET", "/jobs/j/tasks/t1/files/wd%2Fa%20b")
    assert pairs == [("api-version", "2025-06-01"), ("$filter", "a eq 'x+y'"), ("e", "")]
    assert headers == {"ocp-date": OCP_DATE, "x-dup": "1"}
    no_raw = request_parts_from_asgi({**scope, "raw_path": None})
    assert no_raw[1] == "/jobs/j/tasks/t1/files/wd/a%20b"


def test_result_is_immutable_and_comparable() -> None:
    result = verify_shared_key(None, "GET", "/", [], {}, ACCOUNT, KEY, now=NOW)
    assert not result.ok and result.header == "Authorization"
    assert replace(result, reason="x") != result
