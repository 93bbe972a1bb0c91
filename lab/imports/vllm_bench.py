"""``vllm bench serve --save-result --save-detailed``: one JSON document per run, with per-request
lists ``latencies``, ``ttfts``, ``itls``, ``input_lens``, ``output_lens``, ``generated_texts`` and
``errors`` (empty for a success), all in request order.

- ``latency_ms`` and ``ttft_ms`` from seconds; ``chunk_offsets_ms`` the TTFT followed by the
  ``itls`` gaps (one per streamed chunk after the first), ``max_gap_ms`` their largest;
  ``tpot_ms`` (latency - TTFT) / (output tokens - 1), vLLM's own TPOT; ``model`` ``model_id``.
- vLLM marks what a failed request never measured with 0: those become empty, not 0 ms. A failure
  is classified from its message (vLLM keeps the HTTP reason phrase, e.g. ``Internal Server
  Error``, or the exception's traceback).
- ``send_lag_ms`` ``queue_times`` (vLLM 0.34 on: how long a request waited for its turn under
  ``--max-concurrency`` after it was due). ``start_times`` are ``time.perf_counter()`` readings (no
  calendar time): ``started_at`` and ``scheduled_at`` are left empty.
- ``provider`` the API of ``endpoint_type``/``backend`` (``openai-chat``, ``openai``, ... the OpenAI
  API: ``openai-compatible``); ``kind`` ``stream`` (vLLM's OpenAI clients always stream).
- vLLM's percentiles are ``np.percentile``, linear (:data:`PERCENTILE_METHOD`).

Without ``--save-detailed`` the file has no per-request lists and cannot be imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lab.core.errors import BadInput
from lab.imports import FORMATS
from lab.imports import columns as cols
from lab.imports.files import load_json

NAME = "vllm-bench"
DESCRIPTION = FORMATS[NAME]
PERCENTILE_METHOD = "linear"
"""numpy's ``method=`` that gives vLLM's own percentiles."""

_NEVER_RECEIVED = "Never received a valid chunk"


def sniff(head: bytes) -> bool:
    start = head.lstrip()[:8192]
    return start.startswith(b"{") and b'"model_id"' in start and b'"num_prompts"' in start and (
        b'"endpoint_type"' in start or b'"backend"' in start)


def batches(path: Path) -> Iterator[pa.Table]:
    result = load_json(path)
    if not isinstance(result, dict) or not isinstance(result.get("errors"), list):
        raise BadInput(f"{path} has no per-request results: save it with `vllm bench serve --save-result "
                         "--save-detailed`")
    errors: list[str] = result["errors"]
    rows = len(errors)
    failed = pa.array([bool(e) for e in errors])

    def per_request(key: str, scale: float = 1.0) -> pa.Array:
        values = result.get(key) or [None] * rows
        if len(values) != rows:
            raise BadInput(f"{path}: '{key}' has {len(values)} entries for {rows} requests; the file is damaged")
        array = pa.array(values, pa.float64())
        return pc.if_else(failed, None, pc.multiply(array, scale))

    latency, ttft = per_request("latencies", 1000.0), per_request("ttfts", 1000.0)
    gaps = pa.array([None if e else [g * 1000.0 for g in (i or [])] for e, i in
                     zip(errors, result.get("itls") or [None] * rows, strict=True)], pa.list_(pa.float64()))
    offsets = cols.offsets_from_gaps(ttft, gaps)
    output_tokens = per_request("output_lens")
    index = cols.failed_rows(failed)
    kinds, codes = cols.scatter(rows, index, (_error(errors[i]) for i in index))
    queued = result.get("queue_times")
    if queued is not None and len(queued) != rows:
        raise BadInput(f"{path}: 'queue_times' has {len(queued)} entries for {rows} requests; the file is damaged")
    api = result.get("endpoint_type") or result.get("backend")
    yield pa.table({
        "provider": cols.constant(cols.api_provider(_api(api)), rows, pa.string()),
        "model": cols.constant(result.get("model_id"), rows, pa.string()),
        "send_lag_ms": pc.multiply(pa.array(queued or [None] * rows, pa.float64()), 1000.0),
        "kind": cols.constant("stream", rows, pa.string()),
        "latency_ms": latency,
        "status": pc.if_else(failed, "error", "ok"),
        "ttft_ms": ttft,
        "chunk_offsets_ms": offsets,
        "max_gap_ms": cols.max_gap(offsets),
        "tpot_ms": cols.tpot(latency, ttft, output_tokens),
        "input_tokens": pa.array(result.get("input_lens") or [None] * rows, pa.float64()),
        "output_tokens": output_tokens,
        "text": pa.array([t or "" for t in result.get("generated_texts") or [""] * rows], pa.string()),
        "error_type": kinds,
        "http_status": codes,
        "error_message": pa.array([e or None for e in errors], pa.string()),
        "attempts": cols.constant(1, rows, pa.int64()),
    })


def _api(name: str | None) -> str | None:
    """vLLM's backend names of the OpenAI API (``openai``, ``openai-chat``, ``vllm``, ...) as one."""
    text = (name or "").lower()
    return "openai" if text.startswith("openai") or text in ("vllm", "vllm-chat", "lmdeploy", "sglang") else None


def _error(message: str) -> tuple[str, int | None]:
    if message.startswith(_NEVER_RECEIVED):
        return "invalid_response", None
    last_line = message.strip().splitlines()[-1] if message.strip() else ""
    return cols.classify(last_line, None, "vllm_bench_error")
