"""Skip, with the reason, what needs data that is absent."""

import pytest

from lab.io import llmperf_dir

NEEDS_LLMPERF = ("04_hedging", "05_real_provider_traces")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if llmperf_dir() is not None:
        return
    skip = pytest.mark.skip(reason="LLMPerf leaderboard data absent: set LLMPERF_DIR (see the README)")
    for item in items:
        if any(name in str(item.path) for name in NEEDS_LLMPERF):
            item.add_marker(skip)
