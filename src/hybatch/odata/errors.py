"""The single error type of the OData package.

The API layer maps it to HTTP 400 ``InvalidQueryParameterValue`` (QueryParameterName
``$filter``); the position lets it point the caller at the offending character.
"""

from __future__ import annotations


class FilterError(ValueError):
    """A ``$filter`` that cannot be parsed or is not allowed for the list being queried.

    ``position`` is the 0-based character offset into the filter text, or ``None`` when the
    problem is not tied to one place (``compile_filter`` fills it in where it can).
    ``subject`` names the offending property path, if any, so a caller can locate it.
    """

    def __init__(self, message: str, position: int | None = None, *,
                 subject: str | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at position {position})")
        self.message = message
        self.position = position
        self.subject = subject


class SelectError(ValueError):
    """A ``$select`` naming something the resource does not have (-> HTTP 400
    ``InvalidQueryParameterValue``, QueryParameterName ``$select``). ``subject`` is the
    offending path as written."""

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.subject = subject
