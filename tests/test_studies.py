"""The studies the numbered notebooks read (lab.analysis.windows, calibration, significance, review_study, traces):
on the committed demo runs they compute what the notebooks quote, reading every simulation from the committed cache
(a replay: a changed cache key would raise instead of simulating)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lab.analysis import review_study, significance, traces, windows
from lab.core.config import REPLAY_ONLY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def committed_runs(monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(ROOT / "data" / "runs"))
    monkeypatch.setenv(REPLAY_ONLY, "1")


def test_the_window_and_significance_studies_replay_from_the_committed_cache(committed_runs):
    w = windows.study("emulator-demo")
    assert list(w.spread.index) == ["Haiku", "Sonnet"] and len(w.windows) == 5
    assert set(w.readings["reading"]) == {"design", "stated"}
    assert w.p95_window["high"].eq(float("inf")).all()  # 50 calls cannot bound a p95 from above

    s = significance.study("emulator-demo", "emulator-review-demo")
    assert len(s.calibration) == 13 and set(s.calibration["null"]) <= {"conservative", "anti-conservative", "at α"}
    assert set(s.curves) == {("haiku", "design"), ("sonnet", "design"), ("sonnet", "stated")}
    assert s.need[95] > s.n_window
    claims = significance.claims(s)
    assert len(claims) == 9 and claims["verdict on this run"].str.len().gt(0).all()


def test_the_review_study_places_the_reports_single_runs(committed_runs):
    st = review_study.study("emulator-review-demo")
    assert list(st.scores["reviewer"]) == sorted(st.reviews["reviewer"].unique())
    ran = st.scores[st.scores["provider"].isin(st.reported.index)]
    assert not ran.empty and ran[["score_at_or_below", "issues_at_or_below"]].stack().between(0, 1).all()
    assert set(review_study.consistency(st.reviews).index) == set(st.reviews["reviewer"])


def test_trace_helpers():
    assert traces.names([("a", "7b"), ("b", "13b"), ("c", "70b")]) == "a 7b, b 13b and c 70b"
    assert traces.names([("a", "7b")]) == "a 7b"
    calls = pd.DataFrame({"ttft_ms": [100.0, 300.0], "latency_ms": [400.0, 600.0]})
    assert traces.waiting(calls) == pytest.approx(0.4)
