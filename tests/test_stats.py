"""lab.analysis.stats: the summaries, tests and calibration helpers behave as the libraries they wrap."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from lab.analysis import review_study
from lab.analysis import stats as ls
from lab.core.records import CallRecord

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def call(model: str, latency: float, *, status: str = "ok", ttft: float | None = None, window: str = "w") -> CallRecord:
    return CallRecord(provider="anthropic", model=model, endpoint="http://127.0.0.1:1", kind="stream" if ttft else
                      "complete", started_at=T0, latency_ms=latency, status=status, ttft_ms=ttft, window=window,
                      error_type="overloaded" if status == "error" else None)


# --- time of day and Holm ----------------------------------------------------------------------------------------

def windows_frame(shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for model in ("haiku", "sonnet"):
        for w in range(5):
            values = rng.lognormal(7.4, 0.25, 50) * (1 + shift * w)
            rows += [{"model": model, "window": f"w{w}", "latency_ms": v} for v in values]
    return pd.DataFrame(rows)


def test_time_of_day_no_effect_on_identical_distributions():
    result = ls.time_of_day_tests(windows_frame(0.0, seed=7), n_resamples=999, seed=1)
    assert len(result) == 4
    assert (result["p_value"] > 0.05).all()
    assert not result["reject"].any()


def test_time_of_day_detects_shifted_windows():
    result = ls.time_of_day_tests(windows_frame(0.15, seed=7), n_resamples=999, seed=1)
    assert (result["p_value"] < 0.01).all()
    assert result["reject"].all()


def test_holm_matches_statsmodels():
    result = ls.time_of_day_tests(windows_frame(0.02, seed=3), n_resamples=499, seed=2)
    reject, adjusted, *_ = multipletests(result["p_value"], alpha=0.05, method="holm")
    np.testing.assert_allclose(result["p_holm"], adjusted)
    np.testing.assert_array_equal(result["reject"], reject)
    p = [0.01, np.nan, 0.04, 0.03]
    adjusted, reject = ls.holm(p)
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    np.testing.assert_allclose(adjusted[[0, 2, 3]], expected)
    assert math.isnan(adjusted[1]) and not reject[1]


# --- model gap and tails -----------------------------------------------------------------------------------------

def test_median_difference():
    rng = np.random.default_rng(11)
    x, y = rng.normal(1000, 100, 300), rng.normal(1200, 100, 300)
    gap = ls.median_difference(x, y, n_resamples=999)
    assert gap["low"] < 200 < gap["high"]


def test_exceedance_matches_fisher_exact():
    x = np.array([100, 3500, 4000, 200, 2999, 3001])
    y = np.array([100] * 20 + [5000])
    result = ls.exceedance_test(x, y, 3000)
    expected = stats.fisher_exact([[3, 3], [1, 20]])
    assert (result["over_x"], result["over_y"]) == (3, 1)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert result["odds_ratio"] == pytest.approx(expected.statistic)
    boschloo = ls.exceedance_test(x, y, 3000, method="boschloo")
    assert boschloo["p_value"] == pytest.approx(stats.boschloo_exact([[3, 3], [1, 20]]).pvalue)


def test_quantile_difference_permutation():
    rng = np.random.default_rng(5)
    x = rng.lognormal(7.4, 0.2, 150)
    y = np.where(rng.random(100) < 0.15, 3.0, 1.0) * rng.lognormal(7.4, 0.2, 100)
    assert ls.quantile_difference_test(x, y, n_resamples=999)["p_value"] < 0.01


# --- what n buys ---------------------------------------------------------------------------------------------------

def test_quantile_estimability():
    assert not ls.quantile_estimable(50, 0.99)
    assert ls.quantile_estimable(50, 0.5)
    need = ls.min_n_for_quantile(0.95)
    assert ls.quantile_estimable(need, 0.95) and not ls.quantile_estimable(need - 1, 0.95)
    table = ls.estimable_percentiles(50, [50, 99]).set_index("percentile")
    assert table.loc[50, "estimable"] and not table.loc[99, "estimable"]


def test_quantile_interval_nan_not_raise():
    x = np.random.default_rng(0).lognormal(7, 0.3, 50)
    p99 = ls.quantile_interval(x, 0.99)
    assert math.isnan(p99["high"]) and math.isnan(p99["width"]) and not p99["estimable"]
    median = ls.quantile_interval(x, 0.5)
    assert median["low"] < median["estimate"] < median["high"] and median["estimable"]
    assert math.isnan(ls.quantile_interval([], 0.5)["estimate"])


# --- experiment 2 ---------------------------------------------------------------------------------------------------

def test_poisson_recovers_known_rate_ratio():
    rng = np.random.default_rng(21)
    counts = np.concatenate([rng.poisson(8.0, 150), rng.poisson(4.8, 150)])
    groups = np.repeat(["a", "b"], 150)
    result = ls.count_rate_ratio(counts, groups, reference="a").set_index("model")
    poisson = result.loc["Poisson"]
    assert poisson["low"] < 0.6 < poisson["high"]
    assert 0.7 < poisson["dispersion"] < 1.3
    assert "negative binomial" not in result.index


def test_negative_binomial_when_overdispersed():
    rng = np.random.default_rng(22)
    means = np.concatenate([np.full(200, 8.0), np.full(200, 4.0)]) * rng.gamma(2.0, 0.5, 400)
    counts = rng.poisson(means)
    result = ls.count_rate_ratio(counts, np.repeat(["a", "b"], 200), reference="a").set_index("model")
    assert result["dispersion"].iloc[0] > 1.5
    nb = result.loc["negative binomial"]
    assert nb["low"] < 0.5 < nb["high"]
    assert (nb["high"] - nb["low"]) > (result.loc["Poisson", "high"] - result.loc["Poisson", "low"])


def reviews_frame() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    rates = {"a": [0.9, 0.9, 0.2], "b": [0.9, 0.1, 0.2]}
    rows = []
    for provider, probabilities in rates.items():
        for sample in range(20):
            found = tuple(issue for issue, p in zip("xyz", probabilities) if rng.random() < p)
            rows.append({"provider": provider, "sample": sample, "found": found, "score": rng.integers(2, 6)})
    return pd.DataFrame(rows)


def test_issue_detection_is_fisher_per_issue_with_holm():
    reviews = reviews_frame()
    result = review_study.issue_detection(reviews, ["x", "y", "z"]).set_index("issue")
    for issue in "xyz":
        hits = [sum(issue in f for f in reviews.loc[reviews["provider"] == p, "found"]) for p in "ab"]
        expected = stats.fisher_exact([[hits[0], 20 - hits[0]], [hits[1], 20 - hits[1]]]).pvalue
        assert result.loc[issue, "p_value"] == pytest.approx(expected)
    np.testing.assert_allclose(result["p_holm"], multipletests(result["p_value"], method="holm")[1])
    assert result.loc["y", "reject"]


def test_detection_icc_and_rank_tests():
    reviews = reviews_frame()
    icc = review_study.detection_icc(reviews, ["x", "y", "z"])
    assert set(icc["type"]) == {"ICC(A,1)", "ICC(A,k)"} and len(icc) == 4
    assert icc["icc"].between(-1, 1).all() and icc["agreement"].between(0, 1).all()
    scores = ls.rank_tests([3, 3, 4, 2, 3], [5, 5, 4, 6, 5]).set_index("test")
    assert scores.loc["Mann-Whitney U", "p_value"] == pytest.approx(stats.mannwhitneyu([5, 5, 4, 6, 5],
                                                                                        [3, 3, 4, 2, 3]).pvalue)
    assert scores.loc["Mann-Whitney U", "P(Y > X)"] > 0.9


def test_power_helpers():
    n = ls.reviews_needed(0.75, 2.0)
    assert n == pytest.approx(TTestIndPower().solve_power(2 / 0.75, alpha=0.05, power=0.8))
    curve = ls.t_test_power(0.75, 2.0, [2, 3, 10])
    assert curve["power"].is_monotonic_increasing
    sim = ls.mannwhitney_power([-1, 0, 0, 1], 2.0, [3, 8], centre=4, n_sim=500, seed=1)
    assert sim.query("n == 3 and scenario == 'no effect'")["rate"].item() <= 0.05
    assert sim.query("n == 8 and scenario == 'known effect'")["rate"].item() > 0.95


# --- calibration -----------------------------------------------------------------------------------------------------

def test_calibration_null_rate_near_alpha_and_power():
    def draw(shift):
        return lambda rng, size: (rng.normal(0, 1, (size, 40)), rng.normal(shift, 1, (size, 40)))

    result = ls.calibrate(ls.mannwhitney_pvalues, draw(0.0), draw(1.0), n_sim=4000, seed=3, vectorized=True)
    null, effect = result.set_index("scenario").loc[["no effect", "known effect"]].to_dict("records")
    assert 0.035 < null["rate"] < 0.065 and null["low"] < 0.05 < null["high"]
    assert effect["rate"] > 0.95


def test_calibration_loop_accepts_bool_results():
    result = ls.calibrate(lambda x: bool(x > 1.959964), lambda rng: (rng.normal(),), n_sim=2000, seed=4)
    assert len(result) == 1
    assert 0.015 < result["rate"].item() < 0.04  # one-sided at 2.5%


def test_quantile_interval_counts_never_answered_requests_as_infinite():
    x = np.r_[np.arange(1.0, 391.0), np.full(10, np.inf)]  # 400 requests, 10 never answered (2.5%)
    p95 = ls.quantile_interval(x, 0.95, method="inverted_cdf")
    assert p95["estimate"] == 380 and p95["estimable"] and p95["high"] <= 390
    p99 = ls.quantile_interval(x, 0.99, method="inverted_cdf")
    assert p99["estimate"] == np.inf and p99["low"] == np.inf  # the p99 is a failure, with 95% confidence


def test_median_ratio_covers_the_true_ratio_and_says_unbounded_when_n_is_too_small():
    rng = np.random.default_rng(5)
    true = 2.0  # lognormal medians exp(0) and exp(log 2)
    hits = 0
    for _ in range(300):
        r = ls.median_ratio(rng.lognormal(0.0, 1.0, 40), rng.lognormal(math.log(true), 1.0, 25))
        assert r["low"] <= r["estimate"] <= r["high"]
        hits += r["low"] <= true <= r["high"]
    assert hits / 300 >= 0.95  # at least 95% by construction (conservative: near 100%)
    exact = ls.median_ratio([1.0, 2.0, 3.0] * 20, [2.0, 4.0, 6.0] * 20)
    assert exact["estimate"] == pytest.approx(2.0) and (exact["n_x"], exact["n_y"]) == (60, 60)
    tiny = ls.median_ratio([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert tiny["low"] == -np.inf and tiny["high"] == np.inf
    assert ls.fmt_interval(*tiny[["estimate", "low", "high"]], ".2f") == "2.00 [unbounded, unbounded]"


# --- heterogeneity of a ratio of medians ------------------------------------------------------------------------------

def test_ratio_heterogeneity_finds_one_group_off_and_matches_cochrans_q_by_hand():
    rng = np.random.default_rng(4)
    same = {g: (rng.lognormal(7, 0.2, 400), rng.lognormal(7, 0.2, 400) * 2) for g in "abcd"}
    table, summary = ls.ratio_heterogeneity(same, seed=1)
    assert list(table["group"]) == list("abcd") and summary["df"] == 3
    assert summary["ratio"] == pytest.approx(2, rel=0.05) and summary["p_value"] > 0.01
    w = 1 / table["se"] ** 2  # Cochran's Q: the weighted squared deviations from the fixed-effect mean
    fixed = (w * table["log_ratio"]).sum() / w.sum()
    assert summary["q"] == pytest.approx((w * (table["log_ratio"] - fixed) ** 2).sum())
    assert summary["ratio"] == pytest.approx(math.exp(fixed))
    off = {**same, "d": (same["d"][0], same["d"][1] * 1.5)}
    _, shifted = ls.ratio_heterogeneity(off, seed=1)
    assert shifted["p_value"] < 1e-6 and shifted["i2"] > 0.8 and shifted["tau2"] > 0
    assert summary["i2"] >= 0  # floored: Q below its df gives 0, not a negative share
