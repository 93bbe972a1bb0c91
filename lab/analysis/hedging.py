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

* A failure whose time is unknown (NaN latency, as :func:`lab.imports.read_llmperf` records rejected
  calls) failed at once, at time 0, so the backup starts immediately.
* No load effects: a backup request slows nothing down, neither its provider nor the primary.
* Cost is an upper bound: every started backup is billed in full, though a live hedge cancels
  the loser (see :func:`lab.hedge.policies.estimate_cost`). A failed call without a recorded cost
  was not billed; an answered call of unknown cost (e.g. LLMPerf) makes the extra cost NaN.
* :func:`pair` with ``how="random"`` assumes the two providers' latencies are independent; with
  ``how="index"`` the pairs keep whatever correlation the recording has.

Intervals: :func:`sweep` sets the delay from the judged calls and estimates it again in every bootstrap
resample; :func:`predict` and :func:`live_effect` take a delay from elsewhere (a held-out history arm) and
hold it fixed. :func:`bounded`, :func:`fmt_share` and :func:`goal_verdict` state the results without an
interval the sample size cannot give.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from lab.analysis.stats import min_n_for_quantile, quantile_interval
from lab.analysis.summary import rate_interval

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
    shares and ``estimable`` (n >= :func:`lab.analysis.stats.min_n_for_quantile`). Intervals are
    ``scipy.stats.bootstrap`` percentile intervals, paired (requests resampled) and seeded; BCa is
    not used because its jackknife is unstable for high quantiles and undefined with infinite
    latencies. An interval whose resamples include an undefined value is NaN, as is every
    interval when n < 2 or ``n_resamples`` is 0 (point estimates only); a statistic constant over
    resamples gets a zero-width interval.
    """
    q = np.asarray(quantiles, float)
    data = tuple(np.asarray(x, float) for x in (baseline_ms, treated_ms, started, extra_cost_usd, cost_usd))

    def statistic(base, treated, started, extra, cost, axis=-1):
        return _effects(base, treated, started, extra, cost, q, axis)

    point, low, high = _bootstrap(data, statistic, len(q), confidence, n_resamples, seed)
    return _rows(data[0], data[1], point, low, high, q, len(baseline_ms), confidence)


def _effects(base: np.ndarray, treated: np.ndarray, started: np.ndarray, extra: np.ndarray, cost: np.ndarray,
             q: np.ndarray, axis: int) -> np.ndarray:
    """The reduction per quantile, then the extra-request and extra-cost shares (leading axis)."""
    qb, qt = (np.quantile(x, q, axis=axis, method="inverted_cdf") for x in (base, treated))
    shares = np.mean(started, axis=axis), np.sum(extra, axis=axis) / np.sum(cost, axis=axis)
    return np.concatenate([1 - qt / qb, *(np.expand_dims(s, 0) for s in shares)])


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Any, k: int, confidence: float, n_resamples: int, seed: int,
               ignore: tuple[type[Warning], ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The statistic's point estimate and paired, seeded percentile interval (NaN when n < 2 or
    ``n_resamples`` is 0, or where a resample's value is undefined); ``ignore``: more warnings to silence."""
    n = len(data[0])
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # NaN in resamples: NaN interval
        for category in ignore:
            warnings.simplefilter("ignore", category)
        point, low, high = statistic(*data), np.full(k + 2, np.nan), np.full(k + 2, np.nan)
        if n >= 2 and n_resamples > 0:  # batches of ~250k values bound memory on long traces
            ci = stats.bootstrap(data, statistic, paired=True, vectorized=True, method="percentile",
                                 confidence_level=confidence, n_resamples=n_resamples,
                                 batch=max(1, 250_000 // n), rng=np.random.default_rng(seed))
            low, high = ci.confidence_interval
    return point, low, high


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
    :class:`~lab.hedge.delays.RecentPercentile` uses for small samples) of the primary's successful
    latencies (TTFTs if ``on="ttft"``); frames already paired. One row per (delay percentile, quantile),
    as :func:`compare` of hedged against the primary alone.

    The delay is estimated from the same calls the hedge is judged on, so with ``delay_from_data`` (the
    default) every bootstrap resample estimates it again from its own primary calls: an interval that
    held the delay fixed would ignore that uncertainty and cover too seldom. ``delay_from_data=False``
    holds it at the full sample's value (right when the delay comes from other data, e.g. a history arm:
    then pass that arm's delay to :func:`predict` instead). ``n_resamples=0`` gives point estimates only
    (every interval NaN), for a figure that shows none.
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
            return _effects(base, hedged, started, np.where(started, cost2, 0.0), cost1, q, axis)

        data = (baseline, progress, failed_at, signal, answered2, extra, base_cost)
        _, hedged = _hedge(baseline, progress, failed_at, answered2, delay)
        # an all-NaN resample of the signal: NaN interval
        point, low, high = _bootstrap(data, statistic, k, confidence, n_resamples, seed, ignore=(RuntimeWarning,))
        frames.append(_rows(baseline, hedged, point, low, high, q, n, confidence).assign(delay_pct=pct,
                                                                                          delay_ms=delay))
    return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)


