"""What every importer shares: the small derivations of times, error types and chunk offsets, and which
record fields a batch holds.

An importer yields ``pyarrow`` tables whose columns are record fields it holds, under any compatible type;
:func:`lab.store.columnar.conform` casts them to the record's Arrow schema and adds the rest as nulls.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable, Sequence
from datetime import tzinfo
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lab.core.errors import BadInput
from lab.core.replies import error_type
from lab.store.columnar import SCHEMA, TIMESTAMP

BOOKKEEPING = frozenset({"endpoint", "run_id", "experiment", "window", "sample", "target", "task", "synthetic"})
"""Fields the importer fills itself; never counted as lacking from a source."""


def held(table: pa.Table) -> set[str]:
    """The source fields with at least one value in this conformed batch (text: one not empty)."""
    found = set()
    for name in SCHEMA.names:
        if name in BOOKKEEPING:
            continue
        column = table[name]
        if name == "text":
            if pc.any(pc.not_equal(column, "")).as_py():
                found.add(name)
        elif column.null_count < len(column):
            found.add(name)
    return found


# -- times ----------------------------------------------------------------------------------

def epoch(values: pa.Array | pa.ChunkedArray, unit: str) -> pa.Array:
    """Numbers since 1970 in ``unit`` (``s``, ``ms``, ``us``, ``ns``) as UTC timestamps."""
    scale = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}[unit]
    if unit == "ns" and pa.types.is_integer(values.type):
        micros = pc.divide(values, 1000)
    else:
        micros = pc.round(pc.multiply(values.cast(pa.float64()), scale))
    return micros.cast(pa.int64()).cast(TIMESTAMP)


_ZONED = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


def timestamps(values: pa.Array | pa.ChunkedArray, zone: tzinfo | None = None) -> pa.Array:
    """ISO 8601 text (or timestamps) as UTC timestamps; a time without a zone is taken in ``zone``
    (default UTC); text that is not a time, or a local time that ``zone`` skips or repeats (a
    daylight-saving change), becomes null (compare null counts to report it)."""
    if pa.types.is_timestamp(values.type):
        if values.type.tz:
            return values.cast(TIMESTAMP)
        if zone is None:
            return pc.assume_timezone(values, "UTC").cast(TIMESTAMP)
        local = pd.Series(values.to_pandas()).dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        return pa.array(local.dt.tz_convert("UTC").dt.as_unit("us"), TIMESTAMP)
    try:
        return values.cast(TIMESTAMP)  # the fast path: every value has a zone
    except pa.ArrowInvalid:
        text = pd.Series(values.to_pandas(), dtype=object)
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        if zone is not None:
            naive = ~text.fillna("").astype(str).str.strip().str.contains(_ZONED, regex=True) & text.notna()
            if naive.any():
                local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
                local = local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
                parsed = parsed.where(~naive, local)
        return pa.array(pd.to_datetime(parsed, utc=True).dt.as_unit("us"), TIMESTAMP)


def ms_between(start: pa.Array, end: pa.Array) -> pa.Array:
    """``end - start`` in milliseconds, for two timestamp columns."""
    return pc.divide(pc.subtract(end, start).cast(pa.int64()).cast(pa.float64()), 1000.0)


# -- who served the calls -------------------------------------------------------------------

_ANTHROPIC_APIS = frozenset({"messages", "anthropic", "anthropic_messages", "anthropic-messages"})
_OPENAI_APIS = frozenset({"chat", "completions", "openai", "openai-chat", "openai_chat", "openai-completions",
                          "openai_http", "chat_completions", "text_completions", "openai-chat-completions",
                          "openai_chat_completions", "responses"})


def api_provider(api: str | None, url: str | None = None) -> str | None:
    """The lab's provider name (:data:`lab.core.config.PROVIDERS`) for the API a tool says it spoke:
    ``anthropic`` for Anthropic Messages (an endpoint type ``messages``, or a ``/v1/messages`` URL),
    ``openai`` for OpenAI's own host, ``openai-compatible`` for the OpenAI API served elsewhere;
    ``None`` when the tool does not say."""
    kind = (api or "").strip().lower()
    parts = urlsplit(url if url and "//" in url else f"//{url}") if url else None
    path = parts.path if parts else ""
    if kind in _ANTHROPIC_APIS or path.rstrip("/").endswith("/v1/messages"):
        return "anthropic"
    if kind in _OPENAI_APIS or path.rstrip("/").endswith(("/chat/completions", "/v1/completions")):
        host = (parts.hostname or "") if parts else ""
        return "openai" if host == "api.openai.com" else "openai-compatible"
    return None


# -- errors ---------------------------------------------------------------------------------

_STATUS_CODE = re.compile(r"\b([1-5]\d\d)\b")
_EXCEPTION_KINDS = (
    ("rate_limit", re.compile(r"rate.?limit|too many requests", re.I)),
    ("overloaded", re.compile(r"overload|service.?unavailable", re.I)),
    ("timeout", re.compile(r"time.?out", re.I)),
    ("cancelled", re.compile(r"cancel", re.I)),
    ("auth", re.compile(r"authenticat|permission.?denied|unauthori[sz]ed|forbidden", re.I)),
    ("cut_stream", re.compile(r"payload|incomplete|disconnected|remote.?protocol|chunked|content.?length", re.I)),
    ("connection", re.compile(r"connect|connection|network|refused|reset", re.I)),
    ("invalid_response", re.compile(r"json|decode|invalid.?response|validation", re.I)),
    ("server_error", re.compile(r"internal.?server|server.?error|bad.?gateway|gateway", re.I)),
    ("client_error", re.compile(r"bad.?request|not.?found|unprocessable|invalid.?request", re.I)),
)


def http_error_type(status: int) -> str:
    """The record's error type for an HTTP error status (as :mod:`lab.llm` classifies them)."""
    return error_type(status)


