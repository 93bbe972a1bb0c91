"""The power :mod:`lab.analysis.compare`'s two tests have to see B = A's calls x (1 + shift), without a test per draw.

A is described by a reference sample (its values are the population), B by the same values times
(1 + shift); n_a is the reference's size, n_b the other side's.

- **Body** (Brunner-Munzel, two-sided): Noether's approximation for a rank test,
  Φ(δ - z₁₋α/₂) + Φ(-δ - z₁₋α/₂) with δ = √(12 c (1 - c) N) |p - ½| and c = n_a / N (both rejection
  regions, so the power is α when B's calls are A's), where p = P(B > A) + ½ P(B = A) is counted
  exactly over all pairs of reference values (``numpy.searchsorted`` on the sorted sample).
- **Tail** (Fisher's exact test on the calls above the pooled 95th percentile). Where few calls lie above
  it (m ≤ :data:`EXACT_UP_TO`), counted over :data:`DRAWS` seeded draws of both sides, vectorised: no test is
  run, each draw's counts are set against Fisher's rejection region for its margins (found once per margin with
  ``scipy.stats.fisher_exact``). An earlier closed form (A's count as Fisher's noncentral hypergeometric law at
  nine places of the percentile) overstated the power by up to 0.08 at n_b = 20, where the percentile's place
  matters most. Where m is large, the two-proportion z-test's power (``statsmodels`` ``NormalIndPower`` with
  ``proportion_effectsize``, averaged over :data:`THRESHOLDS` equally likely places of the percentile) stands
  in for Fisher's, which it then matches; drawing would cost too much there.

:func:`power_check` sets both against simulation (:func:`lab.analysis.stats.calibrate` running compare's own
tests); ``tests/test_ranking.py`` holds them to it, and ``benchmarks/ranking.py`` prints a whole grid.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as scipy_stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from lab.analysis import stats

EXACT_UP_TO = 150
"""Calls above the pooled 95th percentile up to which the tail's power is computed exactly."""
THRESHOLDS = 9
"""Equally likely places of the pooled 95th percentile the large-sample tail power is averaged over."""
DRAWS = 2000
"""Draws of the tail's power where it is counted (its standard error at most 0.011)."""
CHUNK = 250


def power(reference: Sequence[float], n_b: int, *, shift: float = 0.10, alpha: float = 0.05) -> dict[str, float]:
    """Power of compare's body and tail tests to detect B = reference x (1 + shift) with n_b calls of B:
    ``{"body": ..., "tail": ...}`` (NaN with fewer than 2 values on a side). See the module docstring."""
    a = np.sort(np.asarray(reference, float))
    a = a[np.isfinite(a)]
    if len(a) < 2 or n_b < 2:
        return {"body": math.nan, "tail": math.nan}
    b = a * (1 + shift)
    return {"body": _body_power(a, b, n_b, alpha), "tail": _tail_power(a, b, n_b, alpha)}


def power_check(reference: Sequence[float], n_b: int, *, shift: float = 0.10, alpha: float = 0.05,
                n_sim: int = 1000, seed: int = 0) -> pd.Series:
    """:func:`power` beside the power simulated as compare used to: both sides drawn from the reference with
    replacement, B's times (1 + shift), each test run ``n_sim`` times (:func:`lab.analysis.stats.calibrate`).
    Gives ``n_a``, ``n_b`` and, for ``body`` and ``tail``, the analytic power, the simulated one and the latter's
    exact 95% interval (``_simulated``, ``_low``, ``_high``)."""
    from lab.analysis import compare  # compare imports this module for power()

    a = np.asarray(reference, float)
    a = a[np.isfinite(a)]
    row = {"n_a": len(a), "n_b": n_b}
    slower = lambda rng: (rng.choice(a, len(a)), rng.choice(a, n_b) * (1 + shift))  # noqa: E731
    for (name, analytic), test, offset in zip(power(a, n_b, shift=shift, alpha=alpha).items(),
                                              (compare._body_test, compare._tail_test), (0, 1)):
        simulated = stats.calibrate(test, None, slower, n_sim=n_sim, alpha=alpha, seed=seed + offset).iloc[0]
        row |= {name: analytic, f"{name}_simulated": simulated["rate"], f"{name}_low": simulated["low"],
                f"{name}_high": simulated["high"]}
    return pd.Series(row)


