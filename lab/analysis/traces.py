"""Real provider traces (notebook 05): failures, slow calls and provider differences in the LLMPerf leaderboard,
each result per file (one provider serving one model size in one session).

:func:`study` reads the traces (:func:`lab.imports.read_llmperf`) and computes what notebook 05 quotes: failures
per file and kind with Wilson intervals (:func:`lab.analysis.stats.error_rates`), percentiles with
distribution-free intervals (:func:`lab.analysis.stats.interval_summary`, on ``scipy.stats.quantile_test``), where
slow calls spend their time (:func:`time_split`), each provider against the fastest of its model size
(:func:`differences`: :func:`lab.analysis.stats.median_ratio` and ``scipy.stats.mannwhitneyu``'s U over the
number of pairs) and the slowest calls (:func:`slowest_calls`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lab.analysis.stats import error_rates, fmt_interval, interval_summary, median_ratio, min_n_for_quantile
from lab.imports import read_llmperf

FILE = ["provider", "model"]
"""One file: one provider serving one model size, in one session."""
SIZES = ["7b", "13b", "70b"]
METRICS = {"ttft_ms": "TTFT", "latency_ms": "end-to-end"}


def names(keys: Iterable[tuple[str, str]]) -> str:
    """Files named in prose: "a 7b, b 13b and c 70b"."""
    return " and ".join(", ".join(f"{p} {m}" for p, m in keys).rsplit(", ", 1))


def waiting(calls: pd.DataFrame) -> float:
    """The share of the calls' time spent before the first token: their TTFTs over their latencies."""
    return calls["ttft_ms"].sum() / calls["latency_ms"].sum()


def failure_kinds(calls: pd.DataFrame) -> pd.DataFrame:
    """The failed calls with their ``kind``: "rate limit (429)", "too few tokens" (LLMPerf's own length check on an
    answer that arrived) or "no answer"."""
    failed = calls[calls["status"] == "error"]
    kind = np.select([failed["error_type"] == "rate_limit",
                      failed["error_message"].fillna("").str.startswith("Output too few tokens")],
                     ["rate limit (429)", "too few tokens"], "no answer")
    return failed.assign(kind=kind)


