"""LLMPerf (``ray-project/llmperf``): per-request results, a JSON list per file.

:func:`read_llmperf` reads one file or a folder of them (the public ``llmperf-leaderboard`` raw
data) into a frame of :class:`lab.core.records.CallRecord` rows; :func:`batches` gives the same records
to :mod:`lab.imports` as Arrow batches. LLMPerf's files carry no timestamps: ``started_at`` is a
placeholder, reported as a lacking field.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from lab.core import jsontext
from lab.core.errors import BadInput
from lab.core.records import CallRecord, records_frame
from lab.imports import FORMATS

NAME = "llmperf"
DESCRIPTION = FORMATS[NAME]
PLACEHOLDERS = ("started_at",)
"""Fields every LLMPerf record fills with a placeholder, not a measurement."""


#: LLMPerf's per-request files carry no timestamps; every imported record gets
#: this placeholder, the date of the LLMPerf leaderboard results (2023-12-19).
LLMPERF_STARTED_AT = datetime(2023, 12, 19, tzinfo=UTC)

#: Keys of an LLMPerf per-request result besides ``error_code``; at least one must be present.
_LLMPERF_METRICS = frozenset({
    "error_msg", "ttft_s", "end_to_end_latency_s", "inter_token_latency_s",
    "request_output_throughput_token_per_s", "number_input_tokens",
    "number_output_tokens", "number_total_tokens",
})


def llmperf_dir() -> Path | None:
    """The LLMPerf data folder, ``LLMPERF_DIR`` (the project's Makefile and CI set it to the shared copy);
    ``None`` when it is unset or not a folder."""
    value = os.environ.get("LLMPERF_DIR")
    return Path(value) if value and Path(value).is_dir() else None


def read_llmperf(path: str | Path) -> pd.DataFrame:
    """Read LLMPerf per-request results into a frame of call records.

    ``path`` is one file or a folder searched recursively for ``*.json`` files;
    in a folder, JSON that is not a list of LLMPerf per-request results (a
    summary, a config) is skipped, while a named file in another format raises
    ``ValueError``. Each request becomes one record:

    - ``provider`` and ``model`` from the file name (:func:`names`): LLMPerf's
      own ``<model>_<mean input>_<mean output>_individual_responses.json``
      gives the model (as its summary beside the file writes it, else as the
      file name has it) and no provider; the leaderboard's
      ``<provider>_<size>.json`` is split at its first underscore
      (``together_13b.json`` -> ``together``, ``13b``; no underscore:
      ``model == ""``); ``endpoint`` is ``"llmperf:<file name>"``, ``run_id`` the
      name of the file's folder, ``sample`` the request's index in its file,
      ``experiment`` ``"llmperf"``, ``kind`` ``"stream"`` (LLMPerf streams).
    - ``latency_ms`` and ``ttft_ms`` are ``end_to_end_latency_s`` and ``ttft_s``
      in milliseconds; ``input_tokens``, ``output_tokens`` the request's counts;
      ``tpot_ms`` follows from them, (latency - TTFT) / (output tokens - 1);
      ``text`` is ``GEN_TEXT`` where the file has it.
    - ``status`` is ``"ok"`` when ``error_code`` is null, else ``"error"``, with
      ``error_type`` ``rate_limit`` (429), ``server_error`` (5xx),
      ``client_error`` (other HTTP codes) or ``llmperf_error`` (LLMPerf's own
      negative codes: -1 an exception without an HTTP status, -100 its
      output-length check); ``http_status`` is the code when it is an HTTP
      status; ``error_message`` is ``error_msg`` (``None`` when empty).
    - LLMPerf writes 0 for what a failed request never measured. Those zeros
      become ``None`` (NaN in the frame) for latency, TTFT and output tokens,
      so that failures cannot pass for instant calls; a failure that did
      complete (e.g. code -100, too few tokens) keeps its measured values.
    - ``started_at`` is a placeholder, :data:`LLMPERF_STARTED_AT`
      (2023-12-19T00:00:00Z, the leaderboard's date), because per-request files
      carry no timestamps; ``cost_usd`` is ``None``; ``synthetic`` is ``False``.
    """
    path = Path(path)
    if path.is_dir():
        files = []
        for candidate in sorted(path.rglob("*.json")):
            results = _load(candidate)
            if results is not None:
                files.append((candidate, results))
        if not files:
            raise BadInput(f"no LLMPerf per-request results (*.json lists) under {path}")
    elif path.is_file():
        results = _load(path)
        if results is None:
            raise BadInput(
                f"{path} is not an LLMPerf per-request results file: expected a JSON list "
                "of objects with an 'error_code' and LLMPerf metrics such as 'end_to_end_latency_s'"
            )
        files = [(path, results)]
    else:
        raise FileNotFoundError(f"no such file or folder: {path}")
    return records_frame(
        _record(file, index, result) for file, results in files for index, result in enumerate(results)
    )


PERCENTILE_METHOD = "linear"
"""numpy's ``method=`` that gives LLMPerf's own percentiles (its summary's ``pandas.Series.quantile``)."""


def sniff(head: bytes) -> bool:
    start = head.lstrip()[:4096]
    return start.startswith(b"[") and b'"error_code"' in start and any(
        f'"{key}"'.encode() in start for key in _LLMPERF_METRICS)


def batches(path: Path) -> Iterator[pa.Table]:
    """The records of :func:`read_llmperf` as one Arrow batch."""
    frame = read_llmperf(path)
    kept = [c for c in frame.columns if c not in ("attempt_errors", "chunk_offsets_ms")]
    yield pa.Table.from_pandas(frame[kept], preserve_index=False)


def _load(path: Path) -> list[dict[str, Any]] | None:
    """The file's per-request results, or ``None`` when it is not in LLMPerf's format."""
    try:
        data = jsontext.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, list):
        return None
    for item in data:
        if not (isinstance(item, dict) and "error_code" in item and _LLMPERF_METRICS & item.keys()):
            return None
    return data


def _measured(value: Any, scale: float = 1.0) -> float | None:
    """A positive, finite measurement scaled, else ``None`` (LLMPerf's 0 means 'not measured')."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number * scale if math.isfinite(number) and number > 0 else None


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _error(code: Any) -> tuple[str | None, int | None]:
    """``(error_type, http_status)`` for an LLMPerf ``error_code``."""
    if code is None:
        return None, None
    try:
        number = int(code) if float(code).is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is not None and 100 <= number <= 599:
        if number == 429:
            return "rate_limit", number
        if number >= 500:
            return "server_error", number
        return "client_error", number
    return "llmperf_error", None


def _tpot(latency_ms: float | None, ttft_ms: float | None, output_tokens: int | None) -> float | None:
    """(latency - TTFT) / (output tokens - 1), the record's time per output token (LLMPerf's own
    ``inter_token_latency_s`` divides by all output tokens instead)."""
    if latency_ms is None or ttft_ms is None or output_tokens is None or output_tokens < 2:
        return None
    return (latency_ms - ttft_ms) / (output_tokens - 1)


_TOOL_FILE = re.compile(r"^(?P<model>.+)_(?P<input>\d+)_(?P<output>\d+)_individual_responses$")
"""LLMPerf's name of a per-request results file (``token_benchmark_ray.py``): the model with every run
of characters other than letters, digits, ``_`` and ``-`` made ``-``, and the mean input and output
tokens asked for."""


def names(file: Path) -> tuple[str | None, str]:
    """``(provider, model)`` of an LLMPerf results file, from its name (:func:`read_llmperf`)."""
    tool = _TOOL_FILE.match(file.stem)
    if tool is None:
        provider, _, model = file.stem.partition("_")
        return provider, model
    summary = file.with_name(f"{tool['model']}_{tool['input']}_{tool['output']}_summary.json")
    try:
        named = jsontext.loads(summary.read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        named = None
    return None, named if isinstance(named, str) and named else tool["model"]


def _record(file: Path, index: int, result: dict[str, Any]) -> CallRecord:
    provider, model = names(file)
    code = result.get("error_code")
    error_type, http_status = _error(code)
    latency_ms = _measured(result.get("end_to_end_latency_s"), 1000.0)
    ttft_ms = _measured(result.get("ttft_s"), 1000.0)
    output_tokens = _count(result.get("number_output_tokens"))
    if code is not None and latency_ms is None:
        output_tokens = None  # nothing was received; LLMPerf's count is a placeholder
    return CallRecord(
        provider=provider,
        model=model,
        endpoint=f"llmperf:{file.name}",
        kind="stream",
        started_at=LLMPERF_STARTED_AT,
        latency_ms=latency_ms,  # type: ignore[arg-type]  # None for a failure that measured nothing
        status="ok" if code is None else "error",
        ttft_ms=ttft_ms,
        input_tokens=_count(result.get("number_input_tokens")),
        output_tokens=output_tokens,
        tpot_ms=_tpot(latency_ms, ttft_ms, output_tokens),
        cost_usd=None,
        error_type=error_type,
        http_status=http_status,
        attempts=1,
        text=result.get("GEN_TEXT") or "",
        run_id=file.absolute().parent.name,
        experiment="llmperf",
        sample=index,
        error_message=(result.get("error_msg") or None) if code is not None else None,
        synthetic=False,
    )
