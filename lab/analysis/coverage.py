"""Simulated coverage of the intervals the notebooks print: how often each interval, at the n it is
used at, holds the true value when the data come from the emulator's fitted profiles (where the
truth is known).

:func:`coverage` draws ``replications`` samples, builds the interval on each and counts how often it
holds the truth, with an exact (Clopper-Pearson) interval for that share
(:func:`lab.analysis.stats.rejection_rate`); :func:`tally` does the same for several intervals built from one
sample, and counts the misses on each side (an interval that misses lopsidedly is biased, not only
narrow). :func:`draw_latency` draws a profile's latencies with numpy, fast enough for millions;
:func:`truths` takes the true values from one very large sample. :func:`notebook_table` checks
every interval the notebooks print, each check kept in the run ``simulations``
(:func:`lab.analysis.simulations.cached`), so a replay reads it back instead of simulating again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from lab.analysis import compare as compare_module
from lab.analysis import simulations, stats
from lab.emulator.profiles import READING, READINGS, LatencyProfile, fit_id, report_profiles

Interval = tuple[float, float]
BAND = (0.94, 0.965)
"""Coverage a two-sided 95% interval should show in simulation: near 95%, and not so wide that it wastes data."""
VERSION = 1
"""Bump when a check's code changes: a new version is a new cache key, simulated again."""


# --- drawing from a profile ------------------------------------------------------------------------------------------