def http_error_types(statuses: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`http_error_type` over a column (null where the status is not an error)."""
    s = statuses.cast(pa.float64())
    codes = pc.unique(s).drop_null()
    kinds = pa.array([http_error_type(int(c)) if c >= 400 else None for c in codes.to_pylist()], pa.string())
    return pc.take(kinds, pc.index_in(s, codes))


def classify(description: str | None, status: int | None, fallback: str) -> tuple[str, int | None]:
    """``(error_type, http_status)`` of a failure from its HTTP status when known, else from the
    tool's description of it (an exception name, a reason phrase, a message); ``fallback`` (the
    importer's own type, e.g. ``aiperf_error``) when neither says."""
    if status is not None and 100 <= status <= 599:
        return http_error_type(status), status
    text = description or ""
    phrase = _reason_phrase(text.strip())
    if phrase is not None:
        return http_error_type(phrase), phrase
    for kind, pattern in _EXCEPTION_KINDS:
        if pattern.search(text):
            return kind, None
    return fallback, None


def status_in(text: str | None) -> int | None:
    """The first HTTP error status (400 to 599) quoted in a message, e.g. ``'500 Internal Server Error'``."""
    for match in _STATUS_CODE.finditer(text or ""):
        code = int(match.group(1))
        if 400 <= code <= 599:
            return code
    return None


_PHRASES = {s.phrase.lower(): s.value for s in http.HTTPStatus}


def _reason_phrase(text: str) -> int | None:
    """The status whose standard reason phrase is exactly ``text`` (e.g. ``Internal Server Error``)."""
    return _PHRASES.get(text.lower())


def failed_rows(failed: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Indices of the rows whose ``failed`` flag is true."""
    return pc.indices_nonzero(pc.fill_null(failed, False)).to_numpy()


def scatter(rows: int, index: np.ndarray, pairs: Iterable[tuple[str | None, int | None]]
            ) -> tuple[pa.Array, pa.Array]:
    """``error_type`` and ``http_status`` columns: ``pairs`` placed at ``index``, null elsewhere."""
    kinds = np.full(rows, None, dtype=object)
    codes = np.full(rows, None, dtype=object)
    for i, (kind, code) in zip(index, pairs, strict=True):
        kinds[i], codes[i] = kind, code
    return pa.array(kinds, pa.string()), pa.array(codes, pa.int64())


# -- streams --------------------------------------------------------------------------------

def offsets_from_gaps(first_ms: pa.Array, gaps_ms: pa.ListArray) -> pa.Array:
    """Chunk arrival offsets from the first chunk's time and the gaps after it (``None`` where
    the first chunk's time is unknown)."""
    first = np.asarray(first_ms.to_numpy(zero_copy_only=False), dtype=float)
    gaps = gaps_ms.fill_null([]) if gaps_ms.null_count else gaps_ms
    lengths = pc.list_value_length(gaps).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    flat = pc.list_flatten(gaps).to_numpy(zero_copy_only=False).astype(float)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    steps = np.zeros(starts[-1])
    mask = np.ones(starts[-1], dtype=bool)
    mask[starts[:-1]] = False
    steps[mask] = flat
    # A running sum restarted at each row: the total so far minus the total at the row's start.
    running = np.cumsum(steps)
    within = running - np.repeat(running[starts[:-1]], lengths)
    values = np.repeat(np.where(np.isnan(first), 0.0, first), lengths) + within
    offsets = pa.ListArray.from_arrays(pa.array(starts, pa.int32()), pa.array(values))
    return pc.if_else(pc.is_null(first_ms), pa.nulls(len(first), offsets.type), offsets)


def max_gap(offsets_ms: pa.Array) -> pa.Array:
    """The longest silence between consecutive chunks of each row (``None`` under two chunks)."""
    flat = pc.list_flatten(offsets_ms).to_numpy(zero_copy_only=False).astype(float)
    rows = pc.list_parent_indices(offsets_ms).to_numpy(zero_copy_only=False)
    same_row = rows[1:] == rows[:-1]
    longest = np.full(len(offsets_ms), -np.inf)
    np.maximum.at(longest, rows[1:][same_row], np.diff(flat)[same_row])
    return pa.array(np.where(np.isinf(longest), np.nan, longest), from_pandas=True)


def tpot(latency_ms: pa.Array, ttft_ms: pa.Array, output_tokens: pa.Array) -> pa.Array:
    """``(latency - ttft) / (output tokens - 1)`` where defined (more than one output token)."""
    tokens = output_tokens.cast(pa.float64())
    value = pc.divide(pc.subtract(latency_ms, ttft_ms), pc.subtract(tokens, 1.0))
    return pc.if_else(pc.greater(tokens, 1.0), value, None)


def constant(value: object, rows: int, type: pa.DataType | None = None) -> pa.Array:
    """One value repeated ``rows`` times."""
    return pa.repeat(pa.scalar(value, type), rows)


def column(table: pa.Table, path: str) -> pa.ChunkedArray:
    """A (nested) column by dotted path, e.g. ``metrics.request_latency.value``; nulls when absent."""
    head, *rest = path.split(".")
    if head not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows)])
    array = table[head]
    for name in rest:
        if not pa.types.is_struct(array.type) or array.type.get_field_index(name) < 0:
            return pa.chunked_array([pa.nulls(table.num_rows)])
        array = pc.struct_field(array, name)
    return array


def require(table: pa.Table, paths: Sequence[str], source: Path, format_name: str) -> None:
    """Refuse a batch of which no row holds any of ``paths`` (dotted): a file of another format read as
    this one (with ``--format``) would otherwise import rows of nothing."""
    if table.num_rows and all(column(table, p).null_count == table.num_rows for p in paths):
        from lab.imports.formats import detect

        try:
            guess = f"; it looks like {detect(source)}"
        except ValueError:
            guess = ""
        raise BadInput(f"{source} does not hold {format_name} records: no row has {' or '.join(paths)}; "
                         f"check --format{guess}")
