"""JSON read from anywhere (a run's files, an imported trace, a request body, a model's answer) without
crashing on hostile nesting: Python's parser raises ``RecursionError`` on a value nested a few thousand
levels deep, which no ``except ValueError`` catches. :func:`loads` and :func:`load` raise
:class:`json.JSONDecodeError` instead, like any other malformed JSON."""

from __future__ import annotations

import json
from typing import IO, Any

TOO_DEEP = "nested too deeply to read"
MAX_DEPTH = 64
"""Levels of nesting a run's files may hold (a record has three or four)."""


def loads(text: str | bytes | bytearray, max_depth: int | None = None) -> Any:
    """:func:`json.loads`, with too deep a nesting (for Python, or beyond ``max_depth`` levels of arrays and
    objects) a :class:`json.JSONDecodeError`, so code that walks the value recursively never meets one."""
    try:
        value = json.loads(text)
    except RecursionError:
        value, max_depth = None, -1
    if max_depth is not None and depth(value) > max_depth:
        doc = text if isinstance(text, str) else bytes(text[:200]).decode("utf-8", "replace")
        limit = "" if max_depth < 0 else f" (more than {max_depth} levels)"
        raise json.JSONDecodeError(TOO_DEEP + limit, doc, 0) from None
    return value


def depth(value: Any) -> int:
    """How many levels of arrays and objects ``value`` nests (0 for a number or a string), found without
    recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            deepest = max(deepest, level)
            continue
        deepest = max(deepest, level + 1)
        todo.extend((child, level + 1) for child in item)
    return deepest


def load(handle: IO[Any]) -> Any:
    """:func:`json.load`, with too deep a nesting a :class:`json.JSONDecodeError`."""
    return loads(handle.read())
