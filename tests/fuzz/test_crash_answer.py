"""A handler that crashes still gets one Batch-shaped answer: 500 ``InternalError`` as JSON
(Starlette's default is a plain-text 500, after which BatchMiddleware used to try to answer a
second time, breaking the connection)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx

from hybatch.api.app import create_app
from tests.fuzz.checks import error_code, response_problems


def _crash(*_: Any) -> None:
    raise RuntimeError("boom")


async def _requests(app: Any) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    params = {"api-version": "2025-06-01"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return [await client.get("/pools", params=params),
                await client.get("/pools", params=params),  # the app stays usable
                await client.head("/pools/p", params=params)]


def test_a_crash_is_one_json_internal_error() -> None:
    service: Any = SimpleNamespace(base_url="http://testserver", list_pools=_crash,
                                   pool_exists=_crash)
    app = create_app(service, account_name="a", account_key="a2V5", allow_anonymous=True)
    first, second, head = asyncio.run(_requests(app))
    for response in (first, second):
        headers = {k.lower(): v for k, v in response.headers.items()}
        assert response.status_code == 500
        assert error_code(response.content) == "InternalError"
        assert not response_problems(method="GET", implemented=True, status=200,
                                     headers=headers, body=response.content)
    assert head.status_code == 500 and head.content == b""
