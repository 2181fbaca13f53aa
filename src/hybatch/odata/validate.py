"""Which properties each list operation may filter on (wire reference §7.3), and checks.

Azure rejects filters on properties outside this table with 400, so we do too: silently
accepting ``displayName eq 'x'`` would return results a real account never would. We are
deliberately a little more permissive than Azure on *operators* (e.g. ``state ne 'active'``
is accepted; Azure documents only ``eq`` for most states): a superset never breaks a client.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import datetime
from typing import Literal as _Lit

from hybatch.odata.ast import And, Compare, Expr, Field, Not, Or, StartsWith
from hybatch.odata.errors import FilterError

__all__ = [
    "ALIASES",
    "ENTITIES",
    "FILTERABLE",
    "PropertyKind",
    "canonicalize",
    "validate",
]

PropertyKind = _Lit["string", "enum", "int", "datetime", "bool"]
"""``string``: any comparison and startswith; ``enum``: eq/ne on a lower-case state value;
``int``/``datetime``: comparisons; ``bool``: eq/ne."""

_OPS: dict[PropertyKind, frozenset[str]] = {
    "string": frozenset({"eq", "ne", "gt", "ge", "lt", "le", "startswith"}),
    "enum": frozenset({"eq", "ne"}),
    "int": frozenset({"eq", "ne", "gt", "ge", "lt", "le"}),
    "datetime": frozenset({"eq", "ne", "gt", "ge", "lt", "le"}),
    "bool": frozenset({"eq", "ne"}),
}

_LITERAL_HINT: dict[PropertyKind, str] = {
    "string": "a string literal ('...')",
    "enum": "a string literal ('...')",
    "int": "a number",
    "datetime": "a DateTime'...' literal",
    "bool": "true or false",
}


def _exec_info(prefix: str) -> dict[str, PropertyKind]:
    return {
        f"{prefix}/state": "enum",
        f"{prefix}/startTime": "datetime",
        f"{prefix}/endTime": "datetime",
        f"{prefix}/exitCode": "int",
        f"{prefix}/result": "enum",
    }


_JOBS: dict[str, PropertyKind] = {
    "id": "string",
    "state": "enum",
    "stateTransitionTime": "datetime",
    "creationTime": "datetime",
    "lastModified": "datetime",
    "executionInfo/startTime": "datetime",
    "executionInfo/endTime": "datetime",
    "executionInfo/poolId": "string",
}

_FILES: dict[str, PropertyKind] = {"name": "string"}

FILTERABLE: Mapping[str, Mapping[str, PropertyKind]] = {
    "pools": {
        "id": "string",
        "state": "enum",
        "allocationState": "enum",
        "stateTransitionTime": "datetime",
        "allocationStateTransitionTime": "datetime",
        "creationTime": "datetime",
        "lastModified": "datetime",
        "enableAutoScale": "bool",
        "enableInterNodeCommunication": "bool",
        "vmSize": "string",
    },
    "jobs": _JOBS,
    # Azure documents `id` for the plain job list only; accepting it here is harmless.
    "jobs_from_schedule": _JOBS,
    "job_schedules": {
        "id": "string",
        "state": "enum",
        "stateTransitionTime": "datetime",
        "creationTime": "datetime",
        "lastModified": "datetime",
        "executionInfo/endTime": "datetime",
        "schedule/doNotRunUntil": "datetime",
        "schedule/doNotRunAfter": "datetime",
    },
    "tasks": {
        "id": "string",
        "state": "enum",
        "stateTransitionTime": "datetime",
        "creationTime": "datetime",
        "lastModified": "datetime",
        "executionInfo/startTime": "datetime",
        "executionInfo/endTime": "datetime",
        "executionInfo/exitCode": "int",
        "executionInfo/result": "enum",
    },
    "nodes": {
        "state": "enum",
        "stateTransitionTime": "datetime",
        "lastBootTime": "datetime",
        "allocationTime": "datetime",
        "startTaskInfo/state": "enum",
        "startTaskInfo/result": "enum",
        "startTaskInfo/exitCode": "int",
        "startTaskInfo/startTime": "datetime",
        "startTaskInfo/endTime": "datetime",
    },
    "job_prep_release_status": {
        "poolId": "string",
        "nodeId": "string",
        **_exec_info("jobPreparationTaskExecutionInfo"),
        **_exec_info("jobReleaseTaskExecutionInfo"),
    },
    "files": _FILES,
    "task_files": _FILES,
    "node_files": _FILES,
    "pool_node_counts": {"poolId": "string"},
    "supported_images": {
        "osType": "enum",
        "verificationType": "enum",
        "nodeAgentSKUId": "string",
    },
    "pool_usage_metrics": {"poolId": "string"},
    # Legacy (certificates were removed in 15.x; 14.x clients may still list them).
    "certificates": {"state": "enum", "stateTransitionTime": "datetime"},
}
"""entity -> {wire property path ('a/b'): kind}. Entities name the list operations."""

ALIASES: Mapping[str, Mapping[str, str]] = {
    # Azure's docs name the task property `lastModifiedTime`; the wire field is `lastModified`.
    "tasks": {"lastModifiedTime": "lastModified"},
}
"""entity -> {accepted filter spelling: wire property path}."""

ENTITIES: frozenset[str] = frozenset(FILTERABLE)


def _table(entity: str) -> Mapping[str, PropertyKind]:
    try:
        return FILTERABLE[entity]
    except KeyError:
        raise ValueError(f"unknown filter entity {entity!r}; one of {sorted(ENTITIES)}") from None


def _kind(entity: str, field: Field) -> PropertyKind:
    """The kind of a filtered property, or FilterError for unknown ones."""
    table = _table(entity)
    name = "/".join(field.path)
    wire = ALIASES.get(entity, {}).get(name, name)
    kind = table.get(wire)
    if kind is None:
        known = sorted(set(table) | set(ALIASES.get(entity, {})))
        lowered = {k.lower(): k for k in known}
        hint = lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, known, 1)),
                                                 None)
        suffix = f"; did you mean '{hint}'?" if hint else f"; filterable: {', '.join(known)}"
        raise FilterError(f"property '{name}' cannot be used in $filter here{suffix}",
                          subject=name)
    return kind


def _literal_fits(kind: PropertyKind, value: object) -> bool:
    if value is None:
        return True
    if kind in ("string", "enum"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int | float) and not isinstance(value, bool)
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
            if "startswith" not in _OPS[_kind(entity, node.field)]:
                raise FilterError(f"startswith is not supported on property '{name}'",
                                  subject=name)
        else:
            _check_compare(node, entity)


def _check_compare(node: Compare, entity: str) -> None:
    name = "/".join(node.field.path)
    kind = _kind(entity, node.field)
    value = node.value.value
    if value is None:
        if node.op not in ("eq", "ne"):
            raise FilterError(f"null can only be compared with eq or ne (property '{name}')",
                              subject=name)
        return
    if node.op not in _OPS[kind]:
        allowed = ", ".join(sorted(_OPS[kind] - {"startswith"}))
        raise FilterError(f"operator '{node.op}' is not supported on property '{name}' "
                          f"(allowed: {allowed})", subject=name)
    if not _literal_fits(kind, value):
        raise FilterError(f"property '{name}' must be compared with {_LITERAL_HINT[kind]}",
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
