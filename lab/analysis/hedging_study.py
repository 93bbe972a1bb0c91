"""What a routing layer that hedges buys (notebook 04): every estimate, live and simulated.

:func:`study` reads a hedging run (:func:`lab.collect.hedging.load`) and an experiment-1 run, and computes
the live effect of each policy against the primary alone (:func:`lab.analysis.hedging.live_effect`), the
prediction from the single-provider arms (:func:`lab.analysis.hedging.predict`) and how well it agrees
(:func:`lab.analysis.hedging.agreement`), the cut expected from the emulator's profiles and its dependence on
the stall length (:mod:`lab.analysis.stalls`, kept in the run ``simulations``), and the simulated hedging of the
recorded Haiku calls (:func:`lab.analysis.hedging.sweep`). :func:`leaderboard` does the same simulation on the
LLMPerf leaderboard's real traces. :func:`arms_table`, :func:`goal_table` and :func:`stall_table` lay the
results out as the notebook shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lab import imports
from lab.analysis import hedging as simulate
from lab.analysis import simulations
from lab.analysis import stalls as stall
from lab.analysis.hedging import fmt_ms, fmt_share
from lab.analysis.stats import fmt_interval, min_n_for_quantile
from lab.collect import experiment, variance
from lab.collect import hedging as sc
from lab.core.paths import REFERENCE_DIR
from lab.emulator.profiles import fit_id
from lab.store import Run

POLICY_NAMES = {"history": "primary alone, other draws (sets the delays)", "primary": "primary alone",
                "backup": "backup alone", "fallback": "fallback (timeout at p95)", "hedge": "hedge at p95 latency",
                "hedge_ttft": "hedge at p95 TTFT"}
HEDGES = ("hedge", "hedge_ttft")
ON = {"hedge": "latency", "hedge_ttft": "ttft"}
"""The signal each hedging policy waits on."""
GOAL_SCENARIOS = ("heavy_tail", "haiku_tail")
"""The two scenarios the goal is judged in: stalls set to end near the report's slowest call, and as fitted."""


@dataclass
class HedgingStudy:
    """Everything notebook 04 quotes about the live scenarios and the recorded experiment-1 run; see :func:`study`."""

    design: sc.ScenarioDesign
    names: list[str]
    scenarios: dict[str, sc.Scenario]
    outcomes: pd.DataFrame
    delays: dict[str, sc.Delays]
    calls: pd.DataFrame
    haiku: pd.DataFrame
    sonnet: pd.DataFrame
    quantiles: tuple[float, ...]
    confidence: float
    need: dict[float, int]
    live: pd.DataFrame
    predictions: dict[tuple[str, str], tuple[pd.DataFrame, pd.DataFrame]]
    predicted: pd.DataFrame
    by_stall: pd.DataFrame
    expected: pd.DataFrame
    live99: pd.DataFrame
    predicted99: pd.DataFrame
    expected99: pd.DataFrame
    from_s: dict[str, float]
    span: pd.DataFrame
    cuts: pd.DataFrame
    inside: dict[tuple[str, str], bool]
    report_haiku_max: float
    agreement: pd.DataFrame
    per_request: pd.DataFrame
    history_ttft: dict[str, float]
    ours: pd.DataFrame

    def arm(self, scenario: str, policy: str) -> pd.DataFrame:
        """One arm's outcomes in request order (:func:`lab.collect.hedging.arm`)."""
        return sc.arm(self.outcomes, scenario, policy)

    def never_answered(self, scenario: str, policy: str = "primary") -> float:
        """The share of an arm's requests that got no answer."""
        return 1 - self.arm(scenario, policy)["ok"].mean()

    def effect(self, scenario: str, policy: str, q: float = 0.99) -> pd.Series:
        """A policy's live effect on the quantile ``q`` against the primary alone (a row of ``live``)."""
        live = self.live
        return live[(live["scenario"] == scenario) & (live["policy"] == policy) & (live["q"] == q)].iloc[0]


def study(run_id: str, variance_run_id: str, *, seed: int = 2026, confidence: float = 0.95, n_resamples: int = 2000,
          quantiles: Sequence[float] = (0.5, 0.95, 0.99), delay_percentiles: Sequence[float] = (50, 75, 90, 95, 99),
          goal_reduction: float = 0.70, goal_extra: float = 0.10,
          stall_medians_ms: Sequence[float] = tuple(range(1_000, 10_001, 1_000)), stall_draws: int = 20_000,
          stall_resamples: int = 1000) -> HedgingStudy:
    """Notebook 04's estimates. Live arms of ``run_id``: every policy against the primary alone, and the
    prediction from the single-provider arms, with the delays of the held-out history arm fixed in every
    resample (``n_resamples``, intervals at ``confidence``); each p99 judged against the goal (a cut of at least
    ``goal_reduction`` for at most ``goal_extra`` extra requests). The cut expected from the profiles,
    ``stall_draws`` calls per stall median in ``stall_medians_ms`` (``stall_resamples`` resamples, delays
    re-estimated; read from the run ``simulations``). The streamed calls of ``variance_run_id`` hedged on a
    replica and on Sonnet at ``delay_percentiles`` of their own latency and at the p95 of their TTFT (``ours``)."""
    scenarios = sc.scenarios()
    run = Run(run_id)
    names = list(scenarios)
    outcomes = sc.load(run, names)
    delays = {name: sc.primary_delays(outcomes, s.delays_from or name) for name, s in scenarios.items()}
    calls = experiment.load(variance_run_id)
    streamed = calls[calls["kind"] == "stream"]
    haiku, sonnet = (streamed[streamed["model"] == variance.REPORT_MODELS[m]].reset_index(drop=True)
                     for m in ("Haiku", "Sonnet"))
    report_table = pd.read_csv(REFERENCE_DIR / "experiment1_windows.csv")
    arm = lambda name, policy: sc.arm(outcomes, name, policy)  # noqa: E731

    # Live arms: delays from the held-out history arm, fixed in every resample.
    live = pd.concat([simulate.live_effect(arm(name, "primary"), arm(name, policy), quantiles=quantiles,
                                           confidence=confidence, n_resamples=n_resamples,
                                           seed=seed).assign(scenario=name, policy=policy)
                      for name in names for policy in ("fallback", *HEDGES)], ignore_index=True)
    predictions = {(name, policy): simulate.predict(
        arm(name, "primary"), arm(name, "backup"), getattr(delays[name], f"{ON[policy]}_ms"), on=ON[policy],
        quantiles=quantiles, confidence=confidence, n_resamples=n_resamples, seed=seed)
        for name in names for policy in HEDGES}
    predicted = pd.concat([effect.assign(scenario=name, policy=policy)
                           for (name, policy), (effect, _) in predictions.items()], ignore_index=True)

    # The cut as a function of the stall length: draws from the fitted profiles, delays re-estimated per resample.
    fitted = scenarios["haiku_tail"]
    stall_options = {"n": stall_draws, "confidence": confidence, "n_resamples": stall_resamples, "seed": seed}
    by_stall = simulations.cached("hedging cut by stall length", {
        "scenario": "haiku_tail", "scenarios": sc.VERSION, "fit": fit_id(), "stall_medians_ms": list(stall_medians_ms),
        **stall_options},
        lambda **_: stall.cut_by_stall(fitted.primary, fitted.backup, stall_medians_ms, **stall_options))
    expected = pd.concat([simulations.cached("hedging cut, scenario profiles", {
        "scenario": name, "scenarios": sc.VERSION, "fit": fit_id(), **stall_options},
        lambda **_: stall.hedge_cut(s.primary, s.backup, **stall_options)).assign(scenario=name)
        for name, s in scenarios.items() if name in GOAL_SCENARIOS], ignore_index=True)

    live99, predicted99 = (frame[frame["q"] == 0.99].set_index(["scenario", "policy"]) for frame in (live, predicted))
    expected99 = expected.assign(policy=expected["on"].map({v: k for k, v in ON.items()})).set_index(
        ["scenario", "policy"])
    for frame in (live99, predicted99, expected99):
        frame["verdict"] = simulate.goal_verdict(frame, goal_reduction, goal_extra)
    cuts = pd.concat([by_stall.assign(row=[f"{m / 1000:g} s" for m in by_stall["stall_median_ms"]]),
                      expected.assign(row=[f"{name}: {m / 1000:.1f} s (its own profile)"
                                           for name, m in zip(expected["scenario"], expected["stall_median_ms"])])],
                     ignore_index=True)
    cuts["meets goal"] = simulate.goal_verdict(cuts, goal_reduction, goal_extra)

    # The simulation against the live runs
    matches = pd.DataFrame([simulate.agreement(arm(name, policy), predictions[(name, policy)][1])
                            for name in names for policy in HEDGES])
    per_request = pd.concat([pd.DataFrame({"scenario": name, "policy": policy, "predicted": one["hedged_ms"],
                                           "live": simulate.answered_ms(arm(name, policy))})
                             for (name, policy), (_, one) in predictions.items()], ignore_index=True)

    # Our experiment-1 run: the streamed Haiku calls hedged on a replica and on Sonnet, delays from the same calls.
    ours = pd.concat([simulate.sweep(*simulate.pair(haiku, backup_calls, how="random", seed=seed + offset),
                                     delay_percentiles=delay_percentiles if on == "latency" else (95,),
                                     quantiles=(0.95, 0.99), on=on, confidence=confidence, n_resamples=n_resamples,
                                     seed=seed).assign(backup=name, on=on)
                      for name, backup_calls, offset in (("Haiku replica", haiku, 1), ("Sonnet", sonnet, 2))
                      for on in ("latency", "ttft")], ignore_index=True)
    return HedgingStudy(
        design=sc.ScenarioDesign(**run.manifest["design"]), names=names, scenarios=scenarios, outcomes=outcomes,
        delays=delays, calls=calls, haiku=haiku, sonnet=sonnet, quantiles=tuple(quantiles), confidence=confidence,
        need={q: min_n_for_quantile(q, confidence=confidence) for q in quantiles},
        live=live, predictions=predictions, predicted=predicted, by_stall=by_stall, expected=expected, live99=live99,
        predicted99=predicted99, expected99=expected99,
        from_s={on: stall.shortest_meeting(by_stall, on, goal_reduction) for on in ("latency", "ttft")},
        span=by_stall.groupby("on")[["baseline_ms", "hedged_ms"]].agg(["min", "max"]), cuts=cuts,
        inside={(name, policy): live99.loc[(name, policy), "reduction_low"]
                <= expected99.loc[(name, policy), "reduction"] <= live99.loc[(name, policy), "reduction_high"]
                for name in GOAL_SCENARIOS for policy in HEDGES},
        report_haiku_max=report_table.loc[report_table["model"] == "Haiku", "max_ms"].max(),
        agreement=pd.DataFrame([{"scenario": name, "policy": POLICY_NAMES[policy]} for name in names
                                for policy in HEDGES]).join(matches),
        per_request=per_request,
        history_ttft={name: sc.primary_delays(outcomes, name).ttft_ms for name in GOAL_SCENARIOS},
        ours=simulate.bounded(ours))


