"""How much a hedge cuts depends on how long the primary's stalls last: the cut as a function of the
stall length, simulated on calls drawn in-process from emulator profiles.

A verdict on one stall length (the ``heavy_tail`` scenario's stalls end near the report's slowest call)
holds for that length only. :func:`cut_by_stall` repeats the hedging simulation
(:func:`lab.analysis.hedging.sweep`) over a range of stall medians, on calls drawn by
:meth:`lab.emulator.LatencyProfile.draw` (the emulator's own model of a call), so a reader sees where
a goal is met and where it is not.

* **Draws.** Every stall length gets the same seeded draws (common random numbers: the same calls
  stall, only the stall's length changes), so the curve moves with the length, not with sampling
  noise. The backup is drawn with another seed, independently of the primary.
* **Delays** are percentiles of the same draws, re-estimated in every bootstrap resample
  (``delay_from_data=True``): the intervals include the delay's own uncertainty.
* **Where the stall sits.** The emulator puts every stall before the first token, so a hedge on the
  time to first token sees it at once. That is the emulator's assumption, not a measurement: the
  report's calls were not streamed, and its outliers say nothing about when their first token came.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from lab.analysis import hedging as simulate
from lab.emulator.profiles import LatencyProfile

SIGNALS: tuple[simulate.On, ...] = ("latency", "ttft")


def draw_calls(profile: LatencyProfile, n: int, seed: int) -> pd.DataFrame:
    """``n`` calls of ``profile`` as the emulator would time them (SYNTHETIC), from ``random.Random(seed)``:
    a call-record-shaped frame with ``latency_ms``, ``ttft_ms`` (first token, after any stall),
    ``stall_ms`` (0 when the call did not stall), ``status`` "ok" and ``cost_usd`` NaN (unknown)."""
    rng = random.Random(seed)
    draws = [profile.draw(rng) for _ in range(n)]
    return pd.DataFrame({"latency_ms": [d.total_ms for d in draws], "ttft_ms": [d.ttft_ms + d.stall_ms for d in draws],
                         "stall_ms": [d.stall_ms for d in draws], "status": "ok", "cost_usd": np.nan})


def with_stall(profile: LatencyProfile, median_ms: float) -> LatencyProfile:
    """``profile`` whose stalls last ``median_ms`` at the median (share and spread of stalls unchanged)."""
    return replace(profile, name=f"{profile.name}, stalls of {median_ms:,.0f} ms", stall_median_ms=float(median_ms))


def hedge_cut(primary: LatencyProfile, backup: LatencyProfile, *, n: int, delay_pct: float = 95,
              quantile: float = 0.99, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Hedging ``n`` calls of ``primary`` on ``n`` calls of ``backup`` at the ``delay_pct`` percentile of the
    primary's latency and of its time to first token: two rows (``on`` = "latency", "ttft") with the columns
    of :func:`lab.analysis.hedging.sweep` for ``quantile``, plus the primary's ``stall_prob``,
    ``stall_median_ms`` and ``stalled_ms`` (the median latency of the calls that stalled: where a stall ends)."""
    calls, spare = draw_calls(primary, n, seed), draw_calls(backup, n, seed + 1)
    stalled = calls.loc[calls["stall_ms"] > 0, "latency_ms"]
    rows = [simulate.sweep(calls, spare, delay_percentiles=(delay_pct,), quantiles=(quantile,), on=on,
                           confidence=confidence, n_resamples=n_resamples, seed=seed).assign(on=on)
            for on in SIGNALS]
    return pd.concat(rows, ignore_index=True).assign(
        stall_prob=primary.stall_prob, stall_median_ms=primary.stall_median_ms,
        stalled_ms=float(stalled.median()) if len(stalled) else np.nan)


def cut_by_stall(primary: LatencyProfile, backup: LatencyProfile, stall_medians_ms: Sequence[float],
                 **options: Any) -> pd.DataFrame:
    """:func:`hedge_cut` for ``primary`` with its stalls set to each of ``stall_medians_ms``
    (:func:`with_stall`), on the same draws; ``options`` as :func:`hedge_cut` takes them."""
    frames = [hedge_cut(with_stall(primary, median), backup, **options) for median in stall_medians_ms]
    return pd.concat(frames, ignore_index=True)


def shortest_meeting(table: pd.DataFrame, on: simulate.On, min_reduction: float) -> float:
    """The shortest stall median in ``table`` (of :func:`cut_by_stall`) from which on, for every longer stall
    too, the lower bound of the ``on`` hedge's cut is at least ``min_reduction``; NaN when none is."""
    rows = table[table["on"] == on].sort_values("stall_median_ms")
    meets = (rows["reduction_low"] >= min_reduction).to_numpy()
    if not meets.any() or not meets[-1]:
        return np.nan
    first = len(meets) - int(np.argmin(meets[::-1])) if not meets.all() else 0
    return float(rows["stall_median_ms"].iloc[first])
