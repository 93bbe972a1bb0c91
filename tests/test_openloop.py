"""The open-loop driver: sends on its plan, prepared early but never sent early, says when its
client fell behind, and keeps garbage collection short only while calls are timed."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import re

import numpy as np
import pytest

from lab import llm
from lab.collect import openloop
from lab.core.timing import frozen_heap, refreeze
from lab.emulator import Emulator, LatencyProfile


def _drive(emu: Emulator, offsets: list[float], early_s: float) -> list:
    url = emu.url_for("openai")

    async def send(i: int):
        return (await llm.acomplete(f"request {i}", max_tokens=4, provider="openai", base_url=url)).record

    async def main():
        async with llm.session():
            await llm.prepare(provider="openai", base_url=url)
            return await openloop.drive(offsets, send, early_s=early_s)

    return openloop.run(main())


def test_a_call_started_early_is_held_until_its_planned_send():
    offsets = [0.0, 0.05, 0.1, 0.15, 0.2]
    with Emulator(profile=LatencyProfile.instant()) as emu:
        records = _drive(emu, offsets, early_s=0.04)  # far longer than building a request takes
        arrivals = np.array([r.received_at for r in emu.wait_for_requests(len(offsets))])
    lags = np.array([r.send_lag_ms for r in records])
    assert (lags >= 0).all(), f"sent before the plan: {lags}"
    scheduled = np.array([r.scheduled_at.timestamp() for r in records])
    assert (np.sort(arrivals) - scheduled > -0.002).all()  # the server agrees: nothing arrived 40 ms early
    assert np.allclose(scheduled - scheduled[0], offsets, atol=1e-3)


def test_drive_leaves_no_object_frozen():
    with Emulator(profile=LatencyProfile.instant()) as emu:
        _drive(emu, [0.0, 0.01], early_s=openloop.EARLY_S)
    assert gc.get_freeze_count() == 0


def test_a_client_that_fell_behind_says_so():
    with Emulator(profile=LatencyProfile.instant()) as emu:
        records = _drive(emu, [0.0] * 4, early_s=0.0)
    on_time = [dataclasses.replace(r, send_lag_ms=0.5) for r in records]
    behind = on_time[:3] + [dataclasses.replace(records[3], send_lag_ms=250.0)]
    assert openloop.lateness_warning(on_time) == ""
    assert re.search(r"fell behind .*send lag p99 2\d\d ms", openloop.lateness_warning(behind))


def test_the_heap_is_frozen_while_calls_are_timed_and_only_then():
    async def inside_a_session() -> int:
        async with llm.session():
            return gc.get_freeze_count()

    with frozen_heap():
        with frozen_heap():
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # reentrant: the inner exit leaves it frozen
    assert gc.get_freeze_count() == 0
    assert asyncio.run(inside_a_session()) > 0 and gc.get_freeze_count() == 0


def test_what_is_built_inside_a_frozen_heap_joins_it():
    refreeze()
    assert gc.get_freeze_count() == 0  # outside: nothing happens
    with frozen_heap():
        before = gc.get_freeze_count()
        built = [[] for _ in range(1000)]  # as an SDK imported on first use
        refreeze()
        assert gc.get_freeze_count() >= before + len(built)
    assert gc.get_freeze_count() == 0


OPEN_FILES = """
[[targets]]
provider = "openai"
model = "gpt-5-mini"
[prompts]
items = [{prompt = "hi", max_tokens = 4}]
[design]
mode = "open-loop"
rate_per_s = [200]
requests = 400
arrival = "constant"
"""


@pytest.mark.slow
def test_an_open_loop_schedule_within_a_low_open_file_limit_records_every_call(tmp_path):
    # 400 calls of 2 s each at 200/s: about 400 in flight, each with two descriptors (client and in-process
    # server), under a limit of 256 open files.
    import os
    import resource
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "e.toml").write_text(OPEN_FILES)
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "collect", "run", "e.toml", "--run", "fds", "--emulator",
         "fixed:ttft_ms=2000,itl_ms=1,output_tokens=4"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "LAB_RUNS_DIR": str(tmp_path), "PYTHONPATH": str(root)},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "the open-file limit" in done.stdout
    lines = (tmp_path / "fds" / "calls.jsonl").read_text().splitlines()
    assert len(lines) == 400 and len({line.split('"key": "')[1][:64] for line in lines}) == 400
