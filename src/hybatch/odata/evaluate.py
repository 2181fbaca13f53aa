"""Evaluate a ``$filter`` AST against the *wire* JSON of one resource.

Evaluating the wire form (camelCase keys, lower-case enum strings, ISO datetimes with ``Z``)
rather than internal records means the filter sees exactly what the client would see, and it
is the reference semantics a SQL translation must reproduce:

* Two-valued logic. A comparison with a missing/null property is false for every operator
  (``ne`` included; wire reference §7.3), except ``eq null`` / ``ne null``. ``not`` is plain
  negation, so ``not (executionInfo/exitCode eq 0)`` *does* match an active task.
* Strings compare case-insensitively (Azure compares filter values case-insensitively), for
  ordering too; ``startswith`` likewise.
* A ``DateTime'...'`` literal compares as an instant against wire strings parsed as ISO-8601.
* Numbers compare numerically; booleans only with booleans. Any type mismatch is false.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from hybatch.odata.ast import And, Compare, CompareOp, Expr, LiteralValue, Not, Or, StartsWith
from hybatch.odata.datetimes import parse_any

__all__ = ["lookup", "matches"]

_CMP: dict[CompareOp, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def lookup(wire: Mapping[str, object], path: tuple[str, ...]) -> object:
    """The value at ``path`` (e.g. ``("executionInfo", "exitCode")``), None if any step is
    missing or not an object."""
    current: object = wire
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key, None)
    return current


def _comparable(actual: object, literal: LiteralValue) -> tuple[Any, Any] | None:
    """Both sides in a form Python can compare, or None when the types do not match."""
    if isinstance(literal, bool):
        return (actual, literal) if isinstance(actual, bool) else None
    if isinstance(literal, datetime):
        if isinstance(actual, str):
            parsed = parse_any(actual)
            return None if parsed is None else (parsed, literal)
        if isinstance(actual, datetime) and actual.tzinfo is not None:
            return actual, literal
        return None
    if isinstance(literal, int | float):
        if isinstance(actual, int | float) and not isinstance(actual, bool):
            return actual, literal
        return None
    if isinstance(literal, str) and isinstance(actual, str):
        return actual.lower(), literal.lower()
    return None


def _compare(op: CompareOp, actual: object, literal: LiteralValue) -> bool:
    if literal is None:
        return (actual is None) if op == "eq" else (actual is not None) if op == "ne" else False
    if actual is None:
        return False
    pair = _comparable(actual, literal)
    if pair is None:
        return False
    return _CMP[op](*pair)


def matches(expr: Expr, wire: Mapping[str, object]) -> bool:
    """True if the resource whose wire JSON is ``wire`` satisfies ``expr``.

    ``expr`` should have gone through ``validate``/``canonicalize`` (``compile_filter``), so
    its property paths are wire paths.
    """
    if isinstance(expr, And):
        return matches(expr.left, wire) and matches(expr.right, wire)
    if isinstance(expr, Or):
        return matches(expr.left, wire) or matches(expr.right, wire)
    if isinstance(expr, Not):
        return not matches(expr.operand, wire)
    if isinstance(expr, StartsWith):
        value = lookup(wire, expr.field.path)
        return isinstance(value, str) and value.lower().startswith(expr.prefix.lower())
    if isinstance(expr, Compare):
        return _compare(expr.op, lookup(wire, expr.field.path), expr.value.value)
    raise TypeError(f"not a filter expression: {expr!r}")
