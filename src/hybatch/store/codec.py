"""Record <-> row conversion for the stores.

A stored row is a few scalar columns (lower-cased keys, state, seq, the values $filter and
start-up need) plus ``data``: the whole record as JSON. ``data`` alone is enough to rebuild the
record; the columns exist so SQL can find rows without parsing JSON.

The JSON form is derived from the record dataclasses' type hints, so a field added to a record
is stored without touching this module. Conversions are chosen per type once, at import:

* datetimes -> ISO 8601 text (offset and microseconds kept; naive stays naive);
* floats -> numbers, non-finite ones as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (JSON has
  no literal for them and PostgreSQL rejects the non-standard tokens);
* nested dataclasses -> objects, tuples -> arrays (rebuilt as tuples);
* pydantic wire models -> their wire JSON (``by_alias``, ``exclude_none``) with secret values
  written in clear: pydantic masks ``SecretStr`` as ``**********`` when dumping, which would
  lose registry passwords and storage keys on the first restart.

Missing keys decode to the dataclass default and unknown keys are ignored, so rows written by
an older or newer version of the records still load.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, SecretStr

from hybatch.core.records import (
    JobRecord,
    JobScheduleRecord,
    NodeRecord,
    PoolRecord,
    TaskRecord,
    UsageRecord,
)

R = TypeVar("R")
Convert = Callable[[Any], Any]
Row = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# --------------------------------------------------------------------------- JSON text


def _std_dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


try:  # optional speed-up: about 8x faster both ways, which matters on the per-task hot path
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]


def dumps(value: object) -> str:
    """The one JSON serializer of the stores (compact, UTF-8 unescaped)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value).decode()
        except TypeError:
            pass  # e.g. an int beyond 64 bits: the standard library takes any int
    return _std_dumps(value)


def loads(text: str | bytes) -> Any:
    """Parse JSON text. With orjson, integers beyond 64 bits come back as floats (records
    hold none: every counter and id fits a BIGINT column)."""
    if _orjson is not None:
        return _orjson.loads(text)
    return json.loads(text)


# --------------------------------------------------------------------------- wire models


_DUMPED: dict[int, tuple[BaseModel, dict[str, Any]]] = {}
_DUMPED_MAX = 8192


def dump_model(model: BaseModel) -> dict[str, Any]:
    """The model's wire JSON with secrets revealed (see the module docstring).

    Remembered per model object for the most recent few thousand: a task's spec is written
    again with every state change (offered, started, completed), and the core never changes
    a spec in place (it replaces it with ``model_copy``). The cache holds the model itself,
    so an ``id`` cannot be reused while its entry lives. Callers must not mutate the
    returned dict."""
    cached = _DUMPED.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    _reveal(model, data)
    if len(_DUMPED) >= _DUMPED_MAX:
        _DUMPED.pop(next(iter(_DUMPED)), None)
    _DUMPED[id(model)] = (model, data)
    return data


def _reveal(model: BaseModel, data: dict[str, Any]) -> None:
    for name, key in _secret_fields(type(model)):
        value = getattr(model, name)
        if value is not None and key in data:
            data[key] = _reveal_value(value, data[key])


