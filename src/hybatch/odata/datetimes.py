"""Datetime parsing shared by the parser (``DateTime'...'`` literals) and the evaluator (wire
ISO strings). One parser on both sides keeps comparisons consistent (e.g. 7-digit fractions
are truncated to microseconds identically).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache

_ISO = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?"
    r"\s*(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_iso(text: str) -> datetime | None:
    """ISO-8601 date or date-time as an aware UTC datetime; naive input is taken as UTC.

    Accepts any number of fractional digits (Batch emits .NET's seven); returns None when the
    text is not such a value.
    """
    m = _ISO.fullmatch(text.strip())
    if m is None:
        return None
    frac = (m["f"] or "")[:6].ljust(6, "0")
    tz: timezone = UTC
    if m["tz"] and m["tz"] not in "Zz":
        sign = -1 if m["tz"][0] == "-" else 1
        digits = m["tz"][1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or "0")
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        value = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"] or 0),
                         int(m["mi"] or 0), int(m["s"] or 0), int(frac), tzinfo=tz)
    except ValueError:
        return None
    return value.astimezone(UTC)


def parse_rfc1123(text: str) -> datetime | None:
    """RFC 1123 (``Sat, 21 Nov 2026 19:10:31 GMT``) as aware UTC, or None."""
    try:
        value = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@lru_cache(maxsize=4096)
def parse_any(text: str) -> datetime | None:
    """ISO-8601 first, then RFC 1123: the two forms §7.2 allows inside ``DateTime'...'``.

    Cached because the evaluator parses the same wire timestamps over and over while paging.
    """
    return parse_iso(text) or parse_rfc1123(text)