def draw_latency(profile: LatencyProfile, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Total latencies (ms) of ``profile``: the model of :meth:`LatencyProfile.draw` (one lognormal factor
    on TTFT and inter-token time, a normal token count of at least 1, a lognormal stall with probability
    ``stall_prob``), drawn with ``numpy.random.Generator`` over a whole array at once."""
    factor = np.exp(profile.sigma * rng.standard_normal(size))
    tokens = np.maximum(1, np.round(rng.normal(profile.output_tokens, profile.tokens_sd, size)))
    stalled = rng.random(size) < profile.stall_prob
    stall = np.where(stalled, profile.stall_median_ms * np.exp(profile.stall_sigma * rng.standard_normal(size)), 0.0)
    return profile.ttft_ms * factor + stall + (profile.thinking_tokens + tokens) * profile.itl_ms * factor


def fitted(reading: str = READING) -> dict[str, Any]:
    """The profiles fitted under ``reading``, as a cache key names them: the reading and the fit (its code
    version and the reference data, :func:`lab.emulator.profiles.fit_id`), never the fitted floats."""
    return {"reading": reading, "fit": fit_id()}


def light(profile: LatencyProfile) -> LatencyProfile:
    """The profile without its stalls (its body alone): the light-tailed backup of the hedging checks."""
    return dataclasses.replace(profile, name=f"{profile.name} body", stall_prob=0.0)


def _shape(n: int, size: int | None) -> tuple[int, ...]:
    return (n,) if size is None else (size, n)


def windows_draw(profile: LatencyProfile, windows: int, n: int, shift: float = 0.0) -> Callable[..., list]:
    """Draws for :func:`lab.analysis.stats.calibrate`: ``windows`` groups of ``n`` latencies of ``profile``, the last
    one slower by the share ``shift`` (with a ``size``, each group gets a leading axis of that many)."""
    return lambda rng, size=None: [draw_latency(profile, rng, _shape(n, size)) * (1 + shift * (w == windows - 1))
                                   for w in range(windows)]


def gap_draw(x: LatencyProfile, y: LatencyProfile, windows: int, n: int, shift: float = 0.0) -> Callable[..., tuple]:
    """Draws of one {window: (x sample, y sample)} of ``n`` calls each, the last window's y slower by ``shift``
    (the input of :func:`lab.analysis.stats.ratio_heterogeneity`)."""
    return lambda rng: ({w: (draw_latency(x, rng, n), draw_latency(y, rng, n) * (1 + shift * (w == windows - 1)))
                         for w in range(windows)},)


def split_draw(profile: LatencyProfile, n_x: int, n_y: int,
               change: Callable[[np.ndarray], np.ndarray] | None = None) -> Callable[..., tuple]:
    """Draws of two samples of ``profile`` (``n_x`` and ``n_y`` calls), ``change`` applied to the second."""
    change = change or (lambda values: values)
    return lambda rng: (draw_latency(profile, rng, n_x), change(draw_latency(profile, rng, n_y)))


def tokens_draw(profile: LatencyProfile, n_x: int, n_y: int, shift: float = 0.0) -> Callable[..., tuple]:
    """Draws of two samples of output-token counts as the emulator draws them for ``profile`` (independent
    of latency), the first shifted by ``shift`` tokens."""
    def tokens(rng, n):
        return np.maximum(1, np.round(rng.normal(profile.output_tokens, profile.tokens_sd, n)))
    return lambda rng: (tokens(rng, n_x) + shift, tokens(rng, n_y))


def resampled_draw(residuals: np.ndarray, n_x: int, n_y: int, *, centre: float = 0.0,
                   shift: float = 0.0) -> Callable[..., tuple]:
    """Vectorised draws of two samples, ``centre`` plus residuals resampled with replacement (integers stay
    integers, ties included), the second shifted by ``shift``: as :func:`lab.analysis.stats.mannwhitney_power` draws."""
    residuals = np.asarray(residuals, float)
    return lambda rng, size: (centre + rng.choice(residuals, (size, n_x)),
                              centre + shift + rng.choice(residuals, (size, n_y)))


def thinned_draw(counts: np.ndarray, n_x: int, n_y: int, keep: float = 1.0) -> Callable[..., tuple]:
    """Draws of two samples of counts resampled from ``counts``, the second thinned (each unit kept with
    probability ``keep``, so its rate ratio is ``keep``)."""
    counts = np.asarray(counts, float)
    return lambda rng: (rng.choice(counts, n_x), rng.binomial(rng.choice(counts, n_y).astype(int), keep))


def power_curve(name: str, params: Mapping[str, Any], test: Callable[..., Any], draws: Callable[[float], Callable],
                shifts: Any, *, n_sim: int, seed: int = 0, vectorized: bool = False) -> pd.DataFrame:
    """The rejection rate of ``test`` on ``draws(shift)`` for each shift (:func:`lab.analysis.stats.calibrate` at
    alpha 0.05, one row per shift, column ``shift``), simulated once and kept in the run ``simulations``
    under ``name`` and ``params`` (which must name everything the draws depend on)."""
    shifts = [float(s) for s in shifts]
    key = {**params, "shifts": shifts, "n_sim": n_sim, "seed": seed, "version": 1}
    return simulations.cached(name, key, lambda **_: pd.concat(
        [stats.calibrate(test, draws(s), None, n_sim=n_sim, seed=seed, vectorized=vectorized).assign(shift=s)
         for s in shifts], ignore_index=True))


def calibrated(name: str, params: Mapping[str, Any], test: Callable[..., Any], null: Callable[..., Any],
               effect: Callable[..., Any] | None = None, *, n_sim: int, alpha: float = 0.05, seed: int = 0,
               vectorized: bool = False) -> pd.DataFrame:
    """:func:`lab.analysis.stats.calibrate` of ``test``, simulated once and kept in the run ``simulations``
    (:func:`lab.analysis.simulations.cached` under "calibration", the test's ``name``, ``params``, ``n_sim``, ``alpha``
    and ``seed``): ``params`` must name everything the draws depend on (profiles, sample sizes, effects)."""
    key = {"test": name, **params, "n_sim": n_sim, "alpha": alpha, "seed": seed, "version": 1}
    return simulations.cached("calibration", key, lambda **_: stats.calibrate(
        test, null, effect, n_sim=n_sim, alpha=alpha, seed=seed, vectorized=vectorized))


def spread_share(profile: LatencyProfile, spread_ms: float, *, windows: int = 5, n: int = 50,
                 replications: int = 100_000, seed: int = 0) -> tuple[float, float, float]:
    """How often ``windows`` windows of ``n`` calls drawn from ``profile`` have medians spreading (largest minus
    smallest) by at least ``spread_ms``: the share of ``replications`` simulated experiments, with its exact
    interval (:func:`lab.analysis.stats.rejection_rate`)."""
    rng, hits, done = np.random.default_rng(seed), 0, 0
    while done < replications:
        size = min(10_000, replications - done)
        medians = np.median(draw_latency(profile, rng, (size, windows, n)), axis=-1)
        hits += int((np.ptp(medians, axis=-1) >= spread_ms).sum())
        done += size
    return stats.rejection_rate(hits, replications)


def readings_table(spread_ms: float, *, model: str = "sonnet", threshold_ms: float = 3000.0,
                   replications: int = 100_000, seed: int = 0) -> pd.DataFrame:
    """The profiles fitted under each reading of the report (:data:`lab.emulator.profiles.READINGS`), side by
    side: per reading and model the body median (TTFT plus the mean output at the median inter-token time),
    the body's log-scale sigma, the stall probability, median and log-scale sigma, and the share of calls
    over ``threshold_ms`` (from 1,000,000 draws); for ``model``, how often it reproduces a spread of window
    medians of ``spread_ms`` (:func:`spread_share`). Simulates; cache it with :func:`lab.analysis.simulations.cached`."""
    rows = []
    for reading in READINGS:
        for name, p in report_profiles(reading).items():
            over = float((draw_latency(p, np.random.default_rng(seed), 1_000_000) > threshold_ms).mean())
            share = spread_share(p, spread_ms, replications=replications, seed=seed) if name == model else (
                math.nan,) * 3
            rows.append({"reading": reading, "model": name, "body_median_ms": p.ttft_ms + p.output_tokens * p.itl_ms,
                         "sigma": p.sigma, "stall_prob": p.stall_prob, "stall_median_ms": p.stall_median_ms,
                         "stall_sigma": p.stall_sigma, "over_threshold": over, "spread_share": share[0],
                         "spread_low": share[1], "spread_high": share[2]})
    return pd.DataFrame(rows)


# --- counting coverage --------------------------------------------------------------------------------------------

def tally(draw: Callable[[np.random.Generator, int], tuple], intervals: Callable[..., Mapping[str, Interval]],
          truth: Mapping[str, float], *, n: int, replications: int, seed: int = 0,
          confidence: float = 0.95) -> pd.DataFrame:
    """Coverage of several intervals built from the same samples: ``draw(rng, n)`` returns one
    replication's samples, ``intervals(*samples)`` a {name: (low, high)} (an infinite bound is
    "unbounded", so a one-sided interval counts its one bound), ``truth`` the true value per name.

    One row per name: ``covered`` (low <= truth <= high), ``below`` (the whole interval below the
    truth), ``above``, and ``coverage`` with its exact interval (``low``, ``high``) by
    :func:`lab.analysis.stats.rejection_rate` at ``confidence``. A NaN bound (no interval) counts as a miss on
    neither side.
    """
    rng = np.random.default_rng(seed)
    counts = {name: np.zeros(3, int) for name in truth}
    for _ in range(replications):
        for name, (low, high) in intervals(*draw(rng, n)).items():
            value = truth[name]
            counts[name] += (low <= value <= high, high < value, low > value)
    rows = []
    for name, (covered, below, above) in counts.items():
        rate, low, high = stats.rejection_rate(int(covered), replications, confidence=confidence)
        rows.append({"interval": name, "n": n, "replications": replications, "covered": int(covered),
                     "below": int(below), "above": int(above), "coverage": rate, "low": low, "high": high})
    return pd.DataFrame(rows)


def coverage(draw: Callable[[np.random.Generator, int], tuple], interval: Callable[..., Interval], truth: float, *,
             n: int, replications: int, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Share of ``replications`` intervals ``interval(*draw(rng, n))`` that hold ``truth``, with its exact
    interval (see :func:`tally`)."""
    row = tally(draw, lambda *s: {"": interval(*s)}, {"": truth}, n=n, replications=replications, seed=seed,
                confidence=confidence).iloc[0]
    return float(row["coverage"]), float(row["low"]), float(row["high"])


