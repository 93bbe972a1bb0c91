"""Validation by simulation of notebook 03's tests: each test's false-positive rate and power at the sample
sizes of the data, on data with a known answer.

Latencies are drawn from the emulator's profiles fitted to the report (:mod:`lab.analysis.coverage`); the reviews
are resampled (:class:`ReviewSample`). :func:`table` calibrates every test (:func:`lab.analysis.coverage.calibrated`,
on :func:`lab.analysis.stats.calibrate`), :func:`kruskal_curves` gives Kruskal-Wallis' power per shift of one window
(:func:`lab.analysis.coverage.power_curve`) and :func:`mannwhitney_curve` the Mann-Whitney test's per number of
reviews (:func:`lab.analysis.stats.mannwhitney_power`). Each is kept in the run ``simulations`` under a key that
names the question (:func:`lab.analysis.simulations.cached`): the test, the sizes, the effect and what the draws
depend on (:func:`profile`, :attr:`ReviewSample.data`), never the fitted floats.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.weightstats import ttost_ind

from lab.analysis import coverage, simulations
from lab.analysis import stats as ls
from lab.analysis.stats import fmt_interval
from lab.emulator.profiles import READING, READINGS, report_profiles

SHIFTS = tuple(np.round(np.linspace(0, 0.12, 13), 3))
"""The shifts of one window (shares of its latency) at which :func:`kruskal_curves` gives the power."""


def profile(model: str, reading: str = READING) -> dict[str, Any]:
    """What draws from a fitted profile depend on, for a cache key: the model and the fit, never its floats."""
    return {"model": model, **coverage.fitted(reading)}


@functools.lru_cache(maxsize=None)
def fisher_p(a: int, b: int, c: int, d: int) -> float:
    """The p-value of ``scipy.stats.fisher_exact`` on the table [[a, b], [c, d]], memoised: tables repeat
    across simulations."""
    return stats.fisher_exact([[a, b], [c, d]]).pvalue


def kruskal_p(*groups: np.ndarray) -> np.ndarray:
    """``scipy.stats.kruskal`` p-values along the last axis (one per simulation when vectorised)."""
    return stats.kruskal(*groups, axis=-1).pvalue


@dataclass(frozen=True)
class ReviewSample:
    """The reviews as the simulations resample them: score residuals around each provider's median and the
    common ``centre``, issue counts per provider (``ref_counts``: the provider that lists more), the pooled
    detection rate of each issue, and the number of reviews per provider (in provider order)."""

    residuals: np.ndarray
    centre: float
    counts_by: dict[str, np.ndarray]
    ref_counts: np.ndarray
    rates: list[float]
    n_a: int
    n_b: int

    @property
    def data(self) -> dict[str, Any]:
        """What the review draws depend on, for a cache key."""
        return {"residuals": self.residuals.tolist(), "centre": self.centre, "counts": self.ref_counts.tolist(),
                "rates": self.rates, "n": [self.n_a, self.n_b]}


def review_sample(reviews: pd.DataFrame, issues: Sequence[str]) -> ReviewSample:
    """A :class:`ReviewSample` of ``reviews`` (:func:`lab.collect.review.reviews`) and the answer key's ``issues``."""
    residuals = np.concatenate([g["score"].dropna() - g["score"].median() for _, g in reviews.groupby("provider")])
    counts_by = {p: g["issues_listed"].to_numpy(float) for p, g in reviews.groupby("provider")}
    n_a, n_b = (int(n) for n in reviews.groupby("provider").size().sort_index())
    return ReviewSample(residuals=residuals, centre=float(reviews["score"].median()), counts_by=counts_by,
                        ref_counts=counts_by[max(counts_by, key=lambda p: counts_by[p].mean())],
                        rates=[float(reviews["found"].map(lambda f, i=i: i in f).mean()) for i in issues],
                        n_a=n_a, n_b=n_b)


def _detection(sample: ReviewSample, alpha: float):
    """Draws and test of Fisher per issue with Holm: under the effect the first issue is found by 90% against
    40% of reviews; the test reports power for that issue and, without a change, any false alarm."""
    n_a, n_b = sample.n_a, sample.n_b

    def draw(changed):
        a, b = np.array(sample.rates), np.array(sample.rates)
        if changed:
            a[0], b[0] = 0.9, 0.4
        return lambda rng: (rng.binomial(n_a, a), rng.binomial(n_b, b), changed)

    def test(hits_a, hits_b, changed):
        reject = ls.holm([fisher_p(int(a), n_a - int(a), int(b), n_b - int(b)) for a, b in zip(hits_a, hits_b)],
                         alpha)[1]
        return bool(reject[0]) if changed else bool(reject.any())

    return draw, test


