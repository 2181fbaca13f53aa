"""The Batch error body: ``{"code", "message": {"lang", "value"}, "values": [{"key", "value"}]}``.

The spec's ``BatchError`` / ``BatchErrorMessage`` / ``BatchErrorDetail`` already have exactly this
shape (all fields optional, so a client's partial error still parses), so they are reused rather
than redefined; this module only adds constructors so every error the service sends looks alike.

Imports: standard library and the generated models. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hybatch.schema._generated.models import BatchError, BatchErrorDetail, BatchErrorMessage

__all__ = [
    "DEFAULT_LANG",
    "BatchError",
    "BatchErrorDetail",
    "BatchErrorMessage",
    "error_body",
    "make_error",
]

DEFAULT_LANG = "en-US"
"""The service answers in English; the SDKs show ``message.value`` and ignore ``lang``."""


def make_error(
    code: str,
    message: str,
    *,
    values: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    lang: str = DEFAULT_LANG,
) -> BatchError:
    """A ``BatchError``; ``values`` keep their order (clients show them as given)."""
    pairs = values.items() if isinstance(values, Mapping) else (values or ())
    details = [BatchErrorDetail(key=key, value=str(value)) for key, value in pairs]
    return BatchError(
        code=code,
        message=BatchErrorMessage(lang=lang, value=message),
        values=details or None,
    )


def error_body(
    code: str,
    message: str,
    *,
    values: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    lang: str = DEFAULT_LANG,
    odata_metadata: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready error body; ``odata_metadata`` adds the service's leading annotation."""
    body = make_error(code, message, values=values, lang=lang).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    if odata_metadata is None:
        return body
    return {"odata.metadata": odata_metadata, **body}
