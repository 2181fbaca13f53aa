"""What every answer of the service must look like, whatever was sent (wire reference §6)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

NOT_IMPLEMENTED = "NotImplemented"


def error_body_problems(body: bytes, content_type: str) -> list[str]:
    """Why ``body`` is not a Batch error body (JSON, ``code``, ``message: {lang, value}``)."""
    if "json" not in content_type.lower():
        return [f"error Content-Type is {content_type!r}, not JSON"]
    try:
        data: Any = json.loads(body)
    except ValueError:
        return [f"error body is not JSON: {body[:200]!r}"]
    if not isinstance(data, dict):
        return [f"error body is not an object: {body[:200]!r}"]
    problems = []
    code = data.get("code")
    if not isinstance(code, str) or not code:
        problems.append(f"error body has no string 'code': {body[:200]!r}")
    message = data.get("message")
    if not (isinstance(message, dict) and isinstance(message.get("lang"), str)
            and isinstance(message.get("value"), str)):
        problems.append(f"error 'message' is not {{lang, value}}: {body[:200]!r}")
    values = data.get("values")
    if values is not None and not (
            isinstance(values, list)
            and all(isinstance(v, dict) and isinstance(v.get("key"), str) for v in values)):
        problems.append(f"error 'values' is not a list of {{key, value}}: {body[:200]!r}")
    return problems


def error_code(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def response_problems(*, method: str, implemented: bool, status: int,
                      headers: Mapping[str, str], body: bytes) -> list[str]:
    """Everything wrong with one answer; empty when it is acceptable.

    * no 5xx, except 501 ``NotImplemented`` for an operation the server does not implement;
    * every 4xx/5xx carries a Batch error body (HEAD: no body at all);
    * every answer carries a ``request-id``.
    """
    problems: list[str] = []
    content_type = headers.get("content-type", "")
    if not headers.get("request-id"):
        problems.append("no request-id header")
    if method.upper() == "HEAD":
        if body:
            problems.append(f"HEAD answered with a body: {body[:100]!r}")
    elif status >= 400:
        problems += error_body_problems(body, content_type)
    if status >= 500:
        if status != 501:
            problems.append(f"server error {status}: {body[:300]!r}")
        elif implemented:
            problems.append("501 from an implemented operation")
        elif method.upper() != "HEAD" and error_code(body) != NOT_IMPLEMENTED:
            problems.append(f"501 without code NotImplemented: {body[:200]!r}")
    if 200 <= status < 300 and "json" in content_type.lower() and body:
        try:
            json.loads(body)
        except ValueError:
            problems.append(f"2xx JSON answer is not JSON: {body[:200]!r}")
    return problems
