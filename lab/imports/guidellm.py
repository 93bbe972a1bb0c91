"""GuideLLM (``vllm-project/guidellm``): ``benchmarks.json``, one JSON document per run.

Each benchmark (one load level) lists its requests under ``requests.successful``, ``errored`` and
``incomplete`` (cut off when the benchmark ended). Per request:

- ``started_at`` ``request_start_time`` (epoch seconds); ``latency_ms`` ``request_latency``
  (seconds; GuideLLM gives none for a failure); ``ttft_ms`` ``time_to_first_token_ms``;
  ``first_text_ms`` ``time_to_first_output_token_ms``; ``tpot_ms`` ``inter_token_latency_ms``
  ((last token - first token) / (tokens - 1), the record's definition); ``input_tokens``
  ``prompt_tokens``; ``output_tokens``; ``cache_read_tokens`` ``cached_tokens``; ``text``
  ``output``; ``request_id`` the server's ``response_id``.
- ``errored`` requests become errors classified from GuideLLM's error text (the HTTP status it
  quotes, else the exception's name); ``incomplete`` ones ``cancelled``.
- ``model`` is the benchmark's backend model; ``kind`` ``stream`` when the backend streamed;
  ``window`` the benchmark's strategy (e.g. ``concurrent@4``). GuideLLM keeps no chunk times.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from lab.core.errors import BadInput
from lab.imports import FORMATS
from lab.imports import columns as cols
from lab.imports.files import load_json

NAME = "guidellm"
DESCRIPTION = FORMATS[NAME]

_STATUSES = {"successful": "ok", "errored": "error", "incomplete": "error"}


def sniff(head: bytes) -> bool:
    start = head.lstrip()[:8192]
    return start.startswith(b"{") and b'"guidellm_version"' in start or (
        b'"benchmarks"' in start and b'"generative_' in head)


def batches(path: Path) -> Iterator[pa.Table]:
    document = load_json(path)
    benchmarks = document.get("benchmarks") if isinstance(document, dict) else None
    if not isinstance(benchmarks, list):
        raise BadInput(f"{path} is not a GuideLLM benchmarks.json: no 'benchmarks' list")
    for benchmark in benchmarks:
        rows = [(status, request) for status in _STATUSES
                for request in (benchmark.get("requests") or {}).get(status) or []]
        if rows:
            yield _records(benchmark, rows)


def _records(benchmark: dict[str, Any], rows: list[tuple[str, dict[str, Any]]]) -> pa.Table:
    config = benchmark.get("config") or {}
    backend = config.get("backend") or {}
    data: dict[str, list[Any]] = {name: [] for name in (
        "started_at", "latency_ms", "status", "error_type", "http_status", "error_message", "ttft_ms",
        "first_text_ms", "tpot_ms", "input_tokens", "output_tokens", "cache_read_tokens", "text", "request_id")}
    for status, request in rows:
        info = request.get("info") or {}
        error = info.get("error")
        if status == "successful":
            kind, code = None, None
        elif status == "incomplete":
            kind, code = "cancelled", None
        else:
            kind, code = cols.classify(error, cols.status_in(error), "guidellm_error")
        latency = request.get("request_latency")
        data["started_at"].append(request.get("request_start_time"))
        data["latency_ms"].append(None if latency is None else latency * 1000.0)
        data["status"].append(_STATUSES[status])
        data["error_type"].append(kind)
        data["http_status"].append(code)
        data["error_message"].append(error if status != "successful" else None)
        data["ttft_ms"].append(request.get("time_to_first_token_ms"))
        data["first_text_ms"].append(request.get("time_to_first_output_token_ms"))
        data["tpot_ms"].append(request.get("inter_token_latency_ms"))
        data["input_tokens"].append(request.get("prompt_tokens"))
        data["output_tokens"].append(request.get("output_tokens"))
        data["cache_read_tokens"].append(request.get("cached_tokens"))
        data["text"].append(request.get("output") or "")
        data["request_id"].append(request.get("response_id"))
    table = pa.table({**{k: pa.array(v) for k, v in data.items() if k != "started_at"},
                      "started_at": cols.epoch(pa.array(data["started_at"], pa.float64()), "s")})
    rows_count = table.num_rows
    streamed = backend.get("stream")
    return table.append_column("model", cols.constant(backend.get("model"), rows_count, pa.string())) \
        .append_column("kind", cols.constant(None if streamed is None else "stream" if streamed else "complete",
                                             rows_count, pa.string())) \
        .append_column("window", cols.constant(_strategy(config), rows_count, pa.string())) \
        .append_column("attempts", cols.constant(1, rows_count, pa.int64()))


def _strategy(config: dict[str, Any]) -> str | None:
    """A benchmark's load level as GuideLLM names it, e.g. ``concurrent@4``."""
    strategy = config.get("strategy") or {}
    kind = strategy.get("type_") or strategy.get("type")
    level = strategy.get("streams", strategy.get("rate"))
    if kind is None:
        return None
    return f"{kind}@{level}" if level is not None else str(kind)
