"""The call record: one row per timed call, live, replayed or imported.

The field names are the column names of :func:`records_frame` and the schema
in ``docs/design.md``; analysis code reads only these. A field a source does
not hold is ``None`` (NaN in a frame), never invented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["complete", "stream", "json"]
Status = Literal["ok", "error"]

OFFSET_UNIT_MS = 0.01
"""Resolution of stored chunk offsets: they are kept as integer deltas of 10 microseconds."""


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Why one attempt before the recorded one failed (the lab retried after it)."""

    error_type: str
    http_status: int | None
    duration_ms: float


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything measured about one call (all attempts of it).

    Times are milliseconds from the moment the first attempt's request was handed
    to the HTTP transport (client construction, request building and validation
    are outside the clock):

    * ``latency_ms``: to the last byte of the final response (all attempts and the
      waits between them);
    * ``ttft_ms``: to the first streamed chunk carrying generated content (text,
      thinking or reasoning, tool-call input); ``first_text_ms``: to the first
      visible text; both ``None`` when not streamed or nothing arrived;
    * ``chunk_offsets_ms``: arrival of every content-bearing chunk;
      ``tpot_ms`` = (latency - ttft) / (output tokens - 1); ``max_gap_ms``: the
      longest silence between two consecutive content chunks (a mid-stream stall);
    * ``connect_ms``: time spent opening connections (TCP and TLS) inside the call,
      0 when a pooled connection was reused, ``None`` when unknown.

    Open-loop designs add ``scheduled_at`` (planned send) and ``send_lag_ms``
    (actual minus planned send); response time from the planned send is
    ``send_lag_ms + latency_ms``.
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
    # Fields beyond the design's first schema.
    error_message: str | None = None
    stop_reason: str | None = None
    request_id: str | None = None
    synthetic: bool = False
    first_text_ms: float | None = None
    chunk_offsets_ms: tuple[float, ...] | None = None
    tpot_ms: float | None = None
    max_gap_ms: float | None = None
    connect_ms: float | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    attempt_errors: tuple[AttemptError, ...] = ()
    target: str | None = None
    task: str | None = None
    scheduled_at: datetime | None = None
    send_lag_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: datetimes as ISO 8601, chunk offsets as integer deltas of
        :data:`OFFSET_UNIT_MS` under ``chunk_deltas`` (compact on disk), empty fields left out."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["started_at"] = self.started_at.isoformat()
        data["scheduled_at"] = self.scheduled_at.isoformat() if self.scheduled_at else None
        data["attempt_errors"] = [dataclasses.asdict(e) for e in self.attempt_errors]
        offsets = data.pop("chunk_offsets_ms")
        data["chunk_deltas"] = encode_offsets(offsets) if offsets is not None else None
        return {k: v for k, v in data.items() if v is not None and v != [] or k in _ALWAYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        values = dict(data)
        values["started_at"] = datetime.fromisoformat(values["started_at"])
        if values.get("scheduled_at") is not None:
            values["scheduled_at"] = datetime.fromisoformat(values["scheduled_at"])
        deltas = values.pop("chunk_deltas", None)
        if deltas is not None:
            values["chunk_offsets_ms"] = decode_offsets(deltas)
        values["attempt_errors"] = tuple(AttemptError(**e) for e in values.get("attempt_errors") or ())
        return cls(**values)


_ALWAYS = frozenset({"provider", "model", "endpoint", "kind", "started_at", "latency_ms", "status", "attempts",
                     "text", "synthetic"})


def encode_offsets(offsets_ms: Sequence[float]) -> list[int]:
    """Offsets (ms, increasing) as integer deltas of :data:`OFFSET_UNIT_MS`: the first is the offset itself."""
    ticks = np.rint(np.asarray(offsets_ms, float) / OFFSET_UNIT_MS).astype(np.int64)
    return np.diff(ticks, prepend=0).tolist()


def decode_offsets(deltas: Sequence[int]) -> tuple[float, ...]:
    """Inverse of :func:`encode_offsets`, to the 0.01 ms."""
    return tuple(np.round(np.cumsum(np.asarray(deltas, np.int64)) * OFFSET_UNIT_MS, 2).tolist())


def stream_timing(latency_ms: float, offsets_ms: Sequence[float], output_tokens: int | None
                  ) -> tuple[float | None, float | None]:
    """``(tpot_ms, max_gap_ms)`` of a stream: time per output token after the first, and the longest
    silence between consecutive content chunks (``None`` where undefined)."""
    tpot = None
    if offsets_ms and output_tokens is not None and output_tokens > 1:
        tpot = (latency_ms - offsets_ms[0]) / (output_tokens - 1)
    gap = float(np.max(np.diff(offsets_ms))) if len(offsets_ms) > 1 else None
    return tpot, gap


def timed_fields(t0_ns: int, end_ns: int, offsets_ns: Sequence[int], first_text_ns: int | None,
                 output_tokens: int | None, streamed: bool) -> tuple[dict[str, Any], int | None]:
    """A call's timing fields from its transport stamps (``time.perf_counter_ns``; ms from ``t0_ns``,
    to 0.01 ms): latency, TTFT, first text, chunk offsets, TPOT and the longest gap; and the output
    tokens to price it by (a call cut short: its chunks, a lower bound of its output)."""
    ms = lambda ns: None if ns is None else round((ns - t0_ns) / 1e6, 2)  # noqa: E731
    latency = ms(end_ns)
    offsets = tuple(ms(ns) for ns in offsets_ns) if streamed else None
    tpot, gap = stream_timing(latency, offsets, output_tokens) if offsets is not None else (None, None)
    billed = output_tokens if output_tokens is not None else (len(offsets) if offsets is not None else None)
    return {"latency_ms": latency, "ttft_ms": offsets[0] if offsets else None,
            "first_text_ms": ms(first_text_ns) if streamed else None, "chunk_offsets_ms": offsets,
            "tpot_ms": tpot, "max_gap_ms": gap}, billed


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CallRecord))
FLOATS = ("latency_ms", "ttft_ms", "first_text_ms", "tpot_ms", "max_gap_ms", "connect_ms", "cost_usd", "send_lag_ms")
INTEGERS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "http_status", "attempts",
            "sample")


def records_frame(records: Iterable[CallRecord]) -> pd.DataFrame:
    """A pandas frame of call records, one row per call, columns as :data:`FIELDS`."""
    import pandas as pd

    frame = pd.DataFrame([{f: getattr(r, f) for f in FIELDS} for r in records], columns=list(FIELDS))
    return typed_frame(frame)


def typed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a frame with record columns the record's types (missing columns added, empty)."""
    import pandas as pd

    for column in FIELDS:
        if column not in frame:
            frame[column] = None
    for column in ("started_at", "scheduled_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in FLOATS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in INTEGERS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    return frame
