"""One fuzzing campaign: every operation of a schema against a live server, with the answer
checks of ``checks.py``.

Per operation, with one fixed seed, four runs of generated requests:

* ``targeted`` (signed): path ids of resources that exist (a pool with a node, a job, a
  completed and a running task, their files, a sibling task's file through ``..``); create
  bodies get a valid fresh id and a random subset of their properties, so requests get past
  the 404 and the id check and reach the core; then edge values (``nasty.py``) are mixed in:
  a property set to an extreme integer, duration, string or container, a ``$filter`` near
  the grammar, a ``$skiptoken``, an ``ocp-range``, at most one conditional header with an
  odd date;
* ``free`` (signed): schemathesis positive and negative cases as generated;
* ``raw`` (signed, operations with a body): a targeted request whose body is replaced by
  bytes that are not sensible JSON (deep nesting, lone surrogates, NaN, huge numbers...);
* ``unsigned``: no, a wrong, or a malformed Authorization, with or without a valid
  api-version; the answer must be 400/401/403.

Every ``commandLine`` in a generated body is prefixed with ``NEUTRAL_COMMAND`` so whatever
the fuzzer writes is harmless if the server runs it. Destructive operations (deletes,
terminations, node removal) run last so the targets live as long as possible.
"""

from __future__ import annotations

import itertools
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote

import requests
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import Case as _Case
from schemathesis import GenerationMode

from hybatch.api.app import IMPLEMENTED
from hybatch.schema._generated.operations import OPERATIONS
from hybatch.schema.operation import Operation
from tests.fuzz import nasty
from tests.fuzz.checks import error_code, response_problems
from tests.fuzz.signing import ForgedAuth, SharedKeyAuth

Case = _Case[Any]
API_VERSION = "2025-06-01"
JSON_TYPE = "application/json; odata=minimalmetadata"
GENERATED = object()
"""A path parameter left to the generator."""

# create bodies whose "id" targeted cases replace with a valid fresh one
_CREATES = {"Pools_CreatePool", "Jobs_CreateJob", "Tasks_CreateTask"}
_JOB_BODIES = {"Jobs_CreateJob", "Jobs_UpdateJob", "Jobs_ReplaceJob"}
_FILE_READS = {"Tasks_GetTaskFile", "Nodes_GetNodeFile"}
# properties a targeted body keeps (the others are each dropped at random)
_KEEP = frozenset({"id", "commandLine", "poolInfo", "vmSize", "nodeList", "value",
                   "targetDedicatedNodes"})
_CONDITIONS = frozenset({"if-match", "if-none-match", "if-modified-since",
                         "if-unmodified-since"})
_SERIAL = itertools.count()
# fresh ids: unique (a serial number), never equal to a sentinel id (those start "sentinel")
FRESH_IDS = st.from_regex(r"\A[A-Za-z0-9_-]{0,20}\Z").map(lambda tail: f"fz{next(_SERIAL)}{tail}")


@dataclass(frozen=True)
class Targets:
    """Existing resources the targeted cases address."""

    pool: str
    node: str
    job: str
    tasks: tuple[str, ...]
    files: tuple[str, ...]

    def candidates(self, name: str) -> list[object]:
        table: dict[str, list[object]] = {
            "poolId": [self.pool],
            "nodeId": [self.node],
            "jobId": [self.job],
            "taskId": list(self.tasks),
            "filePath": [*self.files, GENERATED],
        }
        return table.get(name, [GENERATED])

    def path_variants(self, names: Iterable[str]) -> list[dict[str, str]]:
        names = list(names)
        out = []
        for combo in itertools.product(*(self.candidates(n) for n in names)):
            out.append({n: v for n, v in zip(names, combo, strict=True)
                        if isinstance(v, str)})
        return out


@dataclass
class Report:
    """What a campaign saw: answers per operation, failures, unsendable cases."""

    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    unsendable: int = 0
    requests: int = 0
    seconds: float = 0.0

    def count(self, op_id: str, status: int, code: str | None) -> None:
        label = f"{status} {code}" if code else str(status)
        self.statuses.setdefault(op_id, Counter())[label] += 1
        self.requests += 1

    def summary(self) -> str:
        lines = [f"{self.requests} requests in {self.seconds:.1f}s, "
                 f"{self.unsendable} unsendable, {len(self.failures)} failures"]
        for op_id, counter in sorted(self.statuses.items()):
            lines.append(f"  {op_id}: {dict(sorted(counter.items()))}")
        return "\n".join(lines)


