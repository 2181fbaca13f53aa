"""Shared base classes and wire scalar types for the generated Azure Batch models.

The generated module (``_generated/models.py``) imports everything here, so the lenient parsing
rules that real clients need live in one place instead of being patched into 250 classes:

* models ignore unknown fields (old SDKs and the CLI still send retired properties such as
  ``cloudServiceConfiguration``) and accept both the snake_case name and the camelCase alias;
* enums match case-insensitively (the service does) and always serialize the spec's spelling;
* date-times accept naive values (taken as UTC) and serialize as ISO-8601 UTC with ``Z``;
* durations accept the zero-padded forms and the bare ``P`` the 15.x SDK sends, and serialize
  in a days-based canonical form (never years, which ``isodate`` turns into a non-timedelta);
* int64 counters are strings on the wire (TypeSpec ``@encode(string)``) but ints in Python.

Imports: standard library and pydantic only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer

__all__ = [
    "UNLIMITED_DURATION",
    "UNLIMITED_DURATION_WIRE",
    "Duration",
    "Int64Str",
    "UtcDateTime",
    "WireEnum",
    "WireModel",
    "format_duration",
    "format_utc",
    "is_unlimited",
]


class WireModel(BaseModel):
    """Base of every generated model: lenient about names and unknown fields."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class WireEnum(StrEnum):
    """Base of every generated enum: values match case-insensitively on input.

    Pydantic calls ``_missing_`` only after an exact match failed, so the canonical spelling
    stays on the fast path and is what serialization emits.
    """

    @classmethod
    def _missing_(cls, value: object) -> WireEnum | None:
        if isinstance(value, str):
            folded = value.casefold()
            for member in cls:
                if member.value.casefold() == folded:
                    return member
        return None


# --- date-time -------------------------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    """Naive means UTC (old clients drop the offset); aware values are converted to UTC.

    A value whose UTC form falls outside years 1..9999 (``0001-01-01T00:00:00+01:00``) is a
    ValueError, so validation reports it instead of crashing with OverflowError."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as error:  # e.g. 0001-01-01T00:00:00+14:00: before year 1 in UTC
        raise ValueError("date-time out of range in UTC") from error


def format_utc(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix; the fraction appears only when non-zero."""
    return _as_utc(value).replace(tzinfo=None).isoformat() + "Z"


UtcDateTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]
"""A timezone-aware UTC datetime that also accepts naive input."""


# --- duration --------------------------------------------------------------------------------

UNLIMITED_DURATION_WIRE = "P10675199DT2H48M5.4775807S"
""".NET ``TimeSpan.MaxValue``: what the service sends for "no limit"."""

UNLIMITED_DURATION = timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477581)
"""The sentinel as a timedelta (100 ns ticks rounded to microseconds, as pydantic parses it)."""

# Clients that round-trip the sentinel through float seconds send back a value a few
# microseconds short of it, so anything from this many days on means "unlimited".
_UNLIMITED_DAYS = 10675199


def is_unlimited(value: timedelta) -> bool:
    """Whether a duration is the service's "unlimited" sentinel (or beyond it)."""
    return value.days >= _UNLIMITED_DAYS


def _bare_p_is_zero(value: Any) -> Any:
    """The 15.x SDK writes a zero timedelta as ``"P"``, which pydantic rejects as too short."""
    if isinstance(value, str) and value.strip() in ("P", "-P"):
        return timedelta(0)
    return value


def _clamp_unlimited(value: timedelta) -> timedelta:
    """Fold every spelling of the sentinel onto one value so equality checks work."""
    return UNLIMITED_DURATION if is_unlimited(value) else value


def format_duration(value: timedelta) -> str:
    """Canonical ISO-8601 duration using days at most (``PT1H``, ``PT15M``, ``P7D``).

    Pydantic's own serializer emits years for long spans (``P1Y``), which the Python SDKs
    parse into ``isodate.Duration`` rather than ``timedelta``; days avoid that.
    """
    if is_unlimited(value):
        return UNLIMITED_DURATION_WIRE
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    date_part = f"{value.days}D" if value.days else ""
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if value.microseconds:
        time_part += f"{seconds}.{value.microseconds:06d}".rstrip("0") + "S"
    elif seconds:
        time_part += f"{seconds}S"
    if not date_part and not time_part:
        return "PT0S"
    return f"{sign}P{date_part}" + (f"T{time_part}" if time_part else "")


Duration = Annotated[
    timedelta,
    BeforeValidator(_bare_p_is_zero),
    AfterValidator(_clamp_unlimited),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A timedelta read from any ISO-8601 duration pydantic knows, written canonically."""


# --- int64 -----------------------------------------------------------------------------------

Int64Str = Annotated[int, PlainSerializer(str, return_type=str, when_used="json")]
"""An int64 the spec encodes as a JSON string; lax int parsing accepts ``"12"`` and ``12``."""