def arms_table(s: HedgingStudy) -> pd.DataFrame:
    """Every arm of every scenario (:func:`lab.analysis.hedging.arm_summary`): n, failed and extra requests with
    their intervals, cost per 1,000 requests and each quantile with its interval, in scenario and policy order."""
    arms = pd.DataFrame([{"scenario": name, "policy": POLICY_NAMES[policy],
                          **simulate.arm_summary(arm, quantiles=s.quantiles, confidence=s.confidence)}
                         for (name, policy), arm in s.outcomes.groupby(["scenario", "policy"], sort=False)])
    order = {name: i for i, name in enumerate([*s.names, *POLICY_NAMES.values()])}
    arms = arms.sort_values(["scenario", "policy"], key=lambda column: column.map(order), ignore_index=True)
    return arms[["scenario", "policy", "n"]].assign(
        failed=[fmt_interval(r.failed, r.failed_low, r.failed_high, ".1%") for r in arms.itertuples()],
        **{"extra requests": [fmt_interval(r.extra, r.extra_low, r.extra_high, ".1%") for r in arms.itertuples()],
           "cost per 1,000 requests": arms["cost_per_1000"]},
        **{f"p{100 * q:g} (ms)": [simulate.fmt_latency(*(getattr(r, f"p{100 * q:g}{x}") for x in ("", "_low", "_high")))
                                  for r in arms.itertuples()] for q in s.quantiles})


