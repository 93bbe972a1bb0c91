"""``lab analyze --run RUN``: one report for any run, whatever collected it.

Per target and task: time to first token, time per output token, end to end and the longest
mid-stream silence, each percentile with a distribution-free interval (:mod:`lab.analysis.stats`); error
rates with Wilson intervals; for open-loop runs, the achieved against the planned rate, the send
lag, and response time counted from the planned send; every pair of targets compared by
:mod:`lab.analysis.compare` (an effect size with an interval, calibrated tests, a one-line verdict).

The report is a notebook that :func:`notebook` writes (the committed
``notebooks/07_analyze_a_run.ipynb`` is its output on a demo run); ``lab analyze`` executes it
with the run's id and renders it like the other notebooks: findings first, code hidden.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lab.analysis import compare, stats
from lab.store import MissingRecord, Run

METRICS = {
    "ttft_ms": "time to first token",
    "tpot_ms": "time per output token",
    "latency_ms": "end to end",
    "max_gap_ms": "longest silence mid-stream",
}
FROM_PLANNED = {"ttft_from_planned_ms": "time to first token from the planned send",
                "response_ms": "response time from the planned send"}
PERCENTILES = (50, 95, 99)
NOTEBOOK = "07_analyze_a_run"


def load(run: Run | str) -> pd.DataFrame:
    """The run's call records: a workload's planned calls (:func:`lab.collect.experiment.load`), or every
    record of any other run (imported, proxied); ``target`` and ``task`` filled in where a source has
    none (target: provider/model; task: "all"), and for open-loop calls the times from the planned send."""
    from lab.collect import experiment

    run = run if isinstance(run, Run) else Run(run)
    manifest = run.manifest
    kind = experiment.kind_of(manifest)
    frame = experiment.load(run) if kind == "workload" else run.frame()
    if frame.empty:
        raise MissingRecord(f"run {run.id!r} holds no call records to analyse"
                            + (" (a hedging run: its outcomes are analysed in notebook 04)" if kind == "hedging"
                               else ""))
    frame = frame.copy()
    frame["target"] = frame["target"].fillna(frame["provider"] + "/" + frame["model"])
    frame["task"] = frame["task"].fillna("all")
    lag = frame["send_lag_ms"]
    frame["response_ms"] = lag + frame["latency_ms"]
    frame["ttft_from_planned_ms"] = lag + frame["ttft_ms"]
    return frame


@dataclass
class Analysis:
    """Everything the report shows about one run, computed once."""

    run_id: str
    frame: pd.DataFrame = field(init=False)
    manifest: dict = field(init=False)

    def __post_init__(self) -> None:
        run = Run(self.run_id)
        self.manifest = run.manifest
        self.frame = load(run)

    @property
    def open_loop(self) -> bool:
        return bool(self.frame["send_lag_ms"].notna().any())

    @property
    def metrics(self) -> dict[str, str]:
        """The metrics this run has values for (times from the planned send first, for open-loop runs)."""
        wanted = {**(FROM_PLANNED if self.open_loop else {}), **METRICS}
        return {m: label for m, label in wanted.items() if self.frame[m].notna().any()}

    @property
    def groups(self) -> list[str]:
        return ["window", "target", "task"] if self.open_loop else ["target", "task"]

    @property
    def synthetic(self) -> str:
        flags = self.frame["synthetic"].astype(bool)
        return "SYNTHETIC" if flags.all() else "REAL" if not flags.any() else "MIXED"

    @functools.cached_property
    def _percentiles(self) -> pd.DataFrame:
        return stats.interval_summary(self.frame, self.groups, list(self.metrics), PERCENTILES)

    def percentiles(self) -> pd.DataFrame:
        """One row per group, metric and percentile, with its interval (:func:`lab.analysis.stats.interval_summary`)."""
        return self._percentiles.copy()

    def percentile_table(self) -> pd.DataFrame:
        """The percentiles as text, "estimate [low, high]", one column per metric and percentile."""
        table = self.percentiles()
        table["value"] = [stats.fmt_interval(r.estimate, r.low, r.high, ",.1f" if r.metric == "tpot_ms" else ",.0f")
                          for r in table.itertuples()]
        table["column"] = table["metric"].map(lambda m: m.removesuffix("_ms")) + " p" + table["percentile"].astype(str)
        wide = table.pivot_table(index=self.groups, columns="column", values="value", aggfunc="first", sort=False)
        return wide[[c for c in dict.fromkeys(table["column"])]].reset_index()

    def errors(self) -> pd.DataFrame:
        table = stats.error_rates(self.frame, self.groups)
        table["error rate"] = [stats.fmt_interval(r.error_rate * 100, r.low * 100, r.high * 100, ".1f") + " %"
                               for r in table.itertuples()]
        kinds = self.frame[self.frame["status"].ne("ok")].groupby(self.groups, observed=True)["error_type"].agg(
            lambda s: ", ".join(f"{k} {n}" for k, n in s.value_counts().items()))
        return table.merge(kinds.rename("error types").reset_index(), on=self.groups, how="left").fillna(
            {"error types": ""})[[*self.groups, "n", "errors", "error rate", "error types"]]

    @functools.cached_property
    def _pairs(self) -> list[tuple[str, str, dict, compare.Comparison]]:
        found = []
        by = [g for g in self.groups if g != "target"]
        for a, b in itertools.combinations(sorted(self.frame["target"].unique()), 2):
            left, right = (self.frame[self.frame["target"] == t] for t in (a, b))
            for where, result in compare.compare_frames(left, right, by=by, metrics=list(self.metrics), names=(a, b)):
                found.append((a, b, where, result))
        return found

    def pairs(self) -> list[tuple[str, str, dict, compare.Comparison]]:
        """Every pair of targets, compared per task (and window) on every metric (computed once)."""
        return self._pairs

    def pair_table(self) -> pd.DataFrame:
        rows = []
        for a, b, where, result in self.pairs():
            e = result.effects
            if "median_ratio" not in e:
                continue
            rows.append({"A": a, "B": b, **where, "metric": result.metric, "n A": e["n_a"], "n B": e["n_b"],
                         "median B/A": stats.fmt_interval(e["median_ratio"], e["median_ratio_low"],
                                                          e["median_ratio_high"], ".2f"),
                         "P(B slower)": stats.fmt_interval(e["p_b_slower"], e["p_b_slower_low"],
                                                           e["p_b_slower_high"], ".2f"),
                         "body p": f"{e['body_p']:.2g}", "tail p": f"{e['tail_p']:.2g}",
                         "power, 10% shift": f"{e['body_power']:.0%} / {e['tail_power']:.0%}",
                         "verdict": result.verdict.split(": ", 1)[1]})
        return pd.DataFrame(rows)

    def schedule(self) -> pd.DataFrame:
        """Open loop: per session, the design's rate, the rate its schedule planned (Poisson arrivals vary
        around the design's), the rate achieved, and the send lag."""
        from lab.collect.workload.plan import Slot

        designed = {Slot(e.get("window"), e.get("rate_per_s")).label: e.get("rate_per_s")
                    for e in self.manifest.get("sessions", []) if e.get("rate_per_s")}
        rows = []
        for window, group in self.frame.groupby("window", sort=False, observed=True):
            sent = group["started_at"].sort_values()
            span = (sent.iloc[-1] - sent.iloc[0]).total_seconds()
            planned = group["scheduled_at"].sort_values()
            planned_span = (planned.iloc[-1] - planned.iloc[0]).total_seconds()
            lag = group["send_lag_ms"]
            rows.append({"window": window, "requests": len(group), "design rate /s": designed.get(window, math.nan),
                         "planned rate /s": (len(group) - 1) / planned_span if planned_span else math.nan,
                         "achieved rate /s": (len(group) - 1) / span if span else math.nan,
                         "send lag median ms": lag.median(), "send lag p99 ms": lag.quantile(0.99),
                         "send lag max ms": lag.max(), "late by over 2 ms": f"{(lag > 2).mean():.1%}"})
        return pd.DataFrame(rows)

    def findings(self) -> str:
        """The findings, in Markdown, every number computed here."""
        f = self.frame
        lines = [f"**Run {self.run_id}** ({self.synthetic}): {len(f):,} calls to {f['target'].nunique()} targets "
                 f"({', '.join(sorted(f['target'].unique()))}) over {f['task'].nunique()} tasks; "
                 f"{int(f['status'].ne('ok').sum())} failed."]
        main = next(iter(self.metrics))
        table = self.percentiles()
        for target, rows in table[(table["metric"] == main) & (table["percentile"] == 50)].groupby("target"):
            parts = [f"{r.task} {stats.fmt_interval(r.estimate, r.low, r.high)} ms" for r in rows.itertuples()]
            lines.append(f"- {target}, median {self.metrics[main]}: " + "; ".join(parts))
        verdicts = [f"- {a} vs {b}{' (' + ', '.join(f'{v}' for v in where.values()) + ')' if where else ''}: "
                    f"{r.verdict}" for a, b, where, r in self.pairs() if r.metric in (main, "tpot_ms")]
        lines += verdicts
        if self.open_loop:
            for row in self.schedule().to_dict("records"):
                lines.append(f"- open loop {row['window']}: planned {row['planned rate /s']:.1f}/s (design "
                             f"{row['design rate /s']:g}/s), achieved "
                             f"{row['achieved rate /s']:.1f}/s; send lag median {row['send lag median ms']:.2f} ms, "
                             f"p99 {row['send lag p99 ms']:.2f} ms")
        return "\n".join(lines)

    def figure(self):  # noqa: ANN201 (a matplotlib figure)
        """Distributions per target (ECDF, log scale), one panel per metric."""
        import matplotlib.pyplot as plt

        from lab.analysis import plots

        metrics = list(self.metrics)[:4]
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
        ok = self.frame[self.frame["status"].eq("ok")]
        for ax, metric in zip(axes[0], metrics):
            for target, group in ok.groupby("target"):
                plots.ecdf(ax, group[metric], label=target)
            ax.set_xscale("log")
            plots.plain_log_ticks(ax.xaxis, minor=False)
            ax.set_xlabel(f"{self.metrics[metric]}, ms (log)")
            ax.set_ylabel("share of calls at or below")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"Run {self.run_id} ({self.synthetic}): distributions per target", fontsize=10)
        fig.tight_layout()
        return fig


