"""The shape of one row of the generated operations table (``_generated/operations.py``).

The route table and ``docs/coverage.md`` are built from these rows, so they hold only what the
spec says about the wire: no handler references, no service behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Operation:
    """One data-plane operation as the spec's ``paths`` describe it."""

    operation_id: str
    """The spec's ``operationId``, e.g. ``Tasks_CreateTask``."""
    tag: str
    """The spec's first tag (``Pools``, ``Jobs``, ...), for grouping in docs."""
    method: str
    """Upper-case HTTP method."""
    path: str
    """Path template with ``{name}`` placeholders, as written in the spec."""
    status: int
    """The success status code (the lowest non-default 2xx response)."""
    extra_statuses: tuple[int, ...]
    """Other non-default responses the spec lists (``404`` for the HEAD existence checks)."""
    path_params: tuple[str, ...]
    """Path parameter names in template order."""
    query_params: tuple[str, ...]
    """Query parameter names except ``api-version``, in spec order."""
    header_params: tuple[str, ...]
    """Request header names, in spec order."""
    has_select: bool
    has_filter: bool
    has_expand: bool
    has_maxresults: bool
    body_model: str | None
    """Name of the request body model in :mod:`hybatch.schema`, if the operation takes one."""
    body_required: bool
    response_model: str | None
    """Name of the success response body model, if the success response has a JSON body."""
    file_response: bool
    """The success response is a raw file stream (``application/octet-stream``)."""
    pageable: bool
    """A list operation that pages with ``odata.nextLink``."""

    @property
    def key(self) -> tuple[str, str]:
        """``(METHOD, path)``: unique across the table."""
        return (self.method, self.path)
