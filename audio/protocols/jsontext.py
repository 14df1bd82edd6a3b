"""JSON text messages as every protocol here reads them: bad JSON is a reason, never an exception.

Beyond what `json.loads` itself refuses, a message is refused when it is nested deeper than any
protocol needs (the decoder, and everything that later copies or writes the value, recurses),
has a number too long for `int()` (Python refuses over 4300 digits), or has a `\\u` escape that
is a lone UTF-16 surrogate (a value with one cannot be stored or sent as UTF-8).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json_text(text: str, max_depth: int = MAX_DEPTH) -> tuple[Any, str | None]:
    """The decoded message and None, or None and what is wrong with it (a sentence about
    "message")."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"message is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return None, f"message is nested deeper than {max_depth} levels"
    except ValueError:  # an integer of more digits than int() converts
        return None, "message has a number with too many digits (over 4300)"
    opened = text.count("{") + text.count("[")
    if opened > max_depth or _SURROGATE_ESCAPE.search(text):
        problem = _problem(value, max_depth)
        if problem is not None:
            return None, problem
    return value, None


def _problem(value: Any, max_depth: int) -> str | None:
    """Walks the value without recursion (it may be nested deeper than the stack allows)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    "message has a \\u escape that is a lone surrogate (UTF-16 halves come "
                    "in pairs), which is not a character"
                )
        elif isinstance(node, dict | list):
            if depth >= max_depth:
                return f"message is nested deeper than {max_depth} levels"
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((item, depth + 1) for item in items)
    return None
