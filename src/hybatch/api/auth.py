"""SharedKey request verification (wire reference §8.1/§8.2), and task authentication tokens
sent as ``Authorization: Bearer`` (core.tokens, docs/authentication.md), framework-free.

Clients canonicalise requests slightly differently before signing (the Python SDKs sign query
names as sent and a Content-Length of ``0``; the .NET SDK lower-cases names and signs an empty
Content-Length; the documented algorithm joins repeated values...). We cannot know which
client sent a request, so we build the few plausible strings-to-sign and accept the request
if any of them, under any configured key, reproduces the signature (constant-time compare).
Every candidate is still an HMAC over the method, the raw path, the query, the signed headers
and ``ocp-date``, so the variants only tolerate canonicalisation differences.

Everything here is a pure function of its arguments: the clock is passed in (``now``), and
the web framework is reached only through ``request_parts_from_asgi``, which reads a plain
ASGI scope dict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import parse_qsl, quote

from hybatch.core.tokens import InvalidToken, TaskTokens

__all__ = [
    "MAX_CLOCK_SKEW",
    "AuthOutcome",
    "AuthResult",
    "bearer_token",
    "candidate_strings_to_sign",
    "request_parts_from_asgi",
    "shared_key_account",
    "sign",
    "token_job_scope",
    "verify_asgi",
    "verify_bearer",
    "verify_shared_key",
]

MAX_CLOCK_SKEW = timedelta(minutes=15)
"""Largest accepted difference between ``ocp-date`` (or ``Date``) and the server clock."""

# The fixed header lines of the string-to-sign, in order (§8.1).
_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)

AuthOutcome = Literal["ok", "missing", "malformed", "failed", "bad_token", "forbidden"]

_HTTP_STATUS: dict[AuthOutcome, int] = {"ok": 200, "missing": 401, "malformed": 400,
                                        "failed": 403, "bad_token": 401, "forbidden": 403}


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of a SharedKey check; the API turns a non-ok result into a Batch error.

    ``outcome``: ``ok``; ``missing`` (no Authorization header -> 401); ``malformed``
    (unparsable Authorization or date header, repeated query name -> 400); ``failed`` (wrong
    signature, unknown account, clock skew -> 403 ``AuthenticationFailed``); ``bad_token`` (a
    bearer token that is not a valid, unexpired task token of this account -> 401
    ``AuthenticationFailed``); ``forbidden`` (a valid task token used outside its job -> 403
    ``AuthorizationFailure``). ``code`` is the
    Batch error code to send ("" when ok), ``reason`` a human explanation (safe to return to
    the caller), ``header`` the offending header (or query parameter) where there is one. On
    a signature mismatch ``string_to_sign`` holds the canonical (Python-SDK) string we
    computed, which Azure also echoes to help debug clients; on success, the one that matched.
    """

    outcome: AuthOutcome
    reason: str
    code: str = ""
    account: str | None = None
    header: str | None = None
    string_to_sign: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def status(self) -> int:
        """The HTTP status to answer with (200 when ok)."""
        return _HTTP_STATUS[self.outcome]

    @property
    def message(self) -> str:
        """``reason``, under the name error responses use."""
        return self.reason


def _missing(reason: str) -> AuthResult:
    return AuthResult("missing", reason, "AuthenticationFailed", header="Authorization")


def _malformed(reason: str, code: str = "InvalidAuthenticationInfo",
               header: str = "Authorization") -> AuthResult:
    return AuthResult("malformed", reason, code, header=header)


def _failed(reason: str, account: str | None, *, header: str | None = None,
            string_to_sign: str | None = None) -> AuthResult:
    return AuthResult("failed", reason, "AuthenticationFailed", account, header, string_to_sign)


# --------------------------------------------------------------------------- signing