def table(latency: pd.DataFrame, sample: ReviewSample, issues: Sequence[str], *, windows: int, n_window: int,
          slow: str, haiku_spread: float, threshold_ms: float = 3000, token_margin: float = 5,
          gap_margin: float = 0.10, n_sim: int = 2000, sim_resamples: int = 99, alpha: float = 0.05,
          seed: int = 2026, reading: str = READING) -> pd.DataFrame:
    """Every test of notebook 03 calibrated at the sizes of the data (``latency``: successful calls with
    ``model``, ``window``, ``peak``; ``slow``: the slower model), ``n_sim`` simulations per scenario: one row
    per test with its false-positive rate and power as text and as numbers (columns starting with ``_``),
    and ``null``: "conservative", "anti-conservative" or "at α" by the rate's interval."""
    profiles = {r: report_profiles(r) for r in READINGS}
    P, other = profiles[reading], next(r for r in READINGS if r != reading)
    rng_sim = np.random.default_rng([seed, 1])  # permutations and resamples inside simulated tests
    in_windows = lambda p, shift=0: coverage.windows_draw(p, windows, n_window, shift)  # noqa: E731
    k_by_n = f"{windows} windows x {n_window}"
    rows = []

    def check(test_name, sizes, source, effect, test, null, alternative, data, vectorized=False):
        result = coverage.calibrated(test_name, {"sizes": sizes, "effect": effect, "data": data}, test, null,
                                     alternative, n_sim=n_sim, alpha=alpha, seed=seed,
                                     vectorized=vectorized).set_index("scenario")
        no, yes = result.loc["no effect"], result.loc["known effect"]
        rows.append({"test": test_name, "samples": sizes, "drawn from": source, "known effect": effect,
                     "false-positive rate [95% CI]": fmt_interval(no["rate"], no["low"], no["high"], ".3f"),
                     "power [95% CI]": fmt_interval(yes["rate"], yes["low"], yes["high"], ".3f"),
                     "_fpr": no["rate"], "_fpr_low": no["low"], "_fpr_high": no["high"], "_power": yes["rate"]})

    # Experiment 1: latencies from the fitted profiles
    check("Kruskal-Wallis, windows", k_by_n, f"Haiku, {reading} reading", f"one window {haiku_spread:.1%} slower (the "
          "report's Haiku spread)", kruskal_p, in_windows(P["haiku"]), in_windows(P["haiku"], haiku_spread),
          profile("haiku", reading), vectorized=True)
    for r in (reading, other):
        check("Kruskal-Wallis, windows", k_by_n, f"Sonnet, {r} reading", "one window 5% slower", kruskal_p,
              in_windows(profiles[r]["sonnet"]), in_windows(profiles[r]["sonnet"], 0.05), profile("sonnet", r),
              vectorized=True)
    check("Anderson-Darling k-sample, permutation", k_by_n, f"Haiku, {reading} reading",
          f"one window {haiku_spread:.1%} slower",
          lambda *g: stats.anderson_ksamp(g, variant="midrank", method=stats.PermutationMethod(
              n_resamples=sim_resamples, rng=rng_sim)).pvalue,
          in_windows(P["haiku"]), in_windows(P["haiku"], haiku_spread), profile("haiku", reading))
    check("Cochran's Q, per-window ratio of medians", f"{k_by_n} per model", "Haiku and Sonnet",
          f"one window's ratio {gap_margin:.0%} higher",
          lambda pairs: ls.ratio_heterogeneity(pairs, seed=rng_sim)[1]["p_value"],
          coverage.gap_draw(P["haiku"], P["sonnet"], windows, n_window),
          coverage.gap_draw(P["haiku"], P["sonnet"], windows, n_window, gap_margin),
          {"haiku": profile("haiku", reading), "sonnet": profile("sonnet", reading)})
    off_n, peak_n = (int(n) for n in latency[latency["model"] == slow].groupby("peak").size().reindex([False, True]))
    slow_profile = P[slow.lower()]
    over = float((coverage.draw_latency(slow_profile, np.random.default_rng(seed), 10**6) > threshold_ms).mean())
    check("p95 difference, permutation", f"{off_n} off-peak vs {peak_n} peak", f"{slow}, {reading} reading",
          "slowest tenth of peak calls 50% slower",
          lambda x, y: ls.quantile_difference_test(x, y, n_resamples=sim_resamples, seed=rng_sim)["p_value"],
          coverage.split_draw(slow_profile, off_n, peak_n),
          coverage.split_draw(slow_profile, off_n, peak_n, lambda y: np.where(y > np.quantile(y, 0.9), 1.5 * y, y)),
          profile(slow.lower(), reading))
    check(f"Over {threshold_ms:,} ms, Fisher exact", f"{off_n} off-peak vs {peak_n} peak", f"{slow}, {reading} reading",
          f"share over the threshold doubles ({over:.1%} to {2 * over:.1%})",
          lambda a, b: fisher_p(a, off_n - a, b, peak_n - b),
          lambda rng: (int(rng.binomial(off_n, over)), int(rng.binomial(peak_n, over))),
          lambda rng: (int(rng.binomial(off_n, over)), int(rng.binomial(peak_n, min(1, 2 * over)))),
          {"share": over, **profile(slow.lower(), reading)})
    n_slow, n_fast = int((latency["latency_ms"] > threshold_ms).sum()), int((latency["latency_ms"] < 2000).sum())
    check(f"TOST, output tokens within ±{token_margin}",
          f"{n_slow} over {threshold_ms:,} ms vs {n_fast} under 2,000 ms",
          "tokens as drawn", f"null: {token_margin} more tokens (at the margin); effect: none",
          lambda x, y: ttost_ind(x, y, -token_margin, token_margin, usevar="unequal")[0],
          coverage.tokens_draw(P["haiku"], n_slow, n_fast, token_margin),
          coverage.tokens_draw(P["haiku"], n_slow, n_fast), profile("haiku", reading))

    # Experiment 2: the reviews, resampled (scores around a common centre, issue counts, detections at the pooled rates)
    s, data = sample, sample.data
    sizes = f"{s.n_a} vs {s.n_b} reviews"
    for name, test in (("Mann-Whitney", ls.mannwhitney_pvalues), ("Brunner-Munzel", ls.brunnermunzel_pvalues)):
        check(f"{name}, scores", sizes, "reviews", "1 point higher", test,
              coverage.resampled_draw(s.residuals, s.n_a, s.n_b, centre=s.centre),
              coverage.resampled_draw(s.residuals, s.n_a, s.n_b, centre=s.centre, shift=1), data, vectorized=True)
    for label, model in (("Poisson", "Poisson"), ("Quasi-Poisson", "quasi-Poisson")):
        check(f"{label} GLM, issues listed", sizes, "reviews", "rate ratio 0.8",
              lambda x, y, model=model: ls.count_rate_ratio(
                  np.concatenate([x, y]), np.repeat(["a", "b"], [s.n_a, s.n_b]), reference="a",
                  overdispersion=np.inf).set_index("model").loc[model, "p_value"],
              coverage.thinned_draw(s.ref_counts, s.n_a, s.n_b), coverage.thinned_draw(s.ref_counts, s.n_a, s.n_b, 0.8),
              data)
    draw, test = _detection(s, alpha)
    check("Fisher per issue, Holm", f"{len(issues)} issues, {sizes}", "reviews", "one issue found 90% vs 40%",
          test, draw(False), draw(True), data)
    out = pd.DataFrame(rows)
    out["null"] = np.select([out["_fpr_high"] < alpha, out["_fpr_low"] > alpha],
                            ["conservative", "anti-conservative"], "at α")
    return out


