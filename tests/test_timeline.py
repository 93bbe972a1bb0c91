"""lab.analysis.timeline: windows as pandas labels them, summaries and tests as the functions they reuse compute them
on each window's calls, and change points found where they were planted (seeded data, no sleeps)."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from lab.analysis import stats as ls
from lab.analysis import summary, timeline
from lab.core.errors import BadInput

matplotlib.use("Agg")

TZ = "America/New_York"
START = pd.Timestamp("2026-03-06T00:00:00Z")  # New York moves to daylight time on Sunday 2026-03-08
CHANGE = pd.Timestamp("2026-03-07T07:00:00Z")  # a bin boundary at any width up to one hour


def calls(n: int = 3000, *, days: float = 4, seed: int = 0, step: float = 1.3) -> pd.DataFrame:
    """Two targets over ``days`` across the DST change, in time order: ``steady`` stationary, ``step`` ``step``
    times slower from :data:`CHANGE` on; 4% errors and a few NaN latencies."""
    rng = np.random.default_rng(seed)
    started = START + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n)), unit="s")
    target = rng.choice(["steady", "step"], n)
    latency = rng.lognormal(math.log(1500), 0.3, n)
    latency[(target == "step") & (started >= CHANGE)] *= step
    status = np.where(rng.random(n) < 0.04, "error", "ok")
    latency[rng.random(n) < 0.01] = np.nan
    return pd.DataFrame({"started_at": started, "target": target, "status": status, "latency_ms": latency})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return calls()


# --- windows -------------------------------------------------------------------------------------------------------

def test_labels_across_a_dst_change_match_pandas(frame):
    local = frame["started_at"].dt.tz_convert(TZ)
    assert local.dt.tz_localize(None).sub(frame["started_at"].dt.tz_localize(None)).nunique() == 2  # EST and EDT
    expected = {"hour": local.dt.strftime("%H"), "weekday": local.dt.strftime("%a"), "day": local.dt.strftime("%Y-%m-%d")}
    for by, labels in expected.items():
        found = timeline.window_labels(frame, by, TZ)
        assert found.astype(str).tolist() == labels.tolist(), by
        assert found.cat.ordered
    assert timeline.window_labels(frame, "weekday", TZ).cat.categories.tolist() == list(timeline.WEEKDAYS)
    # in UTC the first call is on Friday the 6th; in New York it is still Thursday the 5th
    assert timeline.window_labels(frame, "day", "UTC").iloc[0] == "2026-03-06"
    assert timeline.window_labels(frame, "day", TZ).iloc[0] == "2026-03-05"


@pytest.mark.parametrize("call", [
    lambda f: timeline.window_labels(f, "hour", "Mars/Olympus_Mons"),
    lambda f: timeline.per_window(f, "hour", tz="Not/AZone"),
    lambda f: timeline.window_tests(f, "hour", tz="EST5EDT-nope"),
    lambda f: timeline.window_labels(f, "minute"),
    lambda f: timeline.per_window(f, "month"),
    lambda f: timeline.window_tests(f, "fortnight"),
    lambda f: timeline.per_window(f, "window"),  # no recorded windows
])
def test_unknown_zone_or_window_is_one_line_of_bad_input(frame, call):
    with pytest.raises(BadInput) as caught:
        call(frame)
    assert "\n" not in str(caught.value) and str(caught.value)


# --- summaries per window ------------------------------------------------------------------------------------------

def test_per_window_equals_each_windows_own_summary(frame):
    table = timeline.per_window(frame, "day", tz=TZ, percentiles=(50, 95))
    labels = timeline.window_labels(frame, "day", TZ).astype(str)
    assert len(table) == 2 * labels.nunique()
    for r in table.itertuples(index=False):
        subset = frame[(frame["target"] == r.target) & (labels == str(r.day))]
        ok = subset.loc[subset["status"] == "ok", "latency_ms"].dropna().to_numpy()
        assert (r.calls, r.n, r.errors) == (len(subset), len(ok), int((subset["status"] != "ok").sum()))
        for p in (50, 95):
            mine = summary.values_at(ok, p / 100)
            assert getattr(r, f"p{p}") == pytest.approx(np.quantile(ok, p / 100), rel=1e-12)
            for side, unbounded in (("low", -math.inf), ("high", math.inf)):
                expected = unbounded if math.isnan(mine[side]) else mine[side]
                assert getattr(r, f"p{p}_{side}") == expected, (r.target, r.day, p, side)
        low, high, _ = summary.rate_interval(r.errors, r.calls)
        assert (r.error_low, r.error_high) == pytest.approx((low, high))
    # at least one window too small to bound its p95: the unbounded case is covered
    assert np.isinf(table["p95_high"]).any() and np.isfinite(table["p95_high"]).any()


def test_per_window_reads_a_frame_and_a_parquet_file_alike(frame, tmp_path):
    path = tmp_path / "calls.parquet"
    frame.to_parquet(path)  # pandas writes timestamp[ns, UTC]
    for by in ("hour", "day"):
        pd.testing.assert_frame_equal(timeline.per_window(frame, by, tz=TZ), timeline.per_window(path, by, tz=TZ))
        pd.testing.assert_frame_equal(timeline.per_window(frame, by, tz=TZ),
                                      timeline.per_window(str(path), by, tz=TZ))
    naive = tmp_path / "naive.parquet"
    frame.assign(started_at=frame["started_at"].dt.tz_localize(None).astype("datetime64[us]")).to_parquet(naive)
    pd.testing.assert_frame_equal(timeline.per_window(frame, "hour", tz=TZ), timeline.per_window(naive, "hour", tz=TZ))


def test_recorded_windows_keep_the_order_of_their_first_call(frame):
    labelled = frame.assign(window=np.where(frame["started_at"] < CHANGE, "zeta-first", "alpha-second"))
    table = timeline.per_window(labelled, "window")
    assert table["window"].cat.categories.tolist() == ["zeta-first", "alpha-second"]
    assert timeline.window_labels(labelled, "window").cat.categories.tolist() == ["zeta-first", "alpha-second"]


# --- tests per window ----------------------------------------------------------------------------------------------

def test_window_tests_equal_time_of_day_tests(frame, tmp_path):
    found = timeline.window_tests(frame, "day", tz=TZ, n_resamples=299, seed=3, max_permutation_n=5000,
                               max_permutation_cells=10**9)
    ok = frame[frame["status"].eq("ok") & frame["latency_ms"].notna()]
    labelled = ok.assign(day=timeline.window_labels(ok, "day", TZ))
    expected = ls.time_of_day_tests(labelled, value="latency_ms", window="day", by="target", n_resamples=299, seed=3)
    columns = ["target", "test", "windows", "n", "statistic", "p_value", "p_holm", "reject"]
    pd.testing.assert_frame_equal(found[columns], expected[columns])
    assert found.set_index(["target", "test"]).loc[("step", "Kruskal-Wallis"), "reject"]  # the step moved the days
    path = tmp_path / "calls.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(timeline.window_tests(path, "day", tz=TZ, n_resamples=299, seed=3,
                                                        max_permutation_n=5000, max_permutation_cells=10**9), found)
    assert found["method"].str.startswith("permutation").sum() == 2
    large = timeline.window_tests(frame, "day", tz=TZ, max_permutation_n=100)  # asymptotic beyond it
    np.testing.assert_allclose(large["p_value"].iloc[::2], found["p_value"].iloc[::2])  # Kruskal-Wallis alike
    assert large["test"].str.contains("asymptotic").sum() == 2
    costly = timeline.window_tests(frame, "day", tz=TZ, max_permutation_cells=10)  # n x windows beyond the budget
    assert costly["test"].str.contains("asymptotic").sum() == 2 and costly["method"].str.contains("n x windows").sum() == 2


def test_window_tests_leave_out_single_call_windows(frame):
    lonely = frame.iloc[:1].assign(started_at=pd.Timestamp("2026-03-20T12:00:00Z"), status="ok", latency_ms=1.0,
                                   target="steady")
    found = timeline.window_tests(pd.concat([frame, lonely], ignore_index=True), "day", tz=TZ, n_resamples=99)
    steady = found[found["target"] == "steady"]
    assert steady["left_out"].eq("2026-03-20").all()
    assert (steady["windows"] == 5).all()


# --- over time and change points ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", np.geomspace(50, 1e8, 60))
def test_bin_width_gives_50_to_200_bins(seconds):
    width, name = timeline.bin_width(float(seconds))
    bins = math.floor(seconds / width.total_seconds()) + 1
    assert 50 <= bins <= 200, (seconds, name, bins)


def test_over_time_medians_per_bin(frame):
    over = timeline.over_time(frame)
    span = frame["started_at"].max() - frame["started_at"].min()
    assert (over.attrs["width"], over.attrs["width_name"]) == timeline.bin_width(span)
    assert 50 <= over.groupby("target").size().max() <= 200
    width = over.attrs["width"]
    ok = frame[frame["status"].eq("ok") & frame["latency_ms"].notna()]
    for r in over.sample(12, random_state=0).itertuples(index=False):
        inside = ok[(ok["target"] == r.target) & (ok["started_at"] >= r.start) & (ok["started_at"] < r.end)]
        assert r.end - r.start == width and r.n == len(inside)
        assert r.median == pytest.approx(np.median(inside["latency_ms"]), rel=1e-12)
    fig = timeline.figure(over, label="SYNTHETIC calls")
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(BadInput):
        timeline.figure(over, label="calls")


def test_change_point_found_where_it_was_planted(frame):
    found = timeline.change_points(frame, n_resamples=999, seed=0).set_index("target")
    step, steady = found.loc["step"], found.loc["steady"]
    width = found.attrs["width"]
    assert abs(step["at"] - CHANGE) <= width, step["at"]
    assert step["low"] <= 1.3 <= step["high"] and step["ratio"] == pytest.approx(1.3, abs=0.06)
    assert step["p_holm"] < 0.05 and step["changed"]
    assert steady["p_value"] > 0.05 and not steady["changed"]
    assert step["n_before"] + step["n_after"] == (frame["status"].eq("ok") & frame["latency_ms"].notna()
                                                  & frame["target"].eq("step")).sum()


def test_no_change_flagged_on_stationary_data():
    found = timeline.change_points(calls(seed=11, step=1.0), n_resamples=999, seed=0)
    assert (found["p_value"] > 0.05).all() and not found["changed"].any()


def test_too_few_bins_is_a_note_not_an_error(frame):
    found = timeline.change_points(frame, bins="1D", n_resamples=99)
    assert (found["bins"] < 10).all()
    assert found["note"].str.contains("fewer than 10 bins").all()
    assert found["p_value"].isna().all() and not found["changed"].any()
