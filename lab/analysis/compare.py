"""Did this change make things slower? Is provider B worse than A? Two samples of a metric, compared.

:func:`compare` answers for one metric: each side's median, p95 and p99 with distribution-free
intervals (:func:`lab.analysis.stats.interval_summary`; "not estimable at this n" where the data cannot
bound them), the difference and the ratio of medians with percentile-bootstrap intervals
(``scipy.stats.bootstrap``), P(B slower than A) (the common-language effect size of the
Mann-Whitney U statistic, with a bootstrap interval), a test for the body (Brunner-Munzel,
``scipy.stats.brunnermunzel``: no equal-spread assumption; Mann-Whitney U where it is undefined) and one for the tail (Fisher's exact
test, ``scipy.stats.fisher_exact``, on how many calls of each side exceed the pooled 95th
percentile), each with the power it had to see B 10% slower (computed from A's own calls,
:func:`lab.analysis.power.power`), and
equivalence by interval inclusion (the two one-sided tests at 5% are equivalent to a 90% interval
of the ratio of medians lying within the margin, ±10%). Its one-line verdict never says "no
difference" without that equivalence.

:func:`compare_frames` does this per group (``target``, ``task``) and metric, on any two frames of
call records, whatever produced them (two runs or two groups of one run: the lab, a proxy, an
import from AIPerf).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from lab.analysis import power, stats

METRICS = ("ttft_ms", "tpot_ms", "latency_ms")
BY = ("target", "task", "window", "provider", "model", "kind")
"""The columns two runs can be compared within."""
LABELS = {"ttft_ms": "time to first token", "tpot_ms": "time per output token", "latency_ms": "end to end",
          "max_gap_ms": "longest silence mid-stream", "response_ms": "response time from the planned send"}
SHIFT = 0.10
"""The shift each test's power is reported for, and the equivalence margin (B within 10% of A)."""
ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """One metric compared: ``table`` has one row per side (quantiles with intervals) and ``effects``
    one row of differences, effect sizes, tests and powers; ``verdict`` says it in one line."""

    metric: str
    table: pd.DataFrame
    effects: pd.Series
    verdict: str


def _body_test(x: np.ndarray, y: np.ndarray) -> float:
    """Brunner-Munzel; where it is undefined (samples that do not overlap, or without spread), Mann-Whitney U."""
    p = float(stats.brunnermunzel_pvalues(y, x))
    if math.isnan(p):
        p = float(stats.mannwhitney_pvalues(y, x))
    return 1.0 if math.isnan(p) else p


def _tail_test(x: np.ndarray, y: np.ndarray) -> float:
    """Fisher's exact test on how many calls of each side exceed the pooled 95th percentile."""
    return float(stats.exceedance_test(y, x, np.quantile(np.concatenate([x, y]), 0.95))["p_value"])


