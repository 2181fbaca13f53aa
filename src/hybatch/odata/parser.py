"""``$filter`` text -> AST (``odata.ast``), with a lark LALR grammar.

The grammar lives in this module (not a ``.lark`` file) so it needs no package-data entry.
It follows the subset in the wire reference §7.2; README.md in this package has the EBNF.

Design notes:

* Keywords (``and``, ``or``, ``not``, ``eq``..., ``startswith``, ``true``, ``false``) are
  lower case, as Batch requires (§7.2); the same words in another case are refused with a
  hint rather than read as property names. The ``DateTime'...'`` prefix may be in any case.
  Property names are returned verbatim (``validate`` decides whether they exist). Keyword
  terminals refuse to match a prefix of a longer word, so a property called ``notes`` or
  ``order`` is still a property; the words themselves are reserved.
* The parse uses lark's inline transformer: AST nodes are built while reducing, with no
  recursion over the parse tree, so deep parenthesisation cannot overflow the Python stack.
* ``a and b and c ...`` chains are folded into a *balanced* tree (``and``/``or`` are
  associative), so a filter listing hundreds of ids stays shallow for the recursive evaluator
  and the SQL translator. Nesting beyond ``MAX_DEPTH`` (e.g. ``not not not ...``) is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from hybatch.odata.ast import (
    And,
    Compare,
    CompareOp,
    Expr,
    Field,
    Literal,
    LiteralValue,
    Not,
    Or,
    StartsWith,
)
from hybatch.odata.datetimes import parse_any
from hybatch.odata.errors import FilterError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "parse_filter"]

MAX_DEPTH = 100
"""Deepest AST accepted; only reachable with absurd ``not``/nesting, never by real clients."""

MAX_LENGTH = 32_768
"""Longest filter text accepted (real URLs are far shorter; this bounds parse work)."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# `(?![\w$])` stops a keyword from matching the start of a longer identifier; IDENT in turn
# refuses the reserved words, so `a eq 1 and and b eq 2` fails at the second `and`.
_GRAMMAR = r"""
start: or_expr

?or_expr: and_expr (_OR and_expr)*
?and_expr: unary (_AND unary)*
?unary: _NOT unary                           -> negation
      | primary
?primary: "(" or_expr ")"
        | path OP literal                    -> comparison
        | _STARTSWITH "(" path "," STRING ")" [OP literal] -> startswith

path: IDENT ("/" IDENT)*

?literal: STRING
        | DECIMAL
        | INT
        | TRUE
        | FALSE
        | NULL
        | DATETIME

_OR.2: /or(?![\w$])/
_AND.2: /and(?![\w$])/
_NOT.2: /not(?![\w$])/
_STARTSWITH.2: /startswith(?=\s*\()/
OP.2: /(eq|ne|gt|ge|lt|le)(?![\w$])/
TRUE.2: /true(?![\w$])/
FALSE.2: /false(?![\w$])/
NULL.2: /null(?![\w$])/
DATETIME.3: /datetime'[^']*'/i
STRING: /'(?:[^']|'')*'/
DECIMAL.2: /-?[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?/
INT: /-?[0-9]+/
IDENT: /(?!(?i:@RESERVED@)(?![\w$]))[A-Za-z_][A-Za-z0-9_]*/

%ignore /\s+/
"""
_RESERVED = "and|or|not|eq|ne|gt|ge|lt|le|true|false|null|startswith"
_GRAMMAR = _GRAMMAR.replace("@RESERVED@", _RESERVED)

# Friendly names for lark terminal names, used in "expected ..." messages.
_TERMINAL_NAMES: dict[str, str] = {
    "_OR": "'or'",
    "_AND": "'and'",
    "_NOT": "'not'",
    "_STARTSWITH": "'startswith('",
    "OP": "a comparison operator (eq, ne, gt, ge, lt, le)",
    "TRUE": "a literal",
    "FALSE": "a literal",
    "NULL": "a literal",
    "DATETIME": "a literal",
    "STRING": "a literal",
    "DECIMAL": "a literal",
    "INT": "a literal",
    "IDENT": "a property name",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "SLASH": "'/'",
    "$END": "end of filter",
}


def _fold(make: Callable[[Expr, Expr], Expr], items: Sequence[Expr]) -> Expr:
    """Balanced fold of an associative chain (depth log2(n) instead of n)."""
    if len(items) == 1:
        return items[0]
    mid = (len(items) + 1) // 2
    return make(_fold(make, items[:mid]), _fold(make, items[mid:]))


def _literal(tok: Token) -> Literal:
    """Convert a literal token; raises FilterError at the token for out-of-range values."""
    kind, text = tok.type, str(tok)
    value: LiteralValue
    if kind == "STRING":
        value = text[1:-1].replace("''", "'")
    elif kind == "INT":
        # an int64 has at most 19 digits: longer text is out of range without parsing it
        if len(text.lstrip("+-").lstrip("0")) > 19:
            raise FilterError(f"integer literal {text[:40]} is out of range", tok.start_pos)
        number = int(text)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise FilterError(f"integer literal {text} is out of range", tok.start_pos)
        value = number
    elif kind == "DECIMAL":
        value = float(text)
    elif kind in ("TRUE", "FALSE"):
        value = kind == "TRUE"
    elif kind == "NULL":
        value = None
    elif kind == "DATETIME":
        inner = text[text.index("'") + 1 : -1]
        parsed: datetime | None = parse_any(inner)
        if parsed is None:
            raise FilterError(
                f"invalid DateTime literal {inner!r}: use ISO-8601 "
                "(2024-01-01T00:00:00Z) or RFC 1123",
                tok.start_pos,
            )
        value = parsed
    else:  # pragma: no cover - the grammar has no other literal terminals
        raise FilterError(f"unexpected literal {text!r}", tok.start_pos)
    return Literal(value)


