"""Replay the spec's request/response examples against a live server.

For every example (``shared/spec/examples-2025-06-01.21.0``, or the built-in ones in
``scenarios.py`` when that folder is absent — never skipped): if the route table implements
its operation, build the state it needs (``world.py``), send the example's request signed
with SharedKey, and compare the answer with the example's: status, headers, and the body's
shape — keys, JSON types, canonical enum spelling, parseable as the spec's model — ignoring
values that are volatile (times, etags, urls, ids, counts). Operations not implemented must
answer the documented 501 ``NotImplemented``; retired ones (``api.app.RETIRED``) exactly their
retirement error.

``test_conditions_on_every_operation`` does the same from the spec's operation table for
every operation declaring conditional headers: an unmet If-Match / If-Unmodified-Since is
412 and changes nothing; a read answers 304 to If-None-Match / If-Modified-Since; a met
condition proceeds; and a write repeated with an unmet condition on the resource it just
changed is still 412 (conditions are checked before the resource's state), 404 once gone.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import quote

import httpx
import pytest
from pydantic import BaseModel

from hybatch.api.app import IMPLEMENTED, RETIRED
from hybatch.api.errors import status_for
from hybatch.api.wire import resource_model
from hybatch.schema import OPERATIONS, Operation, WireEnum, parse_wire
from tests.replay.scenarios import BUILTIN_EXAMPLES, CONDITIONAL_BODIES, GAPS, NEEDS, Gap, Needs
from tests.replay.world import Resources, World, fill, rewrite
from tests.support.server import ServerProcess
from tests.support.signed import client as signed_client

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO.parent / "shared" / "spec" / "examples-2025-06-01.21.0"
BY_ID = {op.operation_id: op for op in OPERATIONS}
SENT_AS_IS = frozenset({"batchUrl", "api-version", "ocp-date"})


def _examples() -> list[tuple[str, dict[str, Any]]]:
    if EXAMPLES_DIR.is_dir():
        found = [(p.stem, json.loads(p.read_text(encoding="utf-8")))
                 for p in sorted(EXAMPLES_DIR.glob("*.json"))]
        assert found, f"no examples in {EXAMPLES_DIR}"
        return found
    return sorted(BUILTIN_EXAMPLES.items())


EXAMPLES = _examples()


def implemented(op: Operation) -> bool:
    return op.operation_id in IMPLEMENTED


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("replay") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(replay_server: ServerProcess) -> Iterator[httpx.Client]:
    with signed_client(replay_server.endpoint) as c:
        yield c


@pytest.fixture(scope="module")
def world(http: httpx.Client) -> World:
    return World(http)


# ----------------------------------------------------------------------------- requests


def _path(op: Operation, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: quote(values[m.group(1)], safe=""), op.path)


def _request(http: httpx.Client, op: Operation, path: str, example: dict[str, Any],
             body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """The example's request: its api-version, query and header parameters, body."""
    params = example.get("parameters", {})
    query = [("api-version", str(params.get("api-version", "2025-06-01")))]
    for name in op.query_params:
        if name in params:
            value = params[name]
            query.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    sent = {name: str(params[name]) for name in op.header_params
            if name in params and name not in SENT_AS_IS}
    sent.update(headers or {})
    content = json.dumps(body).encode() if body is not None else None
    if content is not None:
        sent["Content-Type"] = "application/json; odata=minimalmetadata"
    return http.request(op.method, path, params=query, content=content, headers=sent)


def _body_parameter(example: dict[str, Any]) -> Any:
    bodies = [v for v in example.get("parameters", {}).values() if isinstance(v, dict)]
    return bodies[0] if bodies else None


# ----------------------------------------------------------------------------- comparison


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return type(value).__name__


def _allowed(path: str, missing: frozenset[str]) -> bool:
    return any(re.fullmatch(re.escape(p).replace(r"\*", r"[^.]+"), path) for p in missing)