def compare(a: Sequence[float], b: Sequence[float], *, metric: str = "latency_ms", names: tuple[str, str] = ("A", "B"),
            confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> Comparison:
    """Compare the values of one metric of two independent samples (NaN dropped; see the module docstring)."""
    x = np.asarray(a, float)
    y = np.asarray(b, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    frame = pd.DataFrame({"side": [names[0]] * len(x) + [names[1]] * len(y), metric: np.concatenate([x, y])})
    table = stats.interval_summary(frame, ["side"], [metric], (50, 95, 99), confidence=confidence)
    effects = pd.Series({"n_a": len(x), "n_b": len(y)}, dtype=object)
    if min(len(x), len(y)) < 2:
        return Comparison(metric, table, effects, f"{metric}: too few values to compare (n = {len(x)}, {len(y)})")
    rng = np.random.default_rng(seed)
    ratio = lambda p, q, axis=-1: np.median(q, axis) / np.median(p, axis)  # noqa: E731
    for name, statistic in (("median_difference", lambda p, q, axis=-1: np.median(q, axis) - np.median(p, axis)),
                            ("median_ratio", ratio),
                            ("p_b_slower", lambda p, q, axis=-1: scipy_stats.mannwhitneyu(
                                q, p, axis=axis, method="asymptotic").statistic / (p.shape[axis] * q.shape[axis]))):
        ci = scipy_stats.bootstrap((x, y), statistic, method="percentile", confidence_level=confidence,
                                   n_resamples=n_resamples, vectorized=True, rng=rng).confidence_interval
        effects[name], effects[f"{name}_low"], effects[f"{name}_high"] = float(statistic(x, y)), ci.low, ci.high
    effects["body_p"] = _body_test(x, y)
    effects["tail_p"] = _tail_test(x, y)
    found = power.power(x, len(y), shift=SHIFT, alpha=ALPHA)
    effects["body_power"], effects["tail_power"] = found["body"], found["tail"]
    tost = scipy_stats.bootstrap((x, y), ratio, method="percentile", confidence_level=1 - 2 * ALPHA,
                                 n_resamples=n_resamples, vectorized=True, rng=rng).confidence_interval
    effects["equivalence_low"], effects["equivalence_high"] = tost.low, tost.high
    effects["equivalent"] = bool(1 / (1 + SHIFT) < tost.low and tost.high < 1 + SHIFT)
    return Comparison(metric, table, effects, verdict(metric, effects, names))


def verdict(metric: str, e: pd.Series, names: tuple[str, str]) -> str:
    """One line: a difference only when a test finds one; "no difference" only when equivalence is shown."""
    a, b = names
    ratio = f"median {e['median_ratio'] - 1:+.0%} [{e['median_ratio_low'] - 1:+.0%}, {e['median_ratio_high'] - 1:+.0%}]"
    if e["body_p"] <= ALPHA or e["tail_p"] <= ALPHA:
        slower = e["median_ratio"] > 1 if e["body_p"] <= ALPHA else e["p_b_slower"] > 0.5
        where = "in the body" if e["body_p"] <= ALPHA else "in the tail"
        return (f"{metric}: {b} is {'slower' if slower else 'faster'} than {a} {where} ({ratio}, "
                f"P({b} slower) {e['p_b_slower']:.2f}; body p = {e['body_p']:.2g}, tail p = {e['tail_p']:.2g})")
    if e["equivalent"]:
        return (f"{metric}: {b} and {a} are equivalent within ±{SHIFT:.0%} ({ratio}; 90% interval of the ratio "
                f"{e['equivalence_low']:.2f} to {e['equivalence_high']:.2f})")
    return (f"{metric}: inconclusive: no difference found, and equivalence within ±{SHIFT:.0%} not shown ({ratio}; "
            f"power for a {SHIFT:.0%} shift: body {e['body_power']:.0%}, tail {e['tail_power']:.0%})")


def compare_frames(a: pd.DataFrame, b: pd.DataFrame, *, by: Sequence[str] = (), metrics: Sequence[str] = METRICS,
                   names: tuple[str, str] = ("A", "B"), seed: int = 0, **options: float) -> list[tuple[dict, Comparison]]:
    """:func:`compare` per group (the ``by`` columns both frames share) and metric, on successful calls."""
    a, b = a[a["status"].eq("ok")], b[b["status"].eq("ok")]
    groups = [()] if not by else sorted(set(map(tuple, a[list(by)].astype(str).to_numpy())) &
                                        set(map(tuple, b[list(by)].astype(str).to_numpy())))
    out = []
    for group in groups:
        where = dict(zip(by, group))
        ga, gb = _pick(a, where), _pick(b, where)
        for metric in metrics:
            if metric in ga and metric in gb and ga[metric].notna().any() and gb[metric].notna().any():
                out.append((where, compare(ga[metric], gb[metric], metric=metric, names=names, seed=seed, **options)))
    return out


def _pick(frame: pd.DataFrame, where: dict[str, str]) -> pd.DataFrame:
    return frame[np.logical_and.reduce([frame[c].astype(str).eq(v) for c, v in where.items()])] if where else frame


def error_comparison(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """Each side's error rate with its Wilson interval (:func:`lab.analysis.stats.error_rates`)."""
    both = pd.concat([a.assign(side=names[0]), b.assign(side=names[1])], ignore_index=True)
    return stats.error_rates(both, ["side"])


class Runs:
    """Two runs compared (``lab compare``): per group (``by``) and metric a :class:`Comparison`, and each side's
    error rate; the findings, a table, JSON and a figure from them, computed once."""

    def __init__(self, run_a: str, run_b: str, *, by: Sequence[str] = (), metrics: Sequence[str] = METRICS) -> None:
        from lab.analysis.calls import Calls

        self.runs = (run_a, run_b)
        self.names = (run_a, run_b) if run_a != run_b else ("A", "B")
        self.by = list(by)
        calls = [Calls(r) for r in self.runs]
        self.labels = [c.label for c in calls]
        frames = []
        for c in calls:
            wanted = [m for m in metrics if m in c.columns]
            frames.append(c.frame([*self.by, "status", *wanted]))
        self.frames = frames
        self.results = compare_frames(*frames, by=self.by, metrics=metrics, names=self.names)
        self.errors = error_comparison(*frames, self.names)

    def findings(self) -> list[str]:
        a, b = self.names
        lines = [f"B = {b} ({self.labels[1]}) against A = {a} ({self.labels[0]})"
                 + (f", by {', '.join(self.by)}" if self.by else "") + ":"]
        for where, result in self.results:
            lines.append(("  " + ", ".join(f"{k} {v}" for k, v in where.items()) + ": " if where else "  ")
                         + result.verdict.replace(f"{result.metric}:", f"{LABELS.get(result.metric, result.metric)}:", 1))
        lines.append("  errors: " + "; ".join(
            f"{r.side} {stats.fmt_interval(r.error_rate * 100, r.low * 100, r.high * 100, '.1f')} % ({r.errors:,} of "
            f"{r.n:,})" for r in self.errors.itertuples()))
        return lines

    def table(self) -> pd.DataFrame:
        """One row per group and metric (A: the reference, B: the other run): each side's n and median, the ratio of medians with its 95% interval,
        P(B slower), the two tests, their power for a 10% shift, and the verdict's word."""
        a, b = self.names
        rows = []
        for where, result in self.results:
            e = result.effects
            medians = result.table[result.table["percentile"] == 50].set_index("side")["estimate"]
            row = {**where, "metric": LABELS.get(result.metric, result.metric), "n A": e["n_a"], "n B": e["n_b"],
                   "median A ms": f"{medians.get(a, np.nan):,.1f}", "median B ms": f"{medians.get(b, np.nan):,.1f}"}
            if "median_ratio" in e:
                row.update({
                    "median B/A (95%)": f"{e['median_ratio'] - 1:+.1%} [{e['median_ratio_low'] - 1:+.1%}, "
                                        f"{e['median_ratio_high'] - 1:+.1%}]",
                    "P(B slower) (95%)": stats.fmt_interval(e["p_b_slower"], e["p_b_slower_low"], e["p_b_slower_high"],
                                                            ".2f"),
                    "body p": f"{e['body_p']:.2g}", "tail p": f"{e['tail_p']:.2g}",
                    "power, 10% shift": f"{e['body_power']:.0%} body, {e['tail_power']:.0%} tail",
                    "verdict": result.verdict.split(": ", 1)[1].split(" (")[0]})
            rows.append(row)
        return pd.DataFrame(rows)

    def terminal(self) -> str:
        return "\n".join([*self.findings(), "", self.table().to_string(index=False)])

    def as_json(self) -> dict:
        def plain(value):  # noqa: ANN001, ANN202
            value = value.item() if isinstance(value, np.generic) else value
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {"runs": list(self.runs), "labels": self.labels, "by": self.by, "findings": self.findings(),
                "comparisons": [{"where": w, "metric": r.metric, "verdict": r.verdict,
                                 "effects": {k: plain(v) for k, v in r.effects.items()},
                                 "percentiles": [{k: plain(v) for k, v in row.items()}
                                                 for row in r.table.to_dict("records")]} for w, r in self.results],
                "errors": [{k: plain(v) for k, v in row.items()} for row in self.errors.to_dict("records")]}

    def figure(self):  # noqa: ANN201 (a matplotlib figure)
        """Each metric's distribution on both sides (ECDF, log scale), pooled over groups."""
        import matplotlib.pyplot as plt

        from lab.analysis import plots

        metrics = list(dict.fromkeys(r.metric for _, r in self.results))
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            for name, frame in zip(self.names, self.frames, strict=True):
                if metric in frame:
                    plots.ecdf(ax, frame.loc[frame["status"].eq("ok"), metric], label=name)
            ax.set_xscale("log")
            plots.plain_log_ticks(ax.xaxis, minor=False)
            ax.tick_params(axis="x", labelrotation=30)
            ax.set_xlabel(f"{LABELS.get(metric, metric)}, ms (log)")
            ax.set_ylabel("share of calls at or below")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{self.names[1]} ({self.labels[1]}) against {self.names[0]} ({self.labels[0]})", fontsize=10)
        fig.tight_layout()
        return fig

