"""The $filter abstract syntax tree shared by the parser, the in-memory evaluator and the
SQL translation in the store. Frozen node dataclasses.

A ``Field`` path is the wire (camelCase) property path, e.g. ``("executionInfo", "exitCode")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal as _Lit

LiteralValue = str | int | float | bool | datetime | None
CompareOp = _Lit["eq", "ne", "gt", "ge", "lt", "le"]


@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Literal:
    value: LiteralValue


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    field: Field
    value: Literal


@dataclass(frozen=True, slots=True)
class StartsWith:
    field: Field
    prefix: str


@dataclass(frozen=True, slots=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


Expr = Compare | StartsWith | And | Or | Not