def shape_problems(example: Any, ours: Any, path: str, missing: frozenset[str]) -> list[str]:
    """Where ``ours`` lacks a key of ``example`` or holds another JSON type."""
    if isinstance(example, dict):
        if not isinstance(ours, dict):
            return [f"{path or '<body>'}: object expected, got {_kind(ours)}"]
        problems: list[str] = []
        for key, value in example.items():
            where = f"{path}.{key}" if path else key
            if key not in ours:
                if not _allowed(where, missing):
                    problems.append(f"{where}: missing")
                continue
            problems += shape_problems(value, ours[key], where, missing)
        return problems
    if isinstance(example, list):
        if not isinstance(ours, list):
            return [f"{path}: array expected, got {_kind(ours)}"]
        if example and not ours:
            return [] if _allowed(f"{path}.*", missing) else [f"{path}: empty"]
        if example and ours:
            return shape_problems(example[0], ours[0], f"{path}.*", missing)
        return []
    if _kind(example) != _kind(ours):
        return [f"{path}: {_kind(example)} expected, got {_kind(ours)} ({ours!r})"]
    return []


def _inner(annotation: Any) -> tuple[type[BaseModel] | None, type[WireEnum] | None]:
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type):
            if issubclass(current, BaseModel):
                return current, None
            if issubclass(current, WireEnum):
                return None, current
        if get_origin(current) in (list, Union, types.UnionType, Annotated):
            stack.extend(get_args(current))
    return None, None


def enum_problems(model: type[BaseModel], data: Any, path: str = "") -> list[str]:
    """Enum values not in the spec's exact spelling (the 15.x SDK compares them as is)."""
    if isinstance(data, list):
        return [p for i, item in enumerate(data) for p in enum_problems(model, item,
                                                                        f"{path}[{i}]")]
    if not isinstance(data, dict):
        return []
    problems: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        nested, enum = _inner(info.annotation)
        where = f"{path}.{key}" if path else key
        values = data[key] if isinstance(data[key], list) else [data[key]]
        if enum is not None:
            canonical = {member.value for member in enum}
            problems += [f"{where}: {v!r} is not one of {sorted(canonical)}"
                         for v in values if isinstance(v, str) and v not in canonical]
        elif nested is not None:
            problems += enum_problems(nested, data[key], where)
    return problems


def _counterparts(example_items: list[Any], ours: list[Any], res: Resources) -> list[Any]:
    """Our list items that stand for the example's: ours by id, else those of its kind."""
    by_id = {item.get("id"): item for item in ours if isinstance(item, dict)}
    mine = [by_id[i] for i in sorted(res.items) if i in by_id]
    if mine:
        return mine
    if example_items and isinstance(example_items[0], dict) and "isDirectory" in \
            example_items[0]:
        return [o for o in ours if o.get("isDirectory") == example_items[0]["isDirectory"]]
    return ours


def check_answer(name: str, op: Operation, example: dict[str, Any], response: httpx.Response,
                 res: Resources, gap: Gap | None) -> None:
    status = op.status
    expected = example["responses"].get(str(status), {})
    if gap is not None and gap.refusal is not None and response.status_code != status:
        code = response.json().get("code") if response.content else None
        assert (response.status_code, code) == gap.refusal, (name, gap.reason, response.text)
        return
    assert response.status_code == status, (name, response.status_code, response.text[:800])
    assert response.headers.get("request-id")
    headers = {k.lower() for k in response.headers}
    for key in expected:
        if key != "body":
            assert key.lower() in headers, f"{name}: header {key} missing"
    example_body = expected.get("body")
    if example_body is None or op.file_response:
        return
    ours = response.json()
    assert "odata.metadata" in ours, name
    missing = gap.missing if gap is not None else frozenset()
    model = resource_model(op)
    if op.pageable:
        assert isinstance(ours.get("value"), list), name
        items = _counterparts(example_body.get("value", []), ours["value"], res)
        if example_body.get("value") and not items:
            assert _allowed("value.*", missing), f"{name}: no item to compare with"
        problems = []
        for item in items:
            problems += shape_problems(example_body["value"][0], item, "value.*", missing)
            if model is not None:
                problems += enum_problems(model, item, "value.*")
                parse_wire(model, item)
    else:
        problems = shape_problems(example_body, ours, "", missing)
        if model is not None:
            problems += enum_problems(model, ours)
            parse_wire(model, {k: v for k, v in ours.items() if k != "odata.metadata"})
    assert not problems, f"{name}: " + "; ".join(problems)


