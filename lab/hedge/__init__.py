"""Tail-latency routing: policies over :mod:`lab.llm`, their offline simulation on recorded
latencies, and live scenarios against emulators.

* :mod:`lab.hedge.policies`: ``single``, ``fallback``, ``hedge`` and the ``Outcome`` they return.
* :mod:`lab.hedge.delays`: ``RecentPercentile``, a delay learned from recent requests, censoring-aware.
* :mod:`lab.analysis.hedging`: hedged latency ``min(L1, d + L2)`` on recorded calls, with intervals; the
  effects of measured arms and how to state them.
* :mod:`lab.analysis.stalls`: the cut as a function of the primary's stall length, on calls drawn from profiles.
* :mod:`lab.collect.hedging`: open-loop scenarios on loopback emulators, recorded in a run.
"""

import importlib
from typing import Any

SCENARIOS = ("healthy", "heavy_tail", "haiku_tail", "outage", "rate_limited", "correlated", "slow_backup")
"""The names of :func:`lab.collect.hedging.scenarios`, in order, known without loading them."""

_EXPORTS = {"Outcome": "policies", "Backend": "policies", "estimate_cost": "policies", "fallback": "policies",
            "hedge": "policies", "single": "policies", "RecentPercentile": "delays"}
__all__ = ["SCENARIOS", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """The policies load the provider layer: import them when first asked for, not with the package."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lab.hedge' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lab.hedge.{_EXPORTS[name]}"), name)