def kruskal_curves(windows: int, n_window: int, *, n_sim: int = 2000, seed: int = 2026,
                   reading: str = READING) -> dict[tuple[str, str], pd.DataFrame]:
    """Kruskal-Wallis' power to see one of ``windows`` windows of ``n_window`` calls slower by each of
    :data:`SHIFTS`, for Haiku and Sonnet under ``reading`` and Sonnet under the other reading, keyed by
    (model, reading) (:func:`lab.analysis.coverage.power_curve`, kept in the run ``simulations``)."""
    other = next(r for r in READINGS if r != reading)
    return {(m, r): coverage.power_curve(
        "kruskal power curve", {**profile(m, r), "windows": windows, "n": n_window}, kruskal_p,
        lambda s, m=m, r=r: coverage.windows_draw(report_profiles(r)[m], windows, n_window, s),
        np.array(SHIFTS), n_sim=n_sim, seed=seed, vectorized=True)
        for m, r in (("haiku", reading), ("sonnet", reading), ("sonnet", other))}


def mannwhitney_curve(sample: ReviewSample, difference: float, ns: Sequence[int], *, n_sim: int = 2000,
                      alpha: float = 0.05, seed: int = 2026) -> pd.DataFrame:
    """The Mann-Whitney test's simulated false-positive rate and power to see a score ``difference`` per number
    of reviews in ``ns`` (:func:`lab.analysis.stats.mannwhitney_power`, kept in the run ``simulations``)."""
    return simulations.cached(
        "mann-whitney power, scores", {**sample.data, "difference": difference, "ns": list(ns), "n_sim": n_sim,
                                       "seed": seed, "version": 1},
        lambda **_: ls.mannwhitney_power(sample.residuals, difference, ns, centre=sample.centre, n_sim=n_sim,
                                         alpha=alpha, seed=seed))
