"""Hedge delays learned from the primary's recent requests.

Light on purpose (no provider SDK): :mod:`lab.proxy` loads it at start-up.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from statsmodels.duration.survfunc import SurvfuncRight


class RecentPercentile:
    """A hedge delay: the ``q``-th percentile of the primary's recent times (latency, or time to
    first token), in seconds, over the last ``window`` requests; ``initial_s`` until one is seen.

    A primary cancelled because the backup won, or one that failed, tells only that it had not
    answered by then: it is *censored* at its elapsed time. Dropping those (learning only from
    primaries that won) would bias the percentile low and hedge too often; the estimate is the
    Kaplan-Meier quantile (``statsmodels.duration.survfunc.SurvfuncRight``), and when censoring
    leaves it undefined, the largest time seen (a lower bound).
    """

    def __init__(self, q: float = 95, window: int = 200, initial_s: float = 1.0) -> None:
        if not 0 < q < 100:
            raise ValueError(f"q must be a percentile between 0 and 100, not {q!r}")
        self.q, self.initial_s = q, initial_s
        self.samples: deque[tuple[float, bool]] = deque(maxlen=window)
        self._value: float | None = None

    def observe(self, seconds: float, *, censored: bool = False) -> None:
        """Note one primary: it answered after ``seconds``, or (``censored``) had not answered by then."""
        self.samples.append((seconds, not censored))
        self._value = None

    def __call__(self) -> float:
        if not self.samples:
            return self.initial_s
        if self._value is None:
            times, answered = (np.array(column, float) for column in zip(*self.samples))
            value = np.nan
            if answered.any():
                value = SurvfuncRight(times, answered).quantile(self.q / 100)
            self._value = float(times.max() if np.isnan(value) else value)
        return self._value
