"""lab.analysis.ranking and lab.analysis.power: letters that follow Holm's decisions, and analytic power that agrees
with simulation. Seeded data throughout; the big power grid lives in ``benchmarks/ranking.py``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from lab.analysis import compare, power, ranking
from lab.analysis import stats as ls
from lab.core.errors import BadInput


def calls(medians: dict[str, float], n: int = 200, *, sigma: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """Successful calls per target, lognormal around each median (seeded)."""
    rng = np.random.default_rng(seed)
    return pd.concat([pd.DataFrame({"target": t, "status": "ok", "latency_ms": rng.lognormal(math.log(m), sigma, n)})
                      for t, m in medians.items()], ignore_index=True)


def exact_sample(log_median: float, n: int = 100, sigma: float = 0.3) -> np.ndarray:
    """A lognormal sample without noise: the quantiles at (i + 0.5) / n."""
    return np.exp(log_median + sigma * stats.norm.ppf((np.arange(n) + 0.5) / n))


# --- ranking -------------------------------------------------------------------------------------------------------

def test_separated_groups_get_their_own_letters_in_median_order():
    found = ranking.rank(calls({"slow": 4000, "fast": 1000, "middle": 2000}), "latency_ms")
    table = found.table
    assert table["target"].tolist() == ["fast", "middle", "slow"]
    assert table["rank"].tolist() == [1, 2, 3]
    assert table["median"].is_monotonic_increasing
    assert table["letters"].tolist() == ["a", "b", "c"]
    assert found.pairs["different"].all()
    assert (found.pairs["median_ratio"] > 1).all()  # a is the faster of each pair


def test_groups_from_one_distribution_share_a_letter():
    table = ranking.rank(calls({"w": 1500, "x": 1500, "y": 1500, "z": 1500}, seed=3), "latency_ms").table
    assert set(table["letters"]) == {"a"}
    assert table["rank"].tolist() == [1, 2, 3, 4]


def test_a_chain_reads_a_ab_b():
    """a and b, b and c cannot be told apart (Holm), a and c can: the middle group carries both letters."""
    frame = pd.concat([pd.DataFrame({"target": t, "status": "ok", "latency_ms": exact_sample(7 + 0.07 * k)})
                       for k, t in enumerate("abc")], ignore_index=True)
    found = ranking.rank(frame, "latency_ms")
    pairs = found.pairs.set_index(["a", "b"])
    assert not pairs.loc[("a", "b"), "different"] and not pairs.loc[("b", "c"), "different"]
    assert pairs.loc[("a", "c"), "different"]
    assert found.table["letters"].tolist() == ["a", "ab", "b"]


def test_letters_shared_exactly_when_the_pair_is_not_told_apart():
    medians = {f"t{i}": 1000 * 1.05 ** i for i in range(8)}
    found = ranking.rank(calls(medians, n=150, seed=1), "latency_ms")
    letters = dict(zip(found.table["target"], found.table["letters"]))
    assert 0 < found.pairs["different"].sum() < len(found.pairs)  # a mix, so the check is not vacuous
    for r in found.pairs.itertuples(index=False):
        assert bool(set(letters[r.a]) & set(letters[r.b])) == (not r.different), (r.a, r.b, letters)


def test_holm_is_applied_across_all_pairs():
    found = ranking.rank(calls({"a": 1000, "b": 1040, "c": 1080, "d": 1200}, n=150, seed=2), "latency_ms")
    pairs = found.pairs
    values = {t: g["latency_ms"].to_numpy() for t, g in calls({"a": 1000, "b": 1040, "c": 1080, "d": 1200}, n=150,
                                                                seed=2).groupby("target")}
    direct = [stats.brunnermunzel(values[b], values[a]).pvalue for a, b in zip(pairs["a"], pairs["b"])]
    np.testing.assert_allclose(pairs["p"], direct, rtol=1e-12)
    reject, adjusted, *_ = multipletests(pairs["p"], alpha=0.05, method="holm")
    np.testing.assert_allclose(pairs["p_holm"], adjusted, rtol=1e-12)
    assert pairs["different"].tolist() == reject.tolist()
    assert (pairs["p_holm"] > pairs["p"]).any()  # the adjustment changed something
    assert (pairs["p"] <= 0.05).sum() > pairs["different"].sum()  # and a raw decision with it


def test_groups_with_fewer_than_two_calls_get_no_rank():
    frame = pd.concat([calls({"a": 1000, "b": 2000}, n=50),
                       pd.DataFrame({"target": ["one", "one", "one", "none"], "status": ["ok", "error", "error",
                                                                                        "error"],
                                     "latency_ms": [10.0, 5.0, 6.0, 7.0]})], ignore_index=True)
    found = ranking.rank(frame, "latency_ms")
    table = found.table.set_index("target")
    for group, n in (("one", 1), ("none", 0)):
        assert table.loc[group, "note"] == ranking.TOO_FEW
        assert pd.isna(table.loc[group, "rank"]) and table.loc[group, "letters"] == ""
        assert table.loc[group, "n"] == n
    assert table.loc[["a", "b"], "rank"].tolist() == [1, 2]  # "one" has the lowest median but no rank
    assert set(found.pairs["a"]) | set(found.pairs["b"]) == {"a", "b"}


def test_errors_and_nan_values_are_ignored():
    clean = calls({"a": 1000, "b": 1100, "c": 2000}, n=80, seed=4)
    noise = pd.DataFrame({"target": ["a", "a", "b", "c", "c"], "status": ["error", "ok", "error", "ok", "timeout"],
                          "latency_ms": [1e9, np.nan, 1.0, np.nan, 1e-3]})
    dirty = pd.concat([noise, clean, noise], ignore_index=True)
    a, b = ranking.rank(clean, "latency_ms"), ranking.rank(dirty, "latency_ms")
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    pd.testing.assert_frame_equal(ranking.against(clean, "latency_ms", "a"), ranking.against(dirty, "latency_ms", "a"))


def test_differences_lists_the_pairs_told_apart_largest_ratio_first():
    found = ranking.rank(calls({"a": 1000, "b": 1010, "c": 3000, "d": 1500}), "latency_ms")
    diffs = found.differences()
    assert len(diffs) == found.pairs["different"].sum() and diffs["different"].all()
    assert diffs["median_ratio"].is_monotonic_decreasing
    assert ("a", "b") not in set(zip(diffs["a"], diffs["b"])) and ("b", "a") not in set(zip(diffs["a"], diffs["b"]))


def test_against_matches_median_ratio_and_holm():
    frame = calls({"base": 1000, "same": 1000, "slower": 1400, "faster": 700}, n=120, seed=5)
    table = ranking.against(frame, "latency_ms", "base").set_index("target")
    assert set(table.index) == {"same", "slower", "faster"}
    base = frame.loc[frame["target"] == "base", "latency_ms"].to_numpy()
    for group, row in table.iterrows():
        v = frame.loc[frame["target"] == group, "latency_ms"].to_numpy()
        ratio = ls.median_ratio(base, v)
        assert row[["median_ratio", "ratio_low", "ratio_high"]].tolist() == pytest.approx(
            [ratio["estimate"], ratio["low"], ratio["high"]], rel=1e-12)
        assert row["p"] == pytest.approx(compare._body_test(base, v), rel=1e-12)
    np.testing.assert_allclose(table["p_holm"], multipletests(table["p"], method="holm")[1], rtol=1e-12)
    assert table.loc["slower", "ratio_low"] > 1 > table.loc["faster", "ratio_high"]
    assert table.loc["slower", "different"] and table.loc["faster", "different"]
    assert table.loc["same", "ratio_low"] < 1 < table.loc["same", "ratio_high"]


def test_against_an_unknown_baseline_names_the_targets():
    frame = calls({"alpha": 1000, "beta": 1100}, n=10)
    with pytest.raises(BadInput) as caught:
        ranking.against(frame, "latency_ms", "gamma")
    message = str(caught.value)
    assert "gamma" in message and "alpha" in message and "beta" in message and "\n" not in message


# --- power ---------------------------------------------------------------------------------------------------------

REFERENCES = {"lognormal 0.5": lambda rng, n: rng.lognormal(7, 0.5, n),
              "lognormal 1.0": lambda rng, n: rng.lognormal(7, 1.0, n)}


@pytest.mark.parametrize(("reference", "n_a", "n_b", "shift"), [
    ("lognormal 0.5", 300, 300, 0.10),
    ("lognormal 0.5", 300, 60, 0.25),   # unequal n, fewer on B's side
    ("lognormal 1.0", 200, 1000, 0.25),  # heavy tail, more on B's side
    ("lognormal 1.0", 200, 60, 0.10),
    ("lognormal 0.5", 1000, 1000, 0.10),  # tail power by the z-test (m > EXACT_UP_TO)
])
def test_analytic_power_agrees_with_simulation(reference, n_a, n_b, shift):
    sample = REFERENCES[reference](np.random.default_rng(n_a + n_b), n_a)
    found = power.power_check(sample, n_b, shift=shift, n_sim=400, seed=7)
    for test in ("body", "tail"):
        assert found[f"{test}_low"] - 0.05 <= found[test] <= found[f"{test}_high"] + 0.05, (test, found.to_dict())


def test_power_is_alpha_without_a_shift():
    sample = np.random.default_rng(0).lognormal(7, 0.5, 500)
    for alpha in (0.05, 0.01):
        found = power.power(sample, 500, shift=0.0, alpha=alpha)
        assert found["body"] == pytest.approx(alpha, rel=1e-9)
        assert 0 < found["tail"] <= alpha + 0.01  # Fisher's exact test is conservative


def test_power_rises_with_n_and_shift():
    rng = np.random.default_rng(1)
    by_n = [power.power(rng.lognormal(7, 0.5, n), n, shift=0.10) for n in (100, 400, 1600, 6400)]
    assert all(a["body"] < b["body"] for a, b in zip(by_n, by_n[1:]))
    assert all(a["tail"] < b["tail"] for a, b in zip(by_n, by_n[1:]))
    sample = rng.lognormal(7, 0.5, 1000)
    by_shift = [power.power(sample, 1000, shift=s) for s in (0.0, 0.05, 0.10, 0.20, 0.40)]
    assert all(a["body"] < b["body"] for a, b in zip(by_shift, by_shift[1:]))
    assert all(a["tail"] < b["tail"] for a, b in zip(by_shift, by_shift[1:]))
    assert by_shift[-1]["body"] > 0.99


@pytest.mark.parametrize(("reference", "n_b"), [([1500.0], 100), ([1500.0, 1600.0, 1700.0], 1), ([], 10),
                                                 ([1500.0, np.nan, np.inf], 100)])
def test_power_is_nan_below_two_values_a_side(reference, n_b):
    found = power.power(reference, n_b)
    assert math.isnan(found["body"]) and math.isnan(found["tail"])
