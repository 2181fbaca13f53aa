"""An OpenAPI 3.1 description rebuilt from what the package itself knows, for when the
Batch spec file is not available: the generated operations table
(``hybatch.schema._generated.operations.OPERATIONS``) gives paths, methods and parameter
names; the generated pydantic models give the request bodies (their JSON schemas, which
unlike the spec also admit ``null`` for optional properties — worth fuzzing too).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import hybatch.schema as wire
from hybatch.schema._generated.operations import API_VERSION, OPERATIONS

_REF = "#/components/schemas/{model}"

_INT32: dict[str, Any] = {"type": "integer", "format": "int32"}
_CSV: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "timeOut": _INT32,
    "maxresults": {**_INT32, "minimum": 1, "maximum": 1000},
    "$filter": {"type": "string"},
    "$select": _CSV,
    "$expand": _CSV,
    "recursive": {"type": "boolean"},
    "force": {"type": "boolean"},
    "startTime": {"type": "string", "format": "date-time"},
    "endtime": {"type": "string", "format": "date-time"},
}
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "return-client-request-id": {"type": "boolean"},
}


def _parameter(name: str, where: str, schema: dict[str, Any], required: bool = False
               ) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": where, "required": required, "schema": schema}
    if schema.get("type") == "array":
        param.update(style="form", explode=False)
    return param


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document for every row of ``OPERATIONS``."""
    model_names = sorted({op.body_model for op in OPERATIONS if op.body_model})
    models: list[type[BaseModel]] = [getattr(wire, name) for name in model_names]
    _, schemas = models_json_schema([(model, "validation") for model in models],
                                    by_alias=True, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params = [_parameter("api-version", "query", {"type": "string", "minLength": 1}, True)]
        params += [_parameter(name, "path", {"type": "string"}, True) for name in op.path_params]
        params += [_parameter(name, "query", QUERY_SCHEMAS.get(name, {"type": "string"}))
                   for name in op.query_params]
        params += [_parameter(name, "header", HEADER_SCHEMAS.get(name, {"type": "string"}))
                   for name in op.header_params]
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "parameters": params,
            "responses": {str(op.status): {"description": "success"},
                          **{str(s): {"description": "other"} for s in op.extra_statuses},
                          "default": {"description": "Batch error"}},
        }
        if op.body_model:
            operation["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {
                    "schema": {"$ref": _REF.format(model=op.body_model)}}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "hybatch (rebuilt from the operations table)", "version": API_VERSION},
        "servers": [{"url": "http://127.0.0.1"}],
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }
