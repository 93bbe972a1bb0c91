"""Pages a reader can share, built directly from an analysis: ``lab analyze`` and ``lab compare``.

One form for both, the form of the notebooks' pages (:mod:`lab.report`): the title and the question,
the data banner (every source SYNTHETIC, REAL or MIXED, with its dates), the findings, then figures
and tables, the method and the limits. A page is one file: figures are inline PNG, nothing is loaded
from the network, and wide tables scroll inside the page rather than being cut off. Nothing here
executes a notebook, so a page takes as long as its figures.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from lab.analysis.analyze import Analysis

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72em; margin: 2em auto;
       padding: 0 1em; color: #1e293b; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.question { color: #334155; }
.findings { border-left: 4px solid #2563eb; padding: .2em .8em; margin: 1em 0; }
.findings li { margin: .25em 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; margin: .4em 0 1em; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
td, th { border: 1px solid #cbd5e1; padding: 2px 6px; text-align: right; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #475569; }
"""


@dataclass(frozen=True)
class Part:
    """A piece of a page's body: a heading, a paragraph, a table or a figure, as HTML."""

    html: str


def heading(text: str) -> Part:
    return Part(f"<h2>{html.escape(text)}</h2>")


def paragraph(text: str) -> Part:
    return Part(f"<p>{html.escape(text)}</p>")


def table(frame: pd.DataFrame, caption: str) -> Part:
    """A table with readable column names, its caption, scrolling sideways when wider than the page."""
    body = frame.to_html(index=False, escape=True, na_rep="", border=0)
    body = body.replace('<table class="dataframe">', f"<table><caption>{html.escape(caption)}</caption>", 1)
    return Part(f'<div class="scroll">{body}</div>')


