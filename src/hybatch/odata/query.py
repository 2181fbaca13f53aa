"""One-call entry point for the API: text -> validated, canonical AST."""

from __future__ import annotations

import re

from hybatch.odata.ast import Expr
from hybatch.odata.errors import FilterError
from hybatch.odata.parser import parse_filter
from hybatch.odata.validate import canonicalize, validate

__all__ = ["compile_filter"]


def compile_filter(text: str, entity: str) -> Expr:
    """Parse, validate for the list operation ``entity`` and canonicalise a ``$filter``.

    Raises FilterError (-> 400 ``InvalidQueryParameterValue``). Validation errors, which the
    AST cannot place, get the position of the first occurrence of the offending property.
    """
    expr = parse_filter(text)
    try:
        validate(expr, entity)
    except FilterError as exc:
        if exc.position is None and exc.subject:
            found = re.search(rf"(?<![\w/]){re.escape(exc.subject)}(?![\w/])", text)
            if found:
                raise FilterError(exc.message, found.start(), subject=exc.subject) from None
        raise
    return canonicalize(expr, entity)
