"""What a user can cause, and fix: :class:`LabError` and its kinds. The ``lab`` command prints one in one
line with exit status 2; anything else that goes wrong is a fault of the lab's, said as such (exit 1), with
``--debug`` for where."""

from __future__ import annotations


class LabError(Exception):
    """A problem the user can fix; the message says what to do."""


class BadInput(LabError, ValueError):
    """A value, a file or a request the lab cannot take as it is (the message names it and what is allowed)."""