def _body_power(a: np.ndarray, b: np.ndarray, n_b: int, alpha: float) -> float:
    below, up_to = np.searchsorted(a, b, "left"), np.searchsorted(a, b, "right")
    p = (below.sum() + 0.5 * (up_to - below).sum()) / len(a) ** 2
    n = len(a) + n_b
    c = len(a) / n
    delta, z = math.sqrt(12 * c * (1 - c) * n) * abs(p - 0.5), scipy_stats.norm.ppf(1 - alpha / 2)
    return float(scipy_stats.norm.cdf(delta - z) + scipy_stats.norm.cdf(-delta - z))  # both tails: alpha at p = 1/2


def _tail_power(a: np.ndarray, b: np.ndarray, n_b: int, alpha: float) -> float:
    n_a = len(a)
    m = n_a + n_b - 1 - math.floor(0.95 * (n_a + n_b - 1))
    if m > EXACT_UP_TO:
        share_a, share_b = _shares_above_threshold(a, b, n_b)
        h = proportion_effectsize(share_b, share_a)
        return float(np.mean(NormalIndPower().power(h, nobs1=n_a, alpha=alpha, ratio=n_b / n_a)))
    return _tail_drawn(a, b, n_b, alpha)


def _tail_drawn(a: np.ndarray, b: np.ndarray, n_b: int, alpha: float) -> float:
    """The tail test's rejection rate over :data:`DRAWS` seeded draws of both sides from the reference, all
    drawn at once: each draw's pooled 95th percentile (``numpy.quantile`` along the draws), the counts above
    it, and Fisher's rejection region for those margins (:func:`_fisher_region`, one per count above)."""
    rng = np.random.default_rng(0)
    n_a, rejected = len(a), 0
    for done in range(0, DRAWS, CHUNK):
        size = min(CHUNK, DRAWS - done)
        x, y = rng.choice(a, (size, n_a)), rng.choice(b, (size, n_b))
        threshold = np.quantile(np.concatenate([x, y], axis=1), 0.95, axis=1, keepdims=True)
        over_a, over = (x > threshold).sum(1), (x > threshold).sum(1) + (y > threshold).sum(1)
        bounds = {int(m): _fisher_region(n_a, n_b, int(m), alpha) for m in np.unique(over)}
        low, high = np.array([bounds[int(m)] for m in over]).T
        rejected += int(((over_a <= low) | (over_a >= high)).sum())
    return rejected / DRAWS


def _shares_above_threshold(a: np.ndarray, b: np.ndarray, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's shares above the pooled 95th percentile at :data:`THRESHOLDS` equally likely places of it.

    The percentile lies at or below a value v when at least 0.95 (N - 1) + 1 pooled calls do, a count that is
    Binomial(n_a, F_A(v)) + Binomial(n_b, F_B(v)): its normal approximation gives the percentile's distribution
    over the values of A and B, whose quantiles are the places."""
    n_a = len(a)
    values = np.unique(np.concatenate([a, b]))
    f_a, f_b = np.searchsorted(a, values, "right") / n_a, np.searchsorted(b, values, "right") / n_a
    mean, var = n_a * f_a + n_b * f_b, n_a * f_a * (1 - f_a) + n_b * f_b * (1 - f_b)
    needed = 0.95 * (n_a + n_b - 1) + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        at_or_below = np.where(var > 0, special.ndtr((mean - needed + 0.5) / np.sqrt(var)), mean >= needed)
    places = np.minimum(np.searchsorted(at_or_below, (np.arange(THRESHOLDS) + 0.5) / THRESHOLDS), len(values) - 1)
    return 1 - f_a[places], 1 - f_b[places]


@functools.lru_cache(maxsize=256)
def _fisher_region(n_a: int, n_b: int, m: int, alpha: float) -> tuple[int, int]:
    """Fisher's two-sided test with margins n_a, n_b and m calls above rejects when A has at most ``low`` or at
    least ``high`` of them: its p-value (``scipy.stats.fisher_exact``) grows towards the mode from either end,
    so each bound is found by bisection."""
    def rejects(x: int) -> bool:
        return scipy_stats.fisher_exact([[x, n_a - x], [m - x, n_b - m + x]]).pvalue <= alpha

    bottom, top = max(0, m - n_b), min(m, n_a)
    mode = min(max(math.floor((m + 1) * (n_a + 1) / (n_a + n_b + 2)), bottom), top)
    low = bottom + bisect.bisect_left(range(bottom, mode + 1), True, key=lambda x: not rejects(x)) - 1
    high = mode + bisect.bisect_left(range(mode, top + 1), True, key=rejects)
    return low, high