def order_statistic_coverage(n: int, p: float, *, confidence: float = 0.95) -> float:
    """The exact coverage of :func:`lab.analysis.stats.quantile_interval` for the p-quantile at n, for any continuous
    distribution: the order statistics ``scipy.stats.quantile_test`` picks, and the chance
    (``scipy.stats.binom``) that the count below the quantile falls between them."""
    ci = scipy_stats.quantile_test(np.arange(n, dtype=float), p=p).confidence_interval(confidence)
    first = int(ci.low) + 1 if np.isfinite(ci.low) else 0        # 1-based rank of the lower bound (0: none)
    last = int(ci.high) + 1 if np.isfinite(ci.high) else n + 1   # of the upper bound (n + 1: none)
    below = scipy_stats.binom(n, p)
    return float(below.cdf(last - 1) - below.cdf(first - 1))


# --- the notebooks' intervals -------------------------------------------------------------------------------------

def truths(reading: str = READING, *, size: int = 4_000_000, seed: int = 0) -> dict[str, Any]:
    """True values under the fitted profiles of ``reading``, from one sample of ``size`` calls per
    profile: per model the 50th, 95th and 99th percentiles (``numpy.quantile``); Sonnet's median minus and
    over Haiku's; P(Sonnet slower than Haiku); and, for hedging the Haiku profile at its own p95 with its
    stall-free body as the backup, the reduction of the 99th percentile (at the 95th it is 0 by construction:
    hedging at the p95 only changes calls above it, and they stay above it)."""
    rng = np.random.default_rng(seed)
    profiles = report_profiles(reading)
    x, y = (np.sort(draw_latency(profiles[m], rng, size)) for m in ("haiku", "sonnet"))
    q = {m: dict(zip(("p50", "p95", "p99"), np.quantile(v, (0.5, 0.95, 0.99)).tolist()))
         for m, v in (("haiku", x), ("sonnet", y))}
    slower = float(np.searchsorted(x, y, side="left").sum() / size / size)  # P(Y > X), continuous
    backup = draw_latency(light(profiles["haiku"]), rng, size)
    primary = rng.permutation(x)
    delay = q["haiku"]["p95"]
    hedged = np.where(primary > delay, np.minimum(primary, delay + backup), primary)
    cut = {"hedge p99 reduction": float(1 - np.quantile(hedged, 0.99) / np.quantile(primary, 0.99))}
    return {"quantiles": q, "difference": q["sonnet"]["p50"] - q["haiku"]["p50"],
            "ratio": q["sonnet"]["p50"] / q["haiku"]["p50"], "p_b_slower": slower, **cut}


