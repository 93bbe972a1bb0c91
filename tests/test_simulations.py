"""The simulation cache: keys that name the question, a replay that never simulates, and a committed cache
that holds every key the notebooks ask for (nbval replays them with LAB_REPLAY_ONLY=1)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from lab.analysis import coverage, simulations
from lab.core.config import REPLAY_ONLY
from lab.emulator import profiles
from lab.store import Run

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "data" / "runs" / "simulations" / simulations.RESULTS


def test_a_key_does_not_see_another_machines_last_digits():
    fitted = {"ttft_ms": 482.092439848085, "sigma": 0.17560344248469822, "n": 50, "seed": 2026}
    noisy = {"ttft_ms": 482.09244054850643, "sigma": 0.17560343096650233, "n": 50, "seed": 2026}
    assert simulations.key("calibration", fitted) == simulations.key("calibration", noisy)
    assert simulations.key("calibration", fitted) != simulations.key("calibration", {**fitted, "n": 51})
    assert simulations.key("calibration", fitted) != simulations.key("calibration", fitted, version=2)


def test_fitted_profiles_are_named_by_their_fit_not_their_floats():
    assert coverage.fitted("design") == {"reading": "design", "fit": profiles.fit_id()}
    for reading in profiles.READINGS:  # rounded where they are fitted: the same on any machine
        for profile in profiles.report_profiles(reading).values():
            for name, value in dataclasses.asdict(profile).items():
                if isinstance(value, float) and value:
                    assert float(f"{value:.{profiles.FIT_DIGITS}g}") == value, (reading, profile.name, name)


def test_a_replay_never_simulates(tmp_path, monkeypatch):
    run = Run(simulations.RUN_ID, tmp_path)
    assert simulations.cached("square", {"x": 3}, lambda x: x * x, run=run) == 9
    monkeypatch.setenv(REPLAY_ONLY, "1")
    assert simulations.cached("square", {"x": 3}, lambda x: pytest.fail("simulated in a replay"), run=run) == 9
    with pytest.raises(simulations.MissingSimulation, match=r"'square'.*\"x\": 4.*make notebooks"):
        simulations.cached("square", {"x": 4}, lambda x: x * x, run=run)
    assert len(list(run.read_lines(simulations.RESULTS))) == 1


def test_frames_come_back_exact(tmp_path):
    run = Run(simulations.RUN_ID, tmp_path)
    frame = pd.DataFrame({"rate": [0.1 + 0.2, math.pi], "n": [1, 2]})
    simulations.cached("frame", {}, lambda: frame, run=run)
    pd.testing.assert_frame_equal(simulations.cached("frame", {}, lambda: None, run=run), frame)


def test_the_committed_cache_keys_name_questions():
    entries = [json.loads(line) for line in COMMITTED.read_text().splitlines()]
    assert entries, "the committed simulation cache is empty: run `make notebooks`"

    def floats(value):
        if isinstance(value, float):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from floats(v)
        elif isinstance(value, list):
            for v in value:
                yield from floats(v)

    for entry in entries:
        assert entry["key"] == simulations.key(entry["name"], entry["params"], entry["version"])
        long = [f for f in floats(entry["params"]) if float(f"{f:.{simulations.KEY_DIGITS}g}") != f]
        assert not long, f"{entry['name']}: floats in its key were not rounded: {long[:3]}"
    assert len({e["key"] for e in entries}) == len(entries)
