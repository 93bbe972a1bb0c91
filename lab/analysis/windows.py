"""Experiment 1, the time-window study (notebook 01): the report's design (two models, five windows of 50
calls) with an interval on every figure the report gave.

:func:`load` reads a variance run with the report's model names and its windows in collection order;
:func:`study` computes everything notebook 01 quotes: percentiles per window and pooled per model with
distribution-free intervals (:func:`lab.analysis.stats.interval_summary`, on ``scipy.stats.quantile_test``),
the model gap (:func:`lab.analysis.compare.compare`, ``scipy.stats.bootstrap``), the streamed phases, and the
two readings of the report's count (:func:`lab.analysis.coverage.readings_table`, kept in the run
``simulations``). :func:`latency_table` and :func:`pooled_table` lay the intervals out as the notebook shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab.analysis import coverage, simulations
from lab.analysis.compare import Comparison, compare
from lab.analysis.stats import fmt_interval, interval_summary
from lab.collect import experiment, variance
from lab.core.paths import REFERENCE_DIR
from lab.emulator.profiles import READINGS
from lab.store import Run


def load(run_id: str) -> tuple[pd.DataFrame, list[str]]:
    """The calls of a variance run, models named as the report names them (Haiku, Sonnet), ``window`` an
    ordered categorical; and the windows in the order of the run's sessions."""
    calls = experiment.load(run_id)
    calls["model"] = calls["model"].map({v: k for k, v in variance.REPORT_MODELS.items()}).fillna(calls["model"])
    windows = [s["window"] for s in Run(run_id).manifest["sessions"]]
    calls["window"] = pd.Categorical(calls["window"], categories=windows, ordered=True)
    return calls, windows


def reference() -> tuple[pd.DataFrame, pd.Series]:
    """The report's table per window and model, and its aggregate figures (``lab/data/reference``)."""
    return (pd.read_csv(REFERENCE_DIR / "experiment1_windows.csv"),
            pd.read_csv(REFERENCE_DIR / "experiment1_aggregates.csv", index_col="name")["value"])


def source(run_id: str, calls: pd.DataFrame) -> str:
    """How the notebooks name a run's data: "run ID", with ", SYNTHETIC (emulator)" when every call is."""
    return f"run {run_id}" + (", SYNTHETIC (emulator)" if calls["synthetic"].all() else "")


@dataclass
class WindowStudy:
    """Everything notebook 01 quotes (frames as :func:`study` documents them)."""

    run_id: str
    source: str
    windows: list[str]
    calls: pd.DataFrame
    latency: pd.DataFrame
    streamed: pd.DataFrame
    reference: pd.DataFrame
    aggregates: pd.Series
    per_window: pd.DataFrame
    pooled: pd.DataFrame
    gap: Comparison
    phases: pd.DataFrame
    report_spread_ms: float
    readings: pd.DataFrame
    medians: pd.DataFrame
    half_width: pd.Series
    p95_window: pd.DataFrame
    p95_pooled: pd.DataFrame
    spread: pd.Series
    report_spread: pd.Series
    phase: pd.DataFrame
    fit: pd.DataFrame
    slow: pd.DataFrame
    fast: pd.DataFrame
    slowest: pd.Series
    checked: pd.Series