def _order_statistics(profile: LatencyProfile, percentiles: tuple[float, ...]):
    def draw(rng, n):
        return (draw_latency(profile, rng, n),)

    def intervals(x):  # as lab.analysis.stats.interval_summary: a bound n cannot give is infinite
        rows = {f"p{pct:g}": stats.quantile_interval(x, pct / 100) for pct in percentiles}
        return {k: (np.nan_to_num(r["low"], nan=-math.inf), np.nan_to_num(r["high"], nan=math.inf))
                for k, r in rows.items()}
    return draw, intervals


def _pair(profiles: Mapping[str, LatencyProfile]):
    return lambda rng, n: (draw_latency(profiles["haiku"], rng, n), draw_latency(profiles["sonnet"], rng, n))


def _compare_intervals(x, y):
    e = compare_module.compare(x, y).effects
    return {name: (e[f"{name}_low"], e[f"{name}_high"]) for name in ("median_difference", "median_ratio", "p_b_slower")}


def _error_rate(n_rate: float):
    def draw(rng, n):
        return (rng.random(n) < n_rate,)

    def intervals(failed):
        frame = pd.DataFrame({"g": 0, "status": np.where(failed, "error", "ok")})
        row = stats.error_rates(frame, ["g"]).iloc[0]
        return {"error rate": (row["low"], row["high"])}
    return draw, intervals


def _hedging(profile: LatencyProfile, delay_from_data: bool):
    from lab.analysis import hedging as simulate

    backup_profile = light(profile)

    def draw(rng, n):
        frames = [pd.DataFrame({"status": "ok", "latency_ms": draw_latency(p, rng, n), "cost_usd": 1.0})
                  for p in (profile, backup_profile)]
        return tuple(frames)

    def intervals(primary, backup):
        rows = simulate.sweep(primary, backup, delay_percentiles=(95,), quantiles=(0.99,),
                              delay_from_data=delay_from_data)
        return {f"hedge p{round(r.q * 100)} reduction": (r.reduction_low, r.reduction_high) for r in rows.itertuples()}
    return draw, intervals


