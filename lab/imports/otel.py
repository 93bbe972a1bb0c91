"""OpenTelemetry traces with the GenAI semantic conventions, in either of two files:

- OTLP JSON, one ``ExportTraceServiceRequest`` per line, as the collector's file exporter and
  ``opentelemetry-exporter-otlp-json-file`` write them;
- the Python SDK's ``ConsoleSpanExporter`` output: one pretty-printed JSON object per span, one
  after another (not JSON lines), times in ISO 8601 (to the microsecond).

Each inference span (``gen_ai.operation.name`` ``chat``, ``text_completion`` or
``generate_content``, or any span with ``gen_ai.request.model``) becomes a record; other spans are
skipped.

- ``started_at`` the span's start, ``latency_ms`` its duration; ``ttft_ms`` the attribute
  ``gen_ai.response.time_to_first_chunk`` (seconds; :data:`TTFT_ATTRIBUTES`; the Anthropic SDK's own
  span sets it at the first ``content_block_delta``), else the first first-token or chunk event
  (:data:`FIRST_TOKEN_EVENTS`, :data:`CHUNK_EVENTS`); chunk events also give ``chunk_offsets_ms``
  and ``max_gap_ms``; ``tpot_ms`` (latency - TTFT) / (output tokens - 1). OpenLLMetry's OpenAI instrumentation adds an event for every chunk of a Chat
  Completions stream, the first of which is OpenAI's role-only opening chunk (no text): for an
  OpenAI ``chat`` span that event is left out (:func:`_content_chunks`); the stream's last events
  (the finish-reason chunk, and the usage chunk when asked for) carry no text either but cannot be
  told apart, and follow the last text within a millisecond or so.
- ``provider`` ``gen_ai.provider.name`` (or the older ``gen_ai.system``); ``model`` the response's
  model, else the request's; tokens ``gen_ai.usage.*``; ``request_id`` ``gen_ai.response.id``;
  ``stop_reason`` the API's own (``anthropic.message.stop_reason``), else the first
  ``gen_ai.response.finish_reasons``; ``text`` the output messages' text parts
  (``gen_ai.output.messages``, or OpenLLMetry's older ``gen_ai.completion.N.content``) where the
  instrumentation captured content; ``endpoint`` the URL (``url.full``, ``gen_ai.openai.api_base``).
- Status ``ERROR`` (code 2) is a failure: HTTP status from ``http.response.status_code`` when it is
  an error status (400 or more), a numeric ``error.type``, or the status message (``Error code:
  500``); else classified by ``error.type``. A span that failed after HTTP 200 (an error event in
  the stream, a dropped connection) has no HTTP status: a connection lost after the response began
  is ``cut_stream``.
- One record per call: a call traced twice (the Anthropic SDK's own span and OpenLLMetry's
  ``anthropic.chat`` span, both with the same ``gen_ai.response.id``) becomes one record, each field
  from the span closest to the wire (the one with HTTP attributes) where it has it, else from the
  other; a failure in either makes the record a failure.

OTLP lines are decoded one by one with the standard library (each line holds many spans), console
objects one by one; a damaged line or object is reported with its ``file:line`` and skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from lab.core import jsontext
from lab.core.errors import BadInput
from lab.imports import FORMATS, files
from lab.imports import columns as cols
from lab.imports.files import damaged, json_objects, text_lines

NAME = "otel"
DESCRIPTION = FORMATS[NAME]

INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
TTFT_ATTRIBUTES = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
"""Span attributes holding the time to the first chunk, in seconds."""
TTFT_MS_ATTRIBUTES = ("ai.response.msToFirstChunk",)
"""The same in milliseconds (the Vercel AI SDK's)."""
FIRST_TOKEN_EVENTS = frozenset({"first_token", "llm.first_token", "ai.stream.firstChunk", "First Token Stream Event"})
CHUNK_EVENTS = frozenset({"llm.content.completion.chunk", "gen_ai.content.chunk", "gen_ai.content.completion.chunk"})
"""Span events marking each streamed chunk (OpenLLMetry's and others')."""
OPENAI_PROVIDERS = frozenset({"openai", "azure.ai.openai", "az.ai.openai"})
"""Providers whose Chat Completions stream opens with a role-only chunk."""
BATCH_SPANS = 50_000
HOLD_BACK = 1_000
"""Records kept back from each batch, so that a call's second span, exported a little later, still joins it."""
_STATUS_IN_MESSAGE = re.compile(r"(?:error code|status(?: code)?)[:= ]+(\d{3})", re.I)
_FIELDS = ("provider", "model", "endpoint", "started_at", "latency_ms", "status", "error_type", "http_status",
           "error_message", "ttft_ms", "chunk_offsets_ms", "input_tokens", "output_tokens", "cache_read_tokens",
           "cache_write_tokens", "request_id", "stop_reason", "kind", "text")


def sniff(head: bytes) -> bool:
    start = head.lstrip()[:4096]
    if not start.startswith(b"{"):
        return False
    return b'"resourceSpans"' in head[:4096] or (
        b'"context"' in start and b'"trace_id"' in start and b'"span_id"' in start and b'"start_time"' in start)


def batches(path: Path) -> Iterator[pa.Table]:
    start = files.head(path, 4096).lstrip()
    console = start.startswith(b"{") and b'"resourceSpans"' not in start
    spans = _console_spans(path) if console else _otlp_spans(path)
    pending: list[dict[str, Any]] = []
    by_id: dict[str, int] = {}  # response id -> index in pending
    flushed: set[str] = set()
    for span in spans:
        record = _record(span)
        if record is None:
            continue
        key = record.get("request_id")
        if key is not None and key in by_id:
            pending[by_id[key]] = _merged(pending[by_id[key]], record)
            continue
        if key is not None and key in flushed:
            continue  # its other span went out with an earlier batch
        if key is not None:
            by_id[key] = len(pending)
        pending.append(record)
        if len(pending) >= BATCH_SPANS + HOLD_BACK:
            out, pending = pending[:BATCH_SPANS], pending[BATCH_SPANS:]
            flushed |= {r["request_id"] for r in out if r.get("request_id") is not None}
            by_id = {r["request_id"]: i for i, r in enumerate(pending) if r.get("request_id") is not None}
            yield _table(out)
    if pending:
        yield _table(pending)


# -- reading spans --------------------------------------------------------------------------------

def _otlp_spans(path: Path) -> Iterator[dict[str, Any]]:
    """Spans of OTLP JSON lines, as :func:`_span` makes them."""
    for number, line in text_lines(path):
        try:
            request = jsontext.loads(line)
            found = [(scope.get("scope") or {}, span) for resource in request.get("resourceSpans") or []
                     for scope in resource.get("scopeSpans") or [] for span in scope.get("spans") or []]
        except (ValueError, AttributeError, TypeError) as exc:
            if number == 1:
                raise BadInput(f"{path}:1: not OTLP JSON ({type(exc).__name__}: {exc}): check --format, "
                               "or the file is damaged from its start") from None
            damaged(path, number, f"unreadable ({type(exc).__name__}: {exc})")
            continue
        for scope, span in found:
            status = span.get("status") or {}
            yield _span(
                scope=scope.get("name"), attributes=_attributes(span.get("attributes")),
                start=int(span.get("startTimeUnixNano") or 0), end=int(span.get("endTimeUnixNano") or 0),
                failed=status.get("code") in (2, "STATUS_CODE_ERROR"), message=status.get("message"),
                events=[(e.get("name"), int(e.get("timeUnixNano") or 0), _attributes(e.get("attributes")))
                        for e in span.get("events") or []])


def _console_spans(path: Path) -> Iterator[dict[str, Any]]:
    """Spans of ``ConsoleSpanExporter`` output (``Span.to_json``: ISO times, plain attribute values)."""
    for number, span in json_objects(path):
        try:
            status = span.get("status") or {}
            yield _span(
                scope=(span.get("instrumentation_scope") or {}).get("name"),
                attributes=dict(span.get("attributes") or {}),
                start=_iso_ns(span.get("start_time")), end=_iso_ns(span.get("end_time")),
                failed=status.get("status_code") in ("ERROR", "StatusCode.ERROR"), message=status.get("description"),
                events=[(e.get("name"), _iso_ns(e.get("timestamp")), dict(e.get("attributes") or {}))
                        for e in span.get("events") or []])
        except (AttributeError, TypeError, ValueError) as exc:
            if number == 1:
                raise BadInput(f"{path}:1: not an OpenTelemetry span ({type(exc).__name__}: {exc}): check --format") \
                    from None
            damaged(path, number, f"not a span ({type(exc).__name__}: {exc})")


def _span(*, scope: str | None, attributes: dict[str, Any], start: int, end: int, failed: bool, message: str | None,
          events: list[tuple[str | None, int, dict[str, Any]]]) -> dict[str, Any]:
    return {"scope": scope, "attributes": attributes, "start": start, "end": end, "failed": failed,
            "message": message, "events": events}


def _iso_ns(text: str | None) -> int:
    """Nanoseconds since 1970 of an ISO 8601 time (``...Z``), 0 when absent."""
    if not text:
        return 0
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (int(moment.timestamp()) * 1_000_000 + moment.microsecond) * 1000


# -- records --------------------------------------------------------------------------------------

def _table(records: list[dict[str, Any]]) -> pa.Table:
    types = {"started_at": pa.int64(), "chunk_offsets_ms": pa.list_(pa.float64()), "http_status": pa.int64(),
             "latency_ms": pa.float64(), "ttft_ms": pa.float64()}
    table = pa.table({name: pa.array([r.get(name) for r in records], types.get(name)) for name in _FIELDS})
    return table.set_column(table.schema.get_field_index("started_at"), "started_at",
                            cols.epoch(table["started_at"], "ns")) \
        .append_column("max_gap_ms", cols.max_gap(table["chunk_offsets_ms"].combine_chunks())) \
        .append_column("tpot_ms", cols.tpot(table["latency_ms"].combine_chunks(), table["ttft_ms"].combine_chunks(),
                                           table["output_tokens"].combine_chunks()))


def _record(span: dict[str, Any]) -> dict[str, Any] | None:
    attributes = span["attributes"]
    operation = attributes.get("gen_ai.operation.name")
    if operation not in INFERENCE_OPERATIONS and "gen_ai.request.model" not in attributes:
        return None
    start, end, failed = span["start"], span["end"], span["failed"]
    provider = attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system")
    record: dict[str, Any] = {
        "provider": provider,
        "model": attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model"),
        "endpoint": attributes.get("url.full") or attributes.get("gen_ai.openai.api_base"),
        "started_at": start or None,
        "latency_ms": (end - start) / 1e6 if start and end else None,
        "status": "error" if failed else "ok",
        "input_tokens": _first(attributes, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
        "output_tokens": _first(attributes, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
        "cache_read_tokens": attributes.get("gen_ai.usage.cache_read.input_tokens"),
        "cache_write_tokens": _first(attributes, "gen_ai.usage.cache_creation.input_tokens",
                                     "gen_ai.usage.cache_write.input_tokens"),
        "request_id": attributes.get("gen_ai.response.id"),
        "stop_reason": attributes.get("anthropic.message.stop_reason")
        or _first_item(attributes.get("gen_ai.response.finish_reasons")),
        "text": None if failed else _text(attributes),
        "_wire": "http.response.status_code" in attributes or "url.full" in attributes,
    }
    chunks = sorted(t for name, t, _ in span["events"] if name in CHUNK_EVENTS)
    chat = operation == "chat" or attributes.get("llm.request.type") == "chat"
    if chunks and chat and (provider or "").lower() in OPENAI_PROVIDERS:
        chunks = _content_chunks(chunks)
    offsets = [(t - start) / 1e6 for t in chunks]
    first_events = [(t - start) / 1e6 for name, t, _ in span["events"] if name in FIRST_TOKEN_EVENTS]
    ttft_s, ttft_ms = _first(attributes, *TTFT_ATTRIBUTES), _first(attributes, *TTFT_MS_ATTRIBUTES)
    ttft = ttft_s * 1000.0 if isinstance(ttft_s, int | float) else ttft_ms if isinstance(ttft_ms, int | float) else (
        min(first_events) if first_events else offsets[0] if offsets else None)
    record["ttft_ms"] = None if failed else ttft
    record["chunk_offsets_ms"] = None if failed else offsets or None
    asked = _first(attributes, "gen_ai.request.stream", "gen_ai.is_streaming", "llm.is_streaming")
    record["kind"] = "stream" if ttft is not None or offsets or asked is True else (
        "complete" if asked is False else None)
    if failed:
        record["error_type"], record["http_status"] = _error(attributes, span["message"])
        record["error_message"] = span["message"] or _exception_message(span)
    return record


def _content_chunks(times: list[int]) -> list[int]:
    """An OpenAI Chat Completions stream's chunk events without the role-only chunk that opens it."""
    return times[1:] if len(times) > 1 else times


def _merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One record of a call's two spans: failures first, then the span closest to the wire."""
    ranked = sorted((first, second), key=lambda r: (r["status"] != "error", not r["_wire"]))
    merged = {name: next((r[name] for r in ranked if r.get(name) is not None), None) for name in (*_FIELDS, "_wire")}
    if ranked[0]["status"] == "error":
        for name in ("ttft_ms", "chunk_offsets_ms", "text"):
            merged[name] = None
    return merged


def _error(attributes: dict[str, Any], message: str | None) -> tuple[str, int | None]:
    error_type = str(attributes.get("error.type") or "")
    error_type = re.sub(r"^<class '(.*)'>$", r"\1", error_type)  # some instrumentations write str(type)
    answered = attributes.get("http.response.status_code")
    code = _int(answered)
    if code is not None and code < 400:
        code = None  # the response began (HTTP 200) and failed later: no HTTP error
    elif code is None and error_type.isdigit():
        code = int(error_type)
    if code is None and answered is None:
        match = _STATUS_IN_MESSAGE.search(message or "")
        code = int(match.group(1)) if match else None
    kind, status = cols.classify(error_type.rpartition(".")[2].replace("_error", " error"), code, "otel_error")
    if kind == "connection" and _int(answered) is not None and _int(answered) < 400:
        kind = "cut_stream"  # the connection was lost after the response had begun
    return kind, status


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _text(attributes: dict[str, Any]) -> str | None:
    """The text of the output messages, where the instrumentation captured content."""
    messages = attributes.get("gen_ai.output.messages")
    if isinstance(messages, str):
        try:
            decoded = json.loads(messages)
        except ValueError:
            decoded = None
        if isinstance(decoded, list):
            parts = [part.get("content") for message in decoded if isinstance(message, dict)
                     for part in message.get("parts") or [] if isinstance(part, dict) and part.get("type", "text")
                     == "text" and isinstance(part.get("content"), str)]
            if parts:
                return "".join(parts)
    legacy = [attributes[k] for k in sorted(attributes) if re.fullmatch(r"gen_ai\.completion\.\d+\.content", k)
              and isinstance(attributes[k], str)]
    return "".join(legacy) or None


def _exception_message(span: dict[str, Any]) -> str | None:
    for name, _, attributes in span["events"]:
        if name == "exception":
            return attributes.get("exception.message")
    return None


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item.get("key"): _value(item.get("value") or {}) for item in items or []}


def _value(value: dict[str, Any]) -> Any:
    """An OTLP ``AnyValue`` as Python (64-bit integers come as strings in OTLP JSON)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    return None


def _first(attributes: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if attributes.get(key) is not None:
            return attributes[key]
    return None


def _first_item(values: Any) -> Any:
    return values[0] if isinstance(values, list | tuple) and values else values
