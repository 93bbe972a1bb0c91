"""genai-perf (``triton-inference-server/perf_analyzer``): ``profile_export.json``, the per-request
export that perf_analyzer writes and genai-perf summarises, one JSON document per run.

Each request has ``timestamp`` (send time, ns), ``request_inputs.payload`` (the JSON body sent),
``response_timestamps`` (ns) and ``response_outputs`` (each piece of the response as received,
for an OpenAI endpoint Server-Sent Events text). As genai-perf does, only pieces carrying generated
content count (the role-only first event, usage-only events and ``[DONE]`` do not):

- ``kind`` from the payload's ``stream``: a streamed request has ``chunk_offsets_ms`` those pieces'
  arrival after the send, ``ttft_ms`` the first, ``latency_ms`` the last, ``max_gap_ms`` the
  longest gap; a request without streaming (``complete``) has ``latency_ms`` only, its whole
  body's arrival (no TTFT, chunks or TPOT). ``text`` the content; ``model`` the payload's;
  ``stop_reason`` the finish reason; ``request_id`` the response's id.
- ``output_tokens``/``input_tokens`` only where the response reports ``usage`` (genai-perf counts
  tokens with a tokenizer the file does not name), and then a stream's ``tpot_ms`` follows.
- ``provider`` the OpenAI API (``service_kind`` ``openai``: ``openai-compatible``), ``endpoint``
  the URL from ``profile_export_genai_perf.json`` beside the file when it is there.
- ``started_at`` from ``timestamp`` when it is a calendar time (perf_analyzer's clock).
- The export holds completed requests; one with no content at all becomes an error
  (``invalid_response``); perf_analyzer stops at a run's first HTTP error, so the export of a run
  holds no failures. ``window`` is the experiment, e.g. ``concurrency@4``.
- genai-perf's percentiles are ``np.percentile``, linear (:data:`PERCENTILE_METHOD`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from lab.core import jsontext
from lab.core.errors import BadInput
from lab.imports import FORMATS
from lab.imports import columns as cols
from lab.imports.files import load_json

NAME = "genai-perf"
DESCRIPTION = FORMATS[NAME]
PERCENTILE_METHOD = "linear"
"""numpy's ``method=`` that gives genai-perf's own percentiles (``genai_perf/metrics/statistics.py``)."""

_CALENDAR_NS = 10**18  # 2001-09-09: perf_analyzer timestamps above this are calendar times


def sniff(head: bytes) -> bool:
    start = head.lstrip()[:16384]
    return start.startswith(b"{") and b'"experiments"' in start and (
        b'"response_timestamps"' in start or b'"request_inputs"' in start)


def batches(path: Path) -> Iterator[pa.Table]:
    document = load_json(path)
    experiments = document.get("experiments") if isinstance(document, dict) else None
    if not isinstance(experiments, list):
        raise BadInput(f"{path} is not a perf_analyzer profile export: no 'experiments' list")
    service = document.get("service_kind")
    provider = cols.api_provider("openai" if service == "openai" else None, document.get("endpoint"))
    url = _url(path, document.get("endpoint"))
    for experiment in experiments:
        requests = experiment.get("requests") or []
        if requests:
            level = experiment.get("experiment") or {}
            table = _records(requests, f"{level.get('mode')}@{level.get('value')}")
            yield table.append_column("provider", cols.constant(provider, table.num_rows, pa.string())) \
                .append_column("endpoint", cols.constant(url, table.num_rows, pa.string()))


def _url(path: Path, route: str | None) -> str | None:
    """The URL the run called, from genai-perf's summary beside the export (``input_config.endpoint``)."""
    summary = path.with_name("profile_export_genai_perf.json")
    try:
        endpoint = (jsontext.loads(summary.read_text(encoding="utf-8")).get("input_config") or {}).get("endpoint") or {}
    except (OSError, ValueError, AttributeError):
        return None
    url = endpoint.get("url")
    if not isinstance(url, str) or not url:
        return None
    url = url if "//" in url else f"http://{url}"
    custom = endpoint.get("custom") or route
    return url.rstrip("/") + "/" + custom.strip("/") if isinstance(custom, str) and custom.strip("/") else url


