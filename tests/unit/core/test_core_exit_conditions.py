"""Which ExitOptions apply to a completion (core.exit_conditions.decide)."""

from __future__ import annotations

from typing import Any

import pytest

from hybatch.core.exit_conditions import ENDED, FAILURE, SUCCESS, ExitDecision, decide
from hybatch.schema import ExitConditions

CONDITIONS: dict[str, Any] = {
    "exitCodes": [{"code": 3, "exitOptions": {"jobAction": "disable"}},
                  {"code": 3, "exitOptions": {"jobAction": "none"}},  # the first match wins
                  {"code": 0, "exitOptions": {"dependencyAction": "block"}}],
    "exitCodeRanges": [{"start": 2, "end": 10, "exitOptions": {"dependencyAction": "satisfy"}},
                       {"start": 5, "end": 20, "exitOptions": {"jobAction": "none"}}],
    "preProcessingError": {"jobAction": "none"},
    "fileUploadError": {"dependencyAction": "satisfy"},
    "default": {"jobAction": "disable", "dependencyAction": "satisfy"},
}


@pytest.mark.parametrize(("code", "failed", "pre", "upload", "expected"), [
    (3, True, False, False, ExitDecision("disable", "block")),  # unset field: failure default
    (0, False, False, False, ExitDecision("none", "block")),  # explicit 0 mapping
    (7, True, False, False, ExitDecision("terminate", "satisfy")),  # first range
    (15, True, False, False, ExitDecision("none", "block")),  # second range
    (99, True, False, False, ExitDecision("disable", "satisfy")),  # default
    (None, True, True, False, ExitDecision("none", "block")),  # preProcessingError
    (99, True, False, True, ExitDecision("terminate", "satisfy")),  # fileUploadError
    (3, True, False, True, ExitDecision("disable", "block")),  # explicit match wins
])
def test_selection_order(code: int | None, failed: bool, pre: bool, upload: bool,
                         expected: ExitDecision) -> None:
    conditions = ExitConditions.model_validate(CONDITIONS)
    assert decide(conditions, code, failed=failed, pre_processing=pre,
                  upload_failed=upload) == expected


def test_defaults_and_fallbacks() -> None:
    assert decide(None, 0, failed=False) == SUCCESS == ExitDecision("none", "satisfy")
    assert decide(None, 1, failed=True) == FAILURE == ExitDecision("terminate", "block")
    assert ExitDecision("none", "block") == ENDED
    only_default = ExitConditions.model_validate({"default": {"dependencyAction": "satisfy"}})
    assert decide(only_default, 0, failed=False) == SUCCESS  # default never applies to 0
    assert decide(only_default, 1, failed=True) == ExitDecision("terminate", "satisfy")
    # a timed-out attempt that exited 0 is a failure: default applies
    assert decide(only_default, 0, failed=True) == ExitDecision("terminate", "satisfy")
    assert decide(only_default, None, failed=True, pre_processing=True) == ExitDecision(
        "terminate", "satisfy")  # no preProcessingError: default
    assert decide(ExitConditions(), None, failed=True, pre_processing=True) == FAILURE
    assert decide(ExitConditions(), 5, failed=True, upload_failed=True) == FAILURE
