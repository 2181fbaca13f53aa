"""Raw SharedKey-signed HTTP requests (httpx) for what the official SDK cannot send: odd
query-name casing, empty or ``{}`` bodies, integers as strings, legacy fields, spec examples
replayed verbatim.

The signature is computed the way the Python SDKs do it (the server's first candidate string
to sign), over the request exactly as httpx will send it: the encoded path, the query pairs
as written, the final headers including Content-Length.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import httpx

from hybatch.api import auth
from tests.support.server import ACCOUNT, KEY

API_VERSION = "2025-06-01"
JSON_CONTENT = "application/json; odata=minimalmetadata"


class SharedKey(httpx.Auth):
    """Stamps ``ocp-date`` (unless the request has one) and signs with SharedKey."""

    def __init__(self, account: str = ACCOUNT, key: str = KEY) -> None:
        self.account = account
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "ocp-date" not in request.headers:
            request.headers["ocp-date"] = formatdate(usegmt=True)
        request.headers.pop("Authorization", None)
        pairs = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
        path = request.url.raw_path.decode("ascii").partition("?")[0]
        string_to_sign = auth.candidate_strings_to_sign(
            request.method, path, pairs, dict(request.headers), self.account)[0]
        request.headers["Authorization"] = (
            f"SharedKey {self.account}:{auth.sign(self.key, string_to_sign)}")
        yield request


def client(endpoint: str) -> httpx.Client:
    return httpx.Client(base_url=endpoint, auth=SharedKey(), timeout=30)


def send(http: httpx.Client, method: str, path: str, *, body: Any = None,
         raw: bytes | None = None, query: Mapping[str, str] | list[tuple[str, str]] | None = None,
         headers: Mapping[str, str] | None = None, version: str | None = API_VERSION
         ) -> httpx.Response:
    """One signed request. ``query`` is sent in the given order and spelling; ``api-version``
    is added first unless ``version`` is None (then the caller spells it)."""
    pairs: list[tuple[str, str]] = [("api-version", version)] if version is not None else []
    pairs += list(query.items()) if isinstance(query, Mapping) else list(query or [])
    content = raw if raw is not None else (
        json.dumps(body).encode() if body is not None else None)
    sent_headers = dict(headers or {})
    if content is not None:
        sent_headers.setdefault("Content-Type", JSON_CONTENT)
    return http.request(method, path, params=pairs, content=content, headers=sent_headers)
