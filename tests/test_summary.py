"""Summaries where the data live (``lab.analysis.summary``, ``lab.analysis.calls``): DuckDB gives the same
percentiles, intervals and rates as the in-memory statistics, whichever path it takes and whatever the source."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from statsmodels.stats.proportion import proportion_confint

from lab.analysis import stats, summary
from lab.analysis.calls import Calls
from lab.store import Run
from lab.store.columnar import conform


@pytest.fixture()
def calls() -> pd.DataFrame:
    """Four targets of very different sizes (one with a single call, one with none successful), NaN and
    failures mixed in, ties from rounding."""
    rng = np.random.default_rng(11)
    sizes = {"big": 1500, "mid": 140, "tiny": 1, "broken": 30}
    frame = pd.concat([pd.DataFrame({"target": name, "latency_ms": np.round(rng.lognormal(6, 0.6, n), 0),
                                     "ttft_ms": rng.lognormal(5, 0.4, n)}) for name, n in sizes.items()],
                      ignore_index=True)
    frame["status"] = np.where(rng.random(len(frame)) < 0.05, "error", "ok")
    frame.loc[frame["target"] == "broken", "status"] = "error"
    frame.loc[rng.random(len(frame)) < 0.03, "ttft_ms"] = np.nan
    return frame


def test_percentiles_in_duckdb_equal_the_in_memory_intervals(calls):
    found = summary.percentiles(calls, ["target"], ["latency_ms", "ttft_ms"], (50, 90, 95, 99))
    expected = stats.interval_summary(calls, ["target"], ["latency_ms", "ttft_ms"], (50, 90, 95, 99))
    merged = found.merge(expected, on=["target", "metric", "percentile"], suffixes=("", "_mem"))
    assert len(merged) == len(expected) > 0
    for column in ("n", "estimate", "low", "high", "estimable"):
        np.testing.assert_array_equal(merged[column].to_numpy(), merged[f"{column}_mem"].to_numpy(), err_msg=column)
    broken = found[found["target"] == "broken"]  # no successful call: said so, never "unbounded"
    assert not broken["recorded"].any() and broken["estimate"].isna().all()


def test_the_one_sort_path_gives_the_quantile_disc_values(calls, monkeypatch):
    disc = summary.percentiles(calls, ["target"], ["latency_ms"], (50, 95, 99))
    monkeypatch.setattr(summary, "MAX_DISC_CELLS", 0)  # force row_number over the sorted groups
    by_rank = summary.percentiles(calls, ["target"], ["latency_ms"], (50, 95, 99))
    pd.testing.assert_frame_equal(disc, by_rank)


def test_error_rates_use_wilson_or_exact_clopper_pearson_where_events_are_rare(calls):
    found = summary.error_rates(calls, ["target"]).set_index("target")
    for target, group in calls.groupby("target"):
        errors, n = int(group["status"].ne("ok").sum()), len(group)
        method = "beta" if min(errors, n - errors) < 5 else "wilson"
        low, high = proportion_confint(errors, n, method=method)
        row = found.loc[target]
        assert (row["errors"], row["n"]) == (errors, n)
        assert row["low"] == pytest.approx(low) and row["high"] == pytest.approx(high)
        assert row["method"] == ("Clopper-Pearson" if method == "beta" else "Wilson")


def test_goodput_counts_successful_calls_within_every_objective(calls):
    calls = calls.assign(started_at=pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(calls)), "s"),
                         output_tokens=10)
    found = summary.throughput(calls, ["target"], objectives={"latency_ms": 400, "ttft_ms": 150}).set_index("target")
    good = calls[calls["status"].eq("ok") & (calls["latency_ms"] <= 400) & (calls["ttft_ms"] <= 150)]
    assert found["good"].to_dict() == good.groupby("target").size().reindex(found.index, fill_value=0).to_dict()


def test_a_runs_values_per_group_are_its_successful_calls_in_order(calls, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    frame = calls.assign(task=np.where(np.arange(len(calls)) % 3 == 0, "short", None),
                         started_at=pd.Timestamp("2026-01-01", tz="UTC"))
    run = Run("values")
    run.write_manifest({"run_id": "values", "experiment": "import", "kind": "import",
                        "started_at": "2026-01-01T00:00:00+00:00"})
    pq.write_table(conform(pa.Table.from_pandas(frame, preserve_index=False)), run.columnar_path)
    found = Calls(run).values("latency_ms", ["target", "task"])
    view = frame.assign(task=frame["task"].fillna("all"))  # the view names a missing task "all"
    ok = view[view["status"].eq("ok") & view["latency_ms"].notna()]
    assert set(found) == set(view.groupby(["target", "task"]).groups)
    for (target, task), values in found.items():
        expected = ok.loc[(ok["target"] == target) & (ok["task"] == task), "latency_ms"].to_numpy()
        np.testing.assert_array_equal(values, expected)


def test_a_large_group_gets_a_seeded_sample_of_its_own_calls(calls, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    run = Run("sampled")
    run.write_manifest({"run_id": "sampled", "experiment": "import", "kind": "import",
                        "started_at": "2026-01-01T00:00:00+00:00"})
    pq.write_table(conform(pa.Table.from_pandas(calls, preserve_index=False)), run.columnar_path)
    every = Calls(run).values("latency_ms")
    first, again = Calls(run).values("latency_ms", most=100, seed=4), Calls(run).values("latency_ms", most=100, seed=4)
    other = Calls(run).values("latency_ms", most=100, seed=5)
    for group, values in every.items():
        if len(values) <= 100:  # a small group is whole
            np.testing.assert_array_equal(first[group], values)
            continue
        assert len(first[group]) == 100 and np.isin(first[group], values).all()
        np.testing.assert_array_equal(first[group], again[group])  # the same seed, the same sample
        assert not np.array_equal(first[group], other[group])
