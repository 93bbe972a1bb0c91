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
- ``scheduled_at`` the request's ``info.timings.targeted_start`` (when GuideLLM's scheduler meant
  it to start: the benchmark's start for a concurrency, the planned arrival for a rate),
  ``send_lag_ms`` from there to ``request_start``.
- ``model`` is the benchmark's backend model; ``kind`` ``stream`` when the backend streamed (0.8:
  the backend's ``stream``; 0.4: the request's own ``request_args``, which say ``stream``);
  ``provider`` the OpenAI API GuideLLM's ``openai_http`` backend speaks (``openai-compatible``,
  ``openai`` at OpenAI's host), ``endpoint`` the backend's target URL; ``window`` the benchmark's
  strategy (e.g. ``concurrent@4``). GuideLLM keeps no chunk times.
- GuideLLM's summary takes each percentile as the first value whose cumulative share reaches it
  (``Percentiles.from_pdf``), an order statistic: numpy's ``inverted_cdf`` (:data:`PERCENTILE_METHOD`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from lab.core import jsontext
from lab.core.errors import BadInput
from lab.imports import FORMATS
from lab.imports import columns as cols
from lab.imports.files import load_json

NAME = "guidellm"
DESCRIPTION = FORMATS[NAME]
PERCENTILE_METHOD = "inverted_cdf"
"""numpy's ``method=`` that gives GuideLLM's own percentiles (unweighted; its inter-token latency
weighs each request by its output tokens after the first, numpy's ``weights=``)."""

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
        "first_text_ms", "tpot_ms", "input_tokens", "output_tokens", "cache_read_tokens", "text", "request_id",
        "scheduled_at", "send_lag_ms", "stream")}
    for status, request in rows:
        info = request.get("info") or {}
        timings = info.get("timings") or {}
        planned, sent = timings.get("targeted_start"), timings.get("request_start")
        data["scheduled_at"].append(planned)
        data["send_lag_ms"].append((sent - planned) * 1000.0 if planned is not None and sent is not None else None)
        data["stream"].append(_streamed(request.get("request_args")))
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
    times = ("started_at", "scheduled_at", "stream")
    table = pa.table({**{k: pa.array(v) for k, v in data.items() if k not in times},
                      "started_at": cols.epoch(pa.array(data["started_at"], pa.float64()), "s"),
                      "scheduled_at": cols.epoch(pa.array(data["scheduled_at"], pa.float64()), "s")})
    rows_count = table.num_rows
    streamed = backend.get("stream")
    kinds = [("stream" if s else "complete") if (s := streamed if streamed is not None else own) is not None else None
             for own in data["stream"]]
    target = backend.get("target")
    api = backend.get("kind") or backend.get("type_") or "openai_http"
    return table.append_column("model", cols.constant(backend.get("model"), rows_count, pa.string())) \
        .append_column("kind", pa.array(kinds, pa.string())) \
        .append_column("provider", cols.constant(cols.api_provider(api, target), rows_count, pa.string())) \
        .append_column("endpoint", cols.constant(target, rows_count, pa.string())) \
        .append_column("window", cols.constant(_strategy(config), rows_count, pa.string())) \
        .append_column("attempts", cols.constant(1, rows_count, pa.int64()))


_STREAM = re.compile(r"""["']stream["']\s*:\s*(true|false|True|False)""")


def _streamed(arguments: Any) -> bool | None:
    """Whether a request was streamed, from its ``request_args``: JSON in 0.8, a Python literal in 0.4."""
    if isinstance(arguments, dict):
        found = arguments.get("stream")
        return found if isinstance(found, bool) else None
    if not isinstance(arguments, str):
        return None
    for parse in (jsontext.loads, ast.literal_eval):
        try:
            value = parse(arguments)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return _streamed(value)
    match = _STREAM.search(arguments)
    return None if match is None else match.group(1).lower() == "true"


def _strategy(config: dict[str, Any]) -> str | None:
    """A benchmark's load level as GuideLLM names it, e.g. ``concurrent@4``."""
    strategy = config.get("strategy") or {}
    kind = strategy.get("type_") or strategy.get("type")
    level = strategy.get("streams", strategy.get("rate"))
    if kind is None:
        return None
    return f"{kind}@{level}" if level is not None else str(kind)
