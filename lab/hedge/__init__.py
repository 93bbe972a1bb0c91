"""Tail-latency routing: policies over :mod:`lab.llm`, their offline simulation on recorded
latencies, and live scenarios against emulators.

* :mod:`lab.hedge.policies`: ``single``, ``fallback``, ``hedge`` and the ``Outcome`` they return.
* :mod:`lab.hedge.simulate`: hedged latency ``min(L1, d + L2)`` on recorded calls, with intervals.
* :mod:`lab.hedge.scenarios`: open-loop scenarios on loopback emulators, recorded in a run.
"""

from lab.hedge.policies import Outcome, RecentPercentile, Route, estimate_cost, fallback, hedge, single

__all__ = ["Outcome", "RecentPercentile", "Route", "estimate_cost", "fallback", "hedge", "single"]