def _check(kind: str, reading: str, n: int, replications: int, seed: int, **options: Any) -> pd.DataFrame:
    """One check of :func:`notebook_table`, simulated (uncached)."""
    profiles = report_profiles(reading)
    truth = simulations.cached(f"true values {VERSION}", {"profiles": fitted(reading)}, lambda **_: truths(reading))
    if kind == "order statistics":
        model = options["model"]
        draw, intervals = _order_statistics(profiles[model], tuple(options["percentiles"]))
        want = {f"p{p:g}": truth["quantiles"][model][f"p{p:g}"] for p in options["percentiles"]}
    elif kind == "compare":
        draw, intervals = _pair(profiles), _compare_intervals
        want = {"median_difference": truth["difference"], "median_ratio": truth["ratio"],
                "p_b_slower": truth["p_b_slower"]}
    elif kind == "median_ratio":
        draw = _pair(profiles)
        intervals = lambda x, y: {"median_ratio": tuple(stats.median_ratio(x, y)[["low", "high"]])}  # noqa: E731
        want = {"median_ratio": truth["ratio"]}
    elif kind == "error rate":
        draw, intervals = _error_rate(options["rate"])
        want = {"error rate": options["rate"]}
    elif kind == "hedging":
        draw, intervals = _hedging(profiles["haiku"], options["delay_from_data"])
        want = {"hedge p99 reduction": truth["hedge p99 reduction"]}
    else:
        raise ValueError(f"unknown check {kind!r}")
    return tally(draw, intervals, want, n=n, replications=replications, seed=seed).assign(truth=lambda f: f[
        "interval"].map(want))


CHECKS: tuple[tuple[str, str, int, dict[str, Any]], ...] = (
    # (what the notebooks print, check, n, options)
    ("Haiku latency, per window", "order statistics", 50, {"model": "haiku", "percentiles": [50, 95]}),
    ("Sonnet latency, per window", "order statistics", 50, {"model": "sonnet", "percentiles": [50, 95]}),
    ("Haiku latency, pooled", "order statistics", 250, {"model": "haiku", "percentiles": [50, 95, 99]}),
    ("Sonnet latency, pooled", "order statistics", 250, {"model": "sonnet", "percentiles": [50, 95, 99]}),
    ("Sonnet against Haiku (lab.analysis.compare)", "compare", 250, {}),
    ("distribution-free (lab.analysis.stats.median_ratio)", "median_ratio", 100, {}),
    ("error rate (Wilson, exact under 5 errors: lab.analysis.summary.rate_interval), true rate 2%", "error rate", 200,
     {"rate": 0.02}),
    ("hedging at the primary's p95, delay re-estimated per resample", "hedging", 400, {"delay_from_data": True}),
    ("hedging at the primary's p95, delay held fixed", "hedging", 400, {"delay_from_data": False}),
)


