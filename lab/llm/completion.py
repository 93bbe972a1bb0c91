"""What a finished call returns: its text, its record and, for JSON calls, its data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.core.records import CallRecord


@dataclass(frozen=True)
class Completion:
    """A finished call: its text (empty on error), its record, and for JSON calls its data."""

    text: str
    record: CallRecord
    data: Any = None

    @classmethod
    def of(cls, record: CallRecord, data: Any = None) -> Completion:
        """A record's completion: its text if it succeeded, else ``""``."""
        return cls(record.text if record.ok else "", record, data)

    @property
    def ok(self) -> bool:
        return self.record.ok
