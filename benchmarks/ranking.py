"""How fast the analytic power and the ranking are, and how close the analytic power is to the simulated one.

    .venv/bin/python -m benchmarks.ranking [--n-sim 1000] [--no-grid] [--big 3000000]

Prints: ``lab.analysis.power.power`` per call at n = 10,000 (goal under 5 ms); ``lab.analysis.ranking.rank``
and ``against`` on 12 targets x 300 calls (goal under 0.5 s) and on 3 targets x ``--big`` values each (goal: a
few seconds); then, unless ``--no-grid``, ``power_check`` over the grid (lognormal sigma 0.3, 0.5, 1.0 and a
lognormal rounded to 100 ms; n_a, n_b in 20, 50, 200, 1000; a 10% shift) with the largest differences.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd

from lab.analysis import power, ranking

SIZES = (20, 50, 200, 1000)


def references(seed: int = 0) -> dict[str, callable]:
    """The grid's reference samples: lognormal latencies, and one rounded to 100 ms (heavy ties)."""
    rng = np.random.default_rng(seed)
    draws = {f"lognormal sigma {s}": (lambda n, s=s: rng.lognormal(7, s, n)) for s in (0.3, 0.5, 1.0)}
    draws["lognormal 0.5, rounded to 100 ms"] = lambda n: np.round(rng.lognormal(7, 0.5, n) / 100) * 100
    return draws


def calls(targets: int, n: int, seed: int = 0) -> pd.DataFrame:
    """``targets`` targets of ``n`` successful calls each, medians 2% apart."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"target": np.repeat([f"t{i:02d}" for i in range(targets)], n), "status": "ok",
                         "latency_ms": np.concatenate([rng.lognormal(7 + 0.02 * i, 0.5, n) for i in range(targets)])})


def timed(label: str, fn, repeat: int = 1):
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn()
    print(f"{label}: {(time.perf_counter() - start) / repeat * 1e3:,.1f} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=1000)
    parser.add_argument("--no-grid", action="store_true")
    parser.add_argument("--big", type=int, default=3_000_000)
    args = parser.parse_args()

    reference = np.random.default_rng(1).lognormal(7, 0.5, 10_000)
    power.power(reference, 10_000)
    timed("power(), n_a = n_b = 10,000, per call", lambda: power.power(reference, 10_000), repeat=100)

    small = calls(12, 300)
    ranking.rank(small, "latency_ms")  # imports scikit-posthocs once
    result = timed("rank(), 12 targets x 300 calls", lambda: ranking.rank(small, "latency_ms"))
    print(result.table.to_string(index=False))
    timed("against(), 12 targets x 300 calls", lambda: ranking.against(small, "latency_ms", "t00"))

    big = calls(3, args.big)
    timed(f"rank(), 3 targets x {args.big:,} values", lambda: ranking.rank(big, "latency_ms"))
    timed(f"against(), 3 targets x {args.big:,} values", lambda: ranking.against(big, "latency_ms", "t00"))

    if args.no_grid:
        return
    rows = []
    start = time.perf_counter()
    for (name, draw), n_a in itertools.product(references().items(), SIZES):
        sample = draw(n_a)
        for n_b in SIZES:
            rows.append({"reference": name, **power.power_check(sample, n_b, n_sim=args.n_sim, seed=n_a + n_b)})
    grid = pd.DataFrame(rows)
    grid["body_error"] = grid["body"] - grid["body_simulated"]
    grid["tail_error"] = grid["tail"] - grid["tail_simulated"]
    columns = ["reference", "n_a", "n_b", "body", "body_simulated", "tail", "tail_simulated", "body_error", "tail_error"]
    print(f"\npower, analytic against simulated ({args.n_sim:,} simulations a cell, "
          f"{time.perf_counter() - start:,.0f} s):")
    print(grid[columns].round(3).to_string(index=False))
    print(f"largest difference: body {grid['body_error'].abs().max():.3f}, tail {grid['tail_error'].abs().max():.3f}")


if __name__ == "__main__":
    main()
