"""$filter: parser, validation and evaluation, table-driven (wire reference §7.2/§7.3)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybatch.odata.ast import And, Compare, Expr, Field, Literal, Not, Or, StartsWith
from hybatch.odata.errors import FilterError
from hybatch.odata.evaluate import lookup, matches
from hybatch.odata.parser import MAX_DEPTH, parse_filter
from hybatch.odata.query import compile_filter
from hybatch.odata.validate import ENTITIES, FILTERABLE, canonicalize, validate


def F(*path: str) -> Field:
    return Field(path)


def C(op: str, path: str, value: object) -> Compare:
    return Compare(op, F(*path.split("/")), Literal(value))  # type: ignore[arg-type]


STATE_ACTIVE = C("eq", "state", "active")
EXIT = "executionInfo/exitCode"
T0 = datetime(2024, 5, 8, 8, 49, 37, tzinfo=UTC)

# ----------------------------------------------------------------------------- parsing

PARSE_CASES: list[tuple[str, Expr]] = [
    # filters real clients send (§7.2)
    ("state eq 'active'", STATE_ACTIVE),
    ("id eq 'x'", C("eq", "id", "x")),
    ("startswith(id,'task-1')", StartsWith(F("id"), "task-1")),
    ("startswith(id, 'renderTask')", StartsWith(F("id"), "renderTask")),
    ("startswith(name,'wd')", StartsWith(F("name"), "wd")),
    ("(state eq 'completed') and (executionInfo/exitCode ne 0)",
     And(C("eq", "state", "completed"), C("ne", EXIT, 0))),
    ("executionInfo/exitCode ge 1 and executionInfo/exitCode le 3",
     And(C("ge", EXIT, 1), C("le", EXIT, 3))),
    ("not (state eq 'running')", Not(C("eq", "state", "running"))),
    ("(state eq 'running') and startswith(id, 'renderTask')",
     And(C("eq", "state", "running"), StartsWith(F("id"), "renderTask"))),
    ("(executionInfo/exitCode lt 0) or (executionInfo/exitCode gt 0)",
     Or(C("lt", EXIT, 0), C("gt", EXIT, 0))),
    ("executionInfo/result eq 'failure'", C("eq", "executionInfo/result", "failure")),
    ("stateTransitionTime gt DateTime'2024-05-08T08:49:37Z'", C("gt", "stateTransitionTime", T0)),
    ("poolId eq 'mypool'", C("eq", "poolId", "mypool")),
    ("startswith(id,'p') and state eq 'active'", And(StartsWith(F("id"), "p"), STATE_ACTIVE)),
    # literals
    ("id eq 'it''s'", C("eq", "id", "it's")),
    ("id eq ''''", C("eq", "id", "'")),
    ("id eq ''", C("eq", "id", "")),
    ("id eq 'a and b or not c eq d'", C("eq", "id", "a and b or not c eq d")),
    ("x eq -5", C("eq", "x", -5)),
    ("x eq 0", C("eq", "x", 0)),
    ("x eq 1.5", C("eq", "x", 1.5)),
    ("x eq -2.5e3", C("eq", "x", -2500.0)),
    ("x eq true", C("eq", "x", True)),
    ("x ne false", C("ne", "x", False)),
    ("x eq null", C("eq", "x", None)),
    ("t lt datetime'2024-05-08T09:49:37+01:00'", C("lt", "t", T0)),
    ("t lt DATETIME'2024-05-08T08:49:37.1234567Z'",
     C("lt", "t", T0.replace(microsecond=123456))),
    ("t ge DateTime'Wed, 08 May 2024 08:49:37 GMT'", C("ge", "t", T0)),
    ("t ge DateTime'2024-05-08'", C("ge", "t", datetime(2024, 5, 8, tzinfo=UTC))),
    ("t ge DateTime'2024-05-08T08:49:37'", C("ge", "t", T0)),  # no offset: UTC
    # property names and string values verbatim (validate checks names; values compare
    # without regard to case)
    ("State eq 'Active'", C("eq", "State", "Active")),
    ("not (a eq 1) and b ne 2 or c gt 3",
     Or(And(Not(C("eq", "a", 1)), C("ne", "b", 2)), C("gt", "c", 3))),
    # keywords are not prefixes of identifiers
    ("notes eq 1", C("eq", "notes", 1)),
    ("order eq 1 or android eq 2", Or(C("eq", "order", 1), C("eq", "android", 2))),
    ("nullable eq null", C("eq", "nullable", None)),
    ("startswithx eq 1", C("eq", "startswithx", 1)),
    # precedence and grouping
    ("a eq 1 or b eq 2 and c eq 3", Or(C("eq", "a", 1), And(C("eq", "b", 2), C("eq", "c", 3)))),
    ("(a eq 1 or b eq 2) and c eq 3",
     And(Or(C("eq", "a", 1), C("eq", "b", 2)), C("eq", "c", 3))),
    ("not not a eq 1", Not(Not(C("eq", "a", 1)))),
    ("not a eq 1 and b eq 2", And(Not(C("eq", "a", 1)), C("eq", "b", 2))),
    ("((((a eq 1))))", C("eq", "a", 1)),
    # balanced folding of chains
    ("a eq 1 and b eq 2 and c eq 3", And(And(C("eq", "a", 1), C("eq", "b", 2)), C("eq", "c", 3))),
    ("a eq 1 or b eq 2 or c eq 3 or d eq 4",
     Or(Or(C("eq", "a", 1), C("eq", "b", 2)), Or(C("eq", "c", 3), C("eq", "d", 4)))),
    # startswith compared with a boolean (OData v3 style)
    ("startswith(id,'a') eq true", StartsWith(F("id"), "a")),
    ("startswith(id,'a') eq false", Not(StartsWith(F("id"), "a"))),
    ("startswith(id,'a') ne true", Not(StartsWith(F("id"), "a"))),
    ("startswith(executionInfo/poolId,'p')", StartsWith(F("executionInfo", "poolId"), "p")),
    # whitespace
    ("  state   eq\t'active'\n", STATE_ACTIVE),
    ("state eq'active'", STATE_ACTIVE),
    ("(a eq 1)and(b eq 2)", And(C("eq", "a", 1), C("eq", "b", 2))),
    ("startswith( id , 'x' )", StartsWith(F("id"), "x")),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


# (text, 0-based position, message fragment)
ERROR_CASES: list[tuple[str, int, str]] = [
    ("", 0, "empty"),
    ("   ", 0, "empty"),
    ("state eq", 8, "end of filter"),
    ("state", 5, "end of filter"),
    ("state eq 'active", 9, "unterminated string"),
    ("state equals 'x'", 6, "unexpected"),
    ("state == 'x'", 6, "unexpected character"),
    ("(state eq 'a'", 13, "expected ')'"),
    ("state eq 'a')", 12, "unexpected ')'"),
    ("startswith(id 'x')", 14, "','"),
    ("startswith(id, x)", 15, "unexpected"),
    ("foo eq bar", 7, "literal"),
    ("x eq 'a' and", 12, "end of filter"),
    ("x eq 'a' and and y eq 1", 13, "unexpected"),
    ("x eq 'a' y eq 1", 9, "unexpected"),
    ("x eq 'a' &", 9, "unexpected character '&'"),
    ("x eq DateTime'2024-13-01T00:00:00Z'", 5, "invalid DateTime"),
    ("x eq DateTime'yesterday'", 5, "invalid DateTime"),
    ("x eq DateTime'2024-01-01", 5, "unterminated DateTime"),
    ("x eq 99999999999999999999", 5, "out of range"),
    ("startswith(id,'a') gt 1", 19, "startswith"),
    ("startswith(id,'a') eq 'x'", 19, "startswith"),
    ("endswith(id,'a')", 8, "unexpected"),
    ("'active' eq state", 0, "unexpected"),
    ("state eq \"active\"", 9, "unexpected character"),
    ("x eq 1 or", 9, "end of filter"),
    ("()", 1, "unexpected ')'"),
    # keywords are lower case (§7.2), with a hint rather than "unexpected"
    ("State EQ 'Active'", 6, "(use 'eq')"),
    ("a eq 1 AND b eq 2", 7, "(use 'and')"),
    ("a eq 1 Or b eq 2", 7, "(use 'or')"),
    ("NOT (a eq 1)", 0, "(use 'not')"),
    ("StartsWith(id,'x')", 0, "(use 'startswith')"),
    ("x eq TRUE", 5, "(use 'true')"),
    ("x eq False", 5, "(use 'false')"),
]


@pytest.mark.parametrize(("text", "position", "fragment"), ERROR_CASES,
                         ids=[c[0] or "<empty>" for c in ERROR_CASES])
def test_parse_errors(text: str, position: int, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert info.value.position == position
    assert fragment in info.value.message
    assert isinstance(info.value, ValueError)


def test_deep_parentheses_do_not_overflow_the_stack() -> None:
    text = "(" * 5000 + "a eq 1" + ")" * 5000
    assert parse_filter(text) == C("eq", "a", 1)


def test_nesting_limit() -> None:
    assert parse_filter("not " * (MAX_DEPTH - 1) + "a eq 1") is not None
    with pytest.raises(FilterError, match="nested"):
        parse_filter("not " * MAX_DEPTH + "a eq 1")


def test_long_id_list_stays_shallow() -> None:
    ids = [f"t{i}" for i in range(1000)]
    expr = parse_filter(" or ".join(f"id eq '{i}'" for i in ids))
    assert matches(expr, {"id": "T999"})
    assert not matches(expr, {"id": "t1000"})
    with pytest.raises(FilterError, match="longer than"):
        parse_filter(" or ".join(f"id eq 'task-{i:06}'" for i in range(2000)))


# Round trip: render random fully-parenthesised ASTs and parse them back.

_names = st.sampled_from(["id", "state", "executionInfo/exitCode", "notes", "order_2", "_x"])
_values = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.none(),
    st.datetimes(timezones=st.just(UTC)),
)
_leaves = st.one_of(
    st.builds(lambda op, name, v: C(op, name, v),
              st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]), _names, _values),
    st.builds(lambda name, prefix: StartsWith(F(*name.split("/")), prefix), _names,
              st.text(max_size=8)),
)
_exprs = st.recursive(
    _leaves,
    lambda inner: st.one_of(st.builds(And, inner, inner), st.builds(Or, inner, inner),
                            st.builds(Not, inner)),
    max_leaves=12,
)


def _render_value(value: object, upper: bool) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        text = str(value).lower()
        return text.upper() if upper else text
    if value is None:
        return "NULL" if upper else "null"
    if isinstance(value, datetime):
        return f"DateTime'{value.isoformat()}'"
    return str(value)


def _render(expr: Expr, upper: bool) -> str:
    def kw(word: str) -> str:
        return word.upper() if upper else word

    if isinstance(expr, And | Or):
        word = kw("and" if isinstance(expr, And) else "or")
        return f"({_render(expr.left, upper)}) {word} ({_render(expr.right, upper)})"
    if isinstance(expr, Not):
        return f"{kw('not')} ({_render(expr.operand, upper)})"
    path = "/".join(expr.field.path)
    if isinstance(expr, StartsWith):
        return f"{kw('startswith')}({path},{_render_value(expr.prefix, upper)})"
    return f"{path} {kw(expr.op)} {_render_value(expr.value.value, upper)}"


@settings(max_examples=300, deadline=None)
@given(_exprs, st.booleans())
def test_round_trip(expr: Expr, upper: bool) -> None:
    """Rendered in lower case, every AST parses back to itself; with upper-case keywords,
    every one is refused (each rendering holds at least one keyword)."""
    if not upper:
        assert parse_filter(_render(expr, upper)) == expr
        return
    with pytest.raises(FilterError, match="lower case"):
        parse_filter(_render(expr, upper))


# ----------------------------------------------------------------------------- validation

VALID: list[tuple[str, str]] = [
    ("state eq 'active'", "tasks"),
    ("(state eq 'completed') and (executionInfo/exitCode ne 0)", "tasks"),
    ("startswith(id,'task-1')", "tasks"),
    ("executionInfo/exitCode ge 1 and executionInfo/exitCode le 3", "tasks"),
    ("not (state eq 'running')", "tasks"),
    ("executionInfo/result eq 'failure'", "tasks"),
    ("lastModifiedTime gt DateTime'2024-01-01T00:00:00Z'", "tasks"),
    ("state eq 'Active' and executionInfo/result ne 'FAILURE'", "tasks"),  # values: any case
    ("lastModified gt DateTime'2024-01-01T00:00:00Z'", "tasks"),
    ("executionInfo/exitCode eq -1", "tasks"),
    ("id ge 'a' and id lt 'b'", "jobs"),
    ("state ne 'idle'", "nodes"),
    ("startTaskInfo/result ne 'failure' and startTaskInfo/exitCode gt 0", "nodes"),
    ("enableInterNodeCommunication ne false and vmSize ne 'x'", "pools"),
    ("poolId ge 'p' and poolId lt 'q'", "pool_usage_metrics"),
    ("startswith(id,'p') and state eq 'active'", "pools"),
    ("enableAutoScale eq true and vmSize eq 'standard_d2s_v3'", "pools"),
    ("allocationState eq 'steady'", "pools"),
    ("executionInfo/poolId eq 'p1' and creationTime ge DateTime'2024-01-01'", "jobs"),
    ("startswith(executionInfo/poolId,'auto')", "jobs"),
    ("state eq 'active'", "jobs_from_schedule"),
    ("schedule/doNotRunUntil lt DateTime'2024-01-01T00:00:00Z'", "job_schedules"),
    ("startTaskInfo/exitCode ne 0 or state eq 'starttaskfailed'", "nodes"),
    ("jobPreparationTaskExecutionInfo/state eq 'completed'", "job_prep_release_status"),
    ("jobReleaseTaskExecutionInfo/exitCode gt 0", "job_prep_release_status"),
    ("nodeId eq 'tvm-1'", "job_prep_release_status"),
    ("startswith(name,'wd')", "task_files"),
    ("startswith(name,'startup')", "node_files"),
    ("startswith(name,'std')", "files"),
    ("poolId eq 'mypool'", "pool_node_counts"),
    ("osType eq 'linux' and verificationType eq 'verified'", "supported_images"),
    ("startswith(poolId,'p')", "pool_usage_metrics"),
    ("state eq 'active'", "certificates"),
]


@pytest.mark.parametrize(("text", "entity"), VALID)
def test_validate_accepts(text: str, entity: str) -> None:
    validate(parse_filter(text), entity)
    compile_filter(text, entity)


# (text, entity, position of the offending property, message fragment)
INVALID: list[tuple[str, str, int, str]] = [
    ("displayName eq 'x'", "tasks", 0, "cannot be used"),
    ("State eq 'active'", "tasks", 0, "did you mean 'state'"),
    ("state eq 'active' and exitCode eq 1", "tasks", 22, "exitCode"),
    ("executionInfo/exitcode eq 1", "tasks", 0, "did you mean 'executionInfo/exitCode'"),
    ("state gt 'active'", "tasks", 0, "operator 'gt'"),
    ("startswith(state,'a')", "tasks", 11, "startswith"),
    ("startswith(executionInfo/exitCode,'1')", "tasks", 11, "startswith"),
    ("executionInfo/exitCode eq '1'", "tasks", 0, "a whole number"),
    ("executionInfo/exitCode eq true", "tasks", 0, "a whole number"),
    ("executionInfo/exitCode eq 1.0", "tasks", 0, "a whole number"),
    ("executionInfo/exitCode eq null", "tasks", 0, "null is not"),
    ("creationTime gt '2024-01-01T00:00:00Z'", "tasks", 0, "DateTime"),
    ("id eq 5", "tasks", 0, "string literal"),
    ("enableAutoScale eq 'true'", "pools", 0, "true or false"),
    ("enableAutoScale gt false", "pools", 0, "operator 'gt'"),
    ("state lt null", "tasks", 0, "null"),
    ("id eq 'a' or not (startTaskInfo/state eq 'running')", "tasks", 18, "cannot be used"),
    ("startTaskInfo/state eq 'running'", "nodes", -1, ""),  # valid control row
    ("id eq 'n1'", "nodes", 0, "cannot be used"),
    ("name eq 'x'", "pools", 0, "cannot be used"),
    ("lastModifiedTime gt DateTime'2024-01-01'", "jobs", 0, "did you mean 'lastModified'"),
    # operators per property, exactly as §7.3 lists them
    ("state ne 'active'", "tasks", 0, "operator 'ne'"),
    ("state ne 'active'", "pools", 0, "(allowed: eq)"),
    ("allocationState ne 'steady'", "pools", 0, "operator 'ne'"),
    ("state ne 'active'", "jobs", 0, "operator 'ne'"),
    ("startTaskInfo/state ne 'running'", "nodes", 0, "operator 'ne'"),
    ("vmSize gt 'a'", "pools", 0, "(allowed: eq, ne)"),
    ("startswith(vmSize,'standard')", "pools", 11, "startswith"),
    ("executionInfo/result gt 'a'", "tasks", 0, "operator 'gt'"),
    ("id eq 'j'", "jobs_from_schedule", 0, "cannot be used"),
    ("name eq 'stdout.txt'", "files", 0, "(allowed: startswith)"),
    ("poolId ne 'p'", "pool_node_counts", 0, "operator 'ne'"),
    ("startswith(poolId,'p')", "pool_node_counts", 11, "startswith"),
    ("poolId ne 'p'", "pool_usage_metrics", 0, "operator 'ne'"),
    ("osType gt 'linux'", "supported_images", 0, "operator 'gt'"),
    ("startswith(nodeId,'tvm')", "job_prep_release_status", 11, "startswith"),
]


@pytest.mark.parametrize(("text", "entity", "position", "fragment"), INVALID)
def test_validate_rejects(text: str, entity: str, position: int, fragment: str) -> None:
    if position < 0:
        compile_filter(text, entity)
        return
    with pytest.raises(FilterError) as direct:
        validate(parse_filter(text), entity)
    assert direct.value.position is None and direct.value.subject
    with pytest.raises(FilterError) as info:
        compile_filter(text, entity)
    assert info.value.position == position
    assert fragment in info.value.message


def test_unknown_entity_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown filter entity") as info:
        validate(STATE_ACTIVE, "widgets")
    assert not isinstance(info.value, FilterError)


def test_every_entity_has_properties() -> None:
    assert {"pools", "jobs", "tasks", "nodes", "job_schedules"} <= ENTITIES
    assert all(FILTERABLE[e] for e in ENTITIES)


def test_canonicalize_rewrites_aliases_only() -> None:
    expr = parse_filter("lastModifiedTime gt DateTime'2024-05-08T08:49:37Z' and id eq 'x'")
    assert canonicalize(expr, "tasks") == And(C("gt", "lastModified", T0), C("eq", "id", "x"))
    assert compile_filter("not startswith(id,'a')", "tasks") == Not(StartsWith(F("id"), "a"))
    assert canonicalize(expr, "pools") is expr


# ----------------------------------------------------------------------------- evaluation

TASKS: dict[str, Mapping[str, object]] = {
    "task-1": {"id": "task-1", "state": "active", "creationTime": "2024-05-08T08:00:00Z",
               "executionInfo": {"retryCount": 0, "requeueCount": 0}},
    "task-10": {"id": "task-10", "state": "running",
                "stateTransitionTime": "2024-05-08T08:49:37.0000010Z",
                "executionInfo": {"startTime": "2024-05-08T08:49:37Z", "retryCount": 0}},
    "Task-2": {"id": "Task-2", "state": "completed",
               "stateTransitionTime": "2024-05-08T09:00:00.5Z",
               "executionInfo": {"exitCode": 0, "result": "success"}},
    "t3": {"id": "t3", "state": "completed", "stateTransitionTime": "2024-05-08T10:00:00Z",
           "executionInfo": {"exitCode": 2, "result": "failure"}},
    "t4": {"id": "t4", "state": "completed", "stateTransitionTime": "2024-05-08T08:49:36Z",
           "executionInfo": {"exitCode": -1, "result": "failure",
                             "failureInfo": {"category": "usererror"}}},
    "t5": {"id": "t5", "state": "Completed", "executionInfo": None},
}

EVAL_CASES: list[tuple[str, set[str]]] = [
    ("state eq 'active'", {"task-1"}),
    ("state eq 'ACTIVE'", {"task-1"}),
    ("state eq 'completed'", {"Task-2", "t3", "t4", "t5"}),
    ("state ne 'completed'", {"task-1", "task-10"}),
    ("id eq 'x'", set()),
    ("id eq 'task-2'", {"Task-2"}),
    ("startswith(id,'task-1')", {"task-1", "task-10"}),
    ("startswith(id,'TASK')", {"task-1", "task-10", "Task-2"}),
    ("startswith(id,'')", set(TASKS)),
    ("not startswith(id,'t')", set()),
    ("(state eq 'completed') and (executionInfo/exitCode ne 0)", {"t3", "t4"}),
    ("executionInfo/exitCode ne 0", {"t3", "t4"}),  # missing exit codes never match
    ("not (executionInfo/exitCode eq 0)", {"task-1", "task-10", "t3", "t4", "t5"}),
    ("executionInfo/exitCode ge 1 and executionInfo/exitCode le 3", {"t3"}),
    ("(executionInfo/exitCode lt 0) or (executionInfo/exitCode gt 0)", {"t3", "t4"}),
    ("executionInfo/exitCode eq 2.0", {"t3"}),
    ("executionInfo/exitCode gt -1.5", {"Task-2", "t3", "t4"}),
    ("executionInfo/exitCode eq null", {"task-1", "task-10", "t5"}),
    ("executionInfo/exitCode ne null", {"Task-2", "t3", "t4"}),
    ("executionInfo/exitCode eq '2'", set()),  # type mismatch is false
    ("executionInfo/exitCode ne '2'", set()),
    ("executionInfo/result eq 'Failure'", {"t3", "t4"}),
    ("executionInfo/failureInfo/category eq 'usererror'", {"t4"}),
    ("executionInfo/exitCode/deeper eq 1", set()),
    ("not (state eq 'running')", set(TASKS) - {"task-10"}),
    ("stateTransitionTime gt DateTime'2024-05-08T08:49:37Z'", {"task-10", "Task-2", "t3"}),
    ("stateTransitionTime eq DateTime'2024-05-08T10:00:00Z'", {"t3"}),
    ("stateTransitionTime eq DateTime'2024-05-08T12:00:00+02:00'", {"t3"}),
    ("stateTransitionTime le DateTime'Wed, 08 May 2024 08:49:37 GMT'", {"t4"}),
    ("stateTransitionTime lt DateTime'2024-05-08T09:00:00.6Z'",
     {"task-10", "Task-2", "t4"}),
    ("creationTime ge DateTime'2024-05-08'", {"task-1"}),
    ("id gt 't3'", {"t4", "t5", "task-1", "task-10", "Task-2"}),
    ("id lt 'T4'", {"t3"}),
    ("state eq 'active' or id eq 't5'", {"task-1", "t5"}),
    ("id eq null", set()),
]


@pytest.mark.parametrize(("text", "expected"), EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_matches(text: str, expected: set[str]) -> None:
    expr = parse_filter(text)
    assert {tid for tid, wire in TASKS.items() if matches(expr, wire)} == expected


def test_type_mismatches_are_false() -> None:
    wire: dict[str, object] = {"b": True, "n": 1, "s": "1", "d": "not a date", "o": {"x": 1},
                               "l": [1, 2]}
    for text in ["b eq 1", "n eq true", "s eq 1", "n eq '1'", "d gt DateTime'2024-01-01'",
                 "o eq 1", "l eq 1", "startswith(n,'1')", "startswith(o,'x')", "b gt 'a'"]:
        assert not matches(parse_filter(text), wire), text
    assert matches(parse_filter("b eq true and b ne false and n eq 1"), wire)


def test_python_datetimes_in_wire_dicts() -> None:
    wire: dict[str, object] = {"t": T0, "naive": T0.replace(tzinfo=None)}
    assert matches(parse_filter("t eq DateTime'2024-05-08T08:49:37Z'"), wire)
    assert not matches(parse_filter("naive eq DateTime'2024-05-08T08:49:37Z'"), wire)


def test_lookup() -> None:
    wire: dict[str, object] = {"a": {"b": {"c": 3}}, "x": 1}
    assert lookup(wire, ("a", "b", "c")) == 3
    assert lookup(wire, ("a", "z")) is None
    assert lookup(wire, ("x", "y")) is None


def test_canonical_alias_evaluates_against_wire_field() -> None:
    expr = compile_filter("lastModifiedTime ge DateTime'2024-01-01T00:00:00Z'", "tasks")
    assert matches(expr, {"lastModified": "2024-06-01T00:00:00Z"})
    assert not matches(expr, {"lastModified": "2023-06-01T00:00:00Z"})
