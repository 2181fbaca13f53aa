"""Keyset paging shared by the stores: continuation tokens and the page-filling loop.

A token is the base64url of the last key a page examined, so it is self-contained (any
server process can continue it) and paging neither skips nor repeats items when rows are
inserted meanwhile. Pages are filled through the predicate: rows are fetched in growing
chunks until ``max_results`` items pass it or the rows run out, so only the last page is
short, and ``next_token`` is None exactly when no further item matches.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from hybatch.ports import InvalidContinuationToken, Page

R = TypeVar("R")
D = TypeVar("D")

_PREFIX = "k"
_MAX_CHUNK = 5000

Fetch = Callable[[str | None, int], Sequence[tuple[str, D]]]
"""``fetch(after_key, limit)``: up to ``limit`` candidate rows with key > after_key, in key
order, as (key, raw data) pairs."""


class InvalidToken(InvalidContinuationToken):
    """A continuation token this store did not issue (the API answers 400)."""


def encode_token(key: str) -> str:
    raw = base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")
    return _PREFIX + raw


def decode_token(token: str | None) -> str | None:
    if token is None:
        return None
    if not token.startswith(_PREFIX):
        raise InvalidToken(f"not a continuation token: {token!r}")
    raw = token[len(_PREFIX) :]
    try:
        padded = raw + "=" * (-len(raw) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidToken(f"not a continuation token: {token!r}") from exc


def fill_page(
    fetch: Fetch[D],
    decode: Callable[[D], R],
    predicate: Callable[[R], bool] | None,
    max_results: int,
    after: str | None,
) -> Page[R]:
    """One page of at most ``max_results`` records after the token ``after``."""
    if max_results < 1:
        raise ValueError(f"max_results must be at least 1, not {max_results}")
    cursor = decode_token(after)
    items: list[R] = []
    last_key = cursor  # the last key known to be on this page or to match nothing
    chunk = max_results + 1
    while True:
        rows = fetch(cursor, chunk)
        for key, data in rows:
            if len(items) == max_results:
                # One more match proves a next page; without a predicate every row matches.
                if predicate is None or predicate(decode(data)):
                    assert last_key is not None
                    return Page(items, encode_token(last_key))
            else:
                record = decode(data)
                if predicate is None or predicate(record):
                    items.append(record)
            last_key = key
        if len(rows) < chunk:
            return Page(items, None)
        cursor = rows[-1][0]
        chunk = min(chunk * 2, max(_MAX_CHUNK, max_results + 1))
