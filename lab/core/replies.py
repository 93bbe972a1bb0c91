"""A provider's reply in the record's terms, however it is read (through the SDKs in :mod:`lab.llm`,
as raw bytes in :mod:`lab.proxy`, from another tool's export in :mod:`lab.imports`): what one stream event
carries, token counts, the ``error_type`` of an error reply, and the emulator's mark on its replies.
No SDK is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SYNTHETIC_HEADER = "x-lab-synthetic"
"""Set to ``true`` on every reply of the lab's emulator."""

BODY_KINDS = {
    "overloaded_error": "overloaded", "service_unavailable": "overloaded",
    "rate_limit_error": "rate_limit", "rate_limit_exceeded": "rate_limit",
    "api_error": "server_error", "server_error": "server_error",
    "authentication_error": "auth", "permission_error": "auth", "invalid_api_key": "auth",
    "timeout_error": "timeout",
}
"""Error ``code`` or ``type`` names in either API's error bodies, as the record's ``error_type``."""


@dataclass(frozen=True)
class Piece:
    """What one stream event carries: generated ``content`` (text, thinking, tool input) and visible ``text``."""

    content: bool = False
    text: str = ""


NOTHING = Piece()


def count(value: Any) -> int | None:
    """A token count as the API reported it, or None for anything that is not an integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def body_kind(body: object) -> str | None:
    """The ``error_type`` an error body names by its ``code`` or ``type``, if any."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    for name in (error.get("code"), error.get("type")):
        if isinstance(name, str) and name in BODY_KINDS:
            return BODY_KINDS[name]
    return None


def error_type(status: int | None, body: object = None) -> str:
    """The record's ``error_type`` of an error reply: an HTTP status and its parsed body, or an error
    event inside a stream (``status`` None)."""
    named = body_kind(body)
    if status == 429:
        return "rate_limit"
    if status in (503, 529):
        return "overloaded"
    if named is not None:  # e.g. an error event inside a stream that began with 200
        return named
    if status is None or status >= 500:
        return "server_error"
    if status in (401, 403):
        return "auth"
    return "client_error"