def figure(fig: Any, caption: str) -> Part:
    """A matplotlib figure as an inline PNG with its caption (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return Part(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def page(title: str, question: str, sources: Sequence[Any], findings: Iterable[str], parts: Iterable[Part]) -> str:
    """A whole page: title, question, data banner (``sources``: :class:`lab.report.Source`), findings, parts."""
    from lab.report import banner_html

    items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in findings)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<h1>{html.escape(title)}</h1><p class=\"question\">{html.escape(question)}</p>\n"
            f"{banner_html(sources)}\n<h2>Findings</h2><ul class=\"findings\">{items}</ul>\n"
            + "\n".join(p.html for p in parts) + "\n</body></html>\n")


def write(text: str, path: Path | str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


# -- the analysis of a run ------------------------------------------------------------------------

ANALYSIS_QUESTION = ("What does this run say about each target: how fast it starts answering, how fast it streams, "
                     "how long a call takes end to end, how often it fails, and which targets can be told apart?")

ANALYSIS_METHOD = (
    "Each call is one record of the run. Times run from the moment a request is handed to the HTTP transport to "
    "the arrival of the bytes in question: the first generated content (time to first token), the last byte (end "
    "to end); time per output token is (end to end - time to first token) / (output tokens - 1); the longest "
    "silence is the longest gap between two content chunks. In an open-loop run each call also records how late "
    "it was sent, and times from the planned send add that lateness. Percentiles carry distribution-free 95% "
    "intervals from order statistics, computed where the data live (DuckDB); a bound the sample is too small to "
    "give reads \"unbounded\", a metric no call recorded reads \"not recorded\". Error rates carry Wilson "
    "intervals, or exact Clopper-Pearson ones where fewer than five calls are on one side. Targets are ranked by "
    "their median: every pair is tested with Brunner-Munzel (Mann-Whitney U where it is undefined), Holm-adjusted "
    "over all pairs, and targets that share a letter cannot be told apart at the 5% level. Streamed and "
    "non-streamed calls, and tasks, are analysed apart: they are different measurements. Over time (--by): each "
    "window's percentiles with the same intervals; per target, whether its windows share one distribution "
    "(Kruskal-Wallis, and Anderson-Darling with a permutation p-value), Holm over each stratum's tests; and "
    "whether its level moved once (Pettitt's statistic on the medians per time bin, permutation p-value, Holm over "
    "the targets), sized as the ratio of the medians after and before with its interval.")

ANALYSIS_LIMITS = (
    "The intervals are for the run as collected: they say how precisely this run is measured, not how another "
    "day would look. Calls within a session are treated as independent; slowness that comes in bursts makes the "
    "intervals too narrow. A ranking that finds no difference is not evidence of equivalence. A synthetic run "
    "measures the emulator's configured latencies, not a provider.")


def analysis(result: Analysis) -> str:
    """The page of ``lab analyze``: findings first, then the figures and tables of :class:`Analysis`."""
    from lab import report
    from lab.analysis.analyze import SHORT

    label = f"run {result.run_id} ({result.label})"
    parts = [figure(result.figure(), f"Distributions per target: share of successful calls at or below each "
                                     f"time, {label}"),
             heading("Per target"),
             table(result.summary_table(), f"Calls, error rate (95% interval) and percentiles with 95% "
                                           f"distribution-free intervals, ms: {label}")]
    errors = result.errors()
    if errors["errors"].sum():
        shown = errors[errors["errors"] > 0][[*result.groups, "n", "errors", "method", "error types"]]
        parts.append(table(shown.rename(columns={"n": "calls", "method": "interval"}), f"Errors by kind: {label}"))
    for metric, found in result.rankings.items():
        for where, ranked in found:
            within = ", ".join(f"{k} {v}" for k, v in where.items())
            shown = ranked.table.assign(median=lambda f: f["median"].map(lambda v: f"{v:,.1f}"))
            parts.append(table(shown, f"Ranking by median {result.metrics[metric]}{' (' + within + ')' if within else ''}"
                                      f": targets that share a letter cannot be told apart: {label}"))
    for metric, found in result.baseline.items():
        for where, shown in found:
            within = ", ".join(f"{k} {v}" for k, v in where.items())
            parts.append(table(shown, f"Against {result.options.baseline}, median {result.metrics[metric]}"
                                      f"{' (' + within + ')' if within else ''}: {label}"))
    throughput = result.throughput()
    shown = throughput[[*result.groups, "n", "span_s", "requests_per_s", "output_tokens_per_s",
                        *(["goodput_per_s", "good_share"] if result.options.objectives else [])]].rename(
        columns={"n": "calls", "span_s": "span s", "requests_per_s": "requests/s", "output_tokens_per_s": "tokens/s",
                 "goodput_per_s": "goodput/s", "good_share": "share met"})
    parts.append(table(shown.round(3), f"Throughput achieved per target: {label}"))
    if result.open_loop:
        parts.append(table(result.schedule().round(2).rename(columns={
            "design": "design /s", "planned": "planned /s", "achieved": "achieved /s", "lag_median": "lag median ms",
            "lag_p99": "lag p99 ms", "lag_max": "lag max ms", "late": "share late > 2 ms"}),
            f"Open-loop schedule: {label}"))
    if result.time:
        parts += _time_parts(result, label)
    if result.pairs:
        parts.append(heading("Every pair"))
        parts.append(table(pd.DataFrame([{"A": a, "B": b, **w, "metric": SHORT[r.metric], "verdict": r.verdict}
                                          for a, b, w, r in result.pairs]), f"Every pair of targets: {label}"))
    parts += [heading("Method"), paragraph(ANALYSIS_METHOD), heading("Limits"), paragraph(ANALYSIS_LIMITS)]
    return page(f"Analysis of run {result.run_id}", ANALYSIS_QUESTION, report.sources(result.run_id).items,
                result.findings(), parts)


MAX_WINDOWS = 31
"""Windows up to which the page shows a table of them (a month of days, a week of hours, every hour of a day)."""


def _time_parts(result: Analysis, label: str) -> list[Part]:
    from lab.analysis import timeline

    found = result.time
    parts = [heading(f"Over time, by {result.options.by} ({result.options.tz})")]
    if len(found["over_time"]):
        parts.append(figure(timeline.figure(found["over_time"], label=result.label),
                            f"Median {result.metrics[result.main]} over time with its 95% interval: {label}"))
    windows = result.windows_table()
    if windows[result.options.by].nunique() <= MAX_WINDOWS:
        parts.append(table(windows, f"Per window, ms, 95% intervals: {label}"))
    else:
        parts.append(paragraph(f"{windows[result.options.by].nunique():,} windows: too many for a table here (the "
                               "figure shows them over time; `lab analyze --json` gives every window)."))
    if len(found["tests"]):
        parts.append(table(found["tests"], f"Do the windows share one distribution? {label}"))
    if len(found["changes"]):
        parts.append(table(found["changes"], f"Change points: {label}"))
    return parts


# -- two runs compared ----------------------------------------------------------------------------

COMPARISON_QUESTION = "Did B get slower than A? Where do the two runs differ, metric by metric, and by how much?"

COMPARISON_METHOD = (
    "Per metric (and group), on the successful calls: each side's median; the ratio of medians B/A with a "
    "percentile-bootstrap 95% interval; P(B slower), the chance that a call of B takes longer than one of A, with "
    "its bootstrap interval; a test for the body (Brunner-Munzel, Mann-Whitney U where it is undefined) and one for "
    "the tail (Fisher's exact test on the calls over the pooled 95th percentile), each with the power it had to "
    "see B 10% slower. B is called equivalent to A only when the 90% interval of the ratio of medians lies within "
    "±10% (two one-sided tests at 5%, which is why that interval is 90%, not 95%). Error rates carry Wilson "
    "intervals.")

COMPARISON_LIMITS = (
    "Two runs differ in more than their targets: the day, the network, the machine. A difference says the runs "
    "differ, not why. Calls within a run are treated as independent. \"Inconclusive\" is not \"the same\".")


def comparison(result: Any) -> str:
    """The page of ``lab compare`` (:class:`lab.analysis.compare.Runs`), in the form of the analysis page."""
    from lab import report

    a, b = result.runs
    label = f"{b} ({result.labels[1]}) against {a} ({result.labels[0]})"
    errors = result.errors.assign(**{"error rate % (95%)": [
        f"{r.error_rate * 100:.1f} [{r.low * 100:.1f}, {r.high * 100:.1f}]" for r in result.errors.itertuples()]})
    parts = [figure(result.figure(), f"Distributions of each run's successful calls: {label}"),
             heading("Metric by metric"), table(result.table(), f"Each metric compared: {label}"),
             table(errors[["side", "n", "errors", "error rate % (95%)"]].rename(columns={"side": "run", "n": "calls"}),
                   f"Errors: {label}"),
             heading("Method"), paragraph(COMPARISON_METHOD), heading("Limits"), paragraph(COMPARISON_LIMITS)]
    sources = report.sources(*dict.fromkeys(result.runs)).items
    return page(f"{b} against {a}", COMPARISON_QUESTION, sources, result.findings(), parts)
