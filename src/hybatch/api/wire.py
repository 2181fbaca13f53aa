"""Request parsing and response building in Batch's wire format.

``Call`` wraps one request: case-insensitive query names, body parsing into generated models,
paging, $filter/$select, conditional headers, and responses with request-id, ETag,
Last-Modified and DataServiceId headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from hybatch.api.errors import JSON_TYPE
from hybatch.core.commands import Precondition
from hybatch.core.errors import DomainError
from hybatch.odata.errors import FilterError
from hybatch.odata.evaluate import matches
from hybatch.odata.query import compile_filter
from hybatch.runtime.service import FilterSpec, Listing, Written

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 4 * 1024 * 1024


def http_date(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def bad_query(name: str, value: str, reason: str,
              code: str = "InvalidQueryParameterValue") -> DomainError:
    return DomainError(code, f"The value for one of the query parameters is invalid: {reason}",
                       details={"QueryParameterName": name, "QueryParameterValue": value,
                                "Reason": reason})


def _strip_etag(value: str) -> str:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _parse_http_date(name: str, value: str) -> float:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError) as error:
        raise DomainError("InvalidHeaderValue", f"The value of {name} is not a valid date.",
                          details={"HeaderName": name, "HeaderValue": value}) from error


class Call:
    """One request: what the handler needs to read from it and to answer it."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.request_id: str = request.scope.get("hybatch.request_id", "")
        self.query = {k.lower(): v for k, v in request.query_params.multi_items() if v != ""}
        self.base_url: str = request.app.state.service.base_url

    # ------------------------------------------------------------------ input

    async def body(self, model: type[M], *, limit: int = MAX_BODY_BYTES) -> M:
        raw = await self.request.body()
        if len(raw) > limit:
            raise DomainError("RequestBodyTooLarge", "The request body is too large.",
                              details={"MaxLimit": str(limit)})
        data = parse_json(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise DomainError("InvalidRequestBody", "The request body must be a JSON object.")
        return parse_model(model, data)

    def max_results(self, default: int = 1000) -> int:
        raw = self.query.get("maxresults")
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as error:
            raise bad_query("maxresults", raw, "not an integer") from error
        if not 1 <= value <= 1000:
            raise bad_query("maxresults", raw, "must be between 1 and 1000",
                            code="OutOfRangeQueryParameterValue")
        return value

    def token(self) -> str | None:
        return self.query.get("$skiptoken")

    def filter(self, entity: str) -> FilterSpec | None:
        text = self.query.get("$filter")
        if text is None or not text.strip():
            return None
        try:
            expr = compile_filter(text, entity)
        except FilterError as error:
            raise bad_query("$filter", text, str(error)) from error
        except (ValueError, RecursionError) as error:
            # the parser's own limits (int() of a 5000-digit literal, nesting): still the
            # caller's filter that is at fault, never a server error
            raise bad_query("$filter", text, "The filter cannot be evaluated: "
                            f"{type(error).__name__}") from error
        return FilterSpec(expr=expr, matches=lambda wire: matches(expr, wire))

    def select(self) -> list[str] | None:
        text = self.query.get("$select")
        if text is None or not text.strip():
            return None
        return [part.strip() for part in text.split(",") if part.strip()]

    def expand_stats(self) -> bool:
        """Whether statistics go in the answer: ``$expand=stats`` (the only expansion Batch
        offers; anything else is a 400) or ``stats`` named in ``$select``."""
        text = self.query.get("$expand")
        expand = False
        if text is not None:
            for part in text.split(","):
                name = part.strip()
                if not name:
                    continue
                if name.lower() != "stats":
                    raise bad_query("$expand", text, f"'{name}' cannot be expanded; only "
                                    "'stats' can.")
                expand = True
        selected = self.select()
        return expand or (selected is not None and any(n.lower() == "stats" for n in selected))

    def flag(self, name: str) -> bool:
        return self.query.get(name, "false").lower() == "true"

    def precondition(self) -> Precondition:
        """Conditional headers of a write, parsed; combination rules of Batch applied."""
        h = self.request.headers
        if_match, if_none = h.get("if-match"), h.get("if-none-match")
        mod, unmod = h.get("if-modified-since"), h.get("if-unmodified-since")
        present = [x for x in (if_match, if_none, mod, unmod) if x is not None]
        if len(present) > 1 and not ((if_none and mod and len(present) == 2)
                                     or (if_match and unmod and len(present) == 2)):
            raise DomainError("MultipleConditionHeadersNotSupported",
                              "Multiple condition headers are not supported.")
        return Precondition(
            if_match=_strip_etag(if_match) if if_match else None,
            if_none_match=_strip_etag(if_none) if if_none else None,
            if_modified_since=_parse_http_date("If-Modified-Since", mod)
            if mod and not if_none else None,
            if_unmodified_since=_parse_http_date("If-Unmodified-Since", unmod)
            if unmod and not if_match else None,
        )

    def read_condition_failed(self, etag: str, last_modified: datetime | None) -> int | None:
        """304 or 412 when a GET/HEAD's condition is unmet, else None."""
        pre = self.precondition()
        if pre.if_match is not None and pre.if_match not in ("*", etag):
            return 412
        if pre.if_none_match is not None and pre.if_none_match in ("*", etag):
            return 304
        if last_modified is not None:
            stamp = int(last_modified.timestamp())
            if pre.if_modified_since is not None and stamp <= int(pre.if_modified_since):
                return 304
            if pre.if_unmodified_since is not None and stamp > int(pre.if_unmodified_since):
                return 412
        return None

    # ------------------------------------------------------------------ output

    def headers(self, etag: str | None = None, last_modified: datetime | None = None,
                data_service_id: str | None = None) -> dict[str, str]:
        """Batch's response headers: request id, data-service version, concurrency data."""
        headers = {"request-id": self.request_id, "DataServiceVersion": "3.0"}
        if etag:
            headers["ETag"] = etag
        if last_modified is not None:
            headers["Last-Modified"] = http_date(last_modified)
        if data_service_id:
            headers["DataServiceId"] = data_service_id
        return headers

    def json(self, body: dict[str, object], *, status: int = 200, metadata: str | None = None,
             etag: str | None = None, last_modified: datetime | None = None) -> Response:
        selected = self.select()
        if selected is not None:
            wanted = {name.lower() for name in selected}
            body = {k: v for k, v in body.items() if k.lower() in wanted}
        if metadata is not None:
            body = {"odata.metadata": f"{self.base_url}/$metadata#{metadata}", **body}
        return Response(json.dumps(body), status_code=status, media_type=JSON_TYPE,
                        headers=self.headers(etag, last_modified))

    def listing(self, listing: Listing, metadata: str) -> Response:
        items = listing.items
        selected = self.select()
        if selected is not None:
            wanted = {name.lower() for name in selected}
            items = [{k: v for k, v in item.items() if k.lower() in wanted} for item in items]
        body: dict[str, object] = {"odata.metadata": f"{self.base_url}/$metadata#{metadata}",
                                   "value": items}
        if listing.next_token is not None:
            body["odata.nextLink"] = self.next_link(listing.next_token)
        return Response(json.dumps(body), status_code=200, media_type=JSON_TYPE,
                        headers=self.headers())

    def next_link(self, token: str) -> str:
        """Absolute link carrying api-version and the caller's query options."""
        params = [(k, v) for k, v in self.request.query_params.multi_items()
                  if k.lower() != "$skiptoken"]
        params.append(("$skiptoken", token))
        return f"{self.base_url}{self.request.url.path}?{urlencode(params)}"

    def written(self, written: Written, status: int) -> Response:
        return Response(b"", status_code=status, headers=self.headers(
            written.etag, written.last_modified, written.url))

    def empty(self, status: int) -> Response:
        return Response(b"", status_code=status, headers=self.headers())


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _invalid_body(reason: str) -> DomainError:
    return DomainError("InvalidRequestBody",
                       "The specified Request Body is not syntactically valid.",
                       details={"Reason": reason})


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, refusing what cannot be stored or run later.

    Refused with ``InvalidRequestBody``: text that is not JSON (or not UTF-8), ``NaN`` and
    ``Infinity``, nesting too deep for the parser, and strings holding a lone UTF-16
    surrogate (``"\\ud800"``: valid JSON, but no UTF-8 encoding exists, so it could be
    neither stored nor echoed). Integer literals outside the 32-bit range every integer
    property of the spec has, and strings holding NUL (no process argument, path or
    PostgreSQL text can carry one), are ``InvalidPropertyValue`` naming the property.
    """
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError as error:
        raise _invalid_body("The JSON is nested too deeply.") from error
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, constants
        raise _invalid_body(str(error)) from error
    _check_scalars(data)
    return data


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _walk(data: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(path, value) of every scalar and every object key, iteratively (any depth)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                yield (*path, key), key
                stack.append(((*path, key), item))
        elif isinstance(value, list | tuple):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
        else:
            yield path, value


def _path(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)


def _bad_property(path: tuple[str | int, ...], reason: str) -> DomainError:
    return DomainError("InvalidPropertyValue",
                       "The value provided for one of the properties in the request body "
                       "is invalid.", details={"PropertyName": _path(path), "Reason": reason})


def _check_scalars(data: Any) -> None:
    for path, value in _walk(data):
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as error:
                    raise _invalid_body(f"The string at '{_path(path)}' holds a lone "
                                        "surrogate escape.") from error
            if "\x00" in value:
                raise _bad_property(path, "The value contains a NUL character.")
        elif isinstance(value, int) and not isinstance(value, bool) \
                and not INT32_MIN <= value <= INT32_MAX:
            raise _bad_property(path, "The value is outside the 32-bit integer range.")


def _check_model_ints(model: BaseModel) -> None:
    """Integers the model accepted from other spellings (``1e20``, ``"99999..."``) still
    have to fit the store's 64-bit columns and JSON."""
    for path, value in _walk(model.model_dump(by_alias=True, exclude_none=True)):
        if isinstance(value, int) and not isinstance(value, bool) \
                and not INT64_MIN <= value <= INT64_MAX:
            raise _bad_property(path, "The value is outside the 64-bit integer range.")


def parse_model(model: type[M], data: dict[str, Any], prefix: str = "") -> M:
    """Validate a wire body; pydantic errors become Batch property errors. ``prefix`` names
    where ``data`` sits in the request body (``value.3`` in a task collection)."""
    try:
        parsed = model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        prop = ".".join(str(p) for p in (*([prefix] if prefix else []), *first["loc"]))
        if first["type"] == "missing":
            raise DomainError("MissingRequiredProperty",
                              "A required property was not specified in the request body.",
                              details={"PropertyName": prop}) from error
        raise DomainError("InvalidPropertyValue",
                          "The value provided for one of the properties in the request body "
                          "is invalid.",
                          details={"PropertyName": prop, "Reason": first["msg"]}) from error
    _check_model_ints(parsed)
    return parsed