_CELLS = [
    ("markdown", None, """# Analysis of a run

What does this run say about each target: how fast it starts answering, how fast it streams, how long
a call takes end to end and how often it fails, per task, and does one target differ from another?"""),
    ("code", "parameters", 'RUN_ID = "{run_id}"  # any run in data/runs: collected, imported or proxied'),
    ("code", None, """from IPython.display import Markdown

from lab import report
from lab.analysis import analyze as analysis

result = analysis.Analysis(RUN_ID)
report.sources(RUN_ID)"""),
    ("code", "findings", "Markdown(result.findings())"),
    ("markdown", None, """## Method

Each call is one record of the run. Times run from the moment a request is handed to the HTTP transport
to the arrival of the bytes in question: the first generated content (TTFT), the last byte (end to end);
time per output token is (end to end - TTFT) / (output tokens - 1); the longest silence is the longest gap
between two content chunks. In an open-loop run the schedule rules: each call also records how late it was
sent, and times *from the planned send* add that lateness, so a client that fell behind cannot hide it.
Percentiles carry distribution-free 95% intervals (order statistics); a bound the sample is too small to
give reads "unbounded". Error rates carry Wilson intervals. Two targets are compared by the ratio of their
medians (bootstrap interval), P(B slower than A), a rank test for the body (Brunner-Munzel) and an exact
test for the tail (calls over the pooled p95), with the power each had to see a 10% shift; "equivalent"
needs a TOST within ±10%."""),
    ("code", None, """result.percentile_table().style.hide(axis="index").set_uuid("percentiles").set_caption(
    f"Percentiles with 95% intervals, ms: run {RUN_ID} ({result.synthetic})")"""),
    ("code", None, """import matplotlib.pyplot as plt

result.figure()
plt.show()"""),
    ("code", None, """result.errors().style.hide(axis="index").set_uuid("errors").set_caption(
    f"Errors with 95% Wilson intervals: run {RUN_ID} ({result.synthetic})")"""),
    ("code", None, """pairs = result.pair_table()
pairs.style.hide(axis="index").set_uuid("pairs").set_caption(f"Every pair of targets: run {RUN_ID} ({result.synthetic})") \\
    if len(pairs) else Markdown("One target: nothing to compare.")"""),
    ("code", None, """result.schedule().style.hide(axis="index").set_uuid("schedule").format(precision=2).set_caption(
    f"Open-loop schedule: run {RUN_ID}") if result.open_loop else Markdown("Serial run: no schedule to check.")"""),
    ("markdown", None, """## Limits

The intervals are for the run as collected: one session per window, so they say how precisely *this*
session is measured, not how another day would look. Calls within a session are treated as independent;
slowness that comes in bursts makes the intervals too narrow. A synthetic run measures the emulator's
configured latencies, not a provider."""),
]


def notebook(run_id: str) -> Any:
    """The analysis notebook for ``run_id`` (an ``nbformat`` notebook, not executed)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    for kind, tag, source in _CELLS:
        text = source.format(run_id=run_id) if tag == "parameters" else source
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        if tag:
            cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb
