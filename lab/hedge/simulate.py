"""Offline simulation of :func:`lab.hedge.policies.hedge` on recorded calls: what hedging at a delay
``d`` would have done to the latency distribution, and what it would have cost.

Model, per request (times in ms from the primary's start; frames paired by row position):

* The primary ends at ``L1``: an answer if it succeeded, a failure otherwise. Its progress signal
  ``T1`` is its success (``on="latency"``) or its first text token (``on="ttft"``; a missing TTFT
  falls back to the success time); a primary that never succeeds has ``T1 = inf``.
* The backup starts at ``s = min(d if T1 > d, L1 if the primary failed)`` and answers at
  ``s + L2`` if it succeeds. The first *success* wins: hedged latency ``min(L1, s + L2)`` over
  successes, ``inf`` when neither succeeds (a failure is "never answered", never dropped).

Assumptions:

* A failure whose time is unknown (NaN latency, as :func:`lab.io.read_llmperf` records rejected
  calls) failed at once, at time 0, so the backup starts immediately.
* No load effects: a backup request slows nothing down, neither its provider nor the primary.
* Cost is an upper bound: every started backup is billed in full, though a live hedge cancels
  the loser (see :func:`lab.hedge.policies.estimate_cost`). A failed call without a recorded cost
  was not billed; an answered call of unknown cost (e.g. LLMPerf) makes the extra cost NaN.
* :func:`pair` with ``how="random"`` assumes the two providers' latencies are independent; with
  ``how="index"`` the pairs keep whatever correlation the recording has.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from lab.stats import min_n_for_quantile

On = Literal["latency", "ttft"]


def _success_ms(frame: pd.DataFrame) -> np.ndarray:
    """Each call's success time: ``latency_ms`` when ok, else ``inf`` (never answered)."""
    return np.where(frame["status"].eq("ok").to_numpy(), frame["latency_ms"].to_numpy(float), np.inf)


def _arrays(primary: pd.DataFrame, on: On) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The primary's success times, progress signal and failure times (ms; inf where they never happen)."""
    if on not in ("latency", "ttft"):
        raise ValueError(f"on must be 'latency' or 'ttft', not {on!r}")
    baseline = _success_ms(primary)
    progress = baseline
    if on == "ttft":
        if "ttft_ms" not in primary or primary["ttft_ms"].isna().all():
            raise ValueError("on='ttft' needs the primary's ttft_ms, and it has none (not streamed?)")
        ttft = primary["ttft_ms"].to_numpy(float)
        progress = np.where(np.isnan(ttft), baseline, ttft)
    failed_at = np.where(primary["status"].eq("ok").to_numpy(), np.inf,
                         np.nan_to_num(primary["latency_ms"].to_numpy(float), nan=0.0))
    return baseline, progress, failed_at


def _hedge(baseline: np.ndarray, progress: np.ndarray, failed_at: np.ndarray, answered2: np.ndarray,
           delay_ms: Any) -> tuple[np.ndarray, np.ndarray]:
    """The backup's start (inf: never started) and the hedged latency, per request; ``delay_ms`` may be
    one number or one per row of a batch (broadcast over the leading axes)."""
    delay = np.expand_dims(np.asarray(delay_ms, float), -1) if np.ndim(delay_ms) else float(delay_ms)
    start = np.minimum(np.where(progress > delay, delay, np.inf), failed_at)
    return start, np.minimum(baseline, start + answered2)


def hedged_latency(primary: pd.DataFrame, backup: pd.DataFrame, delay_ms: float, *,
                   on: On = "latency") -> pd.DataFrame:
    """Hedge at ``delay_ms`` on two call-record frames paired by row position (see the module docstring).

    One row per request: ``baseline_ms`` and ``hedged_ms`` (``inf`` when nothing succeeded),
    ``backup_started``, ``backup_start_ms`` (NaN if not started), ``winner`` ("primary", "backup"
    or None) and ``extra_cost_usd`` (the backup's cost when started, else 0; NaN if unknown).
    """
    if len(primary) != len(backup):
        raise ValueError(f"primary and backup must be paired row by row: {len(primary)} != {len(backup)} rows")
    baseline, progress, failed_at = _arrays(primary, on)
    start, hedged = _hedge(baseline, progress, failed_at, _success_ms(backup), delay_ms)
    started = np.isfinite(start)
    winner = np.where(np.isinf(hedged), None, np.where(baseline <= hedged, "primary", "backup"))
    return pd.DataFrame({"baseline_ms": baseline, "hedged_ms": hedged, "backup_started": started,
                         "backup_start_ms": np.where(started, start, np.nan), "winner": winner,
                         "extra_cost_usd": np.where(started, _cost(backup), 0.0)},
                        index=primary.index)


