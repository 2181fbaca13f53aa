"""``$select``: which properties of a resource a response keeps.

A ``$select`` value is a comma-separated list of property paths of the resource's wire model
(``id, state, executionInfo/exitCode``). Names are the spec's camelCase names, matched
without regard to case; the response uses the spec's spelling. Top-level names are what
Azure documents (wire reference §7.4); a nested path (``executionInfo/exitCode``) is accepted
as well and keeps just that part of the object (through arrays, of each element). ``*``
selects everything. A name that is not a property of the model — at any level — is an error,
as on Azure, so a typo never silently empties a response.

Imports: standard library and pydantic (models are passed in, never imported).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from hybatch.odata.errors import SelectError

__all__ = ["Selection", "parse_select", "project"]

Selection = dict[str, "Selection | None"]
"""Wire name -> None (keep the whole value) or the selection inside that value."""

MAX_SELECT_LENGTH = 8192


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``Optional[...]``, ``list[...]``, ``Annotated[...]`` wrappers."""
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            return current
        origin = get_origin(current)
        if origin in (list, tuple, Union, types.UnionType, Annotated) or origin is None:
            stack.extend(get_args(current))
    return None


@lru_cache(maxsize=256)
def _properties(model: type[BaseModel]) -> dict[str, tuple[str, type[BaseModel] | None]]:
    """lower-cased wire name -> (wire name, model of the value if it is an object)."""
    out: dict[str, tuple[str, type[BaseModel] | None]] = {}
    for name, info in model.model_fields.items():
        wire = info.alias or name
        out[wire.lower()] = (wire, _nested_model(info.annotation))
    return out


def parse_select(text: str, model: type[BaseModel]) -> Selection | None:
    """The selection a ``$select`` value makes on ``model``; None means "everything".

    Raises SelectError naming the offending path for unknown properties, paths into plain
    values and empty path segments.
    """
    if len(text) > MAX_SELECT_LENGTH:
        raise SelectError(f"$select is longer than {MAX_SELECT_LENGTH} characters")
    selection: Selection = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            return None
        _add(selection, item, model)
    if not selection:
        raise SelectError("$select names no property")
    return selection


def _add(selection: Selection, path: str, model: type[BaseModel]) -> None:
    segments = path.split("/")
    level: Selection | None = selection
    current: type[BaseModel] | None = model
    for depth, segment in enumerate(segments):
        name = segment.strip()
        if not name:
            raise SelectError(f"'{path}' has an empty path segment", subject=path)
        if current is None:
            shown = "/".join(segments[:depth])
            raise SelectError(f"'{shown}' is not an object, so '{path}' cannot be selected",
                              subject=path)
        found = _properties(current).get(name.lower())
        if found is None:
            where = "/".join(segments[:depth]) or model.__name__
            raise SelectError(f"'{name}' is not a property of {where}", subject=path)
        wire, current = found
        assert level is not None
        last = depth == len(segments) - 1
        if wire in level and level[wire] is None:
            return  # the whole value is already selected
        if last:
            level[wire] = None
            return
        nested = level.setdefault(wire, {})
        level = nested


def project(body: Mapping[str, Any], selection: Selection) -> dict[str, Any]:
    """``body`` reduced to the selected properties, in the body's own order."""
    return {key: value if selection[key] is None else _project_value(value, selection[key])
            for key, value in body.items() if key in selection}


def _project_value(value: Any, selection: Selection | None) -> Any:
    if selection is None:
        return value
    if isinstance(value, Mapping):
        return project(value, selection)
    if isinstance(value, list):
        return [_project_value(item, selection) for item in value]
    return value
