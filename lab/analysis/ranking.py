"""Which targets are faster: a ranking in groups that cannot be told apart, instead of a sentence per pair.

:func:`rank` orders the groups of a frame of call records (targets, by default) by their median, tests every
pair with compare's body test (Brunner-Munzel, ``scipy.stats.brunnermunzel``; Mann-Whitney U where it is
undefined), adjusts across all pairs by Holm (:func:`lab.analysis.stats.holm`) and labels the groups with a
compact letter display (``scikit_posthocs.compact_letter_display``, Piepho's algorithm): two groups share a
letter exactly when the pair is not told apart, so "a", "ab", "b" reads "the first two and the last two cannot
be told apart, the first and the last can". :func:`against` compares every group with one baseline.

Only successful calls (``status == "ok"``) with a finite value count; a group with fewer than two of them gets
no rank and no letter ("too few calls").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab.analysis import compare, stats
from lab.core.errors import BadInput

TOO_FEW = "too few calls"


@dataclass(frozen=True)
class Ranking:
    """``table``: one row per group (the ``by`` column, ``n``, ``median``, ``rank`` with 1 the fastest,
    ``letters``, ``note``), fastest first; ``pairs``: one row per pair of ranked groups, ``a`` the faster by
    median (``median_ratio`` = median b / median a, ``p``, ``p_holm``, ``different``)."""

    metric: str
    by: str
    alpha: float
    table: pd.DataFrame
    pairs: pd.DataFrame

    def differences(self) -> pd.DataFrame:
        """The pairs told apart, the largest ratio of medians first."""
        return self.pairs[self.pairs["different"]].sort_values("median_ratio", ascending=False, ignore_index=True)


def rank(frame: pd.DataFrame, metric: str, *, by: str = "target", alpha: float = 0.05) -> Ranking:
    """Rank the ``by`` groups of ``frame`` by the median of ``metric``, with letters for the groups that cannot
    be told apart (see the module docstring)."""
    values = _values(frame, metric, by)
    medians = {g: float(np.median(v)) if len(v) else math.nan for g, v in values.items()}
    ranked = sorted((g for g, v in values.items() if len(v) >= 2), key=lambda g: (medians[g], str(g)))
    pairs = pd.DataFrame(list(itertools.combinations(ranked, 2)), columns=["a", "b"])
    pairs["median_ratio"] = [medians[b] / medians[a] for a, b in zip(pairs["a"], pairs["b"])]
    pairs["p"] = [compare._body_test(values[a], values[b]) for a, b in zip(pairs["a"], pairs["b"])]
    pairs["p_holm"], pairs["different"] = stats.holm(pairs["p"].to_numpy(float), alpha)
    letters = _letters(ranked, pairs)
    table = pd.DataFrame({by: ranked + [g for g in values if g not in letters]})
    table["n"] = [len(values[g]) for g in table[by]]
    table["median"] = [medians[g] for g in table[by]]
    table["rank"] = table["median"].where(table[by].isin(ranked)).rank(method="min").astype("Int64")
    table["letters"] = [letters.get(g, "") for g in table[by]]
    table["note"] = ["" if g in letters else TOO_FEW for g in table[by]]
    return Ranking(metric, by, alpha, table, pairs)


def against(frame: pd.DataFrame, metric: str, baseline: str, *, by: str = "target",
            alpha: float = 0.05) -> pd.DataFrame:
    """Every other ``by`` group against ``baseline``: n, median, the ratio of medians (group / baseline) with
    its distribution-free 95% interval (:func:`lab.analysis.stats.median_ratio`), compare's body test and Holm
    across the k - 1 comparisons. A group with fewer than two values gets no test (``note``: "too few calls")."""
    values = _values(frame, metric, by)
    if baseline not in values:
        raise BadInput(f"baseline {baseline!r} is not a {by} of these calls; the {by}s are: "
                       + ", ".join(map(str, values)))
    base = values[baseline]
    if len(base) < 2:
        raise BadInput(f"baseline {baseline!r} has {len(base)} successful call(s) with a {metric}: too few to compare")
    rows = []
    for group, v in values.items():
        if group == baseline:
            continue
        enough = len(v) >= 2
        ratio = stats.median_ratio(base, v) if enough else pd.Series({"estimate": math.nan, "low": math.nan,
                                                                       "high": math.nan})
        rows.append({by: group, "n": len(v), "median": float(np.median(v)) if len(v) else math.nan,
                     "baseline": baseline, "n_baseline": len(base), "median_baseline": float(np.median(base)),
                     "median_ratio": ratio["estimate"], "ratio_low": ratio["low"], "ratio_high": ratio["high"],
                     "p": compare._body_test(base, v) if enough else math.nan, "note": "" if enough else TOO_FEW})
    table = pd.DataFrame(rows, columns=[by, "n", "median", "baseline", "n_baseline", "median_baseline",
                                        "median_ratio", "ratio_low", "ratio_high", "p", "note"])
    table["p_holm"], table["different"] = stats.holm(table["p"].to_numpy(float), alpha)
    return table


def _values(frame: pd.DataFrame, metric: str, by: str) -> dict[object, np.ndarray]:
    """Each group's successful calls' finite values of ``metric`` (a group with none has an empty array)."""
    missing = [c for c in (by, metric, "status") if c not in frame]
    if missing:
        raise BadInput(f"the calls have no column {', '.join(map(repr, missing))}; they have: {', '.join(frame.columns)}")
    x = frame[metric].to_numpy(float)
    keep = frame["status"].eq("ok").to_numpy() & np.isfinite(x)
    return {group: x[rows[keep[rows]]] for group, rows in frame.groupby(by, sort=True, observed=True).indices.items()}


def _letters(ranked: list, pairs: pd.DataFrame) -> dict[object, str]:
    """Letters of the compact letter display over the groups in median order, from the Holm decisions."""
    if not ranked:
        return {}
    import scikit_posthocs  # loads matplotlib and seaborn: only when letters are asked for

    # The display takes p-values; handing it the decisions (0 told apart, 1 not) keeps it to Holm's, ties included.
    decided = pd.DataFrame(1.0, index=ranked, columns=ranked)
    for a, b in zip(pairs.loc[pairs["different"], "a"], pairs.loc[pairs["different"], "b"]):
        decided.loc[a, b] = decided.loc[b, a] = 0.0
    letters = scikit_posthocs.compact_letter_display(decided, alpha=0.5)
    return {group: letters[group].replace(" ", "") for group in ranked}
