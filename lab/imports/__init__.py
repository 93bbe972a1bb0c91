"""Import measurements made by other tools as call records, so every analysis of the lab applies.

One module per format (:data:`FORMATS`): ``aiperf``, ``genai-perf``, ``guidellm``, ``vllm-bench``,
``litellm``, ``otel``, ``llmperf`` and ``csv`` (CSV or Parquet with a column mapping). Each keeps
per-request rows only, failures as error records with their codes, and what the source measured;
a field the source does not hold stays empty (NaN), never invented.

- :func:`read` (path, format=None) -> frame of call records; the format is detected from the content.
- :func:`inspect` -> :class:`Imported`: format, rows, errors and the record fields the source lacks.
- :func:`import_run` stores a source as a run (``calls.parquet`` and a manifest); ``lab import``.

Large sources stream: JSON lines and CSV are parsed by ``pyarrow`` in blocks, and damaged lines are
reported (``file:line``, :class:`lab.store.lines.DamagedLine` warnings) and skipped. gzip files are read
as they are.
"""

import importlib
from typing import Any

FORMATS = {
    "aiperf": "AIPerf profile_export.jsonl (per-request records)",
    "genai-perf": "genai-perf / perf_analyzer profile_export.json",
    "guidellm": "GuideLLM benchmarks.json",
    "vllm-bench": "vllm bench serve result JSON (--save-result --save-detailed)",
    "litellm": "LiteLLM StandardLoggingPayload lines or spend-log rows",
    "otel": "OpenTelemetry OTLP JSON spans (GenAI semantic conventions)",
    "llmperf": "LLMPerf per-request results (a JSON list per file, or a folder of them)",
    "csv": "CSV or Parquet with a column mapping (--map field=column[:unit])",
}
"""The formats, by name, with what each reads (the modules of :mod:`lab.imports.formats`, loaded on use)."""

_EXPORTS = {"detect": "formats", "Imported": "importing", "import_run": "importing", "inspect": "importing",
            "read": "importing", "LLMPERF_STARTED_AT": "llmperf", "llmperf_dir": "llmperf",
            "read_llmperf": "llmperf"}
__all__ = ["FORMATS", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """The importers load pyarrow: import them when first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lab.imports' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lab.imports.{_EXPORTS[name]}"), name)
