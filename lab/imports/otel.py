"""OpenTelemetry traces in OTLP JSON (one ``ExportTraceServiceRequest`` per line, as the collector's
file exporter and ``opentelemetry-exporter-otlp-json-file`` write them) with the GenAI semantic
conventions. Each inference span (``gen_ai.operation.name`` ``chat``, ``text_completion`` or
``generate_content``, or any span with ``gen_ai.request.model``) becomes a record; other spans are
skipped.

- ``started_at`` the span's start, ``latency_ms`` its duration; ``ttft_ms`` the attribute
  ``gen_ai.response.time_to_first_chunk`` (seconds; :data:`TTFT_ATTRIBUTES`), else the first
  first-token or chunk event (:data:`FIRST_TOKEN_EVENTS`, :data:`CHUNK_EVENTS`); chunk events also
  give ``chunk_offsets_ms`` and ``max_gap_ms``.
- ``provider`` ``gen_ai.provider.name`` (or the older ``gen_ai.system``); ``model`` the response's
  model, else the request's; tokens ``gen_ai.usage.*``; ``request_id`` ``gen_ai.response.id``;
  ``stop_reason`` the first ``gen_ai.response.finish_reasons``.
- Status ``ERROR`` (code 2) is a failure: HTTP status from ``http.response.status_code``, a numeric
  ``error.type``, or the status message (``Error code: 500``); else classified by ``error.type``.

Spans are decoded line by line with the standard library (each line holds many spans); a damaged
line is reported with its ``file:line`` and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from lab.core import jsontext
from lab.core.errors import BadInput
from lab.imports import FORMATS
from lab.imports import columns as cols
from lab.imports.files import damaged, text_lines

NAME = "otel"
DESCRIPTION = FORMATS[NAME]

INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
TTFT_ATTRIBUTES = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
"""Span attributes holding the time to the first chunk, in seconds."""
TTFT_MS_ATTRIBUTES = ("ai.response.msToFirstChunk",)
"""The same in milliseconds (the Vercel AI SDK's)."""
FIRST_TOKEN_EVENTS = frozenset({"first_token", "llm.first_token", "ai.stream.firstChunk", "First Token Stream Event"})
CHUNK_EVENTS = frozenset({"llm.content.completion.chunk", "gen_ai.content.chunk"})
"""Span events marking each streamed chunk (OpenLLMetry's and others')."""
BATCH_SPANS = 50_000
_STATUS_IN_MESSAGE = re.compile(r"(?:error code|status(?: code)?)[:= ]+(\d{3})", re.I)
_FIELDS = ("provider", "model", "started_at", "latency_ms", "status", "error_type", "http_status",
           "error_message", "ttft_ms", "chunk_offsets_ms", "input_tokens", "output_tokens", "cache_read_tokens",
           "cache_write_tokens", "request_id", "stop_reason", "kind")


def sniff(head: bytes) -> bool:
    return head.lstrip()[:2048].startswith(b"{") and b'"resourceSpans"' in head[:4096]


def batches(path: Path) -> Iterator[pa.Table]:
    data: dict[str, list[Any]] = {name: [] for name in _FIELDS}
    for number, line in text_lines(path):
        try:
            request = jsontext.loads(line)
            spans = [span for resource in request.get("resourceSpans") or []
                     for scope in resource.get("scopeSpans") or [] for span in scope.get("spans") or []]
        except (ValueError, AttributeError, TypeError) as exc:
            if number == 1:
                raise BadInput(f"{path}:1: not OTLP JSON ({type(exc).__name__}: {exc}): check --format, "
                                 "or the file is damaged from its start") from None
            damaged(path, number, f"unreadable ({type(exc).__name__}: {exc})")
            continue
        for span in spans:
            record = _record(span)
            if record is not None:
                for name in _FIELDS:
                    data[name].append(record.get(name))
        if len(data["status"]) >= BATCH_SPANS:
            yield _table(data)
            data = {name: [] for name in _FIELDS}
    if data["status"]:
        yield _table(data)


def _table(data: dict[str, list[Any]]) -> pa.Table:
    types = {"started_at": pa.int64(), "chunk_offsets_ms": pa.list_(pa.float64()), "http_status": pa.int64()}
    table = pa.table({name: pa.array(values, types.get(name)) for name, values in data.items()})
    return table.set_column(table.schema.get_field_index("started_at"), "started_at",
                            cols.epoch(table["started_at"], "ns")) \
        .append_column("max_gap_ms", cols.max_gap(table["chunk_offsets_ms"].combine_chunks()))


def _record(span: dict[str, Any]) -> dict[str, Any] | None:
    attributes = _attributes(span.get("attributes"))
    operation = attributes.get("gen_ai.operation.name")
    if operation not in INFERENCE_OPERATIONS and "gen_ai.request.model" not in attributes:
        return None
    start, end = int(span.get("startTimeUnixNano") or 0), int(span.get("endTimeUnixNano") or 0)
    status = span.get("status") or {}
    failed = status.get("code") in (2, "STATUS_CODE_ERROR")
    record: dict[str, Any] = {
        "provider": attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system"),
        "model": attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model"),
        "started_at": start or None,
        "latency_ms": (end - start) / 1e6 if start and end else None,
        "status": "error" if failed else "ok",
        "input_tokens": _first(attributes, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
        "output_tokens": _first(attributes, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
        "cache_read_tokens": attributes.get("gen_ai.usage.cache_read.input_tokens"),
        "cache_write_tokens": attributes.get("gen_ai.usage.cache_creation.input_tokens"),
        "request_id": attributes.get("gen_ai.response.id"),
        "stop_reason": _first_item(attributes.get("gen_ai.response.finish_reasons")),
    }
    offsets = sorted((int(e.get("timeUnixNano") or 0) - start) / 1e6 for e in span.get("events") or []
                     if e.get("name") in CHUNK_EVENTS)
    first_events = [(int(e.get("timeUnixNano") or 0) - start) / 1e6 for e in span.get("events") or []
                    if e.get("name") in FIRST_TOKEN_EVENTS]
    ttft_s, ttft_ms = _first(attributes, *TTFT_ATTRIBUTES), _first(attributes, *TTFT_MS_ATTRIBUTES)
    ttft = ttft_s * 1000.0 if isinstance(ttft_s, int | float) else ttft_ms if isinstance(ttft_ms, int | float) else (
        min(first_events) if first_events else offsets[0] if offsets else None)
    record["ttft_ms"] = None if failed else ttft
    record["chunk_offsets_ms"] = offsets or None
    record["kind"] = "stream" if ttft is not None or offsets or attributes.get("gen_ai.request.stream") else None
    if failed:
        record["error_type"], record["http_status"] = _error(attributes, status)
        record["error_message"] = status.get("message") or _exception_message(span)
    return record


def _error(attributes: dict[str, Any], status: dict[str, Any]) -> tuple[str, int | None]:
    error_type = str(attributes.get("error.type") or "")
    error_type = re.sub(r"^<class '(.*)'>$", r"\1", error_type)  # some instrumentations write str(type)
    code = attributes.get("http.response.status_code")
    if code is None and error_type.isdigit():
        code = int(error_type)
    if code is None:
        match = _STATUS_IN_MESSAGE.search(status.get("message") or "")
        code = int(match.group(1)) if match else None
    return cols.classify(error_type.rpartition(".")[2], int(code) if code is not None else None, "otel_error")


def _exception_message(span: dict[str, Any]) -> str | None:
    for event in span.get("events") or []:
        if event.get("name") == "exception":
            return _attributes(event.get("attributes")).get("exception.message")
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
    return values[0] if isinstance(values, list) and values else values
