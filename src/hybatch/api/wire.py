"""Request parsing and response building in Batch's wire format.

``Call`` wraps one request of one spec operation (the route binds its ``Operation`` row):
case-insensitive query names, body parsing into generated models, paging, ``$filter`` /
``$select`` / ``$expand``, conditional headers, and responses with request-id, ETag,
Last-Modified and DataServiceId headers.

What an operation accepts comes from the spec's operation table, not from each handler:
OData options it does not declare are refused (``UnsupportedQueryParameter``), conditional
headers it does not declare are ignored (as Batch does), and the ones it declares follow
wire reference §1.7 (see ``Call.precondition``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from typing import Any, TypeVar, get_args
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from hybatch import schema
from hybatch.api.errors import JSON_TYPE
from hybatch.core.commands import Precondition
from hybatch.core.context import unmet_condition
from hybatch.core.errors import DomainError
from hybatch.odata.errors import FilterError, SelectError
from hybatch.odata.evaluate import matches
from hybatch.odata.query import compile_filter
from hybatch.odata.select import Selection, parse_select, project
from hybatch.runtime.service import FilterSpec, Listing, Written
from hybatch.schema import Operation

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 4 * 1024 * 1024

CONDITION_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
"""The conditional request headers of wire reference §1.7, lower case."""

_HEADER_NAMES = {"if-match": "If-Match", "if-none-match": "If-None-Match",
                 "if-modified-since": "If-Modified-Since",
                 "if-unmodified-since": "If-Unmodified-Since"}

_PAIRS_EVALUATED_AS_ONE = {
    # If-None-Match + If-Modified-Since: only If-None-Match is evaluated
    frozenset({"if-none-match", "if-modified-since"}): "if-modified-since",
    # If-Match + If-Unmodified-Since: only If-Match is evaluated
    frozenset({"if-match", "if-unmodified-since"}): "if-unmodified-since",
}

_ODATA_OPTIONS = {"$select": "has_select", "$filter": "has_filter", "$expand": "has_expand"}


def http_date(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def bad_query(name: str, value: str, reason: str,
              code: str = "InvalidQueryParameterValue") -> DomainError:
    return DomainError(code, f"The value for one of the query parameters is invalid: {reason}",
                       details={"QueryParameterName": name, "QueryParameterValue": value,
                                "Reason": reason})


def _bad_header(name: str, value: str, reason: str) -> DomainError:
    return DomainError("InvalidHeaderValue",
                       "The value for one of the HTTP headers is not in the correct format: "
                       f"{reason}", details={"HeaderName": name, "HeaderValue": value})


def parse_etags(name: str, value: str) -> str:
    """An If-Match / If-None-Match value as ``*`` or comma-separated unquoted entity tags.

    Accepted per tag: quoted (``"0x8D1"``, what the 15.x SDK sends), bare (``0x8D1``, 14.x),
    single-quoted (passed through by the 15.x SDK when the caller quotes so), and weak
    (``W/"0x8D1"``): quotes and ``W/`` are removed before comparing, so a weak tag matches
    its strong twin (wire reference §0.3).
    """
    tags: list[str] = []
    for raw in value.split(","):
        tag = raw.strip()
        if tag.startswith(("W/", "w/")):
            tag = tag[2:].strip()
        if len(tag) >= 2 and tag[0] == tag[-1] and tag[0] in "\"'":
            tag = tag[1:-1]
        if not tag or any(c in tag for c in "\"' ") or not tag.isprintable():
            raise _bad_header(name, value, "not an entity tag (a quoted or bare ETag, or *)")
        tags.append(tag)
    return ",".join(tags)


def parse_http_date(name: str, value: str) -> float:
    """An HTTP-date (RFC 1123, RFC 850 or asctime form) as POSIX seconds; a date without a
    zone is UTC."""
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError) as error:
        raise _bad_header(name, value, "not an HTTP date such as "
                          "'Sat, 21 Nov 2026 19:10:31 GMT'") from error
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@lru_cache(maxsize=128)
def resource_model(operation: Operation) -> type[BaseModel] | None:
    """The model of one resource the operation answers with (the item model for lists)."""
    if operation.response_model is None:
        return None
    model: type[BaseModel] = getattr(schema, operation.response_model)
    if not operation.pageable:
        return model
    field = model.model_fields.get("value")
    if field is None:
        return None
    for arm in (field.annotation, *get_args(field.annotation)):
        items = get_args(arm)
        if items and isinstance(items[0], type) and issubclass(items[0], BaseModel):
            return items[0]
    return None


class Call:
    """One request: what the handler needs to read from it and to answer it."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.request_id: str = request.scope.get("hybatch.request_id", "")
        self.operation: Operation | None = request.scope.get("hybatch.operation")
        self.query = {k.lower(): v for k, v in request.query_params.multi_items() if v != ""}
        self.base_url: str = request.app.state.service.base_url
        self._precondition: Precondition | None = None
        self._selection: tuple[Selection | None] | None = None

    # ------------------------------------------------------------------ input

    def validate(self) -> None:
        """Refuse up front what the operation cannot take: OData options it does not declare,
        a malformed ``$select`` / ``$expand``, malformed or conflicting conditional headers."""
        op = self.operation
        if op is not None:
            for name, flag in _ODATA_OPTIONS.items():
                if name in self.query and not getattr(op, flag):
                    raise DomainError(
                        "UnsupportedQueryParameter",
                        "One of the query parameters specified in the request URI is not "
                        "supported.",
                        details={"QueryParameterName": name,
                                 "QueryParameterValue": self.query[name],
                                 "Reason": f"{op.operation_id} does not take {name}"})
        self.expand()
        self.select()
        self.precondition()

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

    def select(self) -> Selection | None:
        """The ``$select`` of this request, checked against the resource's model (unknown
        names are 400 ``InvalidQueryParameterValue``); None when absent or ``*``."""
        if self._selection is None:
            self._selection = (self._parse_select(),)
        return self._selection[0]

    def _parse_select(self) -> Selection | None:
        text = self.query.get("$select")
        if text is None or not text.strip():
            return None
        model = resource_model(self.operation) if self.operation is not None else None
        if model is None:  # nothing to check against: plain top-level names
            return {part.strip(): None for part in text.split(",") if part.strip()}
        try:
            return parse_select(text, model)
        except SelectError as error:
            raise bad_query("$select", text, error.message) from error

    def expand(self) -> frozenset[str]:
        """The ``$expand`` options (lower case); Batch knows only ``stats``."""
        text = self.query.get("$expand")
        if text is None:
            return frozenset()
        names = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
        unknown = sorted(names - {"stats"})
        if unknown:
            raise bad_query("$expand", text, f"'{unknown[0]}' cannot be expanded; the only "
                            "$expand option is 'stats'")
        return names

    def expand_stats(self) -> bool:
        """Whether statistics go in the answer: ``$expand=stats`` (the only expansion Batch
        offers; anything else is a 400) or ``stats`` named in ``$select``."""
        expand = "stats" in self.expand()
        selected = self.select()
        return expand or (selected is not None and any(n.lower() == "stats" for n in selected))

    def flag(self, name: str) -> bool:
        return self.query.get(name, "false").lower() == "true"

    def precondition(self) -> Precondition:
        """The conditional headers the operation declares, parsed (wire reference §1.7).

        Headers the operation does not declare are ignored. If-None-Match with
        If-Modified-Since evaluates If-None-Match only, If-Match with If-Unmodified-Since
        If-Match only; any other combination is 400 ``MultipleConditionHeadersNotSupported``.
        A malformed value is 400 ``InvalidHeaderValue``. Writes hand the result to their
        command, so the core checks it atomically with the change.
        """
        if self._precondition is None:
            self._precondition = self._parse_precondition()
        return self._precondition

    def _parse_precondition(self) -> Precondition:
        declared = CONDITION_HEADERS if self.operation is None else tuple(
            h.lower() for h in self.operation.header_params if h.lower() in CONDITION_HEADERS)
        sent = {name: value for name in declared
                if (value := self.request.headers.get(name)) is not None}
        if len(sent) > 1:
            ignored = _PAIRS_EVALUATED_AS_ONE.get(frozenset(sent))
            if ignored is None:
                raise DomainError("MultipleConditionHeadersNotSupported",
                                  "Multiple condition headers are not supported.",
                                  details={"HeaderName": ", ".join(
                                      _HEADER_NAMES[name] for name in sorted(sent))})
            del sent[ignored]

        def etags(name: str) -> str | None:
            return parse_etags(_HEADER_NAMES[name], sent[name]) if name in sent else None

        def date(name: str) -> float | None:
            return parse_http_date(_HEADER_NAMES[name], sent[name]) if name in sent else None

        return Precondition(if_match=etags("if-match"), if_none_match=etags("if-none-match"),
                            if_modified_since=date("if-modified-since"),
                            if_unmodified_since=date("if-unmodified-since"))

    def read_condition_failed(self, etag: str, last_modified: datetime | None) -> int | None:
        """304 or 412 when a GET/HEAD's condition is unmet, else None (§1.7: unmet
        If-None-Match and If-Modified-Since answer 304, If-Match and If-Unmodified-Since
        412)."""
        failed = unmet_condition(etag, last_modified, self.precondition())
        if failed is None:
            return None
        return 304 if failed in ("If-None-Match", "If-Modified-Since") else 412

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
            body = project(body, selected)
        if metadata is not None:
            body = {"odata.metadata": f"{self.base_url}/$metadata#{metadata}", **body}
        return Response(json.dumps(body), status_code=status, media_type=JSON_TYPE,
                        headers=self.headers(etag, last_modified))

    def listing(self, listing: Listing, metadata: str) -> Response:
        items = listing.items
        selected = self.select()
        if selected is not None:
            items = [project(item, selected) for item in items]
        body: dict[str, object] = {"odata.metadata": f"{self.base_url}/$metadata#{metadata}",
                                   "value": items}
        if listing.next_token is not None:
            body["odata.nextLink"] = self.next_link(listing.next_token)
        return Response(json.dumps(body), status_code=200, media_type=JSON_TYPE,
                        headers=self.headers())

    def next_link(self, token: str) -> str:
        """Absolute link carrying api-version and the caller's query options. ``api-version``
        is spelled so, whatever the request's casing: the 15.x SDK replaces exactly that name
        in the link, and a second spelling would make the name appear twice."""
        params = [("api-version" if k.lower() == "api-version" else k, v)
                  for k, v in self.request.query_params.multi_items()
                  if k.lower() != "$skiptoken"]
        params.append(("$skiptoken", token))
        return f"{self.base_url}{self.request.url.path}?{urlencode(params)}"

    def written(self, written: Written, status: int) -> Response:
        return Response(b"", status_code=status, headers=self.headers(
            written.etag, written.last_modified, written.url))

    def empty(self, status: int) -> Response:
        return Response(b"", status_code=status, headers=self.headers())

    def not_modified(self, etag: str | None, last_modified: str | None) -> Response:
        """304 for a GET/HEAD: no body, the resource's ETag and Last-Modified kept."""
        headers = self.headers(etag)
        if last_modified:
            headers["Last-Modified"] = last_modified
        return Response(b"", status_code=304, headers=headers)


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
