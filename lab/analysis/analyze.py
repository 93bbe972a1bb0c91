"""``lab analyze --run RUN``: what any run says about each target, whatever collected it, at any size.

Per target (and task, and open-loop window): how many calls, how many failed (an interval for the
rate: :func:`lab.analysis.summary.rate_interval`), and the percentiles of each metric with
distribution-free intervals (order statistics, :func:`lab.analysis.summary.percentiles`), all computed
by DuckDB where the calls live (:class:`lab.analysis.calls.Calls`). Then the targets ranked in groups
that cannot be told apart (:func:`lab.analysis.ranking.rank`), or each against a ``baseline``; the
throughput achieved and, with objectives, the goodput; for an open-loop run, its schedule; with ``by``,
the calls in time windows (:mod:`lab.analysis.timeline`). Every number of the findings is computed
here, once: the terminal table, the JSON and the HTML page (:mod:`lab.report.pages`) read the same object.

What the data cannot carry is said, never printed as a number: a metric no call of a group recorded
reads "not recorded (0 of N calls)"; time per output token is not ranked over a handful of tokens;
chunk timing is not ranked when an open-loop client fell behind its schedule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lab.analysis import stats, summary
from lab.analysis.calls import Calls
from lab.core.errors import BadInput

METRICS = {
    "response_ms": "response time from the planned send",
    "ttft_from_planned_ms": "time to first token from the planned send",
    "latency_ms": "end to end",
    "ttft_ms": "time to first token",
    "tpot_ms": "time per output token",
    "max_gap_ms": "longest silence mid-stream",
}
SHORT = {"response_ms": "response", "ttft_from_planned_ms": "ttft (planned)", "latency_ms": "e2e", "ttft_ms": "ttft",
         "tpot_ms": "tpot", "max_gap_ms": "gap"}
PERCENTILES = (50, 95, 99)
MIN_TOKENS = 16
"""Time per output token is ranked only where the successful calls' median output is at least this many tokens."""
BEHIND_MS = 10.0
"""An open-loop client sent late by more than this (its 99th percentile send lag) fell behind its schedule."""


EXACT_FIGURE_UP_TO = 1_000_000
"""Calls up to which the distributions' figure uses exact quantiles."""
TEST_SAMPLE = 20_000
"""Successful calls per target (and stratum) the rank tests use at most: a seeded random sample beyond it. At
20,000 a side Brunner-Munzel sees a 2% shift of a lognormal with sigma 0.5 with power 0.97 (a 1% shift: 0.50;
:func:`lab.analysis.power.power`), and the cost and memory of 66 pairs stay bounded whatever the run's size;
percentiles and error rates use every call."""
STREAMED = ("ttft_ms", "ttft_from_planned_ms", "tpot_ms", "max_gap_ms")
"""The metrics only a streamed call records."""


@dataclass
class Options:
    """How to analyse: time windows (``by``, ``tz``), a ``baseline`` target, every pair, objectives."""

    by: str | None = None
    tz: str = "UTC"
    baseline: str | None = None
    all_pairs: bool = False
    objectives: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.05
    seed: int = 0
    n_resamples: int = 1999
    """Permutations of the window tests' Anderson-Darling p-value (one seeded generator per stratum; 1,999 puts
    a p-value near 0.05 within about ±0.01)."""


