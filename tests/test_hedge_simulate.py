"""Offline hedging simulation (lab.analysis.hedging) on hand-computed and synthetic call records."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from lab.analysis.hedging import (
    agreement,
    answered_ms,
    arm_summary,
    bounded,
    fmt_cut,
    fmt_latency,
    fmt_ms,
    fmt_share,
    goal_verdict,
    hedged_latency,
    live_effect,
    pair,
    predict,
    sweep,
)
from lab.core.records import CallRecord, records_frame

pytestmark = [pytest.mark.filterwarnings("error::RuntimeWarning"),  # no warning may leak from numpy or scipy
              pytest.mark.filterwarnings("error::DeprecationWarning")]  # (a socket another test left is not ours)
INF = math.inf


def calls(latency, status=None, *, ttft=None, cost=None) -> pd.DataFrame:
    """A synthetic call-record frame; ``status`` "ok" unless given ("error" for failures)."""
    n = len(latency)
    status, ttft, cost = status or ["ok"] * n, ttft or [None] * n, cost or [None] * n
    return records_frame(
        CallRecord(provider="synthetic", model="m", endpoint="synthetic", kind="stream",
                   started_at=datetime(2026, 1, 1, tzinfo=UTC), latency_ms=lat, status=st, ttft_ms=t,
                   cost_usd=c, synthetic=True)
        for lat, st, t, c in zip(latency, status, ttft, cost))


def row(primary, backup, delay_ms, on="latency", i=0) -> dict:
    return hedged_latency(primary, backup, delay_ms, on=on).iloc[i].to_dict()


# --- hedged_latency: hand-computed cases -------------------------------------------------------------------------

def test_fast_primary_is_not_hedged():
    r = row(calls([100.0]), calls([50.0], cost=[0.2]), 200)
    assert r["baseline_ms"] == r["hedged_ms"] == 100
    assert not r["backup_started"] and math.isnan(r["backup_start_ms"])
    assert r["winner"] == "primary" and r["extra_cost_usd"] == 0


def test_slow_primary_hedged_at_delay_backup_wins_or_loses():
    out = hedged_latency(calls([1000.0, 1000.0]), calls([300.0, 900.0]), 200)
    assert out["backup_started"].all() and (out["backup_start_ms"] == 200).all()
    assert out["hedged_ms"].tolist() == [500, 1000]  # 200 + 300 beats 1000; 200 + 900 does not
    assert out["winner"].tolist() == ["backup", "primary"]


def test_failure_never_wins():
    r = row(calls([1000.0]), calls([10.0], ["error"]), 200)
    assert r["hedged_ms"] == 1000 and r["winner"] == "primary" and r["backup_started"]


def test_primary_failing_before_the_delay_starts_backup_at_failure():
    out = hedged_latency(calls([50.0, 500.0], ["error", "error"]), calls([300.0, 300.0]), 200)
    assert out["backup_start_ms"].tolist() == [50, 200]  # at the failure, else at the delay
    assert out["hedged_ms"].tolist() == [350, 500]
    assert out["baseline_ms"].tolist() == [INF, INF]


def test_failure_without_time_fails_at_zero():
    r = row(calls([None], ["error"]), calls([300.0]), 200)
    assert r["backup_start_ms"] == 0 and r["hedged_ms"] == 300 and r["winner"] == "backup"


def test_both_failing_is_inf_not_dropped():
    r = row(calls([100.0], ["error"]), calls([50.0], ["error"]), 200)
    assert r["hedged_ms"] == INF and r["baseline_ms"] == INF and r["winner"] is None and r["backup_started"]


def test_ttft_hedges_a_stalled_first_token_but_not_a_streaming_primary():
    primary = calls([6000.0, 6000.0, 6000.0], ttft=[5000.0, 100.0, None])
    backup = calls([300.0, 300.0, 300.0])
    ttft = hedged_latency(primary, backup, 200, on="ttft")
    assert ttft["backup_started"].tolist() == [True, False, True]  # no ttft: falls back to completion
    assert ttft["hedged_ms"].tolist() == [500, 6000, 500]
    # the same streaming primary is hedged on latency, since it completes after the delay
    assert hedged_latency(primary, backup, 200)["backup_started"].all()
    # sweep on ttft takes its delay from the successful ttfts: p50 of [5000, 100]
    out = sweep(primary, backup, on="ttft", delay_percentiles=(50,), quantiles=(0.5,), n_resamples=100)
    assert out.loc[0, "delay_ms"] == 2550


def test_ttft_a_stream_cut_after_its_first_token_starts_the_backup_at_the_cut():
    # first token at 50 ms (before d = 200, so no hedge at d), the stream then breaks at 900 ms
    r = row(calls([900.0], ["error"], ttft=[50.0]), calls([100.0]), 200, on="ttft")
    assert r["backup_start_ms"] == 900 and r["hedged_ms"] == 1000 and r["winner"] == "backup"


def test_ttft_without_any_ttft_and_length_mismatch_raise():
    with pytest.raises(ValueError, match="ttft"):
        hedged_latency(calls([100.0]), calls([100.0]), 50, on="ttft")
    with pytest.raises(ValueError, match="paired"):
        hedged_latency(calls([100.0, 200.0]), calls([100.0]), 50)


def test_extra_cost_is_an_upper_bound_billing_every_started_backup():
    primary = calls([100.0, 200.0, 300.0, 1000.0], cost=[1.0] * 4)
    backup = calls([10.0, 10.0, 500.0, 10.0], cost=[0.5, 0.5, 2.0, 3.0])
    # delay = p50 (numpy linear) of [100, 200, 300, 1000] = 250: rows 2 and 3 start a backup; row 2's loses
    sim = hedged_latency(primary, backup, 250)
    assert sim["extra_cost_usd"].tolist() == [0, 0, 2.0, 3.0]
    assert sim["winner"].tolist() == ["primary", "primary", "primary", "backup"]
    out = sweep(primary, backup, delay_percentiles=(50,), quantiles=(0.5,), n_resamples=200)
    assert out.loc[0, "delay_ms"] == 250
    assert out.loc[0, "extra_requests"] == 0.5 and out.loc[0, "extra_cost"] == pytest.approx(5 / 4)
    unknown = sweep(primary, calls([10.0] * 4), delay_percentiles=(50,), quantiles=(0.5,), n_resamples=200)
    assert unknown[["extra_cost", "extra_cost_low", "extra_cost_high"]].isna().all(axis=None)


def test_a_failed_call_without_a_recorded_cost_was_not_billed():
    primary = calls([1000.0, 1000.0], cost=[1.0, 1.0])
    backup = calls([10.0, 10.0], ["error", "ok"], cost=[None, 0.5])
    assert hedged_latency(primary, backup, 100)["extra_cost_usd"].tolist() == [0.0, 0.5]


# --- pair --------------------------------------------------------------------------------------------------------

def test_pair_by_index_needs_equal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        pair(calls([1.0, 2.0]), calls([1.0]))
    p, b = pair(calls([1.0, 2.0]), calls([3.0, 4.0]))
    assert b["latency_ms"].tolist() == [3, 4]


def test_pair_random_is_seeded_and_deterministic():
    primary, backup = calls([1.0] * 50), calls([float(x) for x in range(7)])
    _, a = pair(primary, backup, how="random", seed=3)
    _, b = pair(primary, backup, how="random", seed=3)
    _, c = pair(primary, backup, how="random", seed=4)
    assert len(a) == 50 and set(a["latency_ms"]) <= set(backup["latency_ms"])
    pd.testing.assert_frame_equal(a, b)
    assert not a["latency_ms"].equals(c["latency_ms"])


# --- sweep on synthetic latencies --------------------------------------------------------------------------------

def synthetic(latency: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"latency_ms": latency, "ttft_ms": np.nan, "status": "ok", "cost_usd": 0.001})


def heavy_tailed(rng: np.random.Generator, n: int = 1000) -> np.ndarray:
    """Synthetic: lognormal body around 500 ms with 3% stalls of 10 s."""
    latency = rng.lognormal(np.log(500), 0.25, n)
    latency[rng.random(n) < 0.03] = 10_000
    return latency


def test_sweep_synthetic_heavy_tail_hedged_at_p95_cuts_p99():
    rng = np.random.default_rng(0)
    primary, backup = synthetic(heavy_tailed(rng)), synthetic(rng.lognormal(np.log(500), 0.25, 1000))
    out = sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.5, 0.99)).set_index("q")
    assert out.loc[0.99, "extra_requests"] == pytest.approx(0.05, abs=0.01)
    assert out.loc[0.99, "baseline_ms"] == 10_000 and out.loc[0.99, "reduction"] > 0.5
    assert out.loc[0.99, "reduction_low"] <= out.loc[0.99, "reduction"] <= out.loc[0.99, "reduction_high"]
    assert out.loc[0.99, "extra_low"] <= 0.05 <= out.loc[0.99, "extra_high"]
    assert out.loc[0.5, "reduction"] == 0 and out["estimable"].all()


def test_sweep_synthetic_light_tail_gains_little():
    rng = np.random.default_rng(1)
    primary, backup = (synthetic(rng.lognormal(np.log(500), 0.05, 1000)) for _ in range(2))
    out = sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.99,))
    assert 0 <= out.loc[0, "reduction"] < 0.05


def test_sweep_synthetic_identical_backup_gains_nothing():
    primary = synthetic(heavy_tailed(np.random.default_rng(2)))
    out = sweep(primary, primary.copy(), n_resamples=200)
    assert (out["reduction"] == 0).all() and (out["hedged_ms"] == out["baseline_ms"]).all()


def test_sweep_counts_failures_and_flags_small_n():
    primary = calls([100.0, None, 50.0, 300.0], ["ok", "error", "error", "ok"])
    backup = calls([100.0, 50.0, 10.0, 100.0], ["ok", "ok", "error", "ok"])
    # delay = p50 of [100, 300] = 200; hedged: 100, 0 + 50, inf, min(300, 200 + 100) = 300
    out = sweep(primary, backup, delay_percentiles=(50,), quantiles=(0.5, 0.75, 0.99), n_resamples=200).set_index("q")
    assert out.loc[0.5, "failed_baseline"] == 0.5 and out.loc[0.5, "failed_hedged"] == 0.25
    assert out.loc[0.5, "baseline_ms"] == 300 and out.loc[0.5, "hedged_ms"] == 100
    assert out.loc[0.5, "reduction"] == pytest.approx(2 / 3) and out.loc[0.5, "extra_requests"] == 0.75
    # baseline p75 is a failure (inf) that hedging answers (300): a full reduction; p99 fails in both: undefined
    assert out.loc[0.75, "baseline_ms"] == INF and out.loc[0.75, "hedged_ms"] == 300
    assert out.loc[0.75, "reduction"] == 1 and math.isnan(out.loc[0.99, "reduction"])
    assert math.isnan(out.loc[0.99, "reduction_low"]) and not out["estimable"].any()


def test_sweep_on_a_single_request_has_no_interval():
    out = sweep(calls([100.0]), calls([50.0]), delay_percentiles=(50,), quantiles=(0.5,), n_resamples=100)
    assert out.loc[0, "reduction"] == 0 and out[["reduction_low", "extra_high"]].isna().all(axis=None)


def test_sweep_degenerate_resamples_give_zero_width_intervals():
    out = sweep(synthetic(np.full(50, 100.0)), synthetic(np.full(50, 100.0)), n_resamples=200)
    assert (out["extra_low"] == 0).all() and (out["extra_high"] == 0).all()
    assert (out["reduction_low"] == 0).all() and (out["reduction_high"] == 0).all()


def test_sweep_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    primary, backup = synthetic(heavy_tailed(rng, 300)), synthetic(heavy_tailed(rng, 300))
    first, again, other = (sweep(primary, backup, delay_percentiles=(90,), n_resamples=300, seed=seed)
                           for seed in (7, 7, 8))
    pd.testing.assert_frame_equal(first, again)
    bounds = ["reduction_low", "reduction_high", "extra_low", "extra_high"]
    assert not first[bounds].equals(other[bounds])


def test_sweep_without_resamples_gives_point_estimates_only():
    primary, backup = synthetic(heavy_tailed(np.random.default_rng(6), 200)), synthetic(np.full(200, 400.0))
    points = sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.99,), n_resamples=0)
    full = sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.99,), n_resamples=200)
    interval = ["reduction_low", "reduction_high", "extra_low", "extra_high", "extra_cost_low", "extra_cost_high"]
    assert points[interval].isna().all(axis=None) and full[interval].notna().all(axis=None)
    assert points.loc[0, "reduction"] == full.loc[0, "reduction"] > 0


# --- measured arms: effects, predictions, verdicts and their text --------------------------------------------------

def arm(latency, *, status=None, extra=None, cost=None, ttft=None, lateness=None) -> pd.DataFrame:
    """An arm as lab.collect.hedging.load gives it (synthetic)."""
    n = len(latency)
    status = status or ["ok"] * n
    return pd.DataFrame({"request": range(n), "latency_ms": latency, "status": status,
                         "ok": [s == "ok" for s in status], "extra_requests": extra or [0] * n,
                         "cost_usd": cost or [1.0] * n, "ttft_ms": ttft or [np.nan] * n,
                         "lateness_ms": lateness or [0.0] * n})


def test_answered_ms_counts_a_failure_as_never_answered():
    assert answered_ms(arm([100.0, 200.0], status=["ok", "error"])).tolist() == [100, INF]


def test_live_effect_pairs_by_request_and_counts_the_policy_cost():
    base = arm([100.0] * 98 + [5000.0, 9000.0], cost=[1.0] * 100)
    hedged = arm([100.0] * 98 + [600.0, 700.0], extra=[0] * 98 + [1, 1], cost=[1.0] * 98 + [1.5, 1.5])
    out = live_effect(base, hedged, quantiles=(0.5, 0.99), n_resamples=300).set_index("q")
    assert out.loc[0.99, "baseline_ms"] == 5000 and out.loc[0.99, "hedged_ms"] == 600
    assert out.loc[0.5, "reduction"] == 0 and out.loc[0.99, "extra_requests"] == 0.02
    assert out.loc[0.99, "extra_cost"] == pytest.approx(1.0 / 100)  # two requests at +0.5 over 100 at 1.0
    with pytest.raises(ValueError, match="same requests"):
        live_effect(base, hedged.iloc[::-1])


def test_predict_holds_a_given_delay_fixed_and_sweep_reestimates_it():
    rng = np.random.default_rng(9)
    primary, backup = synthetic(heavy_tailed(rng, 400)), synthetic(rng.lognormal(np.log(500), 0.25, 400))
    delay = float(np.percentile(primary["latency_ms"], 95))
    effect, per_request = predict(primary, backup, delay, quantiles=(0.99,), n_resamples=500, seed=1)
    assert per_request["backup_started"].mean() == pytest.approx(0.05, abs=0.003)
    assert (per_request["backup_start_ms"].dropna() == delay).all()
    swept = sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.99,), n_resamples=500, seed=1)
    held = sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.99,), n_resamples=500, seed=1,
                 delay_from_data=False)
    assert effect.loc[0, "reduction"] == swept.loc[0, "reduction"] == held.loc[0, "reduction"]
    # with the delay held fixed, every resample hedges 5% of the full sample's requests give or take sampling;
    # re-estimated, each resample hedges what lies above its own p95: about 5% every time
    assert held.loc[0, "extra_high"] - held.loc[0, "extra_low"] > swept.loc[0, "extra_high"] - swept.loc[0, "extra_low"]
    assert effect.loc[0, ["reduction_low", "reduction_high"]].tolist() == \
        held.loc[0, ["reduction_low", "reduction_high"]].tolist()


def verdict_row(low, high, extra_low, extra_high) -> dict:
    return {"reduction_low": low, "reduction_high": high, "extra_low": extra_low, "extra_high": extra_high}


def test_goal_verdict_needs_both_intervals_inside_the_goal():
    frame = pd.DataFrame([verdict_row(0.75, 0.8, 0.03, 0.07),     # yes
                          verdict_row(0.75, 0.8, 0.03, 0.12),     # extra may exceed 10%: undecided
                          verdict_row(0.65, 0.8, 0.03, 0.07),     # straddles 70%: undecided
                          verdict_row(0.5, 0.69, 0.03, 0.07),     # wholly below: no
                          verdict_row(0.75, 0.8, 0.11, 0.2),      # too many extra requests: no
                          verdict_row(np.nan, np.nan, 0.03, 0.07)])
    assert goal_verdict(frame, 0.7, 0.1).tolist() == ["yes", "undecided", "undecided", "no", "no", "-"]


def test_bounded_drops_the_intervals_n_cannot_give():
    primary, backup = synthetic(heavy_tailed(np.random.default_rng(10), 250)), synthetic(np.full(250, 400.0))
    out = bounded(sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.95, 0.99), n_resamples=200))
    assert out.loc[out["q"] == 0.95, ["reduction_low", "reduction_high"]].notna().all(axis=None)
    assert out.loc[out["q"] == 0.99, ["reduction_low", "reduction_high"]].isna().all(axis=None)
    assert out[["extra_low", "extra_high"]].notna().all(axis=None)  # shares of requests keep theirs


def test_formats_say_what_the_data_give():
    row = {"reduction": 0.691, "reduction_low": 0.635, "reduction_high": 0.716, "extra_requests": 0.05,
           "extra_low": 0.03, "extra_high": 0.072, "estimable": True, "q": 0.99, "n": 400}
    assert fmt_share(row) == "69.1% [63.5%, 71.6%]"
    assert fmt_cut(row) == "69.1% [63.5%, 71.6%] for 5.0% [3.0%, 7.2%] extra requests"
    assert fmt_share(row | {"estimable": False, "n": 250}) == "69.1% (no interval: n = 250, a p99 needs 368)"
    assert fmt_share(row | {"reduction_low": np.nan}) == "69.1% (no interval)"
    assert fmt_share(row | {"reduction": np.nan}) == "none"
    assert fmt_ms(INF) == "never answered" and fmt_ms(1620.4) == "1,620 ms"
    assert fmt_latency(1620.4, 1580.0, INF) == "1,620 [1,580, never]"
    assert fmt_latency(INF, np.nan, INF) == "never [unbounded, never]"


def test_arm_summary_counts_failures_and_bounds_what_n_allows():
    latency = [float(x) for x in range(1, 101)]
    summary = arm_summary(arm(latency, status=["error"] * 5 + ["ok"] * 95, extra=[1] * 10 + [0] * 90,
                              cost=[None] * 50 + [2.0] * 50))
    assert summary["n"] == 100 and summary["failed"] == 0.05 and summary["extra"] == 0.1
    assert summary["failed_low"] < 0.05 < summary["failed_high"]  # Wilson
    assert summary["cost_per_1000"] == pytest.approx(1000.0)  # a missing cost counts 0
    assert summary["p50"] == 55  # order statistic over the answered latencies, failures as inf
    assert summary["p99"] == INF  # 5 of 100 never answered
    assert np.isfinite(summary["p50_low"]) and np.isnan(summary["p99_high"])  # n = 100 cannot bound a p99


def test_agreement_compares_live_and_predicted_per_request():
    live = arm([100.0, 250.0, 1000.0, 50.0], status=["ok", "ok", "ok", "error"], extra=[0, 1, 1, 1],
               lateness=[0.1, 5.0, 0.2, 0.0])
    predicted = pd.DataFrame({"hedged_ms": [100.0, 200.0, 700.0, 400.0],
                              "backup_started": [False, True, True, True]})
    out = agreement(live, predicted, quantiles=(0.5,), within_ms=100)
    assert out["hedged predicted"] == out["hedged live"] == 0.75
    assert out["median gap per request"] == 50 and out["within"] == pytest.approx(2 / 3)
    assert out["answered in one only"] == 1 and out["client delay, max"] == 5.0
    assert out["p50 predicted"] == 200 and out["p50 live"] == 250