def _records(requests: list[dict[str, Any]], window: str) -> pa.Table:
    data: dict[str, list[Any]] = {name: [] for name in (
        "model", "kind", "started_at", "latency_ms", "status", "error_type", "ttft_ms", "chunk_offsets_ms",
        "input_tokens", "output_tokens", "text", "request_id", "stop_reason")}
    for request in requests:
        sent = request["timestamp"]
        payload = _json((request.get("request_inputs") or {}).get("payload")) or {}
        streamed = bool(payload.get("stream"))
        offsets, text, usage, meta, pending = [], [], {}, {}, ""
        for stamp, output in zip(request.get("response_timestamps") or [],
                                 request.get("response_outputs") or [], strict=False):
            received = pending + output.get("response", "")
            complete, _, pending = received.rpartition("\n\n") if not received.endswith("\n\n") \
                else (received, "", "")
            content = _content(complete, usage, meta)
            if content:
                offsets.append((stamp - sent) / 1e6)
                text.append(content)
        if pending.strip() and (content := _content(pending, usage, meta)):  # a body without event breaks
            offsets.append((stamp - sent) / 1e6)
            text.append(content)
        data["model"].append(payload.get("model"))
        data["kind"].append("stream" if streamed else "complete")
        data["started_at"].append(sent if sent > _CALENDAR_NS else None)
        data["latency_ms"].append(offsets[-1] if offsets else None)
        data["status"].append("ok" if offsets else "error")
        data["error_type"].append(None if offsets else "invalid_response")
        data["ttft_ms"].append(offsets[0] if offsets and streamed else None)
        data["chunk_offsets_ms"].append(offsets if offsets and streamed else None)
        data["input_tokens"].append(usage.get("prompt_tokens"))
        data["output_tokens"].append(usage.get("completion_tokens"))
        data["text"].append("".join(text))
        data["request_id"].append(meta.get("id"))
        data["stop_reason"].append(meta.get("finish_reason"))
    table = pa.table({k: pa.array(v) for k, v in data.items() if k not in ("started_at", "chunk_offsets_ms")})
    offsets = pa.array(data["chunk_offsets_ms"], pa.list_(pa.float64()))
    rows = table.num_rows
    return table.append_column("started_at", cols.epoch(pa.array(data["started_at"], pa.int64()), "ns")) \
        .append_column("chunk_offsets_ms", offsets) \
        .append_column("max_gap_ms", cols.max_gap(offsets)) \
        .append_column("tpot_ms", cols.tpot(table["latency_ms"].combine_chunks(), table["ttft_ms"].combine_chunks(),
                                           table["output_tokens"].combine_chunks().cast(pa.float64()))) \
        .append_column("window", cols.constant(window, rows, pa.string())) \
        .append_column("attempts", cols.constant(1, rows, pa.int64()))


def _content(response: str, usage: dict[str, Any], meta: dict[str, Any]) -> str:
    """The generated text in the events completed by one received piece (a piece may hold several
    events, or end inside one: the rest waits for the next piece); notes usage, the response id and
    the finish reason as they pass."""
    pieces = []
    for event in response.split("\n\n"):
        data = _json(event.strip().removeprefix("data:").strip())
        if not isinstance(data, dict):
            continue
        meta.setdefault("id", data.get("id"))
        usage.update(data.get("usage") or {})
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or choice.get("message") or {}
            pieces.append(delta.get("content") or choice.get("text") or "")
            if choice.get("finish_reason"):
                meta["finish_reason"] = choice["finish_reason"]
    return "".join(pieces)


def _json(text: Any) -> Any:
    if not isinstance(text, str) or not text or text == "[DONE]":
        return None
    try:
        return jsontext.loads(text)
    except ValueError:
        return None
