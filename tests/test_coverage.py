"""lab.analysis.coverage: draws match the emulator's profiles, coverage counts what it says, checks are cached."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lab.analysis import coverage as cv
from lab.analysis import stats as ls
from lab.emulator.profiles import LatencyProfile, report_profiles


def test_draw_latency_matches_the_emulators_own_draws():
    # The emulator's draws (Python's random, one request at a time) and the vectorised ones must have the
    # same body and the same stall tail: the 99th percentile of Haiku lies in its stalls.
    profile = report_profiles()["haiku"]
    rng = random.Random(1)
    emulated = np.array([profile.draw(rng).total_ms for _ in range(20_000)])
    drawn = cv.draw_latency(profile, np.random.default_rng(1), 20_000)
    for q, tolerance in ((0.5, 0.01), (0.95, 0.03), (0.99, 0.05)):
        assert np.quantile(drawn, q) == pytest.approx(np.quantile(emulated, q), rel=tolerance)
    assert (drawn > 3000).mean() == pytest.approx((emulated > 3000).mean(), abs=0.006)


def test_draw_latency_of_a_fixed_profile_is_exact_and_light_drops_the_stalls():
    fixed = LatencyProfile.fixed(ttft_ms=200, itl_ms=10, output_tokens=20)
    assert np.all(cv.draw_latency(fixed, np.random.default_rng(0), (3, 4)) == 400.0)
    stalled = LatencyProfile("s", 100, 0, 1, stall_prob=1.0, stall_median_ms=1000)
    assert np.all(cv.draw_latency(stalled, np.random.default_rng(0), 5) == 1100.0)
    assert np.all(cv.draw_latency(cv.light(stalled), np.random.default_rng(0), 5) == 100.0)


def normal_draw(rng, n):
    return (rng.normal(10.0, 2.0, n),)


def z_interval(width: float):
    """A mean's interval with known sigma = 2, ``width`` standard errors each side (1.96: exactly 95%)."""
    def interval(x):
        half = width * 2.0 / np.sqrt(len(x))
        return x.mean() - half, x.mean() + half
    return interval


def test_coverage_of_an_exact_interval_is_its_level_and_a_narrow_one_falls_short():
    rate, low, high = cv.coverage(normal_draw, z_interval(1.96), 10.0, n=30, replications=4000, seed=3)
    assert low <= 0.95 <= high and high - low < 0.02
    narrow = cv.coverage(normal_draw, z_interval(1.0), 10.0, n=30, replications=4000, seed=3)
    assert narrow[2] < 0.72 and narrow[1] > 0.64  # one standard error: 68.3%
    assert narrow[1:] == pytest.approx(ls.rejection_rate(round(narrow[0] * 4000), 4000)[1:])


