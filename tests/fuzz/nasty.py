"""Values users send that schema-driven generation rarely produces: the edges of JSON, of
integers and durations, of text encodings, of the ``$filter`` grammar, of paging tokens and
of the headers the server parses itself. Targeted cases mix them into generated requests.
"""

from __future__ import annotations

import json
from email.utils import formatdate
from typing import Any

from hypothesis import strategies as st

_INTS = [0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**30]
_FLOATS = [1.5, -0.0, 1e20, 1e300]
_STRINGS = ["\ud800", "a\x00b", "", " ", "\U0001f600 \u202e", "x" * 70_000, "P999999999D",
            "P200000D", "-PT1S", "PT0S", "P10675199DT2H48M6S", "9" * 30, "'\"\\%00\n",
            "../../../../etc/passwd", "0001-01-01T00:00:00-23:59"]
_CONTAINERS: list[Any] = [[], {}, [None], {"": None}, None, True,
                          json.loads("[" * 200 + "]" * 200)]


def nasty_values() -> st.SearchStrategy[Any]:
    """One edge value for any property."""
    return st.one_of(st.sampled_from(_INTS), st.sampled_from(_FLOATS),
                     st.sampled_from(_STRINGS), st.sampled_from(_CONTAINERS))


def nasty_like(value: Any) -> st.SearchStrategy[Any]:
    """An edge value of the same JSON type as ``value`` (so the rest of the body still
    validates and the value travels further: into the core, the store, a process)."""
    if isinstance(value, bool) or value is None:
        return nasty_values()
    if isinstance(value, int | float):
        return st.sampled_from(_INTS + _FLOATS)
    if isinstance(value, str):
        return st.sampled_from(_STRINGS)
    return st.sampled_from(_CONTAINERS)


# properties of the bodies the server implements, where a bad value goes far (into the core,
# the store or a process)
PROPERTIES = ("id", "displayName", "vmSize", "targetDedicatedNodes", "targetLowPriorityNodes",
              "taskSlotsPerNode", "resizeTimeout", "priority", "maxParallelTasks",
              "allowTaskPreemption", "onAllTasksComplete", "constraints", "poolInfo",
              "metadata", "commandLine", "environmentSettings", "requiredSlots",
              "nodeList", "nodeDeallocationOption", "terminateReason", "value",
              "commonEnvironmentSettings", "userIdentity", "exitConditions")
CONSTRAINTS = ("maxWallClockTime", "retentionTime", "maxTaskRetryCount")
DURATIONS = ["P200000D", "P10675198D", "P999999999D", "P10675199DT2H48M6S", "-PT1S", "PT0S",
             "PT0.000001S", "P", "PT1S", "9" * 30]


def constraint_values(name: str) -> st.SearchStrategy[Any]:
    """Edge values for one task/job constraint: durations or retry counts."""
    if name == "maxTaskRetryCount":
        return st.one_of(st.sampled_from(_INTS), nasty_values())
    return st.one_of(st.sampled_from(DURATIONS), nasty_values())


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