def check_retired(op: Operation, response: httpx.Response) -> None:
    """A retired operation answers exactly the error of ``api.app.RETIRED``."""
    refusal = RETIRED[op.operation_id]()
    assert response.status_code == status_for(refusal.code), (op.operation_id, response.text)
    body = response.json()
    assert body["code"] == refusal.code
    assert body["message"]["value"].startswith(refusal.message)


def check_not_implemented(op: Operation, response: httpx.Response) -> None:
    assert response.status_code == 501, (op.operation_id, response.status_code, response.text)
    if op.method == "HEAD":
        assert response.content == b""
        return
    body = response.json()
    assert body["code"] == "NotImplemented"
    assert isinstance(body["message"], dict) and op.operation_id in body["message"]["value"]
    assert {"key": "OperationId", "value": op.operation_id} in body["values"]


# ----------------------------------------------------------------------------- tests


def test_examples_cover_implemented_and_unimplemented_operations() -> None:
    ops = {BY_ID[e["operationId"]] for _, e in EXAMPLES}
    assert any(implemented(op) for op in ops)
    assert len(EXAMPLES) >= (30 if EXAMPLES_DIR.is_dir() else len(BUILTIN_EXAMPLES))
    stale = [name for name in GAPS if name not in dict(EXAMPLES)]
    assert not stale or not EXAMPLES_DIR.is_dir(), f"gap rows for no example: {stale}"


