"""Identifier and value rules shared by the command handlers.

Imports: standard library, core.errors.
"""

from __future__ import annotations

import re

from hybatch.core.errors import DomainError, invalid_property

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_id(value: str, prop: str = "id") -> None:
    """Pool/job/task ids: letters, digits, '-' and '_' only; 1 to 64 characters."""
    if not _ID.match(value):
        raise invalid_property(
            prop, value,
            "The id may contain only letters, digits, hyphens and underscores, and be "
            "1 to 64 characters long.",
        )


def check_range(prop: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise invalid_property(prop, value, f"The value must be between {low} and {high}.")


def unsupported(feature: str, prop: str) -> DomainError:
    """A feature this server does not implement yet: clear, Batch-shaped, documented."""
    return DomainError(
        "UnsupportedProperty",
        f"{feature} is not supported by this hybatch server (see docs/coverage.md).",
        details={"PropertyName": prop, "Reason": "Not supported by hybatch"},
    )
