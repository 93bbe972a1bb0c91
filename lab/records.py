"""The call record: one row per timed call, live, replayed or imported.

The field names are the column names of :func:`records_frame` and the schema
in ``DESIGN.md``; analysis code reads only these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd

Kind = Literal["complete", "stream", "json"]
Status = Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything measured about one call (all attempts of it).

    ``latency_ms`` runs from just before the first request to the complete
    response; ``ttft_ms`` is taken at the first chunk that carries text and is
    ``None`` for calls that were not streamed.
    """

    provider: str
    model: str
    endpoint: str
    kind: Kind
    started_at: datetime
    latency_ms: float
    status: Status = "ok"
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    error_type: str | None = None
    http_status: int | None = None
    attempts: int = 1
    text: str = ""
    run_id: str | None = None
    experiment: str | None = None
    window: str | None = None
    sample: int | None = None
    # Fields beyond the design's schema.
    error_message: str | None = None
    stop_reason: str | None = None
    request_id: str | None = None
    synthetic: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``started_at`` as ISO 8601 in UTC)."""
        data = dataclasses.asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        values = dict(data)
        values["started_at"] = datetime.fromisoformat(values["started_at"])
        return cls(**values)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CallRecord))


def records_frame(records: Iterable[CallRecord]) -> pd.DataFrame:
    """A pandas frame of call records, one row per call, columns as :data:`FIELDS`."""
    frame = pd.DataFrame([dataclasses.asdict(r) for r in records], columns=list(FIELDS))
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    for column in ("latency_ms", "ttft_ms", "cost_usd"):
        frame[column] = frame[column].astype("float64")
    for column in ("input_tokens", "output_tokens", "http_status", "attempts", "sample"):
        frame[column] = frame[column].astype("Int64")
    return frame
