"""Which of the report's claims the data carry (notebook 03): the tests on the data, with the validation of
each test (:mod:`lab.analysis.calibration`) and the coverage of every interval the notebooks print
(:mod:`lab.analysis.coverage`).

:func:`study` runs every test notebook 03 quotes on an experiment-1 run and an experiment-2 run: time of day
(Kruskal-Wallis and Anderson-Darling, :func:`lab.analysis.stats.time_of_day_tests`), the model gap
(:func:`lab.analysis.compare.compare`) and its stability (Cochran's Q, :func:`lab.analysis.stats.ratio_heterogeneity`),
tails (:func:`tail_tests`), output tokens (TOST, ``statsmodels.stats.weightstats.ttost_ind``), what n buys
(:func:`lab.analysis.stats.estimable_percentiles`) and the reviews (rank tests, rate ratios, Fisher per issue,
ICC, power). :func:`claims` sets the report's claims against the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.weightstats import ttost_ind

from lab.analysis import calibration, coverage, review_study
from lab.analysis import stats as ls
from lab.analysis.compare import compare
from lab.analysis.stats import fmt_interval
from lab.analysis.windows import load, reference, source
from lab.collect import review
from lab.emulator.profiles import READING, READINGS
from lab.review import scoring

PERCENTILES = (50, 75, 90, 95, 99, 99.9)
"""The percentiles whose estimability :func:`study` tabulates."""


def tail_tests(latency: pd.DataFrame, threshold_ms: float, *, n_resamples: int = 1999, seed: int = 2026,
               alpha: float = 0.05) -> pd.DataFrame:
    """Peak against off-peak windows per model (``latency`` with ``peak``): a permutation test of the p95s
    (:func:`lab.analysis.stats.quantile_difference_test`) and Fisher's exact test of the share over
    ``threshold_ms`` (:func:`lab.analysis.stats.exceedance_test`), Holm across all rows."""
    rows = []
    for model, group in latency.groupby("model"):
        off_peak, peak = group.loc[~group["peak"], "latency_ms"], group.loc[group["peak"], "latency_ms"]
        q = ls.quantile_difference_test(off_peak, peak, q=0.95, n_resamples=n_resamples, seed=seed)
        x = ls.exceedance_test(off_peak, peak, threshold_ms)
        rows += [
            {"model": model, "test": "p95 difference, permutation", "off-peak": f"{q['quantile_x']:,.0f} ms",
             "peak": f"{q['quantile_y']:,.0f} ms", "effect": f"{q['difference']:+,.0f} ms", "p_value": q["p_value"]},
            {"model": model, "test": f"over {threshold_ms:,} ms, Fisher exact",
             "off-peak": f"{x['over_x']} of {x['n_x']}", "peak": f"{x['over_y']} of {x['n_y']}",
             "effect": f"odds ratio {x['odds_ratio']:.2f}", "p_value": x["p_value"]}]
    return ls.with_holm(pd.DataFrame(rows), alpha=alpha)


@dataclass
class SignificanceStudy:
    """Everything notebook 03 quotes; see :func:`study`."""

    # the data
    source: str
    review_source: str
    windows: list[str]
    calls: pd.DataFrame
    latency: pd.DataFrame
    reviews: pd.DataFrame
    key: list[Any]
    issues: list[str]
    providers: list[str]
    fast: str
    slow: str
    n_window: int
    aggregates: pd.Series
    haiku_spread: float
    reading: str
    other: str
    alpha: float
    token_margin: float
    gap_margin: float
    # validation
    calibration: pd.DataFrame
    widest: float
    anti: pd.DataFrame
    weak: pd.DataFrame
    sonnet_kw: pd.Series
    curves: dict[tuple[str, str], pd.DataFrame]
    detectable: pd.Series
    kw_power: float
    # time of day
    windows_tests: pd.DataFrame
    best: pd.Series
    # the model gap
    gap: pd.Series
    per_window: pd.DataFrame
    het: pd.Series
    q_power: pd.Series
    report_ratio: pd.Series
    stable: bool
    deviation: float
    # tails and tokens
    tails: pd.DataFrame
    tokens_slow: np.ndarray
    tokens_fast: np.ndarray
    tost_p: float
    equivalent: bool
    tost_row: pd.Series
    # what n buys
    estimable: pd.DataFrame
    n_pooled: int
    need: pd.Series
    # the reviews
    a_name: str
    b_name: str
    scores: dict[str, pd.Series]
    score_p: pd.Series
    counts: pd.DataFrame
    detection: pd.DataFrame
    icc: pd.DataFrame
    single: pd.DataFrame
    critical: pd.DataFrame
    sd: float
    needed: float
    ns: range
    t_power: pd.DataFrame
    mw_effect: pd.DataFrame
    mw_null: pd.DataFrame
    mw_enough: pd.Series
    rr_cover: pd.DataFrame
    chosen: str
    rr: pd.Series
    # coverage of the intervals
    checks: pd.DataFrame
    two_sided: pd.DataFrame
    inside: pd.Series
    hedge: np.ndarray


def study(run_id: str, review_run_id: str, *, seed: int = 2026, alpha: float = 0.05, confidence: float = 0.95,
          threshold_ms: float = 3000, token_margin: float = 5, gap_margin: float = 0.10,
          score_difference: float = 2, n_resamples: int = 1999, n_sim: int = 2000, sim_resamples: int = 99,
          replications: int = 2000, reading: str = READING) -> SignificanceStudy:
    """Notebook 03 on the experiment-1 run ``run_id`` and the experiment-2 run ``review_run_id``: the validation
    (:func:`lab.analysis.calibration.table`, ``n_sim`` simulations per scenario, ``sim_resamples`` permutations
    inside each), the tests on the data (``n_resamples`` permutations and bootstrap resamples, Holm per family at
    ``alpha``), the margins ``token_margin`` (tokens) and ``gap_margin`` (share of the ratio), the score difference
    the review power is computed for, and the coverage checks at ``replications``. Simulations are read from the
    run ``simulations``; the profiles are those fitted under ``reading``."""
    calls, windows = load(run_id)
    latency = calls[(calls["kind"] == "complete") & (calls["status"] == "ok")].copy()
    window_names = latency["window"].astype(str)
    latency["peak"] = window_names.str.contains("peak") & ~window_names.str.contains("off-peak")
    fast_name, slow_name = latency.groupby("model")["latency_ms"].median().sort_values().index[:2]
    _, reviews = review.reviews(review_run_id)
    key = scoring.load_key()
    issues = [issue.id for issue in key]
    providers = sorted(reviews["provider"].unique())
    review_source = f"run {review_run_id}" + (", SYNTHETIC (emulator reviewer)" if reviews["synthetic"].all() else "")
    report_windows, aggregates = reference()
    n_window = int(latency.groupby(["model", "window"], observed=True).size().min())
    haiku_spread = ((aggregates["haiku_median_max_ms"] - aggregates["haiku_median_min_ms"])
                    / aggregates["haiku_mean_of_medians_ms"])
    other = next(r for r in READINGS if r != reading)

    # Validation
    sample = calibration.review_sample(reviews, issues)
    table = calibration.table(latency, sample, issues, windows=len(windows), n_window=n_window, slow=slow_name,
                              haiku_spread=haiku_spread, threshold_ms=threshold_ms, token_margin=token_margin,
                              gap_margin=gap_margin, n_sim=n_sim, sim_resamples=sim_resamples, alpha=alpha, seed=seed,
                              reading=reading)
    by_test = table.set_index("test")
    kruskal = table["test"].eq("Kruskal-Wallis, windows")
    curves = calibration.kruskal_curves(len(windows), n_window, n_sim=n_sim, seed=seed, reading=reading)
    haiku_curve = curves[("haiku", reading)]

    # Time of day; the gap
    windows_tests = ls.time_of_day_tests(latency, by="model", n_resamples=n_resamples, seed=seed, alpha=alpha)
    fast = latency.loc[latency["model"] == fast_name, "latency_ms"].to_numpy()
    slow = latency.loc[latency["model"] == slow_name, "latency_ms"].to_numpy()
    pairs = {w: (g.loc[g["model"] == fast_name, "latency_ms"], g.loc[g["model"] == slow_name, "latency_ms"])
             for w, g in latency.groupby("window", observed=True)}
    per_window, het = ls.ratio_heterogeneity(pairs, seed=seed)
    q_power = by_test.loc["Cochran's Q, per-window ratio of medians"]

    # Tokens; what n buys
    tokens_slow = latency.loc[latency["latency_ms"] > threshold_ms, "output_tokens"].to_numpy(float)
    tokens_fast = latency.loc[latency["latency_ms"] < 2000, "output_tokens"].to_numpy(float)
    tost_p = ttost_ind(tokens_slow, tokens_fast, -token_margin, token_margin, usevar="unequal")[0]
    n_pooled = int(latency.groupby("model").size().min())
    estimable = ls.estimable_percentiles(n_window, PERCENTILES, confidence=confidence).drop(columns="n")
    estimable = estimable.rename(columns={"estimable": f"at n = {n_window} (per window)", "min_n": "smallest n"})
    estimable[f"at n = {n_pooled} (pooled per model)"] = estimable["smallest n"] <= n_pooled

    # The reviews
    a_name, b_name = providers[0], providers[1]
    scores = {p: reviews.loc[reviews["provider"] == p, "score"] for p in providers}
    counts = ls.count_rate_ratio(reviews["issues_listed"], reviews["provider"], reference=a_name, confidence=confidence)
    detection = review_study.issue_detection(reviews, issues, alpha=alpha)
    icc = review_study.detection_icc(reviews, issues)
    sd = float(np.sqrt(reviews.groupby("provider")["score"].var().mean()))
    ns = range(2, 11)
    mw_power = calibration.mannwhitney_curve(sample, score_difference, ns, n_sim=n_sim, alpha=alpha, seed=seed)
    mw_effect, mw_null = (mw_power[mw_power["scenario"] == s] for s in ("known effect", "no effect"))
    fits = counts.set_index("model")
    rr_cover = coverage.rate_ratio_coverage(sample.counts_by[a_name], sample.counts_by[b_name],
                                            replications=replications, seed=seed)
    rr_cover = rr_cover.assign(check=f"issues listed, {b_name} / {a_name}").set_index("interval", drop=False)
    chosen = "Poisson" if fits.loc["Poisson", "dispersion"] < 1 else "quasi-Poisson"  # underdispersed: Poisson is wider

    # Coverage of every interval the notebooks print
    checks = pd.concat([coverage.notebook_table(reading, replications=replications),  # seeded by lab.analysis.coverage
                        rr_cover.reset_index(drop=True)], ignore_index=True)
    two_sided = checks[~checks["one_sided"]]
    return SignificanceStudy(
        source=source(run_id, calls), review_source=review_source, windows=windows, calls=calls, latency=latency,
        reviews=reviews, key=key, issues=issues, providers=providers, fast=fast_name, slow=slow_name,
        n_window=n_window, aggregates=aggregates, haiku_spread=haiku_spread, reading=reading, other=other,
        alpha=alpha, token_margin=token_margin, gap_margin=gap_margin,
        calibration=table, widest=float((table["_fpr_high"] - table["_fpr_low"]).max() / 2),
        anti=table[table["null"] == "anti-conservative"], weak=table[table["_power"] < 0.8],
        sonnet_kw=table[kruskal & table["drawn from"].str.startswith("Sonnet")].set_index("drawn from")["_power"],
        curves=curves, detectable=haiku_curve.loc[haiku_curve["rate"] >= 0.8, "shift"],
        kw_power=table.loc[table["drawn from"].str.startswith("Haiku") & table["test"].str.startswith("Kruskal"),
                           "_power"].item(),
        windows_tests=windows_tests, best=windows_tests.loc[windows_tests["p_holm"].idxmin()],
        gap=compare(fast, slow, names=(fast_name, slow_name), confidence=confidence, seed=seed).effects,
        per_window=per_window, het=het, q_power=q_power,
        report_ratio=report_windows.pivot(index="window", columns="model", values="median_ms").pipe(
            lambda t: t[slow_name] / t[fast_name]),
        stable=het["p_value"] > alpha and q_power["_power"] >= 0.8,
        deviation=(per_window["ratio"] / het["ratio"] - 1).abs().max(),
        tails=tail_tests(latency, threshold_ms, n_resamples=n_resamples, seed=seed, alpha=alpha),
        tokens_slow=tokens_slow, tokens_fast=tokens_fast, tost_p=tost_p, equivalent=tost_p <= alpha,
        tost_row=by_test.loc[f"TOST, output tokens within ±{token_margin}"],
        estimable=estimable, n_pooled=n_pooled, need=estimable.set_index("percentile")["smallest n"],
        a_name=a_name, b_name=b_name, scores=scores,
        score_p=ls.rank_tests(scores[a_name], scores[b_name]).set_index("test")["p_value"],
        counts=counts, detection=detection, icc=icc, single=icc[icc["type"] == "ICC(A,1)"].set_index("provider"),
        critical=detection.set_index("issue").loc[[i.id for i in key if i.severity == "critical"]],
        sd=sd, needed=ls.reviews_needed(sd, score_difference, alpha=alpha, power=0.8), ns=ns,
        t_power=ls.t_test_power(sd, score_difference, ns, alpha=alpha), mw_effect=mw_effect, mw_null=mw_null,
        mw_enough=mw_effect.loc[mw_effect["rate"] >= 0.8, "n"], rr_cover=rr_cover, chosen=chosen,
        rr=fits.loc[chosen], checks=checks, two_sided=two_sided,
        inside=two_sided["coverage"].between(*coverage.BAND),
        hedge=checks[checks["kind"] == "hedging"]["coverage"].to_numpy())


def claims(s: SignificanceStudy) -> pd.DataFrame:
    """The report's claims, each with the test applied here, its result and the verdict on this run."""
    alpha, token_margin, gap_margin = s.alpha, s.token_margin, s.gap_margin
    by_test = s.calibration.set_index("test")
    kw_row = s.calibration[s.calibration["drawn from"].str.startswith("Haiku")
                           & s.calibration["test"].str.startswith("Kruskal")].iloc[0]
    no_window = not s.windows_tests["reject"].any()
    report_ratio_all = 1 + s.aggregates["sonnet_slower_pct"] / 100
    a_name, b_name, gap, rr, need = s.a_name, s.b_name, s.gap, s.rr, s.need
    crit_ok = (s.critical[[f"share_{p}" for p in s.providers]] >= 0.9).all().all()
    return pd.DataFrame([
        ("No time-of-day effect", "Kruskal-Wallis and Anderson-Darling per model, Holm",
         f"smallest adjusted p = {s.windows_tests['p_holm'].min():.3f}; power {kw_row['_power']:.0%} at the report's "
         "spread",
         ("not carried: an effect the size of the report's spread would usually be missed" if kw_row["_power"] < 0.8
          else "carried") if no_window else "contradicted"),
        (f"{s.slow} about {s.aggregates['sonnet_slower_pct']:.0f}% slower than {s.fast}",
         "ratio of medians, percentile bootstrap",
         fmt_interval(gap["median_ratio"], gap["median_ratio_low"], gap["median_ratio_high"], ".3f"),
         "carried" if gap["median_ratio_low"] <= report_ratio_all <= gap["median_ratio_high"] else "contradicted"),
        ("The gap is stable across windows", f"Cochran's Q; margin: one window {gap_margin:.0%} off",
         f"Q p = {s.het['p_value']:.3f}, I^2 = {s.het['i2']:.0%}; power at the margin {s.q_power['_power']:.0%}",
         f"carried to within {gap_margin:.0%}" if s.stable else "not shown"),
        ("Slow calls carry no more output tokens", f"TOST, margin ±{token_margin} tokens",
         f"{s.tokens_slow.mean() - s.tokens_fast.mean():+.1f} tokens, TOST p = {s.tost_p:.2g}",
         ("equivalent within the margin" if s.equivalent else "not shown")
         + (" (by construction: the emulator draws tokens independently of stalls)" if s.calls["synthetic"].all()
            else "")),
        ("Peak windows have heavier tails", "p95 permutation, Fisher exact, Holm",
         f"smallest adjusted p = {s.tails['p_holm'].min():.3f}",
         "supported" if s.tails["reject"].any() else
         f"not shown; power {by_test.loc['p95 difference, permutation', '_power']:.0%} for a 50% heavier top tenth"),
        ("Per-window p95 and maxima; P99 claims", "distribution-free quantile intervals",
         f"p95 needs n >= {need[95]}, p99 n >= {need[99]}; per window n = {s.n_window}",
         "p95 and max per window not estimable; a P99 claim needs hundreds of calls per arm"),
        (f"{b_name} scores the code higher than {a_name}", "Mann-Whitney, Brunner-Munzel",
         f"p = {s.score_p['Mann-Whitney U']:.2g}, {s.score_p['Brunner-Munzel']:.2g}",
         "carried with many reviews; not from one review each" if s.score_p.max() < alpha else "not shown"),
        (f"{b_name} lists fewer issues than {a_name}", f"{s.chosen} rate ratio",
         fmt_interval(rr["rate_ratio"], rr["low"], rr["high"], ".2f"), "carried" if rr["high"] < 1 else "not shown"),
        ("Both find the critical issues", "share of reviews per provider",
         "; ".join(f"{i}: {r[f'share_{a_name}']:.0%} / {r[f'share_{b_name}']:.0%}" for i, r in s.critical.iterrows()),
         "carried" if crit_ok else "not for every review"),
    ], columns=["report's claim", "test here", "result", "verdict on this run"])


def same_window_tests(result: Any, *, n_resamples: int = 1999) -> dict[str, Any]:
    """Do ``lab analyze``'s window tests (an :class:`lab.analysis.analyze.Analysis` of the experiment-1 run, by
    window) give this notebook's p-values? Its tests are on the successful non-streamed calls by model
    (:func:`study`); ``result``'s on the same calls, per target within kind ``complete``. Gives the number of
    p-values, how many are equal, and the largest absolute difference."""
    calls, _ = load(result.run_id)
    latency = calls[(calls["kind"] == "complete") & (calls["status"] == "ok")]
    ours = ls.time_of_day_tests(latency, by="model", n_resamples=n_resamples, seed=result.options.seed)
    theirs = result.time["tests"]
    theirs = theirs[theirs["kind"] == "complete"] if "kind" in theirs else theirs
    a, b = ours["p_value"].to_numpy(float), theirs["p_value"].to_numpy(float)
    if len(a) != len(b) or list(ours["test"]) != list(theirs["test"]):
        return {"tests": len(a), "equal": 0, "largest_difference": float("inf")}
    return {"tests": len(a), "equal": int((a == b).sum()), "largest_difference": float(np.abs(a - b).max())}