def test_tally_counts_misses_by_side_and_one_sided_intervals_by_their_bound():
    shifted = lambda x: (x.mean(), x.mean() + 10)  # noqa: E731 - lies above the truth unless the mean is far below
    frame = cv.tally(normal_draw, lambda x: {"shifted": shifted(x), "lower": (x.mean() - 0.6, np.inf)},
                     {"shifted": 10.0, "lower": 10.0}, n=30, replications=1000, seed=0).set_index("interval")
    assert frame.loc["shifted", "below"] == 0 and frame.loc["shifted", "above"] > 400
    assert frame.loc["shifted", "covered"] + frame.loc["shifted", "above"] == 1000
    # mean - 0.6 <= 10 unless the mean exceeds 10.6: 1 - Phi(0.6 / (2 / sqrt 30)) = 5.0%
    assert frame.loc["lower", "coverage"] == pytest.approx(stats.norm.cdf(0.6 / (2 / np.sqrt(30))), abs=0.02)
    assert frame.loc["lower", "below"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(("n", "p"), [(50, 0.5), (50, 0.95), (250, 0.99)])
def test_order_statistic_coverage_agrees_with_simulating_quantile_interval(n, p):
    exact = cv.order_statistic_coverage(n, p)
    truth = stats.expon.ppf(p)

    def interval(x):
        row = ls.quantile_interval(x, p)
        return row["low"], (np.inf if np.isnan(row["high"]) else row["high"])

    rate, low, high = cv.coverage(lambda rng, n: (rng.exponential(1.0, n),), interval, truth, n=n,
                                  replications=2000, seed=5)
    assert low <= exact <= high
    assert exact >= 0.95


def test_order_statistic_coverage_by_hand():
    # n = 50, median: the interval runs from the 18th to the 33rd smallest value, so it covers when 18 to 32
    # of the 50 values fall below the median.
    assert cv.order_statistic_coverage(50, 0.5) == pytest.approx(stats.binom(50, 0.5).cdf(32) -
                                                                  stats.binom(50, 0.5).cdf(17))


def test_notebook_table_simulates_once_and_reads_the_run_back(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    checks = (("error rate", "error rate", 200, {"rate": 0.02}),
              ("per window", "order statistics", 50, {"model": "haiku", "percentiles": [50, 95]}))
    first = cv.notebook_table(replications=30, checks=checks)
    assert list(first["interval"]) == ["error rate", "p50", "p95"]
    assert list(first["one_sided"]) == [False, False, True]
    assert first.loc[first["interval"] == "p95", "truth"].item() == pytest.approx(
        np.quantile(cv.draw_latency(report_profiles()["haiku"], np.random.default_rng(0), 400_000), 0.95), rel=0.01)

    def fail(**_):
        raise AssertionError("simulated again instead of read from the run")

    monkeypatch.setattr(cv, "_check", fail)
    again = cv.notebook_table(replications=30, checks=checks)
    pd.testing.assert_frame_equal(first, again)
    assert (tmp_path / "simulations" / "results.jsonl").is_file()


def test_hedging_truth_is_the_cut_of_the_99th_percentile():
    truth = cv.truths(size=200_000, seed=1)
    assert 0.2 < truth["hedge p99 reduction"] < 0.5  # the stalls (3% of calls) are cut by a stall-free backup
    assert truth["ratio"] == pytest.approx(truth["quantiles"]["sonnet"]["p50"] / truth["quantiles"]["haiku"]["p50"])
    assert 0.9 < truth["p_b_slower"] < 1


# --- draws for calibrating the notebooks' tests ------------------------------------------------------------------

FIXED = LatencyProfile.fixed(ttft_ms=100, itl_ms=10, output_tokens=10)  # every call 200 ms


def test_draws_shift_what_they_say_and_keep_their_shapes():
    rng = np.random.default_rng(0)
    groups = cv.windows_draw(FIXED, 3, 4, shift=0.5)(rng)
    assert [g.tolist() for g in groups] == [[200.0] * 4, [200.0] * 4, [300.0] * 4]
    assert all(g.shape == (7, 4) for g in cv.windows_draw(FIXED, 3, 4)(rng, 7))
    (pairs,) = cv.gap_draw(FIXED, FIXED, 2, 3, shift=0.1)(rng)
    assert pairs[0][1].tolist() == [200.0] * 3 and pairs[1][1] == pytest.approx([220.0] * 3)
    x, y = cv.split_draw(FIXED, 2, 5, lambda v: v * 2)(rng)
    assert x.tolist() == [200.0] * 2 and y.tolist() == [400.0] * 5
    slow, fast = cv.tokens_draw(LatencyProfile.fixed(output_tokens=90), 3000, 3000, shift=5)(rng)
    assert slow.mean() - fast.mean() == pytest.approx(5.0)  # a fixed profile has no token spread


def test_resampled_and_thinned_draws():
    rng = np.random.default_rng(1)
    x, y = cv.resampled_draw(np.array([-1.0, 0.0, 1.0]), 4, 6, centre=3, shift=2)(rng, 5)
    assert x.shape == (5, 4) and y.shape == (5, 6)
    assert set(np.unique(x)) <= {2.0, 3.0, 4.0} and set(np.unique(y)) <= {4.0, 5.0, 6.0}
    a, b = cv.thinned_draw(np.array([4.0, 6.0]), 20, 20_000, keep=0.5)(rng)
    assert set(a) <= {4.0, 6.0} and b.mean() == pytest.approx(2.5, rel=0.05)
    assert cv.thinned_draw(np.array([4.0]), 2, 3, keep=0.0)(rng)[1].tolist() == [0, 0, 0]


def test_calibrated_and_power_curve_simulate_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    def draws(shift):
        return lambda rng, size: (rng.normal(0, 1, (size, 30)), rng.normal(shift, 1, (size, 30)))

    ttest = lambda x, y: stats.ttest_ind(x, y, axis=-1).pvalue  # noqa: E731
    first = cv.calibrated("t", {"n": 30}, ttest, draws(0), draws(1), n_sim=400, vectorized=True)
    rates = first.set_index("scenario")
    assert rates.loc["no effect", "low"] < 0.05 < rates.loc["no effect", "high"]
    assert rates.loc["known effect", "rate"] > 0.9
    curve = cv.power_curve("t curve", {"n": 30}, ttest, draws, [0.0, 0.5, 1.0], n_sim=400, vectorized=True)
    assert list(curve["shift"]) == [0.0, 0.5, 1.0] and curve["rate"].is_monotonic_increasing

    def fail(*_, **__):
        raise AssertionError("simulated again")

    monkeypatch.setattr(cv.stats, "calibrate", fail)
    pd.testing.assert_frame_equal(cv.calibrated("t", {"n": 30}, ttest, draws(0), draws(1), n_sim=400,
                                                vectorized=True), first)
    assert len(cv.power_curve("t curve", {"n": 30}, ttest, draws, [0.0, 0.5, 1.0], n_sim=400)) == 3


def test_rate_ratio_coverage_counts_both_intervals(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    rng = np.random.default_rng(2)
    frame = cv.rate_ratio_coverage(rng.poisson(8, 40), rng.poisson(4, 40), replications=200, seed=1)
    assert list(frame["interval"]) == ["Poisson rate ratio", "quasi-Poisson rate ratio"]
    assert (frame["kind"] == "rate ratio").all() and not frame["one_sided"].any()
    assert (frame["coverage"] > 0.85).all()  # Poisson counts: both intervals near their level


def test_verdicts_and_the_summary_table():
    assert cv.verdict(0.95, False) == "within [94%, 96.5%]"
    assert cv.verdict(0.99, False) == "conservative: covers 99.0%"
    assert cv.verdict(0.918, False) == "covers only 91.8%"
    assert cv.verdict(0.988, True) == "lower bound only: 98.8% (level 97.5%)"
    table = pd.DataFrame({"interval": ["p50", "p_b_slower"], "check": ["Haiku", "pair"], "n": [50, 250],
                          "kind": ["order statistics", "compare"], "replications": [10, 10], "coverage": [0.97, 0.93],
                          "low": [0.9, 0.8], "high": [1.0, 0.99], "below": [0, 1], "above": [0, 0],
                          "one_sided": [False, False]})
    shown = cv.summary(table)
    assert list(shown["interval"]) == ["median, Haiku", "P(slower), pair"]
    assert shown.loc[0, "exact"] == pytest.approx(cv.order_statistic_coverage(50, 0.5))
    assert np.isnan(shown.loc[1, "exact"])
    assert list(shown["verdict"]) == ["conservative: covers 97.0%", "covers only 93.0%"]


def test_spread_share_and_the_two_readings():
    assert cv.spread_share(FIXED, 0.0, replications=100) == (1.0, pytest.approx(0.964, abs=0.001), 1.0)
    assert cv.spread_share(report_profiles()["sonnet"], 10_000, replications=100)[0] == 0.0
    table = cv.readings_table(203, replications=2000)
    assert set(table["reading"]) == {"design", "stated"} and len(table) == 4
    sonnet = table[table["model"] == "sonnet"].set_index("reading")
    assert sonnet.loc["stated", "sigma"] < 0.05 < sonnet.loc["design", "sigma"]
    assert sonnet.loc["stated", "spread_share"] < 0.005 < sonnet.loc["design", "spread_share"]
    pooled = table.groupby("reading")["over_threshold"].mean()  # the fitted target: 59 of 500, or of 1,000
    assert pooled["design"] == pytest.approx(59 / 500, abs=0.01)
    assert pooled["stated"] == pytest.approx(59 / 1000, abs=0.01)