def rate_ratio_coverage(a: np.ndarray, b: np.ndarray, *, replications: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Coverage of the Poisson and quasi-Poisson rate-ratio intervals (:func:`lab.analysis.stats.count_rate_ratio`) of two
    groups of counts, each resampled from its observed values (truth: the ratio of their means); cached like
    :func:`notebook_table`, with its columns."""
    a, b = np.asarray(a, float), np.asarray(b, float)

    def intervals(x, y):
        fit = stats.count_rate_ratio(np.concatenate([x, y]), np.repeat(["a", "b"], [len(x), len(y)]), reference="a",
                                     overdispersion=np.inf).set_index("model")
        return {f"{m} rate ratio": tuple(fit.loc[m, ["low", "high"]]) for m in ("Poisson", "quasi-Poisson")}

    def compute(**_):
        truth = b.mean() / a.mean()
        return tally(lambda rng, n: (rng.choice(a, len(a)), rng.choice(b, len(b))), intervals,
                     {"Poisson rate ratio": truth, "quasi-Poisson rate ratio": truth}, n=len(a),
                     replications=replications, seed=seed)

    params = {"a": a.tolist(), "b": b.tolist(), "replications": replications, "seed": seed, "version": 1}
    return simulations.cached("coverage, review rate ratio", params, compute).assign(kind="rate ratio", one_sided=False)


NAMES = {"p50": "median", "median_difference": "difference of medians", "median_ratio": "ratio of medians",
         "p_b_slower": "P(slower)", "hedge p99 reduction": "p99 reduction"}
PRINTED_IN = {"order statistics": "01, 03, 05", "compare": "01, 03", "median_ratio": "05", "error rate": "05, 07",
              "hedging": "04", "rate ratio": "03"}


def verdict(coverage: float, one_sided: bool, confidence: float = 0.95) -> str:
    """What a simulated coverage says of a two-sided ``confidence`` interval (within :data:`BAND`,
    conservative, or short), or of a lower bound alone (its level is ``1 - (1 - confidence) / 2``)."""
    if one_sided:
        return f"lower bound only: {coverage:.1%} (level {1 - (1 - confidence) / 2:.1%})"
    if BAND[0] <= coverage <= BAND[1]:
        return f"within [{BAND[0]:.0%}, {BAND[1]:.1%}]"
    return f"conservative: covers {coverage:.1%}" if coverage > BAND[1] else f"covers only {coverage:.1%}"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`notebook_table` (and more rows like it) as the notebooks show it: the interval, where it is
    printed, n, replications, coverage with its interval, the exact coverage of order-statistic intervals
    (:func:`order_statistic_coverage`), the misses below and above, and the :func:`verdict`."""
    exact = [order_statistic_coverage(n, float(i[1:]) / 100) if k == "order statistics" else math.nan
             for k, n, i in zip(table["kind"], table["n"], table["interval"])]
    return pd.DataFrame({
        "interval": table["interval"].map(lambda i: NAMES.get(i, i)) + ", " + table["check"],
        "printed in": table["kind"].map(PRINTED_IN), "n": table["n"], "replications": table["replications"],
        "coverage [95% CI]": [stats.fmt_interval(r.coverage, r.low, r.high, ".1%") for r in table.itertuples()],
        "exact": exact, "misses below / above": table["below"].astype(str) + " / " + table["above"].astype(str),
        "verdict": [verdict(r.coverage, r.one_sided) for r in table.itertuples()]})


def notebook_table(reading: str = READING, *, replications: int = 2000, seed: int = 0,
                   checks: tuple[tuple[str, str, int, dict[str, Any]], ...] = CHECKS) -> pd.DataFrame:
    """Every check of ``checks`` at ``replications``, each read from the run ``simulations`` or simulated once
    and kept there (:func:`lab.analysis.simulations.cached`, keyed by the check, the fitted profiles, n, replications,
    seed and :data:`VERSION`). One row per interval: what it is, ``n``, ``truth``, the counts of :func:`tally`,
    ``coverage`` with ``low`` and ``high``, and ``one_sided`` (the upper bound is unbounded at this n)."""
    frames = []
    for label, kind, n, options in checks:
        params = {"kind": kind, "reading": reading, "n": n, "replications": replications, "seed": seed, **options,
                  "profiles": fitted(reading)}
        frames.append(simulations.cached(f"coverage {VERSION}", params, _check).assign(check=label, kind=kind))
    out = pd.concat(frames, ignore_index=True)
    percentile = out["interval"].str.extract(r"^p(\d+)$", expand=False).astype(float)
    out["one_sided"] = [kind == "order statistics" and not stats.quantile_estimable(n, p / 100)
                        for kind, n, p in zip(out["kind"], out["n"], percentile)]
    return out


POWER_SIZES = ((50, 50), (250, 250), (1000, 1000), (250, 50))
"""The (n_a, n_b) the computed power is checked at: the notebooks' window and run sizes, and unequal ones."""


def power_table(reading: str = READING, *, shift: float = 0.10, n_sim: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The power compare reports (:func:`lab.analysis.power.power`), against compare's own tests run on
    ``n_sim`` simulated pairs (:func:`lab.analysis.power.power_check`), per fitted profile and (n_a, n_b) of
    :data:`POWER_SIZES`, B slower by ``shift``; A's reference sample drawn from the profile. Kept in the run
    ``simulations``. Columns: ``model``, ``n_a``, ``n_b``, and per test (``body``, ``tail``) the computed power,
    the simulated one with its exact 95% interval, and ``inside`` (the computed power within it)."""
    from lab.analysis import power

    def compute(**_: Any) -> pd.DataFrame:
        rows = []
        for model, profile in report_profiles(reading).items():
            for i, (n_a, n_b) in enumerate(POWER_SIZES):
                reference = draw_latency(profile, np.random.default_rng([seed, i]), n_a)
                row = power.power_check(reference, n_b, shift=shift, n_sim=n_sim, seed=seed)
                rows.append({"model": model, **row.to_dict(), "n_a": n_a, "n_b": n_b})
        table = pd.DataFrame(rows)
        for test in ("body", "tail"):
            table[f"{test}_inside"] = table[f"{test}_low"].le(table[test]) & table[test].le(table[f"{test}_high"])
        return table

    key = {**fitted(reading), "sizes": [list(s) for s in POWER_SIZES], "shift": shift, "n_sim": n_sim, "seed": seed,
           "version": VERSION}
    return simulations.cached("power check", key, compute)