def _reveal_value(value: object, dumped: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        _reveal(value, dumped)
        return dumped
    if isinstance(value, list | tuple) and len(value) == len(dumped):
        return [_reveal_value(v, d) for v, d in zip(value, dumped, strict=True)]
    if isinstance(value, dict):
        return {k: _reveal_value(value.get(k), d) for k, d in dumped.items()}
    return dumped


@functools.cache
def _secret_fields(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON key) of the fields of ``cls`` that can hold a secret somewhere inside.
    Cached per class, so models without secrets cost one dict lookup per dump."""
    found: list[tuple[str, str]] = []
    for name, info in cls.model_fields.items():
        if _may_hold_secret(info.annotation, set()):
            found.append((name, info.serialization_alias or info.alias or name))
    return tuple(found)


def _may_hold_secret(tp: object, seen: set[type]) -> bool:
    if inspect.isclass(tp):
        if issubclass(tp, SecretStr):
            return True
        if issubclass(tp, BaseModel):
            if tp in seen:
                return False
            seen.add(tp)
            return any(_may_hold_secret(f.annotation, seen) for f in tp.model_fields.values())
        return False
    return any(_may_hold_secret(arg, seen) for arg in typing.get_args(tp))


# --------------------------------------------------------------------------- records


def _identity(value: Any) -> Any:
    return value


def _encode_float(value: float) -> float | str:
    return value if math.isfinite(value) else repr(float(value))


def _decode_float(value: float | int | str) -> float:
    return float(value)


def _converters(tp: Any) -> tuple[Convert, Convert]:
    """(encode, decode) for one annotated type; raises TypeError for types it cannot keep."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"store codec: unsupported union {tp!r}")
        enc, dec = _converters(inner[0])
        return (lambda v: None if v is None else enc(v)), (lambda v: None if v is None else dec(v))
    if origin is list:
        enc, dec = _converters(args[0])
        if enc is _identity:
            return list, list
        return (lambda v: [enc(x) for x in v]), (lambda v: [dec(x) for x in v])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            enc, dec = _converters(args[0])
            return (lambda v: [enc(x) for x in v]), (lambda v: tuple(dec(x) for x in v))
        pairs = [_converters(a) for a in args]
        return (
            lambda v: [e(x) for (e, _), x in zip(pairs, v, strict=True)],
            lambda v: tuple(d(x) for (_, d), x in zip(pairs, v, strict=True)),
        )
    if origin is dict:
        enc, dec = _converters(args[1])
        return (
            lambda v: {str(k): enc(x) for k, x in v.items()},
            lambda v: {k: dec(x) for k, x in v.items()},
        )
    if tp is datetime:
        return datetime.isoformat, datetime.fromisoformat
    if tp is float:
        return _encode_float, _decode_float
    if tp in (str, int, bool, object, Any):
        return _identity, _identity
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return dump_model, tp.model_validate
    if inspect.isclass(tp) and dataclasses.is_dataclass(tp):
        codec = RecordCodec(tp)
        return codec.encode, codec.decode
    raise TypeError(f"store codec: no conversion for {tp!r}")


def _sources(tp: Any, ns: dict[str, Any]) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """Source-code builders (value expression -> converted expression) for one type.

    Common shapes (plain scalars, datetimes, optionals of those) are inlined; the rest call
    the closures from :func:`_converters`, registered in ``ns``."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            enc, dec = _sources(inner[0], ns)
            if enc("x") == "x" and dec("x") == "x":
                return enc, dec
            return (
                lambda x: f"(None if {x} is None else {enc(x)})",
                lambda x: f"(None if {x} is None else {dec(x)})",
            )
    if tp in (str, int, bool, object, Any):
        return (lambda x: x), (lambda x: x)
    if tp is datetime:
        ns["_fromisoformat"] = datetime.fromisoformat
        return (lambda x: f"{x}.isoformat()"), (lambda x: f"_fromisoformat({x})")
    enc_fn, dec_fn = _converters(tp)
    n = len(ns)
    ns[f"_enc{n}"], ns[f"_dec{n}"] = enc_fn, dec_fn
    return (lambda x: f"_enc{n}({x})"), (lambda x: f"_dec{n}({x})")


class RecordCodec(Generic[R]):
    """Lossless dataclass <-> JSON-compatible dict, field by field from the type hints.

    The per-field conversions are compiled into one function per direction (as ``dataclasses``
    builds ``__init__``): this runs for every task of every loop turn, and a generic loop
    over fields costs about twice as much."""

    def __init__(self, cls: type[R]) -> None:
        self._cls = cls
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        self._decoders = [(f.name, f.init, _converters(hints[f.name])[1]) for f in fields]
        ns: dict[str, Any] = {"_cls": cls}
        encoded: list[str] = []
        decoded: list[str] = []
        for f in fields:
            enc, dec = _sources(hints[f.name], ns)
            encoded.append(f"{f.name!r}: {enc('r.' + f.name)}")
            decoded.append(f"{f.name}={dec(f'd[{f.name!r}]')}")
        source = (
            f"def encode(r):\n    return {{{', '.join(encoded)}}}\n"
            f"def decode(d):\n    return _cls({', '.join(decoded)})\n"
        )
        exec(compile(source, f"<store codec {cls.__name__}>", "exec"), ns)
        self.encode: Callable[[R], dict[str, Any]] = ns["encode"]
        self._decode_all: Callable[[Mapping[str, Any]], R] | None = (
            ns["decode"] if all(f.init for f in fields) else None
        )

    def decode(self, data: Mapping[str, Any]) -> R:
        if self._decode_all is not None:
            try:
                return self._decode_all(data)
            except KeyError:
                pass  # written by another version of the record: take the careful path
        kwargs = {n: dec(data[n]) for n, init, dec in self._decoders if init and n in data}
        record = self._cls(**kwargs)
        for name, init, dec in self._decoders:
            if not init and name in data:
                object.__setattr__(record, name, dec(data[name]))
        return record


# --------------------------------------------------------------------------- columns


def micros(when: datetime | None) -> int | None:
    """Microseconds since the epoch: an exact, orderable column value (naive means UTC)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MICROSECOND


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


@dataclasses.dataclass(frozen=True, slots=True)
class FilterField:
    """A $filter property the store can evaluate on a column.

    ``kind``: ``text`` (case-insensitive string; the column holds the lower-cased value),
    ``int``, ``bool`` or ``time`` (the column holds :func:`micros`)."""

    column: str
    kind: typing.Literal["text", "int", "bool", "time"]


class Resource(Generic[R]):
    """How one record type is stored: its row columns and the $filter paths they answer."""

    def __init__(
        self,
        cls: type[R],
        key_column: str,
        columns: Callable[[R], Row],
        filters: Mapping[tuple[str, ...], FilterField],
    ) -> None:
        self.record = RecordCodec(cls)
        self.key_column = key_column
        self._columns = columns
        self.filters = dict(filters)

    def to_row(self, record: R) -> Row:
        row = self._columns(record)
        row["data"] = self.record.encode(record)
        return row

    def from_data(self, data: Mapping[str, Any]) -> R:
        return self.record.decode(data)

    def from_json(self, text: str | bytes) -> R:
        return self.record.decode(loads(text))


def _t(column: str) -> FilterField:
    return FilterField(column, "time")


def _s(column: str) -> FilterField:
    return FilterField(column, "text")


POOLS: Resource[PoolRecord] = Resource(
    PoolRecord,
    "pool_key",
    lambda r: {
        "pool_key": r.key,
        "state": r.state.lower(),
        "allocation_state": r.allocation_state.lower(),
        "vm_size": _lower(r.spec.vm_size),
        "creation_us": micros(r.creation_time),
        "state_transition_us": micros(r.state_transition_time),
        "allocation_state_transition_us": micros(r.allocation_state_transition_time),
        "last_modified_us": micros(r.last_modified),
    },
    {
        ("id",): _s("pool_key"),
        ("state",): _s("state"),
        ("allocationState",): _s("allocation_state"),
        ("vmSize",): _s("vm_size"),
        ("creationTime",): _t("creation_us"),
        ("stateTransitionTime",): _t("state_transition_us"),
        ("allocationStateTransitionTime",): _t("allocation_state_transition_us"),
        ("lastModified",): _t("last_modified_us"),
    },
)

NODES: Resource[NodeRecord] = Resource(
    NodeRecord,
    "node_key",
    lambda r: {
        "node_key": r.key,
        "pool_key": r.pool_id.lower(),
        "state": r.state.lower(),
        "scheduling_state": r.scheduling_state.lower(),
        "is_dedicated": r.is_dedicated,
        "state_transition_us": micros(r.state_transition_time),
        "allocation_us": micros(r.allocation_time),
        "last_boot_us": micros(r.last_boot_time),
    },
    {
        ("id",): _s("node_key"),
        ("state",): _s("state"),
        ("schedulingState",): _s("scheduling_state"),
        ("isDedicated",): FilterField("is_dedicated", "bool"),
        ("stateTransitionTime",): _t("state_transition_us"),
        ("allocationTime",): _t("allocation_us"),
        ("lastBootTime",): _t("last_boot_us"),
    },
)

JOBS: Resource[JobRecord] = Resource(
    JobRecord,
    "job_key",
    lambda r: {
        "job_key": r.key,
        "seq": r.seq,
        "state": r.state.lower(),
        "pool_key": r.pool_id.lower(),
        "priority": r.priority,
        "creation_us": micros(r.creation_time),
        "state_transition_us": micros(r.state_transition_time),
        "last_modified_us": micros(r.last_modified),
        "start_us": micros(r.start_time),
        "end_us": micros(r.end_time),
        "schedule_key": _lower(r.job_schedule_id),
    },
    {
        ("id",): _s("job_key"),
        ("state",): _s("state"),
        ("creationTime",): _t("creation_us"),
        ("stateTransitionTime",): _t("state_transition_us"),
        ("lastModified",): _t("last_modified_us"),
        ("executionInfo", "startTime"): _t("start_us"),
        ("executionInfo", "endTime"): _t("end_us"),
    },
)

TASKS: Resource[TaskRecord] = Resource(
    TaskRecord,
    "task_key",
    lambda r: {
        "job_key": r.job_id.lower(),
        "task_key": r.id.lower(),
        "seq": r.seq,
        "state": r.state.lower(),
        "exit_code": r.exit_code,
        "result": _lower(r.result),
        "node_key": _lower(r.node_id),
        "creation_us": micros(r.creation_time),
        "state_transition_us": micros(r.state_transition_time),
        "last_modified_us": micros(r.last_modified),
        "start_us": micros(r.start_time),
        "end_us": micros(r.end_time),
    },
    {
        ("id",): _s("task_key"),
        ("state",): _s("state"),
        ("executionInfo", "exitCode"): FilterField("exit_code", "int"),
        ("executionInfo", "result"): _s("result"),
        ("nodeInfo", "nodeId"): _s("node_key"),
        ("creationTime",): _t("creation_us"),
        ("stateTransitionTime",): _t("state_transition_us"),
        ("lastModified",): _t("last_modified_us"),
        ("lastModifiedTime",): _t("last_modified_us"),
        ("executionInfo", "startTime"): _t("start_us"),
        ("executionInfo", "endTime"): _t("end_us"),
    },
)

USAGE: Resource[UsageRecord] = Resource(
    UsageRecord,
    "pool_key",
    lambda r: {
        "pool_key": r.pool_id.lower(),
        "interval_start_us": micros(r.interval_start),
        "pool_creation_us": micros(r.pool_creation_time),
    },
    {},
)

JOB_SCHEDULES: Resource[JobScheduleRecord] = Resource(
    JobScheduleRecord,
    "schedule_key",
    lambda r: {
        "schedule_key": r.key,
        "state": r.state.lower(),
        "creation_us": micros(r.creation_time),
        "state_transition_us": micros(r.state_transition_time),
        "last_modified_us": micros(r.last_modified),
        "end_us": micros(r.end_time),
        "do_not_run_until_us": micros(r.spec.schedule.do_not_run_until),
        "do_not_run_after_us": micros(r.spec.schedule.do_not_run_after),
    },
    {
        ("id",): _s("schedule_key"),
        ("state",): _s("state"),
        ("creationTime",): _t("creation_us"),
        ("stateTransitionTime",): _t("state_transition_us"),
        ("lastModified",): _t("last_modified_us"),
        ("executionInfo", "endTime"): _t("end_us"),
        ("schedule", "doNotRunUntil"): _t("do_not_run_until_us"),
        ("schedule", "doNotRunAfter"): _t("do_not_run_after_us"),
    },
)