def goal_table(s: HedgingStudy, stall_draws: int) -> pd.DataFrame:
    """The p99 cut and the extra requests of both hedges in the goal's scenarios, three ways: live, predicted
    from the single arms, and expected from ``stall_draws`` profile draws, each with its verdict on the goal."""
    source = {"live": "live", "predicted": "predicted from the single arms",
              "expected": f"expected ({stall_draws:,} profile draws)"}
    delay_from = {"live": "history arm, fixed", "predicted": "history arm, fixed",
                  "expected": "same draws, re-estimated"}

    def delay(kind: str, name: str, policy: str) -> float:
        return s.expected99.loc[(name, policy), "delay_ms"] if kind == "expected" else getattr(
            s.delays[name], ON[policy] + "_ms")

    return pd.DataFrame([{"scenario": name, "policy": POLICY_NAMES[policy], "estimate": source[kind],
                          "delay": f"{delay(kind, name, policy):,.0f} ms ({delay_from[kind]})",
                          "p99 alone": fmt_ms(frame.loc[(name, policy), "baseline_ms"]),
                          "p99 hedged": fmt_ms(frame.loc[(name, policy), "hedged_ms"]),
                          "p99 cut": fmt_share(frame.loc[(name, policy)]),
                          "extra requests": fmt_share(frame.loc[(name, policy)], "extra_requests"),
                          "meets goal": frame.loc[(name, policy), "verdict"]}
                         for name in GOAL_SCENARIOS for policy in HEDGES
                         for kind, frame in (("live", s.live99), ("predicted", s.predicted99),
                                             ("expected", s.expected99))])


def stall_table(s: HedgingStudy) -> pd.DataFrame:
    """Per stall median (and the two scenarios' own profiles): where a stalled call ends, the p99 alone, and
    per hedge the p99 hedged, its cut and its verdict on the goal."""
    label = {"latency": "hedge at p95 latency", "ttft": "hedge at p95 TTFT"}
    return pd.DataFrame([{"stall median": row, "stalled call ends (median)": f"{g['stalled_ms'].iloc[0] / 1000:.1f} s",
                          "p99 alone": fmt_ms(g["baseline_ms"].iloc[0]),
                          **{f"{label[r['on']]}: {what}": value for _, r in g.iterrows()
                             for what, value in (("p99 hedged", fmt_ms(r["hedged_ms"])), ("p99 cut", fmt_share(r)),
                                                 ("meets goal", r["meets goal"]))}}
                         for row, g in s.cuts.groupby("row", sort=False)])


@dataclass
class LeaderboardHedging:
    """Hedging simulated on the LLMPerf leaderboard's traces of one model size; see :func:`leaderboard`."""

    providers: list[str]
    by_provider: dict[str, pd.DataFrame]
    sizes: list[int]
    p95: pd.DataFrame
    alone: pd.Series
    extra: pd.Series
    ratio: dict[str, float]
    tailed: str
    others: list[str]
    best: str
    slowest: str
    failing: str
    failure_kind: str
    failed_share: float
    rescue: pd.Series
    pair_sweep: pd.DataFrame
    typical: float

    def hedged_p95(self, primary: str, backup: str) -> float:
        """The p95 of ``primary`` hedged on ``backup`` at its p90 (point estimate)."""
        return self.p95.set_index(["primary", "backup"]).loc[(primary, backup), "hedged_ms"]