def pair(primary: pd.DataFrame, backup: pd.DataFrame, *, how: Literal["index", "random"] = "index",
         seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair each primary call with the backup call it would have raced.

    ``"index"``: row i with row i, the same request sequence (how our live runs pair); lengths
    must match. ``"random"``: independent providers (e.g. two LLMPerf traces): backup rows drawn
    with replacement to the primary's length (``numpy.random.Generator.integers``, seeded). This
    assumes the two providers' latencies are independent: a shared slowdown is not simulated.
    """
    if how == "index":
        if len(primary) != len(backup):
            raise ValueError(f"how='index' needs equal lengths: primary {len(primary)}, backup {len(backup)}")
        return primary.reset_index(drop=True), backup.reset_index(drop=True)
    if how != "random":
        raise ValueError(f"how must be 'index' or 'random', not {how!r}")
    if len(backup) == 0:
        raise ValueError("how='random' needs at least one backup call")
    rows = np.random.default_rng(seed).integers(0, len(backup), size=len(primary))
    return primary.reset_index(drop=True), backup.iloc[rows].reset_index(drop=True)


COLUMNS = [  # of sweep(); compare() has all but the first two
    "delay_pct", "delay_ms", "q", "baseline_ms", "hedged_ms", "reduction", "reduction_low", "reduction_high",
    "n", "extra_requests", "extra_low", "extra_high", "extra_cost", "extra_cost_low", "extra_cost_high",
    "failed_baseline", "failed_hedged", "estimable"]


def _cost(frame: pd.DataFrame) -> np.ndarray:
    """Each call's cost; a failed call with no recorded cost was not billed (0)."""
    cost = frame["cost_usd"].to_numpy(float)
    return np.where(np.isnan(cost) & ~frame["status"].eq("ok").to_numpy(), 0.0, cost)


def compare(baseline_ms: np.ndarray, treated_ms: np.ndarray, started: np.ndarray, extra_cost_usd: np.ndarray,
            cost_usd: np.ndarray, *, quantiles: Sequence[float] = (0.5, 0.95, 0.99), confidence: float = 0.95,
            n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Quantile reductions and extra shares of a treatment over a baseline, paired per request.

    Arrays are per request (``inf``: never answered). One row per quantile q: the q-quantiles of
    both (``numpy.quantile``, ``method="inverted_cdf"``: an order statistic, never interpolated
    with inf), ``reduction = 1 - treated / baseline`` (1 when the treatment answers a quantile the
    baseline never did, NaN when neither does), the shares ``extra_requests`` (mean of
    ``started``) and ``extra_cost`` (sum of ``extra_cost_usd`` / sum of ``cost_usd``), the failed
    shares and ``estimable`` (n >= :func:`lab.stats.min_n_for_quantile`). Intervals are
    ``scipy.stats.bootstrap`` percentile intervals, paired (requests resampled) and seeded; BCa is
    not used because its jackknife is unstable for high quantiles and undefined with infinite
    latencies. An interval whose resamples include an undefined value is NaN, as is every
    interval when n < 2; a statistic constant over resamples gets a zero-width interval.
    """
    q = np.asarray(quantiles, float)
    k, n = len(q), len(baseline_ms)
    data = tuple(np.asarray(x, float) for x in (baseline_ms, treated_ms, started, extra_cost_usd, cost_usd))

    def statistic(base, treated, started, extra, cost, axis=-1):
        """reduction per quantile, then the extra-request and extra-cost shares (leading axis)."""
        qb, qt = (np.quantile(x, q, axis=axis, method="inverted_cdf") for x in (base, treated))
        shares = np.mean(started, axis=axis), np.sum(extra, axis=axis) / np.sum(cost, axis=axis)
        return np.concatenate([1 - qt / qb, *(np.expand_dims(s, 0) for s in shares)])

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # NaN in resamples: NaN interval
        point, low, high = statistic(*data), np.full(k + 2, np.nan), np.full(k + 2, np.nan)
        if n >= 2:  # batches of ~250k values bound memory on long traces
            ci = stats.bootstrap(data, statistic, paired=True, vectorized=True, method="percentile",
                                 confidence_level=confidence, n_resamples=n_resamples,
                                 batch=max(1, 250_000 // n), rng=np.random.default_rng(seed))
            low, high = ci.confidence_interval
    return _rows(data[0], data[1], point, low, high, q, n, confidence)


def _rows(base: np.ndarray, treated: np.ndarray, point: np.ndarray, low: np.ndarray, high: np.ndarray,
          q: np.ndarray, n: int, confidence: float) -> pd.DataFrame:
    """compare()'s table from the statistic's point estimate and interval (reductions, then the shares)."""
    k = len(q)
    qb, qt = (np.quantile(x, q, method="inverted_cdf") for x in (base, treated))
    common = {"n": n, "extra_requests": point[k], "extra_low": low[k], "extra_high": high[k],
              "extra_cost": point[k + 1], "extra_cost_low": low[k + 1], "extra_cost_high": high[k + 1],
              "failed_baseline": float(np.isinf(base).mean()), "failed_hedged": float(np.isinf(treated).mean())}
    return pd.DataFrame([{"q": q[j], "baseline_ms": qb[j], "hedged_ms": qt[j], "reduction": point[j],
                          "reduction_low": low[j], "reduction_high": high[j], **common,
                          "estimable": n >= min_n_for_quantile(q[j], confidence=confidence)} for j in range(k)],
                        columns=COLUMNS[2:])


def sweep(primary: pd.DataFrame, backup: pd.DataFrame, *, delay_percentiles: Sequence[float] = (50, 75, 90, 95, 99),
          quantiles: Sequence[float] = (0.5, 0.95, 0.99), on: On = "latency", confidence: float = 0.95,
          n_resamples: int = 2000, seed: int = 0, delay_from_data: bool = True) -> pd.DataFrame:
    """Hedging at delays set to percentiles (``numpy.percentile``, linear, as
    :class:`~lab.hedge.policies.RecentPercentile` uses for small samples) of the primary's successful
    latencies (TTFTs if ``on="ttft"``); frames already paired. One row per (delay percentile, quantile),
    as :func:`compare` of hedged against the primary alone.

    The delay is estimated from the same calls the hedge is judged on, so with ``delay_from_data`` (the
    default) every bootstrap resample estimates it again from its own primary calls: an interval that
    held the delay fixed would ignore that uncertainty and cover too seldom. ``delay_from_data=False``
    holds it at the full sample's value (right when the delay comes from other data, e.g. a history arm:
    then pass that arm's delay to :func:`hedged_latency` and :func:`compare` instead).
    """
    baseline, progress, failed_at = _arrays(primary, on)
    ok = primary["status"].eq("ok").to_numpy()
    measured = primary["ttft_ms"].to_numpy(float) if on == "ttft" else baseline
    signal = np.where(ok, measured, np.nan)  # the delay comes from successful calls that measured the signal
    if np.isnan(signal).all():
        raise ValueError(f"no successful primary call with a {on} to set the delay from")
    answered2, extra, base_cost = _success_ms(backup), _cost(backup), _cost(primary)
    q, k, n = np.asarray(quantiles, float), len(quantiles), len(primary)
    frames = []
    for pct in delay_percentiles:
        delay = float(np.nanpercentile(signal, pct))

        def statistic(base, prog, fail, sig, ans2, cost2, cost1, axis=-1, pct=pct, delay=delay):
            d = np.nanpercentile(sig, pct, axis=axis) if delay_from_data else delay
            start, hedged = _hedge(base, prog, fail, ans2, d)
            started = np.isfinite(start)
            qb, qt = (np.quantile(x, q, axis=axis, method="inverted_cdf") for x in (base, hedged))
            shares = (np.mean(started, axis=axis),
                      np.sum(np.where(started, cost2, 0.0), axis=axis) / np.sum(cost1, axis=axis))
            return np.concatenate([1 - qt / qb, *(np.expand_dims(x, 0) for x in shares)])

        data = (baseline, progress, failed_at, signal, answered2, extra, base_cost)
        start, hedged = _hedge(baseline, progress, failed_at, answered2, delay)
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample of the signal: NaN interval
            point = statistic(*data)
            low, high = np.full(k + 2, np.nan), np.full(k + 2, np.nan)
            if n >= 2:
                ci = stats.bootstrap(data, statistic, paired=True, vectorized=True, method="percentile",
                                     confidence_level=confidence, n_resamples=n_resamples,
                                     batch=max(1, 250_000 // n), rng=np.random.default_rng(seed))
                low, high = ci.confidence_interval
        frames.append(_rows(baseline, hedged, point, low, high, q, n, confidence).assign(delay_pct=pct,
                                                                                          delay_ms=delay))
    return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)
