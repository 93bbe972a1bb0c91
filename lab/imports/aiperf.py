"""AIPerf (``ai-dynamo/aiperf``): ``profile_export.jsonl``, one JSON line per request.

Each line holds ``metadata`` (``request_start_ns``, epoch nanoseconds; ``x_request_id``;
``benchmark_phase``; ``was_cancelled``), ``metrics`` (``{"value": v, "unit": u}`` in display units,
milliseconds for times) and, for a failure, ``error`` (``code``, ``type``, ``message``).

- ``started_at`` ``request_start_ns``; ``latency_ms`` ``request_latency`` (to the last content
  chunk); ``ttft_ms`` ``time_to_first_token``; ``first_text_ms`` ``time_to_first_output_token``;
  ``tpot_ms`` AIPerf's per-request ``inter_token_latency`` ((latency - TTFT) / (tokens - 1));
  ``chunk_offsets_ms`` TTFT followed by the ``inter_chunk_latency`` gaps, ``max_gap_ms`` their
  largest; ``connect_ms`` ``http_req_connecting`` (0 on a reused connection).
- ``input_tokens``/``output_tokens``: the server's usage (``usage_prompt_tokens``,
  ``usage_completion_tokens``) where reported, else AIPerf's own token counts.
- A failure keeps ``error.code`` as ``http_status`` when it is one; AIPerf's 499 (it cancelled the
  request, e.g. at its request timeout) becomes ``timeout`` or ``cancelled``.
- ``scheduled_at`` ``credit_issued_ns`` (when AIPerf's timing manager released the request: its
  schedule for a request rate, a free slot for a concurrency), ``send_lag_ms`` the wait from there
  to ``request_start_ns``.
- ``window`` is AIPerf's ``benchmark_phase`` (``profiling``, ``warmup``); ``model``, ``kind``
  (streamed or not), ``provider`` (from the endpoint type: ``chat``/``completions`` the OpenAI API,
  ``messages`` Anthropic's, :func:`lab.imports.columns.api_provider`) and ``endpoint`` (the URL)
  come from ``profile_export_aiperf.json`` beside the file when it is there (0.10's layout or
  0.13's), else ``kind`` is ``stream`` for requests with a TTFT. AIPerf sends each request once:
  ``attempts`` is 1. AIPerf keeps no response text.
- AIPerf's summary interpolates its percentiles linearly (:data:`PERCENTILE_METHOD`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lab.core import jsontext
from lab.imports import FORMATS
from lab.imports import columns as cols
from lab.imports.files import json_lines

NAME = "aiperf"
DESCRIPTION = FORMATS[NAME]
PERCENTILE_METHOD = "linear"
"""numpy's ``method=`` that gives AIPerf's own percentiles (``metric_result_from_array``)."""

_VALUE = pa.struct([("value", pa.float64())])
_METRICS = ("request_latency", "time_to_first_token", "time_to_first_output_token", "inter_token_latency",
            "usage_prompt_tokens", "usage_completion_tokens", "input_sequence_length", "output_sequence_length",
            "http_req_connecting")
SCHEMA = pa.schema([
    ("metadata", pa.struct([("request_start_ns", pa.int64()), ("credit_issued_ns", pa.int64()),
                            ("x_request_id", pa.string()), ("benchmark_phase", pa.string()),
                            ("was_cancelled", pa.bool_())])),
    ("metrics", pa.struct([(name, _VALUE) for name in _METRICS]
                          + [("inter_chunk_latency", pa.struct([("value", pa.list_(pa.float64()))]))])),
    ("error", pa.struct([("code", pa.int64()), ("type", pa.string()), ("message", pa.string())])),
])


def sniff(head: bytes) -> bool:
    first = head.lstrip()[:4096]
    return first.startswith(b"{") and b'"metadata"' in first and (
        b'"request_start_ns"' in first or b'"x_request_id"' in first) and (
        b'"metrics"' in first or b'"error"' in first)


def batches(path: Path) -> Iterator[pa.Table]:
    model, streaming, api, url = _run_config(path)
    for raw in json_lines(path, SCHEMA):
        cols.require(raw, ("metadata.request_start_ns", "metadata.x_request_id"), path, NAME)
        table = _records(raw, model, streaming)
        rows = table.num_rows
        yield table.append_column("provider", cols.constant(cols.api_provider(api, url), rows, pa.string())) \
            .append_column("endpoint", cols.constant(url, rows, pa.string()))


def _records(raw: pa.Table, model: str | None, streaming: bool | None) -> pa.Table:
    metric = {name: cols.column(raw, f"metrics.{name}.value") for name in _METRICS}
    cancelled = pc.fill_null(cols.column(raw, "metadata.was_cancelled"), False)
    failed = cancelled
    for part in ("code", "type", "message"):
        failed = pc.or_(failed, pc.is_valid(cols.column(raw, f"error.{part}")))
    kinds, codes = _errors(raw, failed, cancelled)
    ttft = metric["time_to_first_token"]
    offsets = cols.offsets_from_gaps(ttft.combine_chunks(),
                                     cols.column(raw, "metrics.inter_chunk_latency.value").combine_chunks())
    return pa.table({
        "model": pa.nulls(raw.num_rows, pa.string()) if model is None else cols.constant(model, raw.num_rows),
        "kind": pc.if_else(pc.is_valid(ttft), "stream", None) if streaming is None
        else cols.constant("stream" if streaming else "complete", raw.num_rows),
        "started_at": cols.epoch(cols.column(raw, "metadata.request_start_ns"), "ns"),
        "scheduled_at": cols.epoch(cols.column(raw, "metadata.credit_issued_ns"), "ns"),
        "send_lag_ms": pc.divide(pc.subtract(cols.column(raw, "metadata.request_start_ns"),
                                             cols.column(raw, "metadata.credit_issued_ns")).cast(pa.float64()), 1e6),
        "latency_ms": metric["request_latency"],
        "status": pc.if_else(failed, "error", "ok"),
        "ttft_ms": ttft,
        "first_text_ms": metric["time_to_first_output_token"],
        "chunk_offsets_ms": offsets,
        "tpot_ms": metric["inter_token_latency"],
        "max_gap_ms": cols.max_gap(offsets),
        "connect_ms": metric["http_req_connecting"],
        "input_tokens": pc.coalesce(metric["usage_prompt_tokens"], metric["input_sequence_length"]),
        "output_tokens": pc.coalesce(metric["usage_completion_tokens"], metric["output_sequence_length"]),
        "error_type": kinds,
        "http_status": codes,
        "error_message": pc.if_else(failed, cols.column(raw, "error.message"), None),
        "request_id": cols.column(raw, "metadata.x_request_id"),
        "window": cols.column(raw, "metadata.benchmark_phase"),
        "attempts": cols.constant(1, raw.num_rows),
    })


def _errors(raw: pa.Table, failed: pa.ChunkedArray, cancelled: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    index = cols.failed_rows(failed)
    rows = zip(cancelled.take(index).to_pylist(), cols.column(raw, "error.code").take(index).to_pylist(),
               cols.column(raw, "error.type").take(index).to_pylist(),
               cols.column(raw, "error.message").take(index).to_pylist(), strict=True)
    return cols.scatter(raw.num_rows, index, (_error(*row) for row in rows))


def _error(cancelled: bool, code: int | None, name: str | None, message: str | None) -> tuple[str, int | None]:
    if code == 499 or cancelled:  # AIPerf cancelled the request itself: no HTTP response
        timed_out = "after being sent" in (message or "") or "timeout" in (name or "").lower()
        return ("timeout" if timed_out else "cancelled"), None
    return cols.classify(f"{name or ''} {message or ''}", code, "aiperf_error")


def _run_config(path: Path) -> tuple[str | None, bool | None, str | None, str | None]:
    """The one model, the streaming flag, the endpoint type and the one URL named by the run's summary
    beside the records, if any (AIPerf 0.13: ``models.items``, ``endpoint.urls``; 0.10:
    ``endpoint.model_names``, ``endpoint.url``)."""
    summary = path.with_name("profile_export_aiperf.json")
    try:
        config = jsontext.loads(summary.read_text(encoding="utf-8")).get("input_config") or {}
        endpoint = config.get("endpoint") or {}
        items = (config.get("models") or {}).get("items") or []
        names = [m.get("name") for m in items] or endpoint.get("model_names") or []
        urls = endpoint.get("urls") or ([endpoint["url"]] if endpoint.get("url") else [])
        api = endpoint.get("type")
        streaming = endpoint.get("streaming")
    except (OSError, ValueError, AttributeError, TypeError):
        return None, None, None, None
    url = urls[0] if len(urls) == 1 and isinstance(urls[0], str) else None
    if url and "//" not in url:
        url = f"http://{url}"
    custom = endpoint.get("custom_endpoint") or endpoint.get("path")
    if url and isinstance(custom, str) and custom.strip("/"):
        url = url.rstrip("/") + "/" + custom.strip("/")
    return (names[0] if len(names) == 1 else None), streaming, api, url
