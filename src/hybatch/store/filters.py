"""$filter -> column conditions: the part of a filter a store can answer from its columns.

:func:`translate` turns an OData AST into a small condition tree over row columns, which the SQL
store renders as a WHERE clause and the memory store evaluates on its rows, so both pre-filter
identically. Every condition it produces is exact under the Batch rules (values compare
case-insensitively, a missing property never matches) for the properties in the resource's
filter table; anything else becomes "no restriction". The result is therefore always a
superset of the filter, and ``ListQuery.predicate`` decides the rest:

* ``And``: the translatable side(s) restrict, the others are dropped;
* ``Or``: translated only when both sides are;
* ``Not``: never translated (NULL columns make negation inexact).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hybatch.odata.ast import And, Compare, CompareOp, Expr, Or, StartsWith
from hybatch.store.codec import FilterField, micros

ColumnValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Cmp:
    """``column op value``; false when the column is NULL (SQL and OData agree there)."""

    column: str
    op: CompareOp
    value: ColumnValue


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Cond, ...]


Cond = Cmp | AllOf | AnyOf

_MAX_CHAR = 0x10FFFF


def translate(expr: Expr | None, fields: Mapping[tuple[str, ...], FilterField]) -> Cond | None:
    """The column condition implied by ``expr``; None means "no restriction"."""
    if expr is None:
        return None
    if isinstance(expr, And):
        parts = [c for c in (translate(expr.left, fields), translate(expr.right, fields)) if c]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))
    if isinstance(expr, Or):
        left, right = translate(expr.left, fields), translate(expr.right, fields)
        if left is None or right is None:
            return None
        return AnyOf((left, right))
    if isinstance(expr, Compare):
        return _compare(expr, fields)
    if isinstance(expr, StartsWith):
        return _starts_with(expr, fields)
    return None


def _compare(expr: Compare, fields: Mapping[tuple[str, ...], FilterField]) -> Cond | None:
    spec = fields.get(expr.field.path)
    value = expr.value.value
    if spec is None or value is None:
        return None
    if spec.kind == "text" and isinstance(value, str):
        return Cmp(spec.column, expr.op, value.lower())
    if spec.kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return Cmp(spec.column, expr.op, value)
    if spec.kind == "bool" and isinstance(value, bool) and expr.op in ("eq", "ne"):
        return Cmp(spec.column, expr.op, value)
    if spec.kind == "time" and isinstance(value, datetime):
        us = micros(value)
        assert us is not None
        return Cmp(spec.column, expr.op, us)
    return None


def _starts_with(expr: StartsWith, fields: Mapping[tuple[str, ...], FilterField]) -> Cond | None:
    """A key range ``[prefix, successor)``: exact in code-point order and index friendly."""
    spec = fields.get(expr.field.path)
    if spec is None or spec.kind != "text":
        return None
    prefix = expr.prefix.lower()
    low = Cmp(spec.column, "ge", prefix)
    high = prefix_successor(prefix)
    return low if high is None else AllOf((low, Cmp(spec.column, "lt", high)))


def prefix_successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (None: no bound)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < _MAX_CHAR:
            code += 1
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored; skip past them
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


# --------------------------------------------------------------------------- evaluation

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def matches(cond: Cond | None, row: Mapping[str, Any]) -> bool:
    """Evaluate ``cond`` on a row's column values the way SQL would (NULL never matches)."""
    if cond is None:
        return True
    if isinstance(cond, Cmp):
        value = row.get(cond.column)
        return value is not None and _OPS[cond.op](value, cond.value)
    if isinstance(cond, AllOf):
        return all(matches(p, row) for p in cond.parts)
    return any(matches(p, row) for p in cond.parts)
