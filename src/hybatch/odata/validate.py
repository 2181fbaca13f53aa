"""Which properties each list operation may filter on, with which operators (wire reference
§7.3), and the checks that enforce it.

Azure rejects a filter on a property outside this table, an operator the table does not list
for it, or a literal of the wrong type with 400 ``InvalidQueryParameterValue``, and so do we:
silently accepting ``displayName eq 'x'`` or ``state gt 'a'`` would answer with results a real
account never gives. ``null`` literals and decimals are not Batch filter literals either.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal as _Lit

from hybatch.odata.ast import And, Compare, Expr, Field, Not, Or, StartsWith
from hybatch.odata.errors import FilterError

__all__ = [
    "ALIASES",
    "ENTITIES",
    "FILTERABLE",
    "Filterable",
    "PropertyKind",
    "canonicalize",
    "validate",
]

PropertyKind = _Lit["string", "enum", "int", "datetime", "bool"]
"""The type of a filterable property, which decides the literal it is compared with:
``string``/``enum``: a string (enum values in any case); ``int``: a whole number;
``datetime``: ``DateTime'...'``; ``bool``: ``true``/``false``."""

Operator = _Lit["eq", "ne", "gt", "ge", "lt", "le", "startswith"]


@dataclass(frozen=True, slots=True)
class Filterable:
    """One row of §7.3: a property's type and the operators Batch allows on it."""

    kind: PropertyKind
    ops: frozenset[str]


_CMP = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
_EQ = frozenset({"eq"})
_EQ_NE = frozenset({"eq", "ne"})
_ALL = _CMP | {"startswith"}


def _id() -> Filterable:
    return Filterable("string", _ALL)


def _time() -> Filterable:
    return Filterable("datetime", _CMP)


_LITERAL_HINT: dict[PropertyKind, str] = {
    "string": "a string literal ('...')",
    "enum": "a string literal ('...')",
    "int": "a whole number",
    "datetime": "a DateTime'...' literal",
    "bool": "true or false",
}


def _exec_info(prefix: str) -> dict[str, Filterable]:
    return {
        f"{prefix}/state": Filterable("enum", _EQ),
        f"{prefix}/startTime": _time(),
        f"{prefix}/endTime": _time(),
        f"{prefix}/exitCode": Filterable("int", _CMP),
        f"{prefix}/result": Filterable("enum", _EQ_NE),
    }


_JOBS_FROM_SCHEDULE: dict[str, Filterable] = {
    "state": Filterable("enum", _EQ),
    "stateTransitionTime": _time(),
    "creationTime": _time(),
    "lastModified": _time(),
    "executionInfo/startTime": _time(),
    "executionInfo/endTime": _time(),
    "executionInfo/poolId": Filterable("string", _ALL),
}

_FILES: dict[str, Filterable] = {"name": Filterable("string", frozenset({"startswith"}))}

FILTERABLE: Mapping[str, Mapping[str, Filterable]] = {
    "pools": {
        "id": _id(),
        "state": Filterable("enum", _EQ),
        "allocationState": Filterable("enum", _EQ),
        "stateTransitionTime": _time(),
        "allocationStateTransitionTime": _time(),
        "creationTime": _time(),
        "lastModified": _time(),
        "enableAutoScale": Filterable("bool", _EQ_NE),
        "enableInterNodeCommunication": Filterable("bool", _EQ_NE),
        "vmSize": Filterable("string", _EQ_NE),
    },
    "jobs": {"id": _id(), **_JOBS_FROM_SCHEDULE},
    # §7.3 lists `id` for the plain job list only
    "jobs_from_schedule": _JOBS_FROM_SCHEDULE,
    "job_schedules": {
        "id": _id(),
        "state": Filterable("enum", _EQ),
        "stateTransitionTime": _time(),
        "creationTime": _time(),
        "lastModified": _time(),
        "executionInfo/endTime": _time(),
        "schedule/doNotRunUntil": _time(),
        "schedule/doNotRunAfter": _time(),
    },
    "tasks": {
        "id": _id(),
        "state": Filterable("enum", _EQ),
        "stateTransitionTime": _time(),
        "creationTime": _time(),
        "lastModified": _time(),
        "executionInfo/startTime": _time(),
        "executionInfo/endTime": _time(),
        "executionInfo/exitCode": Filterable("int", _CMP),
        "executionInfo/result": Filterable("enum", _EQ_NE),
    },
    "nodes": {
        "state": Filterable("enum", _EQ_NE),
        "stateTransitionTime": _time(),
        "lastBootTime": _time(),
        "allocationTime": _time(),
        "startTaskInfo/state": Filterable("enum", _EQ),
        "startTaskInfo/result": Filterable("enum", _EQ_NE),
        "startTaskInfo/exitCode": Filterable("int", _CMP),
        "startTaskInfo/startTime": _time(),
        "startTaskInfo/endTime": _time(),
    },
    "job_prep_release_status": {
        "poolId": Filterable("string", _EQ_NE),
        "nodeId": Filterable("string", _EQ_NE),
        **_exec_info("jobPreparationTaskExecutionInfo"),
        **_exec_info("jobReleaseTaskExecutionInfo"),
    },
    "files": _FILES,
    "task_files": _FILES,
    "node_files": _FILES,
    "pool_node_counts": {"poolId": Filterable("string", _EQ)},
    "supported_images": {
        "osType": Filterable("enum", _EQ_NE),
        "verificationType": Filterable("enum", _EQ_NE),
        "nodeAgentSKUId": Filterable("string", _EQ_NE),
    },
    "pool_usage_metrics": {
        "poolId": Filterable("string", frozenset({"eq", "gt", "ge", "lt", "le", "startswith"})),
    },
    # Legacy (certificates were removed in 15.x; 14.x clients may still list them).
    "certificates": {"state": Filterable("enum", _EQ), "stateTransitionTime": _time()},
}
"""entity -> {wire property path ('a/b'): type and operators}. Entities name the list
operations."""

