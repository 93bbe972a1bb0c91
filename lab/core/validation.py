"""Validation errors in one line: what the lab reads from files and flags is checked by pydantic models,
and a refusal names each key, what is allowed and the value given."""

from __future__ import annotations

import pydantic


def one_line(error: pydantic.ValidationError, where: str = "") -> str:
    """Each problem of ``error`` with its key (``design.repeats``, prefixed by ``where``), what is allowed and
    the value given, joined in one line."""
    parts = []
    for e in error.errors(include_url=False):
        key = ".".join([where, *(str(p) for p in e["loc"] if not str(p).startswith("function-"))]).strip(".")
        given = f" (not {e['input']!r:.60})"
        if e["type"] == "missing":
            parts.append(f"{where or key} needs a {e['loc'][-1]}")
        elif e["type"] == "literal_error":
            expected = e["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
            parts.append(f"{key} must be one of {expected}{given}")
        elif e["type"] in ("value_error", "assertion_error"):
            parts.append(f"{key}: {e['msg'].removeprefix('Value error, ')}")
        else:
            parts.append(f"{key}: {e['msg'][0].lower()}{e['msg'][1:]}{given}")
    return "; ".join(parts)
