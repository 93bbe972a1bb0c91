"""Notebooks replay, never simulate or call; skip, with the reason, what needs data that is absent."""

import os

import pytest

from lab.core.config import REPLAY_ONLY
from lab.imports import llmperf_dir

NEEDS_LLMPERF = ("05_real_provider_traces",)
"""Notebooks that are about the LLMPerf data throughout."""
LLMPERF_CELLS = ("04_hedging", "trace_dir")
"""Notebook 04's cells that use the LLMPerf data name ``trace_dir``; the rest of it runs without."""


def _is_notebook_cell(item: pytest.Item) -> bool:
    return item.path.suffix == ".ipynb"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A notebook's kernel starts with the setup of its first cell and inherits this environment: there it is
    a replay (``LAB_REPLAY_ONLY=1``: a record or simulation the repository lacks is an error that names the
    command that fills it, never a silent recomputation). Other tests collect and simulate as they need."""
    if _is_notebook_cell(item):
        os.environ[REPLAY_ONLY] = "1"
    else:
        os.environ.pop(REPLAY_ONLY, None)


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