def study(run_id: str, *, slow_ms: float = 3000, confidence: float = 0.95, seed: int = 2026,
          replications: int = 100_000) -> WindowStudy:
    """Notebook 01's estimates on the run ``run_id``: successful non-streamed calls (``latency``) and streamed
    ones (``streamed``); median and p95 per window and model (``per_window``), p50/p95/p99 pooled per model
    (``pooled``), Sonnet against Haiku (``gap``), streamed phases (``phases``), each at ``confidence``; the
    readings of the report's count (``readings``, ``replications`` simulated reports per reading, read from the
    run ``simulations``); and what the findings read off them (spreads of window medians, calls over
    ``slow_ms`` and under 2,000 ms, the coverage of the gap's intervals from notebook 03's table)."""
    calls, windows = load(run_id)
    latency = calls[(calls["kind"] == "complete") & (calls["status"] == "ok")]
    streamed = calls[(calls["kind"] == "stream") & (calls["status"] == "ok")]
    table, aggregates = reference()
    per_window = interval_summary(latency, ["model", "window"], ["latency_ms"], (50, 95), confidence=confidence)
    per_window["window"] = pd.Categorical(per_window["window"], categories=windows, ordered=True)
    pooled = interval_summary(latency, ["model"], ["latency_ms"], (50, 95, 99), confidence=confidence)
    haiku = latency.loc[latency["model"] == "Haiku", "latency_ms"].to_numpy()
    sonnet = latency.loc[latency["model"] == "Sonnet", "latency_ms"].to_numpy()
    gap = compare(haiku, sonnet, names=("Haiku", "Sonnet"), confidence=confidence, seed=seed)
    phases = interval_summary(streamed, ["model"], ["ttft_ms", "tpot_ms", "max_gap_ms"], (50, 95),
                              confidence=confidence)
    spread_ms = aggregates["sonnet_median_max_ms"] - aggregates["sonnet_median_min_ms"]
    readings = simulations.cached(f"report readings {coverage.VERSION}", {
        "spread_ms": float(spread_ms), "replications": replications, "seed": seed,
        "profiles": [coverage.fitted(r) for r in READINGS]},
        lambda **_: coverage.readings_table(float(spread_ms), replications=replications, seed=seed))
    medians = per_window[per_window["percentile"] == 50]
    return WindowStudy(
        run_id=run_id, source=source(run_id, calls), windows=windows, calls=calls, latency=latency,
        streamed=streamed, reference=table, aggregates=aggregates, per_window=per_window, pooled=pooled, gap=gap,
        phases=phases, report_spread_ms=spread_ms, readings=readings, medians=medians,
        half_width=(medians["high"] - medians["low"]) / 2 / medians["estimate"],
        p95_window=per_window[per_window["percentile"] == 95],
        p95_pooled=pooled[pooled["percentile"] == 95].set_index("model"),
        spread=medians.groupby("model")["estimate"].agg(np.ptp),
        report_spread=table.groupby("model")["median_ms"].agg(np.ptp),
        phase=phases.set_index(["model", "metric", "percentile"]),
        fit=readings[readings["model"] == "sonnet"].set_index("reading"),
        slow=latency[latency["latency_ms"] > slow_ms], fast=latency[latency["latency_ms"] < 2000],
        slowest=latency.loc[latency["latency_ms"].idxmax()],
        checked=coverage.notebook_table().query("kind == 'compare'").set_index("interval")["coverage"])


def ci(row: pd.Series, spec: str = ",.0f") -> str:
    """A row's ``estimate`` with its ``low`` and ``high`` (:func:`lab.analysis.stats.fmt_interval`)."""
    return fmt_interval(row["estimate"], row["low"], row["high"], spec)


def latency_table(s: WindowStudy) -> pd.DataFrame:
    """Per window and model: n, the median and p95 with their intervals, the maximum and p95/median, with
    the report's figures beside them."""
    wide = s.per_window.pivot_table(index=["window", "model"], columns="percentile",
                                    values=["estimate", "low", "high", "n"], observed=True)
    return pd.DataFrame({
        "n": wide[("n", 50)].astype(int),
        "median ms": [fmt_interval(*wide.loc[i, [("estimate", 50), ("low", 50), ("high", 50)]]) for i in wide.index],
        "p95 ms": [fmt_interval(*wide.loc[i, [("estimate", 95), ("low", 95), ("high", 95)]]) for i in wide.index],
        "max ms": s.latency.groupby(["window", "model"], observed=True)["latency_ms"].max(),
        "p95/median": (wide[("estimate", 95)] / wide[("estimate", 50)]).round(2),
    }).reset_index().merge(
        s.reference.rename(columns={"median_ms": "report median", "p95_ms": "report p95", "max_ms": "report max",
                                    "p95_over_median": "report p95/median"}), on=["window", "model"], how="left")


def pooled_table(s: WindowStudy) -> pd.DataFrame:
    """Per model, all windows pooled: n and p50, p95, p99 with their intervals."""
    return s.pooled.assign(value=[ci(r) for _, r in s.pooled.iterrows()]).pivot(
        index=["model", "n"], columns="percentile", values="value").rename(columns=lambda p: f"p{p} ms").reset_index()


PHASES = {"ttft_ms": "time to first token, ms", "tpot_ms": "time per output token, ms",
          "max_gap_ms": "longest gap inside the stream, ms"}


def phase_table(s: WindowStudy) -> pd.DataFrame:
    """Streamed calls per model and phase (:data:`PHASES`): n and the median and p95 with their intervals."""
    phases = s.phases
    return phases.assign(value=[ci(r, ",.0f" if r["metric"] != "tpot_ms" else ",.1f") for _, r in phases.iterrows()],
                         metric=pd.Categorical(phases["metric"].map(PHASES), list(PHASES.values()))).pivot(
        index=["model", "metric", "n"], columns="percentile", values="value").rename(columns=lambda p: f"p{p}")
