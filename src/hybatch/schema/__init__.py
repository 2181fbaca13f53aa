"""Wire models generated from the Azure Batch OpenAPI description (see tools/gen_schema.py).

Every spec definition is importable from here by its spec name (``BatchTaskCreateOptions``,
``BatchPool``, ``BatchTaskState``...). Attributes are snake_case; the camelCase wire names are
aliases. Use :func:`parse_wire` / :func:`dump_wire` at the HTTP boundary so every caller gets
the same lenient input rules and the same canonical output.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from hybatch.schema._generated import models as _models
from hybatch.schema._generated.models import *  # noqa: F403
from hybatch.schema._generated.operations import API_VERSION, OPERATIONS, SPEC_SHA256
from hybatch.schema.base import (
    UNLIMITED_DURATION,
    UNLIMITED_DURATION_WIRE,
    Duration,
    Int64Str,
    UtcDateTime,
    WireEnum,
    WireModel,
    format_duration,
    format_utc,
    is_unlimited,
)
from hybatch.schema.operation import Operation

M = TypeVar("M", bound=BaseModel)


def dump_wire(model: BaseModel) -> dict[str, Any]:
    """The JSON body for ``model``: camelCase names, no nulls, wire scalars as strings."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_wire(model_cls: type[M], data: Any) -> M:
    """Validate a request/response body; raw ``str``/``bytes`` take pydantic's faster JSON path."""
    if isinstance(data, str | bytes | bytearray):
        return model_cls.model_validate_json(data)
    return model_cls.model_validate(data)


__all__ = [
    *_models.__all__,
    "API_VERSION",
    "OPERATIONS",
    "SPEC_SHA256",
    "UNLIMITED_DURATION",
    "UNLIMITED_DURATION_WIRE",
    "Duration",
    "Int64Str",
    "Operation",
    "UtcDateTime",
    "WireEnum",
    "WireModel",
    "dump_wire",
    "format_duration",
    "format_utc",
    "is_unlimited",
    "parse_wire",
]