def _destructive(row: Operation) -> int:
    """Sort key: non-destructive first; then task-, job-, pool-level destruction."""
    if row.method == "DELETE" or row.path.endswith(("/terminate", "/removenodes")):
        return 10 - row.path.count("/")
    return 0


NEUTRAL_COMMAND = "/bin/sh -c 'sleep 0.1' "
"""What every generated command line is prefixed with: ``sh -c`` runs only its script and
takes the generated text as positional parameters, so nothing generated runs; the sleep
keeps the task running long enough for the node to act on its constraints."""


def neutralise_commands(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "commandLine" and isinstance(item, str):
                value[key] = NEUTRAL_COMMAND + item
            else:
                neutralise_commands(item)
    elif isinstance(value, list):
        for item in value:
            neutralise_commands(item)


# ---------------------------------------------------------------------- targeted cases


def _trim(draw: st.DrawFn, body: dict[str, Any]) -> None:
    """Keep at most two of the generated optional properties: with more, one of them is
    nearly always an unsupported feature and the request stops at UnsupportedProperty."""
    optional = sorted(k for k in body if k not in _KEEP)
    if optional:
        kept = set(draw(st.lists(st.sampled_from(optional), max_size=2, unique=True)))
        for key in optional:
            if key not in kept:
                del body[key]


def _conditions(draw: st.DrawFn, headers: MutableMapping[str, Any]) -> None:
    """Keep at most one conditional header, and often give it a well-formed or odd value, so
    requests get past MultipleConditionHeadersNotSupported / InvalidHeaderValue."""
    present = sorted(name for name in headers if name.lower() in _CONDITIONS)
    if not present:
        return
    kept = draw(st.sampled_from([None, *present]))
    for name in present:
        if name != kept:
            del headers[name]
    if kept is None or not draw(st.booleans()):
        return
    if kept.lower().endswith("-since"):
        headers[kept] = draw(nasty.http_dates())
    else:
        headers[kept] = draw(st.sampled_from(["*", '"0x0"', "0x8D4100FC49F0278", "W/\"x\""]))


def _leaves(body: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value inside a body, at any depth."""
    found: list[tuple[Any, Any]] = []
    stack = [body]
    while stack:
        value = stack.pop()
        items: Iterable[tuple[Any, Any]] = ()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        for key, item in items:
            found.append((value, key))
            stack.append(item)
    return found


def _spoil(draw: st.DrawFn, body: dict[str, Any]) -> None:
    """Set one value of the body to an edge value: mostly one the generator produced,
    replaced by an edge value of the same type; else a property known to matter."""
    leaves = _leaves(body)
    where = draw(st.sampled_from(["leaf", "leaf", "known", "constraints"]))
    if where == "leaf" and leaves:
        container, key = draw(st.sampled_from(leaves))
        container[key] = draw(st.one_of(nasty.nasty_like(container[key]),
                                        nasty.nasty_values()))
    elif where == "constraints":
        name = draw(st.sampled_from(nasty.CONSTRAINTS))
        body["constraints"] = {name: draw(nasty.constraint_values(name))}
    else:
        body[draw(st.sampled_from(nasty.PROPERTIES))] = draw(nasty.nasty_values())


def _enrich(draw: st.DrawFn, row: Operation, case: Case, targets: Targets) -> None:
    if case.headers is None:
        case.headers = {}
    _conditions(draw, case.headers)
    if case.query is None:
        case.query = {"api-version": API_VERSION}
    if row.has_filter and draw(st.booleans()):
        case.query["$filter"] = draw(nasty.filters())
    if row.pageable and draw(st.booleans()):
        case.query["$skiptoken"] = draw(nasty.skip_tokens())
    if row.operation_id in _FILE_READS and draw(st.booleans()):
        case.headers["ocp-range"] = draw(nasty.ocp_ranges())
    body = case.body
    if not isinstance(body, dict):
        return
    if row.operation_id in _CREATES:
        body["id"] = draw(FRESH_IDS)
    if row.operation_id in _JOB_BODIES and draw(st.sampled_from([True, True, True, False])):
        body["poolInfo"] = {"poolId": targets.pool}
    tasks: Any = body.get("value")
    if row.operation_id == "Tasks_CreateTaskCollection" and isinstance(tasks, list):
        for item in tasks:
            if isinstance(item, dict):
                item["id"] = draw(FRESH_IDS)
                _trim(draw, item)
    _trim(draw, body)
    for _ in range(draw(st.sampled_from([0, 1, 2]))):
        _spoil(draw, body)


def case_strategy(operation: Any, row: Operation, targets: Targets, *, targeted: bool
                  ) -> st.SearchStrategy[Case]:
    """Generated signed requests for one operation (see the module docstring)."""
    version = {"api-version": API_VERSION}
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if targeted and row.path_params:
        base = st.one_of([operation.as_strategy(mode, query=version, path_parameters=p)
                          for p in targets.path_variants(row.path_params) for mode in modes])
    else:
        base = st.one_of([operation.as_strategy(mode, query=version) for mode in modes])

    @st.composite
    def cases(draw: st.DrawFn) -> Case:
        case: Case = draw(base)
        if targeted:
            _enrich(draw, row, case, targets)
        neutralise_commands(case.body)
        return case

    return cases()


def _explain(error: BaseException) -> str:
    """The failure's text; for hypothesis's flaky/multiple failures, the first one's too (a
    failure that did not replay usually means the request changed server state)."""
    text = str(error)
    if isinstance(error, BaseExceptionGroup) and error.exceptions:
        text += f"\n  first: {_explain(error.exceptions[0])}"
    return text


def describe(request: requests.PreparedRequest) -> str:
    """The request as sent (Authorization left out), to reproduce a failure."""
    headers = "".join(f"\n  {k}: {v!s}" for k, v in request.headers.items()
                      if k.lower() != "authorization")
    raw: Any = request.body
    body = raw if isinstance(raw, bytes) else str(raw or "").encode("utf-8", "backslashreplace")
    shown = body[:400] + (b"..." if len(body) > 400 else b"")
    url = request.url or ""
    url = url[:400] + ("..." if len(url) > 400 else "")
    return f"{request.method} {url}{headers}\n  body: {shown!r}"


def _escapes(row: Operation, case: Case, status: int) -> list[str]:
    """A file read, listed or deleted through a path that leaves its task/node directory."""
    raw = (case.path_parameters or {}).get("filePath")
    if not isinstance(raw, str) or status >= 300:
        return []
    path = posixpath.normpath(unquote(raw).lstrip("/"))
    if path == ".." or path.startswith("../"):
        return [f"{row.operation_id} answered {status} for a path outside its directory: "
                f"{raw!r}"]
    return []


# ---------------------------------------------------------------------- the campaign


@dataclass(frozen=True)
class Budget:
    """Generated requests per operation and run."""

    targeted: int
    free: int
    raw: int
    unsigned: int


class Campaign:
    """Runs every operation of ``schema`` against ``endpoint`` and collects a Report."""

    def __init__(self, schema: Any, endpoint: str, account: str, key: str, targets: Targets,
                 *, seed: int, budget: Budget, timeout: float,
                 alive: Callable[[], bool]) -> None:
        self.schema = schema
        self.endpoint = endpoint
        self.account = account
        self.key = key
        self.targets = targets
        self.seed = seed
        self.budget = budget
        self.timeout = timeout
        self.alive = alive
        self.session = requests.Session()
        self.report = Report()

    def operations(self) -> list[tuple[Any, Operation]]:
        """(schemathesis operation, table row) for every row of OPERATIONS, in run order."""
        rows = {op.key: op for op in OPERATIONS}
        found = []
        for result in self.schema.get_all_operations():
            operation = result.ok()
            row = rows.pop((operation.method.upper(), operation.path), None)
            if row is not None:
                found.append((operation, row))
        assert not rows, f"operations missing from the schema: {sorted(rows)}"
        return sorted(found, key=lambda pair: _destructive(pair[1]))

    def run(self) -> Report:
        started = time.monotonic()
        for operation, row in self.operations():
            self._fuzz(operation, row)
            if not self.alive():
                self.report.failures.append(f"{row.operation_id}: the server process died")
                break
        self.report.seconds = time.monotonic() - started
        return self.report

    # ------------------------------------------------------------------ one operation

    def _send(self, case: Case, auth: requests.auth.AuthBase, **kwargs: Any) -> Any:
        try:
            return case.call(base_url=self.endpoint, session=self.session, auth=auth,
                             timeout=self.timeout, **kwargs)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                requests.exceptions.InvalidJSONError, UnicodeEncodeError):
            self.report.unsendable += 1  # refused by the client library, never sent
            return None
        except requests.exceptions.Timeout as error:
            raise AssertionError(f"no answer within {self.timeout}s\n"
                                 f"{case.as_curl_command()}") from error

    def _check(self, row: Operation, case: Case, response: Any, extra: list[str]) -> None:
        status = response.status_code
        self.report.count(row.operation_id, status,
                          error_code(response.content) if status >= 400 else None)
        headers = {k: v[0] for k, v in response.headers.items()}
        problems = response_problems(method=row.method,
                                     implemented=row.operation_id in IMPLEMENTED,
                                     status=status, headers=headers, body=response.content)
        problems += extra
        if problems:
            raise AssertionError(f"{status}: {'; '.join(problems)}\n"
                                 f"{describe(response.request)}")

    def _fuzz(self, operation: Any, row: Operation) -> None:
        signed = SharedKeyAuth(self.account, self.key)
        budget = self.budget

        def settled(examples: int, shrink: bool = True) -> Callable[[Any], Any]:
            phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

            def apply(test: Any) -> Any:
                return seed(self.seed)(settings(
                    max_examples=examples, database=None, deadline=None, phases=phases,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                )(test))

            return apply

        def signed_run(targeted: bool, examples: int) -> Callable[[], None]:
            @settled(examples)
            @given(case=case_strategy(operation, row, self.targets, targeted=targeted))
            def signed_requests(case: Case) -> None:
                response = self._send(case, signed)
                if response is not None:
                    self._check(row, case, response,
                                _escapes(row, case, response.status_code))

            return cast(Callable[[], None], signed_requests)

        @settled(budget.raw)
        @given(case=case_strategy(operation, row, self.targets, targeted=True),
               body=nasty.raw_bodies())
        def raw_bodies(case: Case, body: bytes) -> None:
            response = self._send(case, signed, data=body,
                                  headers={"Content-Type": JSON_TYPE})
            if response is not None:
                self._check(row, case, response, [])

        forged = st.sampled_from([
            ForgedAuth(None),
            ForgedAuth(f"SharedKey {self.account}:" + "A" * 43 + "="),
            ForgedAuth("SharedKey nobody:c2lnbmF0dXJl"),
            ForgedAuth("Bearer not.a.token"),
            ForgedAuth("SharedKey"),
        ])
        versions = st.sampled_from([{"api-version": API_VERSION}, {}])  # {}: generated

        @settled(budget.unsigned, shrink=False)
        @given(case=versions.flatmap(
                   lambda q: operation.as_strategy(GenerationMode.POSITIVE, query=q)),
               auth=forged)
        def unsigned_requests(case: Case, auth: ForgedAuth) -> None:
            neutralise_commands(case.body)
            response = self._send(case, auth)
            if response is None:
                return
            extra = []
            if response.status_code not in (400, 401, 403):
                extra.append(f"unauthenticated request ({auth.value!r}) answered "
                             f"{response.status_code}, not 400/401/403")
            self._check(row, case, response, extra)

        runs: dict[str, Callable[[], None]] = {
            "targeted": signed_run(True, budget.targeted),
            "free": signed_run(False, budget.free),
            "unsigned": unsigned_requests,
        }
        if row.body_model:
            runs["raw"] = raw_bodies
        for name, test in runs.items():
            try:
                test()
            except Exception as error:  # collected, reported at the end
                self.report.failures.append(f"{row.operation_id} ({name}): {_explain(error)}")
