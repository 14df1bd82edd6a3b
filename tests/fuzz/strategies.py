"""Hypothesis strategies shared by the fuzz tests: JSON of every shape, nasty text, and
structure-aware mutations of a valid message (a field deleted, retyped or added).

Every test runs derandomized with no example database, so a run in CI draws exactly the
examples a developer's run drew, and a failure reproduces from the test name alone. To hunt
for new failures, `CALLCUE_FUZZ_EXPLORE=N` draws random examples instead, N times as many.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(examples: int, *, slow_data: bool = False) -> settings:
    """Reproducible settings for a fuzz test: fixed examples, no deadline, no database.

    `slow_data`: the test draws large inputs (whole audio streams, long message sequences) on
    purpose, so the too_slow / data_too_large health checks would only complain about that.
    """
    explore = int(os.environ.get("CALLCUE_FUZZ_EXPLORE", "0") or 0)
    return settings(
        max_examples=examples * max(explore, 1),
        deadline=None,
        derandomize=not explore,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
        if slow_data
        else [],
    )


# Strings that trip parsers: empty, NUL, lone surrogates (only reachable through a JSON \u
# escape, a websocket never delivers them raw), astral and combining characters, right-to-left
# marks, protocol keywords in the wrong place, numbers as text.
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "\ud800",
    "a\udfffb",
    "\U0001f600",
    "e\u0301",
    "\u202e",
    "é" * 200,
    "\n",
    "start",
    "stop",
    "media",
    "open",
    "pcm16",
    "mulaw",
    "audio/x-mulaw",
    "PT1S",
    "PT-1S",
    "-1",
    "1e400",
    "NaN",
    "inbound",
    "external",
    "customer",
    "x" * 300,
]

BIG_INTS = st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30, -1, 0, 1, 8000, 16000])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    BIG_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY_STRINGS),
)


def json_values(keys: list[str] | None = None) -> st.SearchStrategy[Any]:
    """Any JSON value (NaN and ±Infinity included: Python's json reads them), nested a little;
    object keys are drawn from `keys` (names the parser knows) as well as at random."""
    return _json_values(tuple(keys or ["type"]))


@functools.cache
def _json_values(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    key = st.text(max_size=8) | st.sampled_from(keys)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=4),
        max_leaves=12,
    )


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a JSON-like value (the root is `()`)."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*prefix, i))
    return found


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for step in path[:-1]:
        node = node[step]
    return node


@st.composite
def mutated(draw: st.DrawFn, valid: Any, keys: list[str] | None = None) -> Any:
    """`valid` (a JSON-like dict) with one to three structure-aware changes: a node deleted,
    replaced by any JSON value, given an extra key, or wrapped in a list."""
    value = json.loads(json.dumps(valid))  # a deep copy, JSON-shaped
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(value)))
        op = draw(st.sampled_from(["delete", "replace", "replace", "add_key", "wrap"]))
        if not path:
            if op == "replace":
                return draw(json_values(keys))
            continue
        parent, last = _parent(value, path), path[-1]
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(json_values(keys))
        elif op == "wrap":
            parent[last] = [parent[last]]
        elif isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=6))] = draw(json_values(keys))
        else:
            parent[last] = draw(json_values(keys))
    return value


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@st.composite
def text_mutations(draw: st.DrawFn, text: str) -> str:
    """`text` cut short, with a character inserted or deleted, or a piece duplicated."""
    op = draw(st.sampled_from(["truncate", "insert", "delete", "duplicate"]))
    at = draw(st.integers(min_value=0, max_value=len(text)))
    if op == "truncate":
        return text[:at]
    if op == "insert":
        char = draw(st.sampled_from([*'{}[]",:\\ 0-e.', "\x00", "é", "\U0001f600"]))
        return text[:at] + char + text[at:]
    if op == "delete":
        return text[:at] + text[at + 1 :]
    end = draw(st.integers(min_value=at, max_value=len(text)))
    return text[:end] + text[at:end] + text[end:]


# Texts that are not JSON a parser expects: deep nesting (recursion), numbers with more digits
# than int() converts (Python refuses over 4300), bare values, a BOM, NaN.
PATHOLOGICAL_TEXTS = [
    "[" * 5000,
    '{"a":' * 3000,
    "[" * 5000 + "]" * 5000,
    "1" * 5000,
    '{"type": ' + "9" * 5000 + "}",
    '{"sequenceNumber": 1e400, "event": "media"}',
    '{"seq": -1e400}',
    "\ufeff{}",
    "NaN",
    "null",
    "[]",
    '""',
    "",
    " ",
    '{"type": "start"',
    '{"type": "start", "type": "stop"}',
]


def any_text(valid_texts: list[str], keys: list[str]) -> st.SearchStrategy[str]:
    """A text message: random JSON, a mutated valid message, raw text or a known bad text."""
    return st.one_of(
        json_values(keys).map(dumps),
        st.sampled_from(valid_texts).flatmap(text_mutations),
        st.text(max_size=60),
        st.sampled_from(PATHOLOGICAL_TEXTS),
    )


def sendable(text: str) -> bool:
    """Whether `text` can go out on a websocket (UTF-8; a lone surrogate cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_sendable(value: Any) -> bool:
    """Whether `value` can be written as JSON (as the hub and store write events) and sent."""
    return sendable(json.dumps(value, ensure_ascii=False, default=str))