ALIASES: Mapping[str, Mapping[str, str]] = {
    # Azure's docs name the task property `lastModifiedTime`; the wire field is `lastModified`.
    "tasks": {"lastModifiedTime": "lastModified"},
}
"""entity -> {accepted filter spelling: wire property path}."""

ENTITIES: frozenset[str] = frozenset(FILTERABLE)


def _table(entity: str) -> Mapping[str, Filterable]:
    try:
        return FILTERABLE[entity]
    except KeyError:
        raise ValueError(f"unknown filter entity {entity!r}; one of {sorted(ENTITIES)}") from None


def _property(entity: str, field: Field) -> Filterable:
    """The table row of a filtered property, or FilterError for unknown ones."""
    table = _table(entity)
    name = "/".join(field.path)
    wire = ALIASES.get(entity, {}).get(name, name)
    row = table.get(wire)
    if row is None:
        known = sorted(set(table) | set(ALIASES.get(entity, {})))
        lowered = {k.lower(): k for k in known}
        hint = lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, known, 1)),
                                                 None)
        suffix = f"; did you mean '{hint}'?" if hint else f"; filterable: {', '.join(known)}"
        raise FilterError(f"property '{name}' cannot be used in $filter here{suffix}",
                          subject=name)
    return row


def _literal_fits(kind: PropertyKind, value: object) -> bool:
    if kind in ("string", "enum"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, datetime)


def validate(expr: Expr, entity: str) -> None:
    """Raise FilterError if ``expr`` uses a property, operator or literal type that the list
    operation ``entity`` (a key of FILTERABLE) does not allow. Property names are
    case-sensitive, as in Azure. Raises ValueError for an unknown entity (a caller bug).
    """
    _table(entity)
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, And | Or):
            stack.extend((node.right, node.left))
        elif isinstance(node, Not):
            stack.append(node.operand)
        elif isinstance(node, StartsWith):
            name = "/".join(node.field.path)
            row = _property(entity, node.field)
            if "startswith" not in row.ops:
                raise FilterError(f"startswith is not supported on property '{name}' "
                                  f"(allowed: {_allowed(row)})", subject=name)
        else:
            _check_compare(node, entity)


def _allowed(row: Filterable) -> str:
    order = ("eq", "ne", "gt", "ge", "lt", "le", "startswith")
    return ", ".join(op for op in order if op in row.ops)


def _check_compare(node: Compare, entity: str) -> None:
    name = "/".join(node.field.path)
    row = _property(entity, node.field)
    value = node.value.value
    if value is None:
        raise FilterError(f"null is not a Batch filter value (property '{name}')",
                          subject=name)
    if node.op not in row.ops:
        raise FilterError(f"operator '{node.op}' is not supported on property '{name}' "
                          f"(allowed: {_allowed(row)})", subject=name)
    if not _literal_fits(row.kind, value):
        raise FilterError(f"property '{name}' must be compared with {_LITERAL_HINT[row.kind]}",
                          subject=name)


def canonicalize(expr: Expr, entity: str) -> Expr:
    """Rewrite accepted alias spellings (``ALIASES``) to wire property paths, so evaluators
    and SQL translators only ever see wire paths. Call after ``validate``."""
    aliases = ALIASES.get(entity, {})
    if not aliases:
        return expr

    def field(f: Field) -> Field:
        wire = aliases.get("/".join(f.path))
        return Field(tuple(wire.split("/"))) if wire else f

    def walk(node: Expr) -> Expr:
        if isinstance(node, And):
            return And(walk(node.left), walk(node.right))
        if isinstance(node, Or):
            return Or(walk(node.left), walk(node.right))
        if isinstance(node, Not):
            return Not(walk(node.operand))
        if isinstance(node, StartsWith):
            return StartsWith(field(node.field), node.prefix)
        return Compare(node.op, field(node.field), node.value)

    return walk(expr)
