"""Hypothesis strategies for store records: every field drawn, driven by the type hints."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from hybatch.schema import (
    BatchJobCreateOptions,
    BatchJobScheduleCreateOptions,
    BatchPoolCreateOptions,
    BatchStartTask,
    BatchTaskCreateOptions,
)

from .store_records import (
    JOB_SPEC,
    POOL_SPEC,
    SCHEDULE_SPEC,
    TASK_SPEC,
    job_spec,
    pool_spec,
    schedule_spec,
    task_spec,
)

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_ints = st.integers(-(2**63), 2**63 - 1)
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), None]
)
_datetimes = st.datetimes(timezones=_zones)
_floats = st.floats(allow_nan=False)  # +-inf and -0.0 included

_SPECS: dict[type, st.SearchStrategy[Any]] = {
    BatchStartTask: st.builds(
        lambda cmd, wait, retries: BatchStartTask.model_validate({
            "commandLine": cmd or "x", "waitForSuccess": wait, "maxTaskRetryCount": retries,
            "environmentSettings": [{"name": "N", "value": cmd}]}),
        _text, st.none() | st.booleans(), st.none() | st.integers(-1, 100),
    ),
    BatchPoolCreateOptions: st.one_of(
        st.just(BatchPoolCreateOptions.model_validate(POOL_SPEC)),
        _text.map(lambda s: pool_spec("p", displayName=s)),
    ),
    BatchJobCreateOptions: st.one_of(
        st.just(BatchJobCreateOptions.model_validate(JOB_SPEC)),
        st.builds(
            lambda s, n: job_spec("j", priority=n, displayName=s), _text, st.integers(-1000, 1000)
        ),
    ),
    BatchJobScheduleCreateOptions: st.one_of(
        st.just(BatchJobScheduleCreateOptions.model_validate(SCHEDULE_SPEC)),
        st.builds(
            lambda s, when: schedule_spec("s", displayName=s,
                                          schedule={"doNotRunUntil": when.isoformat()}),
            _text,
            # a wire date-time must stay within years 1..9999 once converted to UTC
            st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                         timezones=_zones),
        ),
    ),
    BatchTaskCreateOptions: st.one_of(
        st.just(BatchTaskCreateOptions.model_validate(TASK_SPEC)),
        st.builds(
            lambda cmd, pw: task_spec(
                "t",
                commandLine=cmd or "x",
                containerSettings={"imageName": "i", "registry": {"username": "u", "password": pw}},
            ),
            _text,
            _text,
        ),
    ),
}


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for every field of the record dataclasses, from their type hints."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy_for(inner)
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=3)
    if origin is tuple:
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=3)
    if tp in _SPECS:
        return _SPECS[tp]
    if dataclasses.is_dataclass(tp):
        return records(tp)  # type: ignore[arg-type]
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: _text,
        int: _ints,
        float: _floats,
        bool: st.booleans(),
        datetime: _datetimes,
    }
    return simple[tp]


def records(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})