class _ToAst(Transformer[Token, Expr]):
    """Inline (reduce-time) callbacks building ``odata.ast`` nodes."""

    def start(self, children: list[Expr]) -> Expr:
        return children[0]

    def or_expr(self, children: list[Expr]) -> Expr:
        return _fold(Or, children)

    def and_expr(self, children: list[Expr]) -> Expr:
        return _fold(And, children)

    def negation(self, children: list[Expr]) -> Expr:
        return Not(children[0])

    def path(self, children: list[Token]) -> Field:
        return Field(tuple(str(c) for c in children))

    def comparison(self, children: list[Field | Token]) -> Expr:
        field, op, lit = children
        assert isinstance(field, Field) and isinstance(op, Token) and isinstance(lit, Token)
        return Compare(_op(op), field, _literal(lit))

    def startswith(self, children: list[Field | Token | None]) -> Expr:
        field, prefix, op, lit = children
        assert isinstance(field, Field) and isinstance(prefix, Token)
        node = StartsWith(field, str(prefix)[1:-1].replace("''", "'"))
        if op is None:
            return node
        assert isinstance(op, Token) and isinstance(lit, Token)
        # OData v3 style `startswith(id,'x') eq true`; anything else is meaningless.
        value = _literal(lit).value
        operator = _op(op)
        if operator not in ("eq", "ne") or not isinstance(value, bool):
            raise FilterError("startswith(...) can only be compared with eq/ne true/false",
                              op.start_pos)
        return node if (operator == "eq") == value else Not(node)


def _op(tok: Token) -> CompareOp:
    op = str(tok).lower()
    assert op in ("eq", "ne", "gt", "ge", "lt", "le")
    return op  # type: ignore[return-value]  # narrowed by the assert above


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", transformer=_ToAst(),
                maybe_placeholders=True)


def _expected(names: set[str] | frozenset[str]) -> str:
    friendly = sorted({_TERMINAL_NAMES.get(n, repr(n)) for n in names})
    return ", ".join(friendly) if friendly else "nothing"


_KEYWORD_AT = re.compile(rf"({_RESERVED})(?![\w$])", re.IGNORECASE)


def _keyword_case(text: str, pos: int) -> FilterError | None:
    """A keyword written in the wrong case at ``pos`` (``EQ``, ``And``, ``StartsWith``)."""
    found = _KEYWORD_AT.match(text, pos)
    if found is None or found.group(0).islower():
        return None
    return FilterError(f"'{found.group(0)}': operators and keywords are lower case in Batch "
                       f"filters (use '{found.group(0).lower()}')", pos)


def _syntax_error(text: str, exc: UnexpectedInput) -> FilterError:
    """Turn a lark error into a FilterError with a 0-based position and a readable message."""
    if isinstance(exc, UnexpectedCharacters) and exc.pos_in_stream is not None:
        pos = exc.pos_in_stream
        cased = _keyword_case(text, pos)
        if cased is not None:
            return cased
        if text[pos] == "'":
            return FilterError("unterminated string literal", pos)
        if text[pos:].lower().startswith("datetime'"):
            return FilterError("unterminated DateTime literal", pos)
        return FilterError(f"unexpected character {text[pos]!r}; expected "
                           f"{_expected(exc.allowed or set())}", pos)
    if isinstance(exc, UnexpectedEOF):
        return FilterError(f"unexpected end of filter; expected {_expected(set(exc.expected))}",
                           len(text))
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            return FilterError(
                f"unexpected end of filter; expected {_expected(exc.accepts or exc.expected)}",
                len(text),
            )
        pos = tok.start_pos if tok.start_pos is not None else len(text)
        cased = _keyword_case(text, pos)
        if cased is not None:
            return cased
        if text[pos:].lower().startswith("datetime'"):
            return FilterError("unterminated DateTime literal", pos)
        return FilterError(f"unexpected {str(tok)!r}; expected "
                           f"{_expected(exc.accepts or exc.expected)}", pos)
    return FilterError(f"invalid filter: {exc}", getattr(exc, "pos_in_stream", None))


def _depth(expr: Expr) -> int:
    """AST depth, iteratively (a hostile AST must not overflow the stack while measuring)."""
    deepest = 0
    stack: list[tuple[Expr, int]] = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, And | Or):
            stack.append((node.left, depth + 1))
            stack.append((node.right, depth + 1))
        elif isinstance(node, Not):
            stack.append((node.operand, depth + 1))
    return deepest


def parse_filter(text: str) -> Expr:
    """Parse a ``$filter`` value (already URL-decoded) into an ``Expr``.

    Raises FilterError(message, position) on any syntax error; ``position`` is a 0-based
    offset into ``text``. Property names are not checked here; see ``validate``.
    """
    if len(text) > MAX_LENGTH:
        raise FilterError(f"filter is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise FilterError("empty filter", 0)
    try:
        result = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    assert isinstance(result, Compare | StartsWith | And | Or | Not)
    if _depth(result) > MAX_DEPTH:
        raise FilterError(f"filter is nested deeper than {MAX_DEPTH} levels", 0)
    return result
