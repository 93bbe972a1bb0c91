"""Statistics for call records and reviews: thin wrappers that shape library results into tidy frames.

Every helper calls scipy.stats, statsmodels or pingouin and names the function it
builds on; none re-implements a test. Randomness comes from a ``seed`` (an int or
a :class:`numpy.random.Generator`), so results are reproducible.
"""

from __future__ import annotations

import contextlib
import gc
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import proportion_confint

Seed = int | np.random.Generator | None

METRICS: tuple[str, ...] = ("latency_ms", "ttft_ms")
PERCENTILES: tuple[int, ...] = (25, 50, 75, 90, 95, 99)


# --- summaries ----------------------------------------------------------------------------------------------------

def _quantile(values: pd.Series, q: float) -> float:
    values = values.dropna().to_numpy(float)
    return float(np.quantile(values, q)) if len(values) else math.nan


# --- intervals for every table: the one source of truth ----------------------------------------------------------

def interval_summary(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] = ("latency_ms",),
                     percentiles: Iterable[float] = (50, 95, 99), *, confidence: float = 0.95) -> pd.DataFrame:
    """Percentiles of the successful calls' values per group and metric, each with a distribution-free
    interval (:func:`quantile_interval`: order statistics, ``scipy.stats.quantile_test``), whose coverage is
    at least ``confidence`` at every n and for every continuous distribution. A bound that n cannot give
    is -inf or +inf: print it as "unbounded" (:func:`fmt_interval`), never as a number.

    One row per group, metric and percentile: the ``by`` columns, ``metric``, ``n``, ``percentile``,
    ``estimate`` (``numpy.quantile``, linear), ``low``, ``high``, ``estimable`` (both bounds finite).
    """
    ok = df[df["status"].eq("ok")] if "status" in df else df
    rows = []
    for key, group in ok.groupby(list(by), sort=True, observed=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            values = np.sort(group[metric].to_numpy(float)) if metric in group else np.array([])
            for pct in percentiles:
                row = quantile_interval(values, pct / 100, confidence=confidence)
                rows.append({**dict(zip(by, key)), "metric": metric, "n": int(row["n"]), "percentile": pct,
                             "estimate": row["estimate"], "low": _bound(row["low"], -np.inf),
                             "high": _bound(row["high"], np.inf), "estimable": bool(row["estimable"])})
    return pd.DataFrame(rows, columns=[*by, "metric", "n", "percentile", "estimate", "low", "high", "estimable"])


def _bound(value: float, missing: float) -> float:
    return missing if math.isnan(value) else value


def error_rates(df: pd.DataFrame, by: Sequence[str], *, confidence: float = 0.95) -> pd.DataFrame:
    """Calls, errors and the error rate per group of an in-memory frame, with the interval of
    :func:`lab.analysis.summary.rate_interval` (Wilson; exact Clopper-Pearson where errors or successes are
    fewer than five) and its method's name."""
    from lab.analysis.summary import rate_interval

    rows = []
    for key, group in df.groupby(list(by), sort=True, observed=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        n, errors = len(group), int(group["status"].ne("ok").sum())
        low, high, method = rate_interval(errors, n, confidence)
        rows.append({**dict(zip(by, key)), "n": n, "errors": errors, "error_rate": errors / n if n else math.nan,
                     "low": low, "high": high, "method": method})
    return pd.DataFrame(rows, columns=[*by, "n", "errors", "error_rate", "low", "high", "method"])


def fmt_interval(estimate: float, low: float, high: float, spec: str = ",.0f") -> str:
    """``"1,620 [1,580, 1,700]"``; a bound the data cannot give reads "unbounded"."""
    def one(value: float) -> str:
        return "unbounded" if not np.isfinite(value) else format(value, spec)
    return f"{one(estimate)} [{one(low)}, {one(high)}]"


def median_ratio(x: Sequence[float], y: Sequence[float], *, confidence: float = 0.95) -> pd.Series:
    """median(y) / median(x) of two independent positive samples, with a distribution-free interval: each
    median gets a :func:`quantile_interval` at ``1 - (1 - confidence) / 2``, so both hold together with
    probability at least ``confidence`` (Bonferroni), and the ratio's bounds are y's low / x's high and
    y's high / x's low. Cheap and conservative (coverage at least ``confidence``, in simulations near 1),
    with "unbounded" bounds (-inf, +inf) where n cannot give one."""
    level = 1 - (1 - confidence) / 2
    mx, my = quantile_interval(x, 0.5, confidence=level), quantile_interval(y, 0.5, confidence=level)
    low = my["low"] / mx["high"] if np.isfinite(my["low"]) and np.isfinite(mx["high"]) else -np.inf
    high = my["high"] / mx["low"] if np.isfinite(my["high"]) and mx["low"] > 0 else np.inf
    return pd.Series({"estimate": my["estimate"] / mx["estimate"], "low": low, "high": high,
                      "n_x": int(mx["n"]), "n_y": int(my["n"])})


# --- multiple testing ---------------------------------------------------------------------------------------------

def holm(pvalues: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm-adjusted p-values and rejections (``statsmodels.stats.multitest.multipletests``); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    adjusted, reject = np.full_like(p, np.nan), np.zeros(p.shape, dtype=bool)
    finite = ~np.isnan(p)
    if finite.any():
        with _frozen_heap():
            reject[finite], adjusted[finite], *_ = multipletests(p[finite], alpha=alpha, method="holm")
    return adjusted, reject


@contextlib.contextmanager
def _frozen_heap():
    # multipletests(method="holm") ends with gc.collect(), a scan of the whole heap: in a notebook that costs
    # a good part of a second per call, which a simulation calling it thousands of times cannot afford.
    # Freezing the objects that already exist (gc.freeze, undone afterwards) limits the scan to new ones.
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def with_holm(frame: pd.DataFrame, column: str = "p_value", alpha: float = 0.05) -> pd.DataFrame:
    """``frame`` with ``p_holm`` and ``reject`` columns: Holm across every row, one family (see :func:`holm`)."""
    adjusted, reject = holm(frame[column].to_numpy(float), alpha)
    return frame.assign(p_holm=adjusted, reject=reject)


# --- experiment 1: windows, models, tails -------------------------------------------------------------------------

def time_of_day_tests(df: pd.DataFrame, *, value: str = "latency_ms", window: str = "window", by: str = "model",
                      n_resamples: int = 9999, seed: Seed = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Per ``by`` group, do the windows share one distribution? One row per test, Holm across all rows.

    ``scipy.stats.kruskal`` (Kruskal-Wallis) and ``scipy.stats.anderson_ksamp`` (midrank variant, p-value by
    ``scipy.stats.PermutationMethod``); Holm by :func:`with_holm`.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for key, group in df.groupby(by, sort=True, observed=True):
        samples = [g[value].dropna().to_numpy(float) for _, g in group.groupby(window, sort=True, observed=True)]
        samples = [s for s in samples if len(s)]
        n = sum(len(s) for s in samples)
        kw = stats.kruskal(*samples)
        ad = stats.anderson_ksamp(samples, variant="midrank",
                                  method=stats.PermutationMethod(n_resamples=n_resamples, rng=rng))
        for test, result in (("Kruskal-Wallis", kw), ("Anderson-Darling k-sample (permutation)", ad)):
            rows.append({by: key, "test": test, "windows": len(samples), "n": n,
                         "statistic": float(result.statistic), "p_value": float(result.pvalue)})
    return with_holm(pd.DataFrame(rows), alpha=alpha)


def median_difference(x: Sequence[float], y: Sequence[float], *, relative: bool = False, confidence: float = 0.95,
                      n_resamples: int = 4999, seed: Seed = 0) -> pd.Series:
    """median(y) - median(x) (or median(y) / median(x) - 1 if ``relative``), BCa interval (``scipy.stats.bootstrap``)."""
    x, y = np.asarray(x, float), np.asarray(y, float)

    def statistic(a, b, axis=-1):
        ma, mb = np.median(a, axis=axis), np.median(b, axis=axis)
        return mb / ma - 1 if relative else mb - ma

    result = stats.bootstrap((x, y), statistic, method="BCa", confidence_level=confidence, n_resamples=n_resamples,
                             vectorized=True, rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return pd.Series({"estimate": float(statistic(x, y)), "low": float(ci.low), "high": float(ci.high),
                      "n_x": len(x), "n_y": len(y)})


def ratio_heterogeneity(pairs: Mapping[Any, tuple[Sequence[float], Sequence[float]]], *, n_resamples: int = 999,
                        seed: Seed = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Is median(y) / median(x) the same in every group? Per group, the log ratio of medians with its bootstrap
    standard error (``scipy.stats.bootstrap``, resampling each sample); across groups, Cochran's Q test of
    homogeneity, I^2 (floored at 0) and tau^2 (``statsmodels.stats.meta_analysis.combine_effects``, ``"chi2"``:
    DerSimonian-Laird).

    Returns one row per group (``group``, ``n_x``, ``n_y``, ``ratio``, ``log_ratio``, ``se``) and a summary:
    ``groups``, ``ratio`` (the fixed-effect pooled ratio), ``q``, ``df``, ``p_value``, ``i2``, ``tau2``.
    """
    from statsmodels.stats.meta_analysis import combine_effects

    rng = np.random.default_rng(seed)

    def log_ratio(a, b, axis=-1):
        return np.log(np.median(b, axis=axis) / np.median(a, axis=axis))

    rows = []
    for group, (x, y) in pairs.items():
        x, y = np.asarray(x, float), np.asarray(y, float)
        boot = stats.bootstrap((x, y), log_ratio, method="percentile", n_resamples=n_resamples, vectorized=True,
                               rng=rng)
        value = float(log_ratio(x, y))
        rows.append({"group": group, "n_x": len(x), "n_y": len(y), "ratio": math.exp(value), "log_ratio": value,
                     "se": float(boot.standard_error)})
    table = pd.DataFrame(rows)
    combined = combine_effects(table["log_ratio"].to_numpy(), table["se"].to_numpy() ** 2, method_re="chi2")
    test = combined.test_homogeneity()
    summary = pd.Series({"groups": len(table), "ratio": math.exp(combined.mean_effect_fe), "q": float(test.statistic),
                         "df": int(test.df), "p_value": float(test.pvalue), "i2": max(0.0, float(combined.i2)),
                         "tau2": float(combined.tau2)})
    return table, summary


def quantile_difference_test(x: Sequence[float], y: Sequence[float], *, q: float = 0.95, n_resamples: int = 9999,
                             alternative: str = "two-sided", seed: Seed = 0) -> pd.Series:
    """Difference of the q-quantiles, quantile(y) - quantile(x), tested by ``scipy.stats.permutation_test``."""
    x, y = np.asarray(x, float), np.asarray(y, float)

    def statistic(a, b, axis=-1):
        return np.quantile(b, q, axis=axis) - np.quantile(a, q, axis=axis)

    result = stats.permutation_test((x, y), statistic, vectorized=True, n_resamples=n_resamples,
                                    alternative=alternative, rng=np.random.default_rng(seed))
    return pd.Series({"q": q, "quantile_x": float(np.quantile(x, q)), "quantile_y": float(np.quantile(y, q)),
                      "difference": float(result.statistic), "p_value": float(result.pvalue),
                      "n_x": len(x), "n_y": len(y)})


def exceedance_test(x: Sequence[float], y: Sequence[float], threshold: float, *, method: str = "fisher",
                    alternative: str = "two-sided") -> pd.Series:
    """Counts over ``threshold`` in x and y, compared by ``scipy.stats.fisher_exact`` (or ``boschloo_exact``).

    The 2x2 table has rows x, y and columns over, not over; the odds ratio is fisher_exact's (odds of x over
    odds of y). Fix the threshold before looking at the data.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    over_x, over_y = int((x > threshold).sum()), int((y > threshold).sum())
    table = np.array([[over_x, len(x) - over_x], [over_y, len(y) - over_y]])
    fisher = stats.fisher_exact(table, alternative=alternative)
    p = fisher.pvalue if method == "fisher" else stats.boschloo_exact(table, alternative=alternative).pvalue
    return pd.Series({"threshold": threshold, "over_x": over_x, "n_x": len(x), "over_y": over_y, "n_y": len(y),
                      "share_x": over_x / len(x), "share_y": over_y / len(y), "odds_ratio": float(fisher.statistic),
                      "p_value": float(p), "method": method})


# --- what n buys: distribution-free quantile intervals -------------------------------------------------------------

def quantile_interval(x: Sequence[float], p: float, *, confidence: float = 0.95, method: str = "linear") -> pd.Series:
    """The p-quantile (``numpy.quantile`` with ``method``) with a distribution-free interval from order
    statistics (``scipy.stats.quantile_test(...).confidence_interval``); a bound that needs more data is
    NaN. NaN values are dropped; ``inf`` (a request never answered) is kept, and then ``method`` should
    pick an order statistic (``"inverted_cdf"``), as interpolating with inf is undefined."""
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return pd.Series({"n": 0, "p": p, "estimate": math.nan, "low": math.nan, "high": math.nan,
                          "width": math.nan, "estimable": False})
    ci = stats.quantile_test(x, p=p).confidence_interval(confidence)
    low, high = float(ci.low), float(ci.high)
    estimate = float(np.quantile(x, p, method=method))
    return pd.Series({"n": len(x), "p": p, "estimate": estimate, "low": low, "high": high,
                      "width": high - low, "estimable": bool(np.isfinite(low) and np.isfinite(high))})


def quantile_estimable(n: int, p: float, *, confidence: float = 0.95) -> bool:
    """Whether n observations give both bounds of a two-sided distribution-free interval for the p-quantile.

    Asks ``scipy.stats.quantile_test`` itself, on ``n`` distinct values.
    """
    if n < 1:
        return False
    ci = stats.quantile_test(np.arange(n, dtype=float), p=p).confidence_interval(confidence)
    return bool(np.isfinite(ci.low) and np.isfinite(ci.high))


def min_n_for_quantile(p: float, *, confidence: float = 0.95) -> int:
    """The smallest n at which the p-quantile is estimable (see :func:`quantile_estimable`).

    Both tails of the interval must hold (1 - confidence) / 2: ``max(p, 1-p) ** n <= (1 - confidence) / 2``
    gives a first guess, which :func:`quantile_estimable` then confirms.
    """
    n = max(1, math.ceil(math.log((1 - confidence) / 2) / math.log(max(p, 1 - p))) - 2)
    while not quantile_estimable(n, p, confidence=confidence):
        n += 1
    return n


def estimable_percentiles(n: int, percentiles: Iterable[float] = (50, 75, 90, 95, 99, 99.9), *,
                          confidence: float = 0.95) -> pd.DataFrame:
    """For each percentile: the n it needs (:func:`min_n_for_quantile`) and whether ``n`` is enough."""
    rows = []
    for pct in percentiles:
        need = min_n_for_quantile(pct / 100, confidence=confidence)
        rows.append({"percentile": pct, "n": n, "min_n": need, "estimable": n >= need})
    return pd.DataFrame(rows)


# --- experiment 2: scores, issue counts, detection, consistency, power -----------------------------------------------

def rank_tests(x: Sequence[float], y: Sequence[float]) -> pd.DataFrame:
    """Two independent samples (scores, token counts) by ranks: ``scipy.stats.mannwhitneyu`` and
    ``scipy.stats.brunnermunzel``.

    Both report P(Y > X) + P(Y = X)/2 (``U_y / (n_x n_y)``) as the effect; Brunner-Munzel does not assume
    equal spreads.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    mw = stats.mannwhitneyu(y, x)
    with _degenerate_ok():
        bm = stats.brunnermunzel(y, x)
    effect = float(mw.statistic) / (len(x) * len(y))
    return pd.DataFrame([
        {"test": "Mann-Whitney U", "statistic": float(mw.statistic), "p_value": float(mw.pvalue),
         "P(Y > X)": effect, "n_x": len(x), "n_y": len(y)},
        {"test": "Brunner-Munzel", "statistic": float(bm.statistic), "p_value": float(bm.pvalue),
         "P(Y > X)": effect, "n_x": len(x), "n_y": len(y)},
    ])


@contextlib.contextmanager
def _degenerate_ok():
    # Samples with no spread (every value tied, or two groups with no overlap and no spread) have no
    # defined test statistic; scipy warns and returns NaN. Callers treat NaN as "no evidence".
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.filterwarnings("ignore", message="p-value cannot be estimated", category=RuntimeWarning)
        yield


def mannwhitney_pvalues(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-sided ``scipy.stats.mannwhitneyu`` p-values along the last axis (one per row); NaN where undefined."""
    with _degenerate_ok():
        return np.asarray(stats.mannwhitneyu(x, y, axis=-1).pvalue)


def brunnermunzel_pvalues(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-sided ``scipy.stats.brunnermunzel`` p-values along the last axis (one per row); NaN where undefined."""
    with _degenerate_ok():
        return np.asarray(stats.brunnermunzel(x, y, axis=-1).pvalue)


def count_rate_ratio(counts: Sequence[float], groups: Sequence[Any], *, reference: Any, confidence: float = 0.95,
                     overdispersion: float = 1.5) -> pd.DataFrame:
    """Rate ratio of counts, other group over ``reference``, from a GLM with a log link (``statsmodels`` GLM).

    Rows: Poisson; quasi-Poisson (Pearson chi2 scale, honest when the dispersion is not 1); and, when
    the dispersion exceeds ``overdispersion``, a negative binomial fit
    (``statsmodels.discrete.discrete_model.NegativeBinomial``) whose alpha is estimated.
    ``dispersion`` is Pearson chi2 / residual df of the Poisson fit: 1 for Poisson counts.
    """
    counts = np.asarray(counts, float)
    groups = np.asarray(groups)
    levels = list(dict.fromkeys(groups.tolist()))
    if reference not in levels or len(levels) != 2:
        raise ValueError(f"need two groups, one of them {reference!r}; got {levels}")
    other = next(level for level in levels if level != reference)
    design = sm.add_constant((groups == other).astype(float), has_constant="add")
    poisson = sm.GLM(counts, design, family=sm.families.Poisson()).fit()
    dispersion = float(poisson.pearson_chi2 / poisson.df_resid)
    quasi = sm.GLM(counts, design, family=sm.families.Poisson()).fit(scale="X2")
    fits = [("Poisson", poisson), ("quasi-Poisson", quasi)]
    if dispersion > overdispersion:
        nb = sm.NegativeBinomial(counts, design).fit(disp=False)
        fits.append(("negative binomial", nb))
    rows = []
    level = 1 - confidence
    for name, fit in fits:
        low, high = np.asarray(fit.conf_int(alpha=level))[1]
        rows.append({"model": name, "group": other, "reference": reference,
                     "mean": float(counts[groups == other].mean()), "mean_reference": float(counts[groups == reference].mean()),
                     "rate_ratio": float(np.exp(np.asarray(fit.params)[1])), "low": float(np.exp(low)),
                     "high": float(np.exp(high)), "p_value": float(np.asarray(fit.pvalues)[1]),
                     "dispersion": dispersion})
    return pd.DataFrame(rows)


def reviews_needed(sd: float, difference: float = 2.0, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Reviews per group for a two-sided t-test to detect ``difference`` at ``sd``
    (``statsmodels.stats.power.TTestIndPower.solve_power``); round up to use it."""
    return float(TTestIndPower().solve_power(effect_size=difference / sd, alpha=alpha, power=power, ratio=1.0))


def t_test_power(sd: float, difference: float, ns: Iterable[int], *, alpha: float = 0.05) -> pd.DataFrame:
    """Power of a two-sided two-sample t-test per group size (``TTestIndPower.power``)."""
    analysis = TTestIndPower()
    return pd.DataFrame([{"n": int(n), "power": float(analysis.power(difference / sd, nobs1=n, alpha=alpha))}
                         for n in ns])


def mannwhitney_power(residuals: Sequence[float], difference: float, ns: Iterable[int], *, centre: float = 0.0,
                      n_sim: int = 2000, alpha: float = 0.05, seed: Seed = 0) -> pd.DataFrame:
    """Simulated size and power of ``scipy.stats.mannwhitneyu`` per group size, by :func:`calibrate`.

    Both groups are ``centre`` plus residuals drawn with replacement from ``residuals`` (integers stay
    integers, ties included); under the effect the second group is shifted by ``difference``.
    """
    residuals = np.asarray(residuals, float)
    rng = np.random.default_rng(seed)
    frames = []
    for n in ns:
        def draw(shift, n=n):
            return lambda g, size: (centre + g.choice(residuals, (size, n)),
                                    centre + shift + g.choice(residuals, (size, n)))

        frame = calibrate(mannwhitney_pvalues, draw(0.0), draw(difference), n_sim=n_sim, alpha=alpha, seed=rng,
                          vectorized=True)
        frames.append(frame.assign(n=int(n)))
    return pd.concat(frames, ignore_index=True)



# --- calibration by simulation ----------------------------------------------------------------------------------

def rejection_rate(rejections: int, n: int, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Share rejected with an exact (Clopper-Pearson) interval (``statsmodels proportion_confint``, ``beta``)."""
    low, high = proportion_confint(rejections, n, alpha=1 - confidence, method="beta")
    return rejections / n, float(low), float(high)


Draw = Callable[..., tuple]


def calibrate(test: Callable[..., Any], null: Draw, effect: Draw | None = None, *, n_sim: int = 1000,
              alpha: float = 0.05, seed: Seed = 0, vectorized: bool = False,
              confidence: float = 0.95) -> pd.DataFrame:
    """Run ``test`` on data simulated with a known answer: the false-positive rate under ``null`` and the
    power under ``effect``, each with an exact binomial interval (:func:`rejection_rate`).

    ``null(rng)`` / ``effect(rng)`` return the samples of one simulation and ``test(*samples)`` a p-value
    (rejected when <= ``alpha``) or a bool (rejected). With ``vectorized``, ``null(rng, n_sim)`` returns
    every simulation at once (leading axis ``n_sim``) and ``test`` returns ``n_sim`` results.
    A p-value that is NaN counts as not rejected.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for scenario, quantity, draw in (("no effect", "false-positive rate", null), ("known effect", "power", effect)):
        if draw is None:
            continue
        if vectorized:
            results = np.asarray(test(*draw(rng, n_sim)))
        else:
            results = np.array([test(*draw(rng)) for _ in range(n_sim)])
        rejected = results if results.dtype == bool else np.nan_to_num(results.astype(float), nan=1.0) <= alpha
        rate, low, high = rejection_rate(int(rejected.sum()), n_sim, confidence=confidence)
        rows.append({"scenario": scenario, "quantity": quantity, "n_sim": n_sim, "rejections": int(rejected.sum()),
                     "rate": rate, "low": low, "high": high})
    return pd.DataFrame(rows)