@pytest.mark.parametrize(("name", "example"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_replay_example(http: httpx.Client, world: World, request: pytest.FixtureRequest,
                        name: str, example: dict[str, Any]) -> None:
    op = BY_ID[example["operationId"]]
    params = example.get("parameters", {})
    if not implemented(op) or op.operation_id in RETIRED:
        # answered before any lookup, so no state is needed
        values = {p: str(params.get(p, p)) for p in op.path_params}
        response = _request(http, op, _path(op, values), example, _body_parameter(example))
        if implemented(op):
            check_retired(op, response)
        else:
            check_not_implemented(op, response)
        return
    needs = NEEDS.get(op.operation_id, Needs())
    storage = request.getfixturevalue("azurite") if needs.blob_container else None
    res = world.build(op, params, needs=needs, storage=storage)
    body = rewrite(_body_parameter(example), res)
    if isinstance(body, dict) and "id" in body and op.method == "POST":
        body["id"] = f"{body['id']}-{world.count}"[:64]  # a create: a fresh id
    response = _request(http, op, _path(op, res.path), example, body)
    check_answer(name, op, example, response, res, GAPS.get(name))


CONDITIONAL = [op for op in OPERATIONS
               if {h.lower() for h in op.header_params} & {"if-match", "if-unmodified-since"}]


def _owner(op: Operation, res: Resources) -> str:
    """The path whose GET (HEAD for files) shows the version a conditional request tests."""
    names = set(op.path_params)
    if "filePath" in names:
        return _path(op, res.path)
    for params, template in ((("jobId", "taskId"), "/jobs/{jobId}/tasks/{taskId}"),
                             (("jobScheduleId",), "/jobschedules/{jobScheduleId}"),
                             (("jobId",), "/jobs/{jobId}"), (("poolId",), "/pools/{poolId}")):
        if set(params) <= names:
            return re.sub(r"\{(\w+)\}", lambda m: quote(res.path[m.group(1)], safe=""),
                          template)
    raise AssertionError(f"no resource for {op.operation_id}")


def _version(http: httpx.Client, path: str, files: bool) -> tuple[str, str]:
    answer = http.request("HEAD" if files else "GET", path,
                          params={"api-version": "2025-06-01"})
    assert answer.status_code == 200, (path, answer.status_code, answer.text)
    return answer.headers["ETag"], answer.headers["Last-Modified"]


def _exists(http: httpx.Client, path: str, files: bool) -> bool:
    answer = http.request("HEAD" if files else "GET", path,
                          params={"api-version": "2025-06-01"})
    assert answer.status_code in (200, 404), (path, answer.status_code, answer.text)
    return answer.status_code == 200


def _needs(op: Operation) -> Needs:
    needs = NEEDS.get(op.operation_id, Needs())
    if "{nodeId}" in json.dumps(CONDITIONAL_BODIES.get(op.operation_id, {})):
        needs = Needs(**{**needs.__dict__, "nodes": max(needs.nodes, 1)})
    return needs


@pytest.mark.parametrize("op", CONDITIONAL, ids=[op.operation_id for op in CONDITIONAL])
def test_conditions_on_every_operation(http: httpx.Client, world: World, op: Operation) -> None:
    template = CONDITIONAL_BODIES.get(op.operation_id)
    assert template is not None or not op.body_required, \
        f"add a minimal body for {op.operation_id} to CONDITIONAL_BODIES"
    example: dict[str, Any] = {"parameters": {}}
    if not implemented(op) or op.operation_id in RETIRED:
        values = {p: p for p in op.path_params}
        response = _request(http, op, _path(op, values), example, template,
                            {"If-Match": '"0xNOPE"'})
        if implemented(op):
            check_retired(op, response)
        else:
            check_not_implemented(op, response)
        return
    res = world.build(op, needs=_needs(op))
    path, files = _path(op, res.path), "filePath" in op.path_params
    body = fill(template, res) if template is not None else None
    declared = {h.lower() for h in op.header_params}
    etag, modified = _version(http, _owner(op, res), files)
    earlier = format_datetime(parsedate_to_datetime(modified) - timedelta(hours=1), usegmt=True)

    def send(headers: dict[str, str]) -> httpx.Response:
        return _request(http, op, path, example, body, headers)

    unmet = [{"If-Unmodified-Since": earlier}]
    if "if-match" in declared:
        unmet.append({"If-Match": '"0xNOPE"'})
    if op.method not in ("GET", "HEAD"):
        unmet.append({"If-Modified-Since": modified})
        if "if-none-match" in declared:
            unmet.append({"If-None-Match": etag})
    for headers in unmet:
        answer = send(headers)
        assert answer.status_code == 412, (op.operation_id, headers, answer.text)
        if op.method != "HEAD":
            assert answer.json()["code"] == "ConditionNotMet"
    assert _version(http, _owner(op, res), files) == (etag, modified), "a refused write wrote"

    if op.method in ("GET", "HEAD"):
        not_modified = [{"If-Modified-Since": modified}]
        if "if-none-match" in declared:
            not_modified.append({"If-None-Match": f'"{etag}"'})
        for headers in not_modified:
            answer = send(headers)
            assert answer.status_code == 304 and answer.content == b"", (op.operation_id,
                                                                          headers)
            assert answer.headers["ETag"] == etag

    met = {"If-Match": etag} if "if-match" in declared else {"If-Unmodified-Since": modified}
    answer = send(met)  # a bare tag, as 14.x sends it
    assert answer.status_code == op.status, (op.operation_id, answer.status_code, answer.text)

    if op.method not in ("GET", "HEAD"):
        # conditions come before state checks: the same write on the resource it changed
        # (now perhaps disabled, terminating, completed, deleting) is 412 while the resource
        # exists, never 409
        stale = {"If-Match": '"0xNOPE"'} if "if-match" in declared else unmet[0]
        answer = send(stale)
        exists = _exists(http, _owner(op, res), files)
        assert answer.status_code == (412 if exists else 404), (
            op.operation_id, "again", answer.status_code, answer.text)
