"""The cut as a function of the stall length (lab.analysis.stalls), on calls drawn from emulator profiles."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from lab.analysis import stalls as stall
from lab.emulator import LatencyProfile

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),  # no warning may leak from numpy or scipy
              pytest.mark.filterwarnings("error::DeprecationWarning")]  # (a socket another test left is not ours)

BODY = LatencyProfile("body", ttft_ms=300.0, itl_ms=10.0, output_tokens=50, tokens_sd=2.0, sigma=0.1)
STALLING = LatencyProfile("stalling", ttft_ms=300.0, itl_ms=10.0, output_tokens=50, tokens_sd=2.0, sigma=0.1,
                          stall_prob=0.03, stall_median_ms=5_000.0, stall_sigma=0.05)


def test_draw_calls_times_each_call_as_the_profile_does():
    calls = stall.draw_calls(STALLING, 500, seed=7)
    rng = random.Random(7)
    expected = [STALLING.draw(rng) for _ in range(500)]
    assert calls["latency_ms"].tolist() == [d.total_ms for d in expected]
    assert calls["ttft_ms"].tolist() == [d.ttft_ms + d.stall_ms for d in expected]  # the stall precedes the first token
    assert (calls["status"] == "ok").all() and calls["cost_usd"].isna().all()
    stalled = calls["stall_ms"] > 0
    assert 0 < stalled.sum() < 50 and (calls.loc[stalled, "ttft_ms"] > 4_000).all()


def test_with_stall_changes_only_the_stall_median():
    longer = stall.with_stall(STALLING, 9_000)
    assert longer.stall_median_ms == 9_000 and longer.stall_prob == STALLING.stall_prob
    assert longer.stall_sigma == STALLING.stall_sigma and longer.ttft_ms == STALLING.ttft_ms


def test_stall_lengths_share_their_draws():
    a = stall.draw_calls(stall.with_stall(STALLING, 2_000), 300, seed=1)
    b = stall.draw_calls(stall.with_stall(STALLING, 8_000), 300, seed=1)
    assert ((a["stall_ms"] > 0) == (b["stall_ms"] > 0)).all()  # the same calls stall, only longer
    assert np.allclose(b["stall_ms"], 4 * a["stall_ms"])
    assert (a.loc[a["stall_ms"] == 0, "latency_ms"] == b.loc[b["stall_ms"] == 0, "latency_ms"]).all()


def test_hedge_cut_rows_and_the_ttft_hedge_cuts_more():
    out = stall.hedge_cut(STALLING, BODY, n=2_000, n_resamples=200, seed=3).set_index("on")
    assert list(out.index) == ["latency", "ttft"] and (out["q"] == 0.99).all() and (out["delay_pct"] == 95).all()
    assert out["stall_median_ms"].eq(5_000).all() and out["stall_prob"].eq(0.03).all()
    assert out["stalled_ms"].iloc[0] == pytest.approx(5_000 + 800, rel=0.1)  # stall + a body of ~800 ms
    # a stall of ~5 s behind a p95 delay: both hedges cut the p99; the first-token hedge fires earlier
    assert 0.5 < out.loc["latency", "reduction"] < out.loc["ttft", "reduction"] < 1
    assert (out["reduction_low"] <= out["reduction"]).all() and (out["reduction"] <= out["reduction_high"]).all()
    assert out["extra_requests"].between(0.04, 0.06).all() and out["estimable"].all()


def test_no_stalls_nothing_to_cut():
    out = stall.hedge_cut(BODY, BODY, n=1_000, n_resamples=100, seed=4)
    assert (out["reduction"] < 0.1).all() and out["stalled_ms"].isna().all()


def test_cut_by_stall_grows_with_the_stall_length():
    out = stall.cut_by_stall(STALLING, BODY, [1_000, 4_000, 12_000], n=2_000, n_resamples=100, seed=5)
    assert out["stall_median_ms"].tolist() == [1_000, 1_000, 4_000, 4_000, 12_000, 12_000]
    for on in ("latency", "ttft"):
        cuts = out.loc[out["on"] == on, "reduction"].to_numpy()
        assert cuts[0] < cuts[1] < cuts[2]
    assert out.groupby("on")["baseline_ms"].apply(lambda s: s.is_monotonic_increasing).all()


def table(on: str, medians: list[float], lows: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"on": on, "stall_median_ms": medians, "reduction_low": lows})


def test_shortest_meeting_is_where_every_longer_stall_meets_the_goal():
    both = pd.concat([table("ttft", [3_000, 1_000, 2_000, 4_000], [0.72, 0.5, 0.71, 0.8]),
                      table("latency", [1_000, 2_000], [0.1, 0.2])])
    assert stall.shortest_meeting(both, "ttft", 0.7) == 2_000  # sorted by stall length first
    assert np.isnan(stall.shortest_meeting(both, "latency", 0.7))
    assert stall.shortest_meeting(table("ttft", [1_000, 2_000], [0.9, 0.95]), "ttft", 0.7) == 1_000
    # a dip at a longer stall: only the run that reaches the longest stall counts
    assert stall.shortest_meeting(table("ttft", [1_000, 2_000, 3_000], [0.8, 0.6, 0.9]), "ttft", 0.7) == 3_000
    assert np.isnan(stall.shortest_meeting(table("ttft", [1_000, 2_000], [0.8, 0.6]), "ttft", 0.7))