RAW_BODIES: list[bytes] = [
    b"", b"{", b"}", b"null", b"[]", b'"text"', b"0", b"1" * 5000, b"{}" * 2,
    _deep(100_000), b'{"id": ' + _deep(50_000) + b"}", b'{"value": [' + _deep(50_000) + b"]}",
    b'{"id": "\\ud800", "commandLine": "\\udfff"}', b'{"metadata": [{"name": "\\ud83d"}]}',
    b'{"targetDedicatedNodes": NaN}', b'{"priority": Infinity}', b'{"priority": -Infinity}',
    b'{"id": 1e400}', b'{"maxParallelTasks": 1' + b"0" * 400 + b"}",
    b"\xff\xfe\x00{", b"\xef\xbb\xbf{}", b'{"id": "\xc3"}', b'{"a": 1, "a": 2}',
    b'{"value": "not a list"}', b'{"value": [1, "x", null, []]}',
    b'{"value": [' + b",".join([b'{"id": "t", "commandLine": "/bin/true"}'] * 101) + b"]}",
    b'{"constraints": {"maxWallClockTime": "P999999999D", "retentionTime": "P999999999D"}}',
    b'{"poolInfo": {"poolId": "' + b"p" * 10_000 + b'"}}',
]


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Request bodies that are not (sensible) JSON at all."""
    generated = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                  st.text(max_size=20)),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                    inner, max_size=4),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode())
    return st.one_of(st.sampled_from(RAW_BODIES), generated, st.binary(max_size=64))


# ------------------------------------------------------------------ $filter

_PROPS = ["id", "state", "priority", "creationTime", "executionInfo/exitCode",
          "executionInfo/retryCount", "name", "isDirectory", "displayName", "vmSize",
          "stateTransitionTime", "executionInfo/endTime", "no/such", "ID", "'id'", ""]
_LITERALS = ["'x'", "'it''s'", "''", "'", "0", "-1", "2147483648", "9" * 25, "-" + "9" * 25,
             "9" * 5000, "1e400", "1.5", "-0.0", "true", "false", "null", "'active'",
             "'ACTIVE'", "datetime'2024-01-01T00:00:00Z'", "datetime'0001-01-01T00:00:00-23:59'",
             "datetime'9999-12-31T23:59:59+23:59'", "datetime'9999-99-99T00:00:00Z'",
             "datetime'x'", "guid'00000000-0000-0000-0000-000000000000'", "duration'PT1S'"]
_OPS = ["eq", "ne", "gt", "ge", "lt", "le", "has", "in", "EQ"]


def filters() -> st.SearchStrategy[str]:
    """``$filter`` texts near the grammar: valid, almost valid, and pathological."""
    compare = st.builds(lambda p, o, v: f"{p} {o} {v}", st.sampled_from(_PROPS),
                        st.sampled_from(_OPS), st.sampled_from(_LITERALS))
    starts = st.builds(lambda p, v: f"startswith({p},{v})", st.sampled_from(_PROPS),
                       st.sampled_from(_LITERALS))
    expr = st.recursive(
        compare | starts,
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"{a} and {b}", inner, inner),
            st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
            st.builds(lambda a: f"not ({a})", inner)),
        max_leaves=6,
    )
    deep = st.integers(1, 3000).map(lambda n: "(" * n + "id eq 'x'" + ")" * n)
    long_chain = st.integers(1, 3000).map(lambda n: " and ".join(["id eq 'x'"] * n))
    nots = st.integers(1, 3000).map(lambda n: "not " * n + "id eq 'x'")
    return st.one_of(expr, deep, long_chain, nots, st.text(max_size=40))


# ------------------------------------------------------------------ query and headers

def skip_tokens() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["abc", "-1", "0", "9" * 30, "9" * 5000, "\x00", "%%",
                                      "e30=", "bnVsbA==", "eyJrIjogMX0="]),
                     st.text(max_size=30))


def ocp_ranges() -> st.SearchStrategy[str]:
    number = st.sampled_from(["0", "1", "5", "99", "9" * 25, "9" * 5000, "-1", "", "x"])
    return st.one_of(
        st.builds(lambda a, b: f"bytes={a}-{b}", number, number),
        st.sampled_from(["bytes=5-2", "bytes=0-0,1-2", "items=0-1", "bytes", "bytes=-5"]),
    )


def http_dates() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(0, 253_402_300_799).map(lambda t: formatdate(t, usegmt=True)),
        st.sampled_from(["Mon, 01 Jan 0001 00:00:00 GMT", "Mon, 01 Jan 0001 00:00:00 -2359",
                         "Fri, 31 Dec 9999 23:59:59 +2359", "Fri, 31 Dec 99999 23:59:59 GMT",
                         "31 Dec 99 23:59:60 GMT", "Thu, 01 Jan 1970 00:00:00 GMT",
                         "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                         "Sun Nov  6 08:49:37 1994", "0", "-1"]),
    )