def leaderboard(trace_dir: Path | str, model: str, *, seed: int = 2026, confidence: float = 0.95,
                n_resamples: int = 2000,
                delay_percentiles: Sequence[float] = (50, 75, 90, 95, 99)) -> LeaderboardHedging:
    """Every pair of providers serving ``model`` in the LLMPerf traces of ``trace_dir``, paired at random, the
    primary hedged at its p90 (point estimates of the p95); then the failure-free provider with the largest
    p95/p50 ratio (``tailed``) hedged on its best backup at ``delay_percentiles``, with intervals; and the
    provider that failed most (``failing``) with what a hedge makes of it."""
    traces = imports.read_llmperf(trace_dir)
    traces = traces[traces["model"] == model]
    providers = sorted(traces["provider"].unique())
    by_provider = {p: traces[traces["provider"] == p].reset_index(drop=True) for p in providers}
    grid = pd.concat([simulate.sweep(*simulate.pair(by_provider[first], by_provider[second], how="random",
                                                    seed=seed + 100 * i + j),
                                     delay_percentiles=(90,), quantiles=(0.95,), n_resamples=0).assign(
                                         primary=first, backup=second)
                      for i, first in enumerate(providers) for j, second in enumerate(providers)], ignore_index=True)
    p95 = grid[grid["q"] == 0.95]
    alone = p95.groupby("primary")["baseline_ms"].first()
    healthy = [p for p in providers if (by_provider[p]["status"] == "ok").all()]
    ratio = {p: np.quantile(by_provider[p]["latency_ms"], 0.95) / np.median(by_provider[p]["latency_ms"])
             for p in healthy}
    tailed = max(ratio, key=ratio.get)
    at95 = p95.set_index(["primary", "backup"])
    others = [b for b in providers if b != tailed]
    best = min(others, key=lambda b: at95.loc[(tailed, b), "hedged_ms"])
    failing = max(providers, key=lambda p: (by_provider[p]["status"] != "ok").mean())
    failed = by_provider[failing]
    pair_sweep = simulate.bounded(simulate.sweep(*simulate.pair(by_provider[tailed], by_provider[best], how="random",
                                                                seed=seed),
                                                 delay_percentiles=delay_percentiles, quantiles=(0.95, 0.99),
                                                 confidence=confidence, n_resamples=n_resamples, seed=seed))
    return LeaderboardHedging(
        providers=providers, by_provider=by_provider, sizes=[len(frame) for frame in by_provider.values()], p95=p95,
        alone=alone, extra=p95.groupby("primary")["extra_requests"].mean(), ratio=ratio, tailed=tailed,
        others=others, best=best, slowest=max(others, key=lambda b: at95.loc[(tailed, b), "hedged_ms"]),
        failing=failing, failure_kind=failed.loc[failed["status"] != "ok", "error_type"].mode().iloc[0],
        failed_share=(failed["status"] != "ok").mean(),
        rescue=at95.loc[(failing, best if best != failing else tailed)], pair_sweep=pair_sweep,
        typical=(1 - p95.loc[(p95["primary"] == tailed) & (p95["backup"] != tailed), "hedged_ms"]
                 / alone[tailed]).median())


def heat(lb: LeaderboardHedging) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The hedged p95 (s) per primary (rows, labelled with its p95 alone and the share of its requests hedged) and
    backup (columns), and its cell labels ("never" where no p95 exists)."""
    values = lb.p95.pivot(index="primary", columns="backup", values="hedged_ms") / 1000
    labels = values.map(lambda v: "never" if np.isinf(v) else f"{v:.1f}")
    values.index = [f"{p}: alone {'never' if np.isinf(lb.alone[p]) else f'{lb.alone[p] / 1000:.1f} s'}, "
                    f"~{lb.extra[p]:.0%} hedged" for p in values.index]
    return values, labels