class Analysis:
    """Everything the report on one run shows, each part computed once, when first asked for."""

    def __init__(self, run_id: str, options: Options | None = None) -> None:
        self.run_id = run_id
        self.options = options or Options()
        self.calls = Calls(run_id)
        self.n = self.calls.count()
        self._frames: dict[str, list[tuple[dict[str, Any], pd.DataFrame]]] = {}
        unknown = set(self.options.objectives) - set(METRICS)
        if unknown:
            raise BadInput(f"an objective names a metric the lab does not know: {', '.join(sorted(unknown))} "
                           f"(use {', '.join(SHORT.values())})")
        if self.options.by in ("hour", "weekday", "day") and not self.timed:
            raise BadInput(f"run {run_id!r} records no start times (its source has none): --by {self.options.by} "
                           "cannot be answered; --by window groups by the recorded windows")

    @property
    def timed(self) -> bool:
        """Whether the calls carry real start times (an import whose source has none holds a placeholder)."""
        return "started_at" not in self.calls.about.missing_fields

    # -- what the run is ------------------------------------------------------------------

    @functools.cached_property
    def recorded(self) -> dict[str, int]:
        """Calls with a value, per metric (and send lag, output tokens)."""
        return self.calls.recorded([*METRICS, "send_lag_ms", "output_tokens"])

    @property
    def open_loop(self) -> bool:
        return self.recorded["send_lag_ms"] > 0

    @functools.cached_property
    def strata(self) -> list[str]:
        """The columns besides the target that split the calls: task and kind (streamed or not: different
        measurements) when there are several, and for an open-loop run the window (each a rate of its own)."""
        # kind splits only where every call recorded it (a failure without one would make a stratum of its own)
        kind = "CASE WHEN count(kind) = count(*) THEN count(DISTINCT kind) ELSE 1 END" if "kind" in self.calls.columns \
            else "1"
        found = self.calls.sql(f"SELECT count(DISTINCT task) AS tasks, {kind} AS kinds, "
                               "count(DISTINCT \"window\") AS windows FROM calls").iloc[0]
        return ([c for c in ("task", "kind") if found[c + "s"] > 1]
                + (["window"] if self.open_loop and found["windows"] > 1 else []))

    @property
    def groups(self) -> list[str]:
        return ["target", *self.strata]

    @functools.cached_property
    def metrics(self) -> dict[str, str]:
        """The metrics some call recorded, the times from the planned send first (an open-loop run)."""
        wanted = [m for m in METRICS if self.open_loop or m not in ("response_ms", "ttft_from_planned_ms")]
        return {m: METRICS[m] for m in wanted if self.recorded[m]}

    @property
    def main(self) -> str:
        """The metric the verdict is on: response time from the planned send (open loop), else end to end."""
        return "response_ms" if "response_ms" in self.metrics else "latency_ms"

    @property
    def label(self) -> str:
        return self.calls.label

    @functools.cached_property
    def span(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        if not self.timed:
            return None, None
        row = self.calls.sql("SELECT min(started_at) AS first, max(started_at) AS last FROM calls").iloc[0]
        return (None if pd.isna(row["first"]) else row["first"]), (None if pd.isna(row["last"]) else row["last"])

    @functools.cached_property
    def targets(self) -> list[str]:
        return [str(t) for t in self.calls.sql("SELECT DISTINCT target FROM calls ORDER BY target")["target"]]

    # -- summaries ------------------------------------------------------------------------

    @functools.cached_property
    def _percentiles(self) -> pd.DataFrame:
        return summary.percentiles("calls", self.groups, list(self.metrics), PERCENTILES, con=self.calls.con)

    def percentiles(self) -> pd.DataFrame:
        """One row per group, metric and percentile with its interval (:func:`lab.analysis.summary.percentiles`)."""
        return self._percentiles.copy()

    @functools.cached_property
    def _errors(self) -> pd.DataFrame:
        table = summary.error_rates("calls", self.groups, con=self.calls.con)
        keys = ", ".join(summary.sql_name(g) for g in self.groups)
        kinds = self.calls.sql(f"SELECT {keys}, coalesce(error_type, 'error') AS error_kind, count(*) AS n "
                               f"FROM calls WHERE status <> 'ok' OR status IS NULL GROUP BY ALL ORDER BY n DESC, error_kind")
        said = kinds.groupby(self.groups, sort=False).apply(
            lambda g: ", ".join(f"{k} {n:,}" for k, n in zip(g["error_kind"], g["n"], strict=True)), include_groups=False)
        named = said.rename("error types").reset_index() if len(said) else pd.DataFrame(
            columns=[*self.groups, "error types"])
        return table.merge(named, on=self.groups, how="left").fillna({"error types": ""})

    def errors(self) -> pd.DataFrame:
        """Calls, errors and the error rate per group with its interval and method, and the kinds of error."""
        return self._errors.copy()

    @functools.cached_property
    def _throughput(self) -> pd.DataFrame:
        return summary.throughput("calls", self.groups, objectives=self.options.objectives, con=self.calls.con)

    def throughput(self) -> pd.DataFrame:
        """Requests and output tokens per second achieved per group; goodput against the objectives."""
        return self._throughput.copy()

    # -- what the data can carry --------------------------------------------------------------

    @functools.cached_property
    def send_lag(self) -> dict[str, float]:
        """An open-loop run's send lag: median, p99 and max, ms (empty for a serial run)."""
        if not self.open_loop:
            return {}
        row = self.calls.sql("SELECT median(send_lag_ms) AS median, quantile_cont(send_lag_ms, 0.99) AS p99, "
                             "max(send_lag_ms) AS max FROM calls").iloc[0]
        return {k: float(row[k]) for k in ("median", "p99", "max")}

    @functools.cached_property
    def planned_span_s(self) -> float:
        """Open loop: seconds from the first planned send to the last (0: a burst; NaN: no plan recorded)."""
        if not self.open_loop:
            return math.nan
        span = self.calls.sql("SELECT epoch(max(scheduled_at)) - epoch(min(scheduled_at)) AS s FROM calls")["s"].iloc[0]
        return math.nan if pd.isna(span) else float(span)

    @property
    def burst(self) -> bool:
        """Open loop without a schedule to keep: every request planned at one instant (a tool's "request rate inf"
        under a concurrency limit), or no plan recorded. The send lag is then the wait for a free slot, by design,
        not a client falling behind."""
        return self.open_loop and not self.planned_span_s > 0

    @property
    def fell_behind(self) -> bool:
        return bool(self.send_lag) and not self.burst and self.send_lag["p99"] > BEHIND_MS

    @functools.cached_property
    def median_tokens(self) -> float:
        value = self.calls.sql("SELECT median(output_tokens) AS m FROM calls WHERE status = 'ok'")["m"].iloc[0]
        return math.nan if pd.isna(value) else float(value)

    def withheld(self) -> dict[str, str]:
        """The recorded metrics that get no ranking, with the reason."""
        found = {}
        if "tpot_ms" in self.metrics and not self.median_tokens >= MIN_TOKENS:
            found["tpot_ms"] = (f"the calls' median output is {self.median_tokens:.0f} tokens, under {MIN_TOKENS}: "
                                "too few gaps to time a token")
        if self.fell_behind:
            for metric in ("tpot_ms", "max_gap_ms"):
                if metric in self.metrics:
                    found.setdefault(metric, "the client fell behind its schedule, so it may have read chunks late")
        return found

    @property
    def ranked(self) -> list[str]:
        """The metrics ranked: the main one, time to first token, time per output token, where carried."""
        first = "ttft_from_planned_ms" if self.open_loop else "ttft_ms"
        return [m for m in (self.main, first, "tpot_ms") if m in self.metrics and m not in self.withheld()]

    # -- targets compared -----------------------------------------------------------------

    def _strata_frames(self, metric: str) -> list[tuple[dict[str, Any], pd.DataFrame]]:
        """Per stratum (task, kind, window), a frame of the successful calls' values of ``metric`` by target, at
        most :data:`TEST_SAMPLE` per target (a seeded random sample beyond it), read once per metric."""
        if metric in self._frames:
            return self._frames[metric]
        found: dict[tuple, list] = {}
        for key, array in self.calls.values(metric, self.groups, most=TEST_SAMPLE, seed=self.options.seed).items():
            found.setdefault(tuple(key[1:]), []).append((key[0], array))
        out = []
        for stratum, parts in sorted(found.items(), key=lambda kv: tuple(map(str, kv[0]))):
            codes = np.repeat(np.arange(len(parts)), [len(a) for _, a in parts])
            frame = pd.DataFrame({"target": pd.Categorical.from_codes(codes, categories=[t for t, _ in parts]),
                                  "status": pd.Categorical.from_codes(np.zeros(len(codes), int), categories=["ok"]),
                                  metric: np.concatenate([a for _, a in parts]) if parts else []})
            out.append((dict(zip(self.strata, stratum, strict=True)), frame))
        self._frames[metric] = out
        return out

    @functools.cached_property
    def rankings(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Per ranked metric and stratum, the targets ranked in groups (:func:`lab.analysis.ranking.rank`)."""
        from lab.analysis import ranking

        return {m: [(where, ranking.rank(frame, m, alpha=self.options.alpha))
                    for where, frame in self._strata_frames(m) if frame["target"].nunique() > 1]
                for m in self.ranked}

    @functools.cached_property
    def baseline(self) -> dict[str, list[tuple[dict[str, Any], pd.DataFrame]]]:
        """With a baseline: per ranked metric and stratum, every other target against it."""
        from lab.analysis import ranking

        name = self.options.baseline
        if name is None:
            return {}
        if name not in self.targets:
            raise BadInput(f"no target {name!r} in run {self.run_id}: its targets are {', '.join(self.targets)}")
        return {m: [(where, ranking.against(frame, m, name, alpha=self.options.alpha))
                    for where, frame in self._strata_frames(m) if name in set(frame["target"])]
                for m in self.ranked}

    @functools.cached_property
    def pairs(self) -> list[tuple[str, str, dict, Any]]:
        """With ``all_pairs``: every pair of targets compared on every ranked metric (:mod:`lab.analysis.compare`)."""
        import itertools

        from lab.analysis import compare

        if not self.options.all_pairs:
            return []
        found = []
        for metric in self.ranked:
            for where, frame in self._strata_frames(metric):
                groups = {t: g[metric].to_numpy() for t, g in frame.groupby("target", observed=True)}
                for a, b in itertools.combinations(sorted(groups), 2):
                    found.append((a, b, where, compare.compare(groups[a], groups[b], metric=metric, names=(a, b),
                                                               seed=self.options.seed)))
        return found

    # -- open loop ------------------------------------------------------------------------

    @functools.cached_property
    def _schedule(self) -> pd.DataFrame:
        if not self.open_loop:
            return pd.DataFrame()
        designed = {}
        for entry in self.calls.about.sessions:
            if entry.get("rate_per_s"):
                from lab.collect.workload.plan import Slot

                designed[Slot(entry.get("window"), entry.get("rate_per_s")).label] = entry["rate_per_s"]
        frame = self.calls.sql("""SELECT "window", count(*) AS requests,
            (count(*) - 1) / nullif(epoch(max(scheduled_at)) - epoch(min(scheduled_at)), 0) AS planned,
            (count(*) - 1) / nullif(epoch(max(started_at)) - epoch(min(started_at)), 0) AS achieved,
            median(send_lag_ms) AS lag_median, quantile_cont(send_lag_ms, 0.99) AS lag_p99,
            max(send_lag_ms) AS lag_max, avg(CASE WHEN send_lag_ms > 2 THEN 1.0 ELSE 0.0 END) AS late
            FROM calls WHERE send_lag_ms IS NOT NULL GROUP BY "window" ORDER BY min(scheduled_at)""")
        frame.insert(2, "design", frame["window"].map(designed).astype(float))
        return frame

    def schedule(self) -> pd.DataFrame:
        """Open loop: per window, the design's rate, the rate its schedule planned (Poisson arrivals vary
        around the design's), the rate achieved, and how late calls were sent."""
        return self._schedule.copy()

    # -- time -----------------------------------------------------------------------------

    @functools.cached_property
    def time(self) -> dict[str, Any]:
        """With ``by``: per-window summaries, the window tests, latency over time and change points
        (:mod:`lab.analysis.timeline`)."""
        from lab.analysis import timeline

        by = self.options.by
        if by is None:
            return {}
        con, metric = self.calls.con, self.main
        strata = [s for s in self.strata if s != "window"]
        frame = self.calls.frame(["target", *strata, "status", "started_at", "window", metric])
        tests = [timeline.window_tests(part, by, tz=self.options.tz, metric=metric, seed=self.options.seed,
                                       n_resamples=self.options.n_resamples, alpha=self.options.alpha)
                 .assign(**dict(zip(strata, key if isinstance(key, tuple) else (key,))))
                 for key, part in (frame.groupby(strata, sort=True) if strata else [((), frame)])]
        return {
            "windows": timeline.per_window("calls", by, tz=self.options.tz, metrics=(metric,), con=con),
            "tests": pd.concat(tests, ignore_index=True),
            "over_time": timeline.over_time("calls", metric, con=con),
            "changes": timeline.change_points(frame.assign(series=self._series(frame, strata)), metric,
                                              group="series", alpha=self.options.alpha,
                                              n_resamples=self.options.n_resamples, seed=self.options.seed),
        }

    @staticmethod
    def _series(frame: pd.DataFrame, strata: list[str]) -> pd.Series:
        """Each call's series for the change points: its target, with its stratum when there are strata."""
        series = frame["target"].astype(str)
        for name in strata:
            series = series + f", {name} " + frame[name].astype(str)
        return series

    # -- words ----------------------------------------------------------------------------

    def value(self, row: Any, spec: str | None = None) -> str:
        """A percentile row as text: "1,620 [1,580, 1,700]", or "not recorded (0 of N calls)"."""
        if not row.recorded:
            return f"not recorded (0 of {row.calls:,} calls)"
        spec = spec or (",.1f" if row.metric == "tpot_ms" else ",.0f")
        return stats.fmt_interval(row.estimate, row.low, row.high, spec)

    def findings(self) -> list[str]:
        """The findings, one sentence each, every number computed here."""
        first, last = self.span
        when = "" if first is None else (f", {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC")
        errors = self.errors()
        failed = int(errors["errors"].sum())
        lines = [f"Run {self.run_id} ({self.label}): {self.n:,} calls to {len(self.targets)} "
                 f"target{'s' if len(self.targets) != 1 else ''}{when}; {failed:,} failed "
                 f"({failed / self.n:.1%})."]
        lines += self._ranking_findings()
        worst = errors.sort_values(["error_rate", "n"], ascending=[False, False]).iloc[0]
        if failed:
            lines.append(f"Most errors: {self._where(worst)}, {worst['errors']:,} of {worst['n']:,} calls "
                         f"({stats.fmt_interval(worst['error_rate'] * 100, worst['low'] * 100, worst['high'] * 100, '.1f')}"
                         f" %, {worst['method']}){': ' + worst['error types'] if worst['error types'] else ''}.")
        lines += self._missing_findings()
        for metric, reason in self.withheld().items():
            lines.append(f"{self.metrics[metric].capitalize()} is not ranked: {reason}.")
        lines += self._throughput_findings()
        if self.open_loop:
            lines += self._schedule_findings()
        if self.time:
            lines += self._time_findings()
        return lines

    def _where(self, row: Any) -> str:
        return ", ".join(str(row[g]) for g in self.groups)

    def _ranking_findings(self) -> list[str]:
        lines = []
        if len(self.targets) < 2:
            return [f"One target ({self.targets[0]}): nothing to rank." if self.targets else "No target to rank."]
        for metric in self.ranked[:2]:
            for where, result in self.rankings.get(metric, []):
                within = _within(where)
                table = result.table
                groups = sorted({letter for letters in table["letters"].dropna() for letter in letters})
                fastest = table.sort_values("rank").iloc[0]
                tied = [t for t in table[table["letters"].fillna("").str.contains(fastest["letters"][:1])]["target"]
                        if t != fastest["target"]] if fastest["letters"] else []
                pairs = f"{len(result.pairs)} pair{'s' if len(result.pairs) != 1 else ''}, Brunner-Munzel, Holm"
                few = sorted(map(str, table.loc[table["rank"].isna(), "target"]))
                if len(table) - len(few) < 2:
                    lines.append(f"Median {self.metrics[metric]}{within}: too few successful calls to rank "
                                 f"({_listed(few)}: fewer than 2 each).")
                    continue
                if len(groups) == 1:
                    lines.append(f"Median {self.metrics[metric]}{within}: none of the {len(table)} targets can be told "
                                 f"apart ({pairs}; not a proof that they are alike); lowest {fastest['target']} "
                                 f"({self._median(metric, fastest['target'], where)} ms).")
                    continue
                text = (f"Median {self.metrics[metric]}{within}: fastest {fastest['target']} "
                        f"({self._median(metric, fastest['target'], where)} ms)")
                text += (f", not told apart from {_listed(tied)}" if tied else "")
                text += f"; {len(table)} targets in {len(groups)} groups by letter ({pairs})."
                lines.append(text)
                differences = result.differences()
                if len(differences):
                    top = differences.iloc[0]
                    lines.append(f"  Largest difference{within}: {top['b']} is {top['median_ratio'] - 1:+.0%} against "
                                 f"{top['a']} in median {self.metrics[metric]} (adjusted p = {top['p_holm']:.2g}).")
        for metric, found in self.baseline.items():
            for where, table in found:
                differ = table[table["different"]]
                within = _within(where)
                lines.append(f"Against {self.options.baseline}{within}, median {self.metrics[metric]}: "
                             + ("; ".join(f"{r.target} {r.median_ratio - 1:+.0%} [{r.ratio_low - 1:+.0%}, {r.ratio_high - 1:+.0%}]"
                                          for r in differ.itertuples()) if len(differ) else "no target differs")
                             + f" ({len(table)} compared, Holm).")
        largest = int(self._percentiles["n"].max()) if len(self._percentiles) else 0
        if largest > TEST_SAMPLE:
            lines.append(f"The rank tests ran on a seeded random sample of {TEST_SAMPLE:,} successful calls per target "
                         f"(targets had up to {largest:,}); percentiles and error rates use every call.")
        return lines

    def _median(self, metric: str, target: str, where: Mapping[str, Any]) -> str:
        table = self._percentiles
        pick = (table["metric"] == metric) & (table["percentile"] == 50) & (table["target"] == target)
        for k, v in where.items():
            pick &= table[k] == v
        return self.value(table[pick].iloc[0])

    def _missing_findings(self) -> list[str]:
        table = self._percentiles[self._percentiles["percentile"] == PERCENTILES[0]]
        lines = [] if "ttft_ms" in self.metrics else [
            f"Time to first token not recorded (0 of {self.n:,} calls{self._why_missing('ttft_ms')})."]
        missing = table[~table["recorded"]]
        if "kind" in missing:  # a call not streamed cannot time its tokens: no news
            missing = missing[missing["kind"].eq("stream") | ~missing["metric"].isin(STREAMED)]
        for metric, rows in missing.groupby("metric", sort=False):
            names = ", ".join(sorted({str(t) for t in rows["target"]}))
            lines.append(f"{self.metrics[metric].capitalize()} not recorded for {names} "
                         f"(0 of {int(rows['calls'].sum()):,} calls{self._why_missing(metric)}).")
        return lines

    def _why_missing(self, metric: str) -> str:
        if metric in STREAMED:
            found = self.calls.sql("SELECT count(*) FILTER (WHERE kind = 'stream') AS s, count(kind) AS k FROM calls")
            streamed, said = int(found["s"].iloc[0]), int(found["k"].iloc[0])
            return (": not in the source" if not said else ": not streamed" if not streamed
                    else ": not streamed, or not in the source")
        return ""

    def _throughput_findings(self) -> list[str]:
        table = self.throughput()
        total = table["n"].sum()
        first, last = self.span
        if first is None or last is None or first == last:
            return []
        seconds = (last - first).total_seconds()
        tokens = table["output_tokens"].fillna(0).sum()
        text = (f"Throughput over the run's {_duration(seconds)}: {_rate(total - 1, seconds, 'requests')}"
                + (f", {_rate(tokens, seconds, 'output tokens')}" if tokens else ""))
        if self.options.objectives:
            good = int(table["good"].sum())
            said = " and ".join(f"{SHORT[m]} ≤ {ms:,g} ms" for m, ms in self.options.objectives.items())
            low, high, _ = summary.rate_interval(good, int(total))
            text += (f"; goodput {_rate(good * (total - 1) / total, seconds, 'calls')}: {good / total:.1%} "
                     f"[{low:.1%}, {high:.1%}] of calls succeeded with {said}")
        return [text + "."]

    def _schedule_findings(self) -> list[str]:
        if self.burst:
            lag = f"median {self.send_lag['median']:,.0f} ms, p99 {self.send_lag['p99']:,.0f} ms"
            said = (f"All {self.n:,} requests were planned at one instant (a burst under the client's concurrency "
                    f"limit); each waited for a free slot ({lag})" if self.planned_span_s == 0 else
                    f"The calls record how long each waited before it was sent ({lag}), not when it was planned")
            return [said + ": times from the planned send include that wait, end-to-end times do not."]
        lines = []
        for row in self.schedule().itertuples():
            design = f" (design {row.design:g}/s)" if not math.isnan(row.design) else ""
            window = f" {row.window}" if pd.notna(row.window) else ""
            lines.append(f"Open loop{window}: planned {row.planned:.1f}/s{design}, achieved {row.achieved:.1f}/s; "
                         f"send lag median {row.lag_median:.2f} ms, p99 {row.lag_p99:.2f} ms.")
        if self.fell_behind:
            lines.append(f"The client fell behind its schedule: response times include up to "
                         f"{self.send_lag['max']:,.0f} ms of its own lateness (send lag p99 "
                         f"{self.send_lag['p99']:,.1f} ms); times from the planned send count it, end-to-end times "
                         "do not.")
        return lines

    def _time_findings(self) -> list[str]:
        lines = []
        tests, strata = self.time["tests"], [s for s in self.strata if s != "window"]
        for key, part in (tests.groupby(strata, sort=True) if strata else [((), tests)]):
            if not len(part):
                continue
            key = key if isinstance(key, tuple) else (key,)
            within = "".join(f", {name} {value}" for name, value in zip(strata, key))
            tested = part[part["p_value"].notna()]
            if not len(tested):
                lines.append(f"Windows by {self.options.by} ({self.options.tz}{within}): not tested, no target has "
                             "2 or more windows with 2 or more successful calls.")
                continue
            part = tested
            smallest = part.sort_values("p_holm").iloc[0]
            differ = sorted(map(str, part.loc[part["reject"], "target"].unique()))
            lines.append(f"Windows by {self.options.by} ({self.options.tz}{within}): "
                         + (f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''} across windows"
                            if differ else "no target's windows can be told apart (not a proof that they are alike)")
                         + f" (Kruskal-Wallis and Anderson-Darling, Holm over {len(part)} tests; smallest adjusted p = "
                           f"{smallest['p_holm']:.2g}).")
        for row in self.time["changes"].itertuples():
            if getattr(row, "changed", False):
                lines.append(f"{row.series} changed level at {row.at:%Y-%m-%d %H:%M}: median after/before "
                             f"{row.ratio:.2f} [{row.low:.2f}, {row.high:.2f}] (adjusted p = {row.p_holm:.2g}).")
        return lines

    # -- tables ---------------------------------------------------------------------------

    def summary_table(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """Per group: calls, error rate, and each metric's percentiles as text (one column per percentile)."""
        metrics = metrics or list(self.metrics)
        table = self._percentiles[self._percentiles["metric"].isin(metrics)].copy()
        table["text"] = [self.value(r) for r in table.itertuples()]
        table["column"] = table["metric"].map(SHORT) + " p" + table["percentile"].astype(str)
        wide = table.pivot_table(index=self.groups, columns="column", values="text", aggfunc="first", sort=False)
        order = [f"{SHORT[m]} p{p}" for m in metrics for p in PERCENTILES]
        wide = wide[[c for c in order if c in wide.columns]].reset_index()
        errors = self.errors()
        errors["error rate %"] = [stats.fmt_interval(r.error_rate * 100, r.low * 100, r.high * 100, ".1f")
                                  for r in errors.itertuples()]
        out = errors[[*self.groups, "n", "error rate %"]].rename(columns={"n": "calls"}).merge(wide, on=self.groups,
                                                                                              how="left")
        letters = self._letters()
        if letters is not None:
            out = out.merge(letters, on=self.groups, how="left").fillna({"group": ""})
        return out

    def windows_table(self) -> pd.DataFrame:
        """With ``by``: per target and window, the calls, the main metric's median and 95th percentile with their
        intervals (as text) and the error rate with its interval."""
        w = self.time["windows"]
        spec = ",.0f"
        text = lambda e, lo, hi: stats.fmt_interval(e, lo, hi, spec) if pd.notna(e) else "not recorded"  # noqa: E731
        return pd.DataFrame({
            "target": w["target"], self.options.by: w[self.options.by], "calls": w["calls"],
            f"{SHORT[self.main]} p50": [text(*r) for r in zip(w["p50"], w["p50_low"], w["p50_high"], strict=True)],
            f"{SHORT[self.main]} p95": [text(*r) for r in zip(w["p95"], w["p95_low"], w["p95_high"], strict=True)],
            "error rate %": [stats.fmt_interval(r * 100, lo * 100, hi * 100, ".1f")
                             for r, lo, hi in zip(w["error_rate"], w["error_low"], w["error_high"], strict=True)]})

    def _letters(self) -> pd.DataFrame | None:
        """The main metric's group letters per target (and stratum), or None without a ranking."""
        rows = [{**where, "target": r.target, "group": r.letters or ""}
                for where, result in self.rankings.get(self.main, []) for r in result.table.itertuples()]
        return pd.DataFrame(rows, columns=[*self.groups, "group"]) if rows else None

    def terminal(self) -> str:
        """What ``lab analyze`` prints: the findings, then per target the main metric's percentiles with their
        intervals, the error rate, time to first token and the ranking groups."""
        first = "ttft_from_planned_ms" if self.open_loop else "ttft_ms"
        table = self.summary_table([m for m in (self.main, first) if m in self.metrics])
        drop = [c for c in table.columns if c.startswith(SHORT[first]) and not c.endswith("p50")]
        text = table.drop(columns=drop).to_string(index=False)
        notes = [f"- {line}" if not line.startswith("  ") else f"  {line}" for line in self.findings()]
        return "\n".join([*notes, "", f"{self.metrics[self.main]}, ms: percentiles with 95% distribution-free "
                          "intervals (group: targets that share a letter cannot be told apart)", text])

    def as_json(self) -> dict[str, Any]:
        """Everything computed, for machines: plain lists and numbers (never NaN: null)."""
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]

        out = {"run": self.run_id, "label": self.label, "calls": self.n, "targets": self.targets,
               "groups": self.groups, "metrics": self.metrics, "main": self.main, "findings": self.findings(),
               "percentiles": records(self.percentiles()), "errors": records(self.errors()),
               "throughput": records(self.throughput()), "withheld": self.withheld(),
               "rankings": {m: [{"where": where, "table": records(r.table), "pairs": records(r.pairs)}
                                for where, r in found] for m, found in self.rankings.items()}}
        if self.baseline:
            out["baseline"] = {m: [{"where": w, "table": records(t)} for w, t in found]
                               for m, found in self.baseline.items()}
        if self.open_loop:
            out["schedule"] = records(self.schedule())
            out["send_lag_ms"] = self.send_lag
        if self.time:
            out["time"] = {k: records(v) for k, v in self.time.items()}
        if self.pairs:
            out["pairs"] = [{"a": a, "b": b, "where": w, "metric": r.metric, "verdict": r.verdict,
                             "effects": {k: _plain(v) for k, v in r.effects.items()}} for a, b, w, r in self.pairs]
        return out

    # -- figures --------------------------------------------------------------------------

    def distributions(self, points: int = 200) -> pd.DataFrame:
        """Per target and metric, the successful calls' quantiles at ``points`` shares: an ECDF that stays the
        same size whatever the number of calls (computed by DuckDB; beyond :data:`EXACT_FIGURE_UP_TO` calls by
        its t-digest, ``approx_quantile``, which a figure cannot tell from the exact one)."""
        shares = [float(s) for s in (np.arange(points) + 0.5) / points]
        exact = self.n <= EXACT_FIGURE_UP_TO
        quantile, cast = ("quantile_cont", "DOUBLE") if exact else ("approx_quantile", "FLOAT")
        rows = []
        for metric in list(self.metrics)[:4]:
            value = summary.value_sql(metric)
            found = self.calls.con.sql(f"SELECT target, {quantile}({value}, {shares}::{cast}[]) FROM calls "
                                       "WHERE status = 'ok' GROUP BY target ORDER BY target").fetchall()
            for target, qs in found:
                if qs and qs[0] is not None:
                    rows += [{"metric": metric, "target": target, "share": s, "value": v}
                             for s, v in zip(shares, qs, strict=True)]
        return pd.DataFrame(rows, columns=["metric", "target", "share", "value"])

    def figure(self):  # noqa: ANN201 (a matplotlib figure)
        """Distributions per target (ECDF, log scale), one panel per metric."""
        import matplotlib.pyplot as plt

        from lab.analysis import plots

        data = self.distributions()
        metrics = list(dict.fromkeys(data["metric"]))
        fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(3.4 * max(len(metrics), 1) + 1.8, 3.3),
                                 squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=False):
            for target, group in data[data["metric"] == metric].groupby("target", sort=True):
                ax.plot(group["value"], group["share"], label=target, drawstyle="steps-post")
            ax.set_xscale("log")
            plots.plain_log_ticks(ax.xaxis, minor=False)
            ax.tick_params(axis="x", labelrotation=30)
            ax.set_xlabel(f"{self.metrics[metric]}, ms (log)")
            ax.set_ylabel("share of calls at or below")
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
        fig.suptitle(f"Run {self.run_id} ({self.label}): distributions per target", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1 - 1.8 / fig.get_figwidth(), 1))
        return fig


def _within(where: Mapping[str, Any]) -> str:
    """A stratum as words for a finding: " (task draft, kind stream)", or nothing."""
    return f" ({', '.join(f'{k} {v}' for k, v in where.items())})" if where else ""


def _listed(names: list[str], most: int = 4) -> str:
    """Names joined, the list cut after ``most`` ("a, b, c, d and 7 more")."""
    return ", ".join(names) if len(names) <= most + 1 else f"{', '.join(names[:most])} and {len(names) - most} more"


def _rate(count: float, seconds: float, unit: str) -> str:
    """A rate in the largest of per second, minute, hour or day that reads 0.1 or more: "0.38 requests/s"."""
    units = ((1, "s"), (60, "min"), (3600, "h"), (86400, "day"))
    per, name = next(((p, n) for p, n in units if count / seconds * p >= 0.1), units[-1])
    rate = count / seconds * per
    return f"{rate:,.{0 if rate >= 100 else 1 if rate >= 10 else 2}f} {unit}/{name}"


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.1f} s"


def _plain(value: Any) -> Any:
    """A value JSON can hold: NaN and infinities as None (an unbounded bound is null), numpy as Python."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value
