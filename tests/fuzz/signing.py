"""SharedKey signing for generated requests, built on the server's own canonicalisation.

The string to sign is the first (canonical Python-SDK) candidate of
``hybatch.api.auth.candidate_strings_to_sign``, computed from the request exactly as it
leaves ``requests`` (percent-encoded path, final headers including Content-Length), so the
signature covers what the server will see.
"""

from __future__ import annotations

from email.utils import formatdate
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.models import PreparedRequest

from hybatch.api import auth


def authorization(method: str, url: str, headers: dict[str, str], account: str, key: str) -> str:
    """The ``Authorization`` value for a request; ``headers`` must already hold ocp-date."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    string_to_sign = auth.candidate_strings_to_sign(
        method.upper(), parts.path or "/", pairs, headers, account)[0]
    return f"SharedKey {account}:{auth.sign(key, string_to_sign)}"


class SharedKeyAuth(requests.auth.AuthBase):
    """A ``requests`` auth hook: stamps ``ocp-date`` with the current time, then signs."""

    def __init__(self, account: str, key: str) -> None:
        self.account = account
        self.key = key

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["ocp-date"] = formatdate(usegmt=True)
        request.headers.pop("Date", None)
        headers = {name: value if isinstance(value, str) else value.decode("latin-1")
                   for name, value in request.headers.items()}
        request.headers["Authorization"] = authorization(
            request.method or "GET", request.url or "/", headers, self.account, self.key)
        return request


class ForgedAuth(requests.auth.AuthBase):
    """Stamps ``ocp-date`` and sends a fixed ``Authorization`` value (or none at all)."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["ocp-date"] = formatdate(usegmt=True)
        request.headers.pop("Authorization", None)
        if self.value is not None:
            request.headers["Authorization"] = self.value
        return request
