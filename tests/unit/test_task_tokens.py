"""Task authentication tokens: minting and verification (core.tokens) and the bearer check
with its job scope (api.auth)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from hybatch.api.auth import bearer_token, token_job_scope, verify_bearer
from hybatch.core.tokens import DEFAULT_LIFETIME, InvalidToken, TaskTokens, token_lifetime

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
OTHER_KEY = base64.b64encode(b"another key, another account...").decode()
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def tokens() -> TaskTokens:
    return TaskTokens("acct", KEY)


def _mint(tokens: TaskTokens, job: str = "job-1", hours: float = 1.0) -> str:
    return tokens.mint(job, "jm", NOW + timedelta(hours=hours))


def test_round_trip(tokens: TaskTokens) -> None:
    token = _mint(tokens)
    prefix, payload, _ = token.split(".")
    assert prefix == "hbt1"
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert data == {"acc": ["job"], "act": "acct", "exp": int((NOW + timedelta(hours=1))
                                                               .timestamp()),
                    "job": "job-1", "tsk": "jm"}
    claims = tokens.verify(token, NOW)
    assert (claims.account, claims.job_id, claims.task_id, claims.access) == (
        "acct", "job-1", "jm", ("job",))
    assert TaskTokens("ACCT", KEY).verify(token, NOW).job_id == "job-1"  # names fold case


@pytest.mark.parametrize("mutate, reason", [
    (lambda t: t + "x", "signature"),
    (lambda t: t.replace("hbt1.", "hbt2."), "not a hybatch task token"),
    (lambda t: t.rsplit(".", 1)[0], "not a hybatch task token"),
    (lambda t: "", "not a hybatch task token"),
    (lambda t: "a" * 5000, "too long"),
])
def test_tampered_tokens_are_refused(tokens: TaskTokens, mutate: object, reason: str) -> None:
    assert callable(mutate)
    with pytest.raises(InvalidToken, match=reason):
        tokens.verify(mutate(_mint(tokens)), NOW)


def test_a_forged_payload_fails_the_signature(tokens: TaskTokens) -> None:
    prefix, _, signature = _mint(tokens).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"acc": ["job"], "act": "acct", "exp": 9999999999, "job": "other", "tsk": "jm"},
        separators=(",", ":"), sort_keys=True).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(f"{prefix}.{forged}.{signature}", NOW)


def test_expired_and_foreign_tokens_are_refused(tokens: TaskTokens) -> None:
    token = _mint(tokens, hours=1)
    tokens.verify(token, NOW + timedelta(minutes=59))
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token, NOW + timedelta(hours=1))
    with pytest.raises(InvalidToken, match="signature"):
        TaskTokens("acct", OTHER_KEY).verify(token, NOW)  # another key (a rotated one)
    foreign = TaskTokens("other", KEY).mint("job-1", "jm", NOW + timedelta(hours=1))
    with pytest.raises(InvalidToken, match="another account"):
        tokens.verify(foreign, NOW)


def test_lifetime_covers_the_wall_clock_limit() -> None:
    assert token_lifetime(None) == DEFAULT_LIFETIME
    assert token_lifetime(60.0) == DEFAULT_LIFETIME
    assert token_lifetime(30 * 86400.0) == timedelta(days=31)


def test_a_key_that_is_not_base64_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="base64"):
        TaskTokens("acct", "not base64!")


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("SharedKey acct:sig") is None
    assert bearer_token(None) is None


@pytest.mark.parametrize("path, job", [
    ("/jobs/job-1", "job-1"), ("/jobs/job-1/tasks", "job-1"),
    ("/jobs/JOB-1/tasks/t/files/wd/x", "JOB-1"), ("/jobs", None), ("/jobs/", None),
    ("/pools/p", None), ("/jobschedules/s", None), ("/", None), ("", None),
])
def test_job_scope_of_a_path(path: str, job: str | None) -> None:
    assert token_job_scope(path) == job


def test_scope_is_the_token_job(tokens: TaskTokens) -> None:
    token = _mint(tokens, "job-1")
    assert verify_bearer(token, "/jobs/job-1/addtaskcollection", tokens, NOW).ok
    assert verify_bearer(token, "/jobs/JOB-1", tokens, NOW).ok  # ids fold case
    for path in ("/jobs/job-2/tasks", "/jobs", "/pools", "/jobschedules/job-1"):
        result = verify_bearer(token, path, tokens, NOW)
        assert (result.outcome, result.status, result.code) == (
            "forbidden", 403, "AuthorizationFailure"), path
    bad = verify_bearer(token + "x", "/jobs/job-1", tokens, NOW)
    assert (bad.outcome, bad.status, bad.code) == ("bad_token", 401, "AuthenticationFailed")
    expired = verify_bearer(token, "/jobs/job-1", tokens, NOW + timedelta(days=1))
    assert expired.status == 401 and "expired" in expired.reason
