"""Task authentication tokens (``authenticationTokenSettings``): minted by the core when it
offers an attempt of a task that asks for one, verified by the API middleware without any
lookup.

Format (documented in docs/authentication.md)::

    hbt1.<payload>.<signature>

``payload`` is the base64url (no padding) of a compact JSON object with sorted keys:
``acc`` (the access scopes, ``["job"]``), ``act`` (account name), ``exp`` (expiry, POSIX
seconds), ``job`` (job id) and ``tsk`` (task id). ``signature`` is the base64url (no padding)
HMAC-SHA256 of the ASCII text ``hbt1.<payload>`` under a key derived from the account key:
``HMAC-SHA256(base64decode(accountKey), "hybatch/task-token/v1")``. The derivation keeps a
token signature from ever being a valid SharedKey signature, and rotating the account key
revokes every token.

Imports: standard library only (pure: the time is passed in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

TOKEN_PREFIX = "hbt1"
KEY_LABEL = b"hybatch/task-token/v1"
DEFAULT_LIFETIME = timedelta(days=7)
"""A token lives at least this long from the offer of its attempt (longer when the task's
maxWallClockTime is longer: that plus one day)."""
MAX_TOKEN_CHARS = 4096
ACCESS_SCOPES = frozenset({"job"})


class InvalidToken(ValueError):
    """A token that is malformed, badly signed, expired or for another account."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account: str
    job_id: str
    task_id: str
    expires: datetime
    access: tuple[str, ...]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidToken("the token is not base64url") from error


def token_lifetime(max_wall_clock_s: float | None) -> timedelta:
    """How long a token minted for an attempt stays valid."""
    if max_wall_clock_s is None:
        return DEFAULT_LIFETIME
    return max(DEFAULT_LIFETIME, timedelta(seconds=max_wall_clock_s) + timedelta(days=1))


class TaskTokens:
    """Mints and verifies the tokens of one account (immutable; safe to share)."""

    def __init__(self, account_name: str, account_key_b64: str) -> None:
        try:
            secret = base64.b64decode(account_key_b64.strip(), validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("the account key is not valid base64") from error
        self._account = account_name
        self._key = hmac.new(secret, KEY_LABEL, hashlib.sha256).digest()

    def _sign(self, head: str) -> str:
        return _b64(hmac.new(self._key, head.encode("ascii"), hashlib.sha256).digest())

    def mint(self, job_id: str, task_id: str, expires: datetime,
             access: tuple[str, ...] = ("job",)) -> str:
        payload = json.dumps({"acc": list(access), "act": self._account,
                              "exp": int(expires.timestamp()), "job": job_id,
                              "tsk": task_id}, separators=(",", ":"), sort_keys=True)
        head = f"{TOKEN_PREFIX}.{_b64(payload.encode('utf-8'))}"
        return f"{head}.{self._sign(head)}"

    def verify(self, token: str, now: datetime) -> TokenClaims:
        """The token's claims; raises InvalidToken (with a reason safe to show) otherwise."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("the token is too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise InvalidToken("the token is not a hybatch task token")
        head = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(head), parts[2]):
            raise InvalidToken("the token's signature is not valid")
        try:
            data = json.loads(_unb64(parts[1]))
        except ValueError as error:
            raise InvalidToken("the token's payload is not JSON") from error
        if not isinstance(data, dict):
            raise InvalidToken("the token's payload is not an object")
        account, job_id, task_id = data.get("act"), data.get("job"), data.get("tsk")
        expiry, access = data.get("exp"), data.get("acc")
        if not (isinstance(account, str) and isinstance(job_id, str) and job_id
                and isinstance(task_id, str) and isinstance(expiry, int)
                and isinstance(access, list) and all(isinstance(a, str) for a in access)):
            raise InvalidToken("the token's payload is incomplete")
        if account.lower() != self._account.lower():
            raise InvalidToken("the token belongs to another account")
        expires = datetime.fromtimestamp(expiry, UTC)
        current = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        if current >= expires:
            raise InvalidToken("the token has expired")
        return TokenClaims(account=account, job_id=job_id, task_id=task_id, expires=expires,
                           access=tuple(access))