def time_split(ok: pd.DataFrame, slow: float = 0.95, typical: float = 0.50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The successful calls with ``slow`` (above their file's ``slow`` quantile of latency), ``typical`` (at or
    below its ``typical`` one) and ``stalled`` (TTFT longer than generation), and per file: calls, stalled, slow,
    slow stalled, and the shares of time before the first token of its typical and of its slow calls."""
    latency = ok.groupby(FILE, observed=True)["latency_ms"]
    ok = ok.assign(slow=ok["latency_ms"] > latency.transform("quantile", slow),
                   typical=ok["latency_ms"] <= latency.transform("quantile", typical),
                   stalled=ok["ttft_ms"] > ok["generation_ms"])
    per_file = ok.groupby(FILE, observed=True).apply(lambda f: pd.Series({
        "n ok": len(f), "stalled": f["stalled"].sum(), "slow": f["slow"].sum(),
        "slow stalled": (f["slow"] & f["stalled"]).sum(),
        "typical: before first token": waiting(f[f["typical"]]), "slow: before first token": waiting(f[f["slow"]])}))
    return ok, per_file


def differences(ok: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per model size and metric, each provider against the provider with the lowest median (``fastest``): the
    ratio of medians with its distribution-free interval and P(slower), the share of pairs of calls in which
    this provider's call was the slower."""
    rows = []
    for size in SIZES:
        for metric, label in METRICS.items():
            values = {p: g[metric].to_numpy() for p, g in ok[ok["model"] == size].groupby("provider")}
            fastest = min(values, key=lambda p: np.median(values[p]))
            x = values[fastest]
            for provider, y in values.items():
                rows.append({"model": size, "provider": provider, "metric": label, "fastest": fastest,
                             **median_ratio(x, y, confidence=confidence)[["estimate", "low", "high"]],
                             "P(slower)": stats.mannwhitneyu(y, x).statistic / (len(x) * len(y))})
    return pd.DataFrame(rows)


def differences_table(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`differences` as the notebook shows it: per model size and provider, each metric's ratio with its
    interval and P(slower) (rounded down, so that only a P of exactly 1 reads 1), "fastest" for the reference."""
    cells = frame.assign(cell=[("fastest" if p == f else fmt_interval(e, lo, hi, ".2f")
                                + ("; P = 1, no overlap" if s == 1 else f"; P = {np.floor(s * 1000) / 1000:.3f}"))
                               for p, f, e, lo, hi, s in frame[["provider", "fastest", "estimate", "low", "high",
                                                                "P(slower)"]].to_numpy()])
    return (cells.pivot(index=["model", "provider"], columns="metric", values="cell")
            .reindex(SIZES, level="model")[list(METRICS.values())])


def slowest_calls(ok: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` slowest successful calls, with their file's median output tokens and their latency as a multiple
    of their file's median."""
    by_file = ok.groupby(FILE, observed=True)
    return (ok.assign(file_median_tokens=by_file["output_tokens"].transform("median"),
                      times_file_median=ok["latency_ms"] / by_file["latency_ms"].transform("median"))
            .nlargest(n, "latency_ms"))


@dataclass
class TraceStudy:
    """Everything notebook 05 quotes; see :func:`study`."""

    calls: pd.DataFrame
    ok: pd.DataFrame
    files: pd.Series
    failed: pd.DataFrame
    failures: pd.DataFrame
    kinds: list[str]
    by_provider: pd.DataFrame
    limited: pd.DataFrame
    clean: pd.Index
    short: pd.Series
    accepted: pd.Series
    percentiles: pd.DataFrame
    n_ok: pd.Series
    need95: int
    need99: int
    short95: pd.Series
    per_file: pd.DataFrame
    drivers: pd.Index
    waited: pd.Index
    shares: Mapping[str, tuple[float, float]]
    others_gap: float
    differences: pd.DataFrame
    slowest: pd.DataFrame
    pairs: pd.DataFrame
    top: pd.DataFrame
    bursts: pd.DataFrame
    excess: pd.Series
    iqr: pd.Series
    tokens: pd.Series
    survivors: pd.Series


def study(data_dir: Path | str, *, confidence: float = 0.95, slow: float = 0.95, typical: float = 0.50) -> TraceStudy:
    """Notebook 05 on the LLMPerf traces in ``data_dir``: intervals at ``confidence``; a call is slow above its
    file's ``slow`` quantile of latency, typical at or below its ``typical`` one."""
    calls = read_llmperf(data_dir).assign(model=lambda d: pd.Categorical(d["model"], SIZES))
    ok = calls[calls["status"] == "ok"].assign(generation_ms=lambda d: d["latency_ms"] - d["ttft_ms"])

    # Failures
    failed = failure_kinds(calls)
    kinds = failed.pivot_table(index=FILE, columns="kind", values="sample", aggfunc="size", fill_value=0,
                               observed=True)
    failures = error_rates(calls, FILE, confidence=confidence).join(kinds, on=FILE).fillna(0)
    failures["error rate [CI]"] = [fmt_interval(*r, ".1%") for r in failures[["error_rate", "low", "high"]].to_numpy()]
    by_provider = failures.groupby("provider")[["n", "errors", "rate limit (429)"]].sum().astype(int)

    # Percentiles per file
    pct = interval_summary(ok, FILE, list(METRICS), (50, 95), confidence=confidence)
    pct["cell"] = [fmt_interval(*r) for r in pct[["estimate", "low", "high"]].to_numpy()]
    pct["column"] = pct["metric"].map(METRICS) + " p" + pct["percentile"].astype(str)
    n_ok = ok.groupby(FILE, observed=True).size().rename("n ok")
    table = pct.pivot(index=FILE, columns="column", values="cell").join(n_ok).reindex(n_ok.index)
    need95, need99 = (min_n_for_quantile(q, confidence=confidence) for q in (0.95, 0.99))

    # Where slow calls spend their time
    ok, per_file = time_split(ok, slow, typical)
    drivers = per_file.index[per_file["slow stalled"] > 0]
    ok["driver"] = pd.MultiIndex.from_frame(ok[FILE].astype(str)).isin(drivers)
    others = per_file.drop(index=drivers)

    def pooled(chosen: pd.DataFrame) -> tuple[float, float]:
        return waiting(chosen[chosen["slow"]]), waiting(chosen[chosen["typical"]])

    # How far providers differ; the slowest calls
    diffs = differences(ok, confidence=confidence)
    top = slowest_calls(ok)
    by_file = ok.groupby(FILE, observed=True)
    files = calls.groupby(FILE, observed=True).size()
    return TraceStudy(
        calls=calls, ok=ok, files=files, failed=failed, failures=failures, kinds=list(kinds),
        by_provider=by_provider,
        limited=by_provider[by_provider["rate limit (429)"] > 0].sort_values("rate limit (429)", ascending=False),
        clean=by_provider.index[by_provider["errors"] == 0],
        short=failed.loc[(failed["provider"] == "bedrock") & (failed["kind"] == "too few tokens"), "output_tokens"],
        accepted=ok.loc[ok["provider"] == "bedrock", "output_tokens"],
        percentiles=table[["n ok", *(f"{m} p{p}" for m in METRICS.values() for p in (50, 95))]].reset_index(),
        n_ok=n_ok, need95=need95, need99=need99, short95=n_ok[n_ok < need95],
        per_file=per_file, drivers=drivers,
        waited=per_file.loc[drivers][lambda d: d["typical: before first token"] > 0.5].index,
        shares={"all": pooled(ok), "drivers": pooled(ok[ok["driver"]]), "others": pooled(ok[~ok["driver"]])},
        others_gap=(others["slow: before first token"] - others["typical: before first token"]).abs().max(),
        differences=diffs,
        slowest=diffs.loc[diffs.groupby(["model", "metric"], sort=False)["estimate"].idxmax()],
        pairs=diffs[diffs["provider"] != diffs["fastest"]], top=top,
        bursts=top.groupby(FILE, observed=True)["sample"].agg(["size", "min", "max"]).sort_values("size",
                                                                                                 ascending=False),
        excess=(ok["output_tokens"] - by_file["output_tokens"].transform("median"))[ok["slow"]].astype(float),
        iqr=by_file["output_tokens"].quantile(0.75) - by_file["output_tokens"].quantile(0.25),
        tokens=by_file["output_tokens"].median(), survivors=n_ok[n_ok < files.reindex(n_ok.index) / 2])
