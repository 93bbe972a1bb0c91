"""Skip, with the reason, what needs data that is absent."""

import pytest

from lab.io import llmperf_dir

NEEDS_LLMPERF = ("05_real_provider_traces",)
"""Notebooks that are about the LLMPerf data throughout."""
LLMPERF_CELLS = ("04_hedging", "trace_dir")
"""Notebook 04's cells that use the LLMPerf data name ``trace_dir``; the rest of it runs without."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if llmperf_dir() is not None:
        return
    skip = pytest.mark.skip(reason="LLMPerf leaderboard data absent: set LLMPERF_DIR (see the README)")
    notebook, marker = LLMPERF_CELLS
    for item in items:
        cell = getattr(item, "cell", None)
        uses_cell = notebook in str(item.path) and cell is not None and marker in cell.source
        if uses_cell or any(name in str(item.path) for name in NEEDS_LLMPERF):
            item.add_marker(skip)
