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

from lab.imports.formats import FORMATS, detect
from lab.imports.importing import Imported, import_run, inspect, read
from lab.imports.llmperf import LLMPERF_STARTED_AT, SHARED_LEADERBOARD, llmperf_dir, read_llmperf

__all__ = [
    "FORMATS",
    "LLMPERF_STARTED_AT",
    "SHARED_LEADERBOARD",
    "Imported",
    "detect",
    "import_run",
    "inspect",
    "llmperf_dir",
    "read",
    "read_llmperf",
]