# -- measured arms and their presentation ---------------------------------------------------------------------------

def answered_ms(frame: pd.DataFrame) -> np.ndarray:
    """Each request's latency, ``inf`` when it was never answered (a failure is counted, never dropped)."""
    return _success_ms(frame)


def live_effect(base: pd.DataFrame, treated: pd.DataFrame, *, quantiles: Sequence[float] = (0.5, 0.95, 0.99),
                confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A measured policy arm against the primary-alone arm, paired by request (both in request order, as
    :func:`lab.collect.hedging.arm` gives them): :func:`compare` of the answered latencies, with the requests
    that sent a second request (``extra_requests`` > 0) and the policy's cost over the primary's (a missing
    cost counts 0). The delay is whatever the arm was run with, not estimated here, so nothing is
    re-estimated: the interval is for the policy at that delay."""
    if not np.array_equal(base["request"].to_numpy(), treated["request"].to_numpy()):
        raise ValueError("the two arms must hold the same requests in the same order")
    base_cost, cost = base["cost_usd"].fillna(0).to_numpy(float), treated["cost_usd"].fillna(0).to_numpy(float)
    return compare(answered_ms(base), answered_ms(treated), treated["extra_requests"].to_numpy() > 0,
                   cost - base_cost, base_cost, quantiles=quantiles, confidence=confidence,
                   n_resamples=n_resamples, seed=seed)


def predict(primary: pd.DataFrame, backup: pd.DataFrame, delay_ms: float, *, on: On = "latency",
            quantiles: Sequence[float] = (0.5, 0.95, 0.99), confidence: float = 0.95, n_resamples: int = 2000,
            seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What hedging at a *given* delay (e.g. from a held-out history arm) does to two frames paired by row:
    :func:`compare` of :func:`hedged_latency` against the primary alone, and the per-request frame. The delay
    is held fixed in every resample, right only when it was not estimated from these calls (else use
    :func:`sweep`)."""
    per_request = hedged_latency(primary, backup, delay_ms, on=on)
    effect = compare(per_request["baseline_ms"], per_request["hedged_ms"], per_request["backup_started"],
                     per_request["extra_cost_usd"], _cost(primary), quantiles=quantiles, confidence=confidence,
                     n_resamples=n_resamples, seed=seed)
    return effect, per_request


def goal_verdict(frame: pd.DataFrame, min_reduction: float, max_extra: float) -> pd.Series:
    """Per row of a :func:`compare` / :func:`sweep` table: "yes" when both intervals lie inside the goal
    (``reduction_low >= min_reduction`` and ``extra_high <= max_extra``), "no" when either lies wholly
    outside it, "undecided" otherwise, "-" without intervals. Each interval has its own confidence; the two
    hold together with at least ``1 - 2 (1 - confidence)`` (Bonferroni)."""
    low, high = frame["reduction_low"].to_numpy(float), frame["reduction_high"].to_numpy(float)
    extra_low, extra_high = frame["extra_low"].to_numpy(float), frame["extra_high"].to_numpy(float)
    verdict = np.where((low >= min_reduction) & (extra_high <= max_extra), "yes",
                       np.where((high < min_reduction) | (extra_low > max_extra), "no", "undecided"))
    missing = np.isnan(low) | np.isnan(high) | np.isnan(extra_low) | np.isnan(extra_high)
    return pd.Series(np.where(missing, "-", verdict), index=frame.index, name="meets goal")


def bounded(frame: pd.DataFrame) -> pd.DataFrame:
    """A :func:`compare` / :func:`sweep` table without the reduction intervals its n cannot give: where
    ``estimable`` is False (fewer requests than a distribution-free interval of that quantile needs, e.g.
    368 for a p99), ``reduction_low`` and ``reduction_high`` become NaN (shown as "no interval")."""
    out = frame.copy()
    out.loc[~out["estimable"].astype(bool), ["reduction_low", "reduction_high"]] = np.nan
    return out


_BOUNDS = {"reduction": ("reduction_low", "reduction_high"), "extra_requests": ("extra_low", "extra_high"),
           "extra_cost": ("extra_cost_low", "extra_cost_high")}


def fmt_share(row: pd.Series | dict[str, Any], column: str = "reduction", spec: str = ".1%") -> str:
    """A share of a :func:`compare` / :func:`sweep` row with its interval, "69.1% [63.5%, 71.6%]"; a reduction
    whose quantile ``n`` cannot bound reads "69.1% (no interval: n = 250, a p99 needs 368)", a NaN share "none"."""
    value = row[column]
    if value is None or np.isnan(value):
        return "none"
    low, high = (row[name] for name in _BOUNDS[column])
    if column == "reduction" and not row["estimable"]:
        q = row["q"]
        return (f"{value:{spec}} (no interval: n = {int(row['n']):,}, a p{100 * q:g} needs "
                f"{min_n_for_quantile(q):,})")
    if np.isnan(low) or np.isnan(high):
        return f"{value:{spec}} (no interval)"
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def fmt_ms(value: float) -> str:
    """Milliseconds as "1,620 ms"; ``inf`` as "never answered"."""
    return "never answered" if np.isinf(value) else f"{value:,.0f} ms"


def fmt_cut(row: pd.Series | dict[str, Any]) -> str:
    """A reduction and its price: "69.1% [63.5%, 71.6%] for 5.0% [3.0%, 7.2%] extra requests" (:func:`fmt_share`)."""
    return f"{fmt_share(row)} for {fmt_share(row, 'extra_requests')} extra requests"


def fmt_latency(estimate: float, low: float, high: float) -> str:
    """A latency percentile in ms with its interval, "1,620 [1,580, 1,700]": ``inf`` (never answered) reads
    "never", a NaN bound (one the data cannot give) "unbounded"."""
    def one(value: float) -> str:
        return "unbounded" if np.isnan(value) else "never" if np.isinf(value) else f"{value:,.0f}"
    return f"{one(estimate)} [{one(low)}, {one(high)}]"

def arm_summary(arm: pd.DataFrame, *, quantiles: Sequence[float] = (0.5, 0.95, 0.99),
                confidence: float = 0.95) -> dict[str, Any]:
    """One measured arm (outcomes of :func:`lab.collect.hedging.load`): ``n``; the shares ``failed`` and
    ``extra`` (requests that sent a second one) with intervals of :func:`lab.analysis.summary.rate_interval`
    (Wilson; exact under five events); ``cost_per_1000`` (USD, a missing cost counts
    0); per quantile ``pNN``, ``pNN_low``, ``pNN_high`` of the answered latency, never-answered requests
    counted as infinitely slow, with a distribution-free interval (:func:`lab.analysis.stats.quantile_interval`,
    an order statistic; NaN bounds where n cannot give them)."""
    n = len(arm)
    row: dict[str, Any] = {"n": n}
    for name, hits in (("failed", int((~arm["ok"]).sum())), ("extra", int((arm["extra_requests"] > 0).sum()))):
        low, high, _ = rate_interval(hits, n, confidence)
        row |= {name: hits / n, f"{name}_low": low, f"{name}_high": high}
    row["cost_per_1000"] = 1000 * float(arm["cost_usd"].fillna(0).mean())
    latency = answered_ms(arm)
    for q in quantiles:
        ci = quantile_interval(latency, q, confidence=confidence, method="inverted_cdf")
        key = f"p{100 * q:g}"
        row |= {key: ci["estimate"], f"{key}_low": ci["low"], f"{key}_high": ci["high"]}
    return row


def agreement(live: pd.DataFrame, predicted: pd.DataFrame, *, quantiles: Sequence[float] = (0.95, 0.99),
              within_ms: float = 100.0) -> dict[str, Any]:
    """A measured hedged arm (outcomes in request order) against the prediction for the same requests (the
    per-request frame of :func:`predict`): per quantile ``pNN predicted`` and ``pNN live`` (order statistics,
    never-answered requests infinitely slow); the shares hedged, predicted and live; per request the absolute
    gap between live and predicted latency, its median and the share within ``within_ms``, over requests
    answered in both; ``answered in one only`` (requests one of the two never answered); and the client's
    largest scheduling delay, ``client delay, max`` (ms), which the prediction does not see."""
    live_ms, predicted_ms = answered_ms(live), predicted["hedged_ms"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        gap = np.abs(live_ms - predicted_ms)
    both = np.isfinite(gap)
    row: dict[str, Any] = {}
    for q in quantiles:
        row[f"p{100 * q:g} predicted"] = float(np.quantile(predicted_ms, q, method="inverted_cdf"))
        row[f"p{100 * q:g} live"] = float(np.quantile(live_ms, q, method="inverted_cdf"))
    return row | {"hedged predicted": float(predicted["backup_started"].mean()),
                  "hedged live": float((live["extra_requests"] > 0).mean()),
                  "median gap per request": float(np.median(gap[both])) if both.any() else np.nan,
                  "within": float((gap[both] <= within_ms).mean()) if both.any() else np.nan,
                  "answered in one only": int((np.isinf(live_ms) != np.isinf(predicted_ms)).sum()),
                  "client delay, max": float(live["lateness_ms"].max())}