def _decode_key(key_b64: str) -> bytes:
    try:
        return base64.b64decode(key_b64.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("account key is not valid base64") from exc


def sign(key_b64: str, string_to_sign: str) -> str:
    """base64(HMAC-SHA256(base64decode(key), UTF-8(string_to_sign))), as the SDKs compute it."""
    digest = hmac.new(_decode_key(key_b64), string_to_sign.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


# --------------------------------------------------------------------------- canonical forms


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Case-insensitive view; the first occurrence wins if a mapping repeats a name."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    return lowered


def _query_python(pairs: Sequence[tuple[str, str]], *, lower_names: bool) -> str:
    """Python SDKs (``parse_qs``): first non-empty value per name, empty ones skipped, names
    sorted by code point. ``lower_names`` is the same with names lower-cased."""
    first: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower() if lower_names else name
        if value and key not in first:
            first[key] = value
    return "".join(f"\n{name}:{first[name]}" for name in sorted(first))


def _utf16_ordinal(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def _query_dotnet(pairs: Sequence[tuple[str, str]]) -> str:
    """.NET ``BatchNamedKeyCredentialPolicy``: names grouped case-insensitively, sorted by the
    first-seen spelling (ordinal), emitted lower-cased; all values (empty too) comma-joined."""
    spelling: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        key = name.lower()
        spelling.setdefault(key, name)
        values.setdefault(key, []).append(value)
    ordered = sorted(spelling.values(), key=_utf16_ordinal)
    return "".join(f"\n{n.lower()}:{','.join(values[n.lower()])}" for n in ordered)


def _query_documented(pairs: Sequence[tuple[str, str]]) -> str:
    """The documented (Storage-style) form: lower-cased names, sorted, values sorted and
    comma-joined."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name.lower(), []).append(value)
    return "".join(f"\n{n}:{','.join(sorted(values[n]))}" for n in sorted(values))


def _ocp_python(headers: Mapping[str, str]) -> str:
    """Python SDKs: every header whose name *contains* ``ocp-`` with a non-empty value."""
    found = sorted((n, v) for n, v in headers.items() if "ocp-" in n and v)
    return "".join(f"{n}:{v}\n" for n, v in found)


def _ocp_prefix(headers: Mapping[str, str]) -> str:
    """.NET / documented: headers whose name *starts with* ``ocp-``, empty values included."""
    found = sorted(((n, v) for n, v in headers.items() if n.startswith("ocp-")),
                   key=lambda item: _utf16_ordinal(item[0]))
    return "".join(f"{n}:{v}\n" for n, v in found)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def candidate_strings_to_sign(
    method: str,
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    account: str,
) -> list[str]:
    """The strings-to-sign a legitimate client may have used for this request, canonical
    Python-SDK form first, without duplicates.

    ``raw_path`` is the still-percent-encoded request path (ASGI ``raw_path``, no query);
    ``query_pairs`` the URL-decoded ``(name, value)`` pairs in request order (``parse_qsl``
    with ``keep_blank_values=True``); ``headers`` is looked up case-insensitively; ``account``
    is the account name exactly as in the Authorization header.

    Variants (§8.2): Content-Length as sent / empty instead of ``0`` / ``0`` when absent on a
    non-GET/HEAD; Date as sent / empty; ``ocp-`` headers by substring (Python) or prefix
    (.NET); query names as sent (Python) or lower-cased (Python rules, .NET, documented).
    """
    h = _lower_headers(headers)
    sent_length = h.get("content-length", "")
    lengths = [sent_length]
    if sent_length == "0":
        lengths.append("")
    if not sent_length and method.upper() not in ("GET", "HEAD"):
        lengths.append("0")
    dates = _unique([h.get("date", ""), ""])
    ocp_blocks = _unique([_ocp_python(h), _ocp_prefix(h)])
    queries = _unique([
        _query_python(query_pairs, lower_names=False),
        _query_python(query_pairs, lower_names=True),
        _query_dotnet(query_pairs),
        _query_documented(query_pairs),
    ])
    resource = f"/{account}{raw_path or '/'}"

    out: list[str] = []
    for length in _unique(lengths):
        for date in dates:
            fixed = {**h, "content-length": length, "date": date}
            head = method + "\n" + "".join(f"{fixed.get(n, '')}\n" for n in _SIGNED_HEADERS)
            for ocp in ocp_blocks:
                for query in queries:
                    out.append(head + ocp + resource + query)
    return _unique(out)


# --------------------------------------------------------------------------- verification


def shared_key_account(authorization_header: str | None) -> str | None:
    """The account named by a ``SharedKey account:signature`` header, or None; lets the caller
    look up that account's keys before calling ``verify_shared_key``."""
    parsed = _parse_authorization(authorization_header)
    return parsed[0] if isinstance(parsed, tuple) else None


def _parse_authorization(value: str | None) -> tuple[str, bytes] | AuthResult:
    if value is None or not value.strip():
        return _missing("The request has no Authorization header.")
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "sharedkey":
        return _malformed(f"Authorization scheme '{scheme}' is not SharedKey.")
    account, sep, signature = credentials.strip().partition(":")
    if not sep or not account or not signature:
        return _malformed("Authorization must be 'SharedKey {account}:{signature}'.")
    try:
        mac = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return _malformed("The signature in the Authorization header is not valid base64.")
    if len(mac) != hashlib.sha256().digest_size:
        return _malformed("The signature in the Authorization header is not an HMAC-SHA256.")
    return account, mac


def _repeated_name(query_pairs: Sequence[tuple[str, str]]) -> str | None:
    """The first query name that occurs twice (case-insensitively, as routers compare)."""
    seen: set[str] = set()
    for name, _ in query_pairs:
        if name.lower() in seen:
            return name
        seen.add(name.lower())
    return None


def _request_time(h: Mapping[str, str]) -> tuple[str, datetime] | AuthResult:
    for name in ("ocp-date", "date"):
        raw = h.get(name, "").strip()
        if not raw:
            continue
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return _malformed(f"The {name} header is not an RFC 1123 date: '{raw}'.",
                              "InvalidHeaderValue", name)
        return name, when if when.tzinfo else when.replace(tzinfo=UTC)
    return _malformed("The request has neither an ocp-date nor a Date header.",
                      "MissingRequiredHeader", "ocp-date")


def verify_shared_key(
    authorization_header: str | None,
    method: str,
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    account_name: str,
    account_key_b64: str | Sequence[str],
    now: datetime,
    *,
    max_skew: timedelta = MAX_CLOCK_SKEW,
) -> AuthResult:
    """Check a SharedKey-signed request against ``account_name`` and its key(s).

    ``account_key_b64`` is one base64 key or several (primary and secondary). ``now`` is the
    server time (naive means UTC). Arguments are as for ``candidate_strings_to_sign``. A query
    that repeats a parameter name is refused as malformed (``InvalidQueryParameterValue``):
    part of it would be unsigned. Raises ValueError only for a configured key that is not
    base64 (a server misconfiguration).
    """
    keys = [account_key_b64] if isinstance(account_key_b64, str) else list(account_key_b64)
    secrets = [_decode_key(k) for k in keys]

    parsed = _parse_authorization(authorization_header)
    if isinstance(parsed, AuthResult):
        return parsed
    account, mac = parsed
    if account.lower() != account_name.lower():
        return _failed(f"Unknown account '{account}'.", account, header="Authorization")

    repeated = _repeated_name(query_pairs)
    if repeated is not None:
        # Python clients sign only the first value of a name; a repeated name would leave the
        # others unsigned (and routers often read the last). No real client repeats names.
        return _malformed(f"The query parameter '{repeated}' appears more than once.",
                          "InvalidQueryParameterValue", repeated)

    h = _lower_headers(headers)
    stamped = _request_time(h)
    if isinstance(stamped, AuthResult):
        return stamped
    date_header, when = stamped
    current = now if now.tzinfo else now.replace(tzinfo=UTC)
    if abs(current - when) > max_skew:
        return _failed(
            f"The {date_header} header ({h[date_header].strip()}) differs from the server time "
            f"({current.astimezone(UTC):%a, %d %b %Y %H:%M:%S GMT}) by more than "
            f"{int(max_skew.total_seconds() // 60)} minutes.",
            account, header=date_header,
        )

    candidates = candidate_strings_to_sign(method, raw_path, query_pairs, headers, account)
    for candidate in candidates:
        message = candidate.encode("utf-8")
        for secret in secrets:
            expected = hmac.new(secret, message, hashlib.sha256).digest()
            if hmac.compare_digest(expected, mac):
                return AuthResult("ok", "signature verified", "", account,
                                  string_to_sign=candidate)
    return _failed(
        "The MAC signature found in the HTTP request is not the same as any computed "
        "signature.",
        account, header="Authorization", string_to_sign=candidates[0],
    )


# --------------------------------------------------------------------------- ASGI adapter


def request_parts_from_asgi(
    scope: Mapping[str, object],
) -> tuple[str, str, list[tuple[str, str]], dict[str, str]]:
    """``(method, raw_path, query_pairs, headers)`` from an ASGI HTTP scope.

    Uses ``raw_path`` (the path before percent-decoding) because clients sign the encoded path
    (``files/wd%2Fout%20dir``); falls back to re-quoting ``path`` for servers without it.
    Query pairs are decoded like Starlette's ``QueryParams`` (``+`` is a space).
    """
    method = str(scope.get("method", "GET"))
    raw = scope.get("raw_path")
    if isinstance(raw, bytes | bytearray) and raw:
        raw_path = bytes(raw).decode("latin-1").partition("?")[0]
    else:
        raw_path = quote(str(scope.get("path", "/")), safe="/:@!$&'()*+,;=-._~")
    query = scope.get("query_string", b"")
    query_text = bytes(query).decode("latin-1") if isinstance(query, bytes | bytearray) else ""
    pairs = parse_qsl(query_text, keep_blank_values=True)
    headers: dict[str, str] = {}
    raw_headers = scope.get("headers", ())
    if isinstance(raw_headers, Iterable):
        for item in raw_headers:
            name, value = item
            headers.setdefault(bytes(name).decode("latin-1").lower(),
                               bytes(value).decode("latin-1"))
    return method, raw_path, pairs, headers


def verify_asgi(
    scope: Mapping[str, object],
    account_name: str,
    account_key_b64: str | Sequence[str],
    *,
    now: datetime,
    max_skew: timedelta = MAX_CLOCK_SKEW,
) -> AuthResult:
    """``verify_shared_key`` for an ASGI scope (e.g. a Starlette ``request.scope``)."""
    method, raw_path, pairs, headers = request_parts_from_asgi(scope)
    return verify_shared_key(headers.get("authorization"), method, raw_path, pairs, headers,
                             account_name, account_key_b64, now=now, max_skew=max_skew)


# --------------------------------------------------------------------------- bearer tokens


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None for other schemes."""
    if authorization_header is None:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def token_job_scope(path: str) -> str | None:
    """The job a request path addresses (``/jobs/{jobId}`` and everything under it; the
    path as routed, percent-decoded), or None for any other resource."""
    parts = path.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "jobs" and parts[2]:
        return parts[2]
    return None


def verify_bearer(token: str, path: str, tokens: TaskTokens, now: datetime) -> AuthResult:
    """Check a task authentication token and its scope: a token with ``job`` access may do
    anything on its own job (``/jobs/{jobId}/...``) and nothing else."""
    try:
        claims = tokens.verify(token, now)
    except InvalidToken as error:
        return AuthResult("bad_token", f"The bearer token is not valid: {error}.",
                          "AuthenticationFailed", header="Authorization")
    job = token_job_scope(path)
    if "job" not in claims.access or job is None or job.lower() != claims.job_id.lower():
        return AuthResult("forbidden", "This request is not authorized to perform this "
                          f"operation: the token only grants access to job '{claims.job_id}'.",
                          "AuthorizationFailure", claims.account)
    return AuthResult("ok", "task token verified", "", claims.account)
