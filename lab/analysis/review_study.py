"""Experiment 2, what switching provider costs and what each provider's reviewer says (notebook 02).

:func:`study` replays a review run (:func:`lab.collect.review.reviews`), measures the migration of the
examples (:func:`lab.review.migration.migration_table`, :func:`lab.review.migration.call_sites`) and computes
what notebook 02 shows: the scores and issue counts per reviewer against the report's single runs
(:func:`score_summary`), the issues each reviewer finds (:func:`detection_share`), run-to-run consistency
(:func:`consistency`) and latency and cost per call site with distribution-free intervals (:func:`per_call_site`,
on :func:`lab.analysis.stats.interval_summary`).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from lab.analysis import stats
from lab.collect import review
from lab.core.paths import REFERENCE_DIR, ROOT
from lab.review import migration, scoring

CALL_SITES = {"complete": "assessment", "stream": "line feedback", "json": "findings"}
"""The call site each kind of call serves in the review assistant."""
DIRECT = ("review_direct_anthropic.py", "review_direct_openai.py")
"""The assistant wired directly to each SDK, in ``examples/``."""


def score_summary(reviews: pd.DataFrame, reported: pd.DataFrame) -> pd.DataFrame:
    """Per reviewer: the median, range and quartiles of its scores, the median number of issues listed, and, for a
    provider the report ran (``reported``, indexed by provider), the shares of reviews at or below the report's
    score and issue count (NaN for the others)."""
    rows = []
    for reviewer, group in reviews.groupby("reviewer"):
        provider, s = group["provider"].iloc[0], group["score"].dropna()
        row = {"reviewer": reviewer, "provider": provider, "median": s.median(), "min": s.min(), "max": s.max(),
               "q25": s.quantile(0.25), "q75": s.quantile(0.75), "issues": group["issues_listed"].median(),
               "score_at_or_below": np.nan, "issues_at_or_below": np.nan}
        if provider in reported.index:
            row["score_at_or_below"] = (s <= reported.loc[provider, "score_out_of_10"]).mean()
            issues = group["issues_listed"].dropna()
            row["issues_at_or_below"] = (issues <= reported.loc[provider, "issues_listed"]).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def issue_counts(reviews: pd.DataFrame) -> pd.DataFrame:
    """One row per review and count: issues ``listed``, ``deliberate found`` and listed with ``no match``."""
    counts = reviews.assign(found_n=reviews["found"].map(len)).melt(
        id_vars=["reviewer"], value_vars=["issues_listed", "found_n", "unmatched"], var_name="count",
        value_name="issues")
    counts["count"] = counts["count"].map({"issues_listed": "listed", "found_n": "deliberate found",
                                           "unmatched": "no match"})
    return counts


def detection_share(reviews: pd.DataFrame, key: list[Any]) -> pd.DataFrame:
    """The share of each reviewer's reviews that found each deliberate issue of the answer ``key`` (rows: category
    and issue; columns: reviewers)."""
    detected = pd.DataFrame([
        {"reviewer": row.reviewer, "issue": issue.id, "category": issue.category, "found": issue.id in row.found}
        for row in reviews.itertuples() for issue in key
    ])
    return detected.pivot_table(index=["category", "issue"], columns="reviewer", values="found", aggfunc="mean")


def consistency(reviews: pd.DataFrame) -> pd.DataFrame:
    """Per reviewer: the number of reviews, the mean Jaccard similarity of the deliberate issues found by every
    pair of its reviews (1 when neither found any), the score's standard deviation and the mean severity
    agreement with the key."""
    rows = []
    for reviewer, group in reviews.groupby("reviewer"):
        sets = [set(found) for found in group["found"]]
        jaccard = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(sets, 2)]
        rows.append({"reviewer": reviewer, "reviews": len(group), "mean pairwise Jaccard": np.mean(jaccard),
                     "score SD": group["score"].std(),
                     "severity agreement with key": group["severity_agreement"].mean()})
    return pd.DataFrame(rows).set_index("reviewer")


def per_call_site(calls: pd.DataFrame) -> pd.DataFrame:
    """Per reviewer and call site: the median latency and TTFT with distribution-free 95% intervals, the number
    of successful calls, their mean output tokens and mean cost (rounded as shown)."""
    ok = calls[calls["status"] == "ok"]
    medians = stats.interval_summary(calls, ["reviewer", "call site"], ["latency_ms", "ttft_ms"], (50,))
    medians["median, ms"] = [stats.fmt_interval(r.estimate, r.low, r.high) for r in medians.itertuples()]
    per_site = medians.pivot_table(index=["reviewer", "call site"], columns="metric", values="median, ms",
                                   aggfunc="first")
    per_site.columns = [f"median {c.removesuffix('_ms')}, ms [95% interval]" for c in per_site.columns]
    costs = ok.groupby(["reviewer", "call site"]).agg(calls=("latency_ms", "size"),
                                                      mean_output_tokens=("output_tokens", "mean"),
                                                      mean_cost_usd=("cost_usd", "mean"))
    return per_site.join(costs).round({"mean_output_tokens": 0, "mean_cost_usd": 5})


@dataclass
class ReviewStudy:
    """Everything notebook 02 quotes; see :func:`study`."""

    source: str
    calls: pd.DataFrame
    reviews: pd.DataFrame
    key: list[Any]
    reported: pd.DataFrame
    migration: pd.DataFrame
    report_migration: pd.DataFrame
    sites: pd.DataFrame
    scores: pd.DataFrame


def study(run_id: str, examples: Path | str | None = None) -> ReviewStudy:
    """Notebook 02 on the review run ``run_id``: its calls (with ``reviewer`` and ``call site``) and reviews (with
    ``reviewer``), the answer key, the report's single runs and migration figures, the migration measured on
    ``examples`` (default: the repository's ``examples/``), the provider-specific call sites per direct version,
    and the score summary per reviewer."""
    examples = Path(examples) if examples is not None else ROOT / "examples"
    calls, reviews = review.reviews(run_id)
    synthetic = bool(calls["synthetic"].all())
    reviews["reviewer"] = reviews["provider"] + " / " + reviews["model"]
    calls["reviewer"] = calls["provider"] + " / " + calls["model"]
    calls["call site"] = calls["kind"].map(CALL_SITES)
    reported = pd.read_csv(REFERENCE_DIR / "experiment2_review.csv").set_index("provider")
    sites = pd.concat([pd.DataFrame([vars(site) for site in migration.call_sites(examples / name)]).assign(file=name)
                       for name in DIRECT])
    return ReviewStudy(
        source=f"run {run_id}" + (", SYNTHETIC (emulator reviewer)" if synthetic else ""), calls=calls,
        reviews=reviews, key=scoring.load_key(), reported=reported,
        migration=migration.migration_table(examples / DIRECT[0], examples / DIRECT[1],
                                            examples / "review_abstracted.py"),
        report_migration=pd.read_csv(REFERENCE_DIR / "experiment2_migration.csv").set_index("metric"),
        sites=sites.groupby(["file", "kind"]).size().unstack(fill_value=0),
        scores=score_summary(reviews, reported))


# -- detection of the key's issues across reviews ---------------------------------------------------------------

def _found_matrix(reviews: pd.DataFrame, issues: Sequence[str], found: str) -> pd.DataFrame:
    return pd.DataFrame([[issue in set(row) for issue in issues] for row in reviews[found]], columns=list(issues),
                        index=reviews.index)


def issue_detection(reviews: pd.DataFrame, issues: Sequence[str], *, group: str = "provider", found: str = "found",
                    alpha: float = 0.05) -> pd.DataFrame:
    """Per issue, does the share of reviews that found it differ between the two groups?

    ``scipy.stats.fisher_exact`` on each issue's 2x2 table (found / not, per group), Holm across issues.
    """
    levels = sorted(reviews[group].unique())
    if len(levels) != 2:
        raise ValueError(f"need exactly two groups in {group!r}, got {levels}")
    matrix = _found_matrix(reviews, issues, found)
    rows = []
    for issue in issues:
        hits = [int(matrix.loc[reviews[group] == level, issue].sum()) for level in levels]
        sizes = [int((reviews[group] == level).sum()) for level in levels]
        table = [[hits[0], sizes[0] - hits[0]], [hits[1], sizes[1] - hits[1]]]
        result = scipy_stats.fisher_exact(table)
        rows.append({"issue": issue, f"found_{levels[0]}": hits[0], f"n_{levels[0]}": sizes[0],
                     f"found_{levels[1]}": hits[1], f"n_{levels[1]}": sizes[1],
                     f"share_{levels[0]}": hits[0] / sizes[0], f"share_{levels[1]}": hits[1] / sizes[1],
                     "odds_ratio": float(result.statistic), "p_value": float(result.pvalue)})
    return stats.with_holm(pd.DataFrame(rows), alpha=alpha)


def detection_icc(reviews: pd.DataFrame, issues: Sequence[str], *, group: str = "provider", found: str = "found",
                  rater: str = "sample") -> pd.DataFrame:
    """Run-to-run consistency per group by ``pingouin.intraclass_corr``: the issues are the targets, each
    review is a rater, the rating is found (1) or not (0).

    ICC(A,1) near 1: any two reviews find the same issues; near 0: which issues a review finds is chance.
    ICC(A,k): reliability of the pooled verdict of all k reviews. (The reviews cover one code sample, so
    scores have a single target and no ICC of their own.) Like kappa, the ICC is low when nearly every
    issue is found by nearly every review (little variance between targets); ``agreement``, the share of
    pairs of reviews that agree on an issue, averaged over issues, shows that case.
    """
    import pingouin as pg

    rows = []
    for level, subset in reviews.groupby(group, sort=True):
        matrix = _found_matrix(subset, issues, found).astype(float)
        matrix.index = subset[rater].to_numpy()
        n, hits = matrix.shape[0], matrix.sum()
        agreement = float(((hits * (hits - 1) + (n - hits) * (n - hits - 1)) / (n * (n - 1))).mean())
        long = matrix.rename_axis("rater").reset_index().melt(id_vars="rater", var_name="issue", value_name="found")
        with warnings.catch_warnings():
            # pingouin 0.7 calls DataFrame.dropna(inplace=True), which pandas 3.1 deprecates; harmless here.
            warnings.filterwarnings("ignore", message="The inplace keyword", category=pd.errors.Pandas4Warning)
            table = pg.intraclass_corr(long, targets="issue", raters="rater", ratings="found")
        ci_column = next(c for c in table.columns if c.startswith("CI"))
        for _, row in table[table["Type"].isin(["ICC(A,1)", "ICC(A,k)"])].iterrows():
            low, high = row[ci_column]
            rows.append({group: level, "type": row["Type"], "icc": float(row["ICC"]), "low": float(low),
                         "high": float(high), "F": float(row["F"]), "p_value": float(row["pval"]),
                         "agreement": agreement, "reviews": n, "issues": matrix.shape[1]})
    return pd.DataFrame(rows)
