"""Summaries computed where the data live: percentiles with distribution-free intervals, error rates, counts,
throughput and goodput, per group, by DuckDB over a run's Parquet file or over a frame, never loading every row.

A distribution-free interval for the p-quantile needs only the values at two ranks of the sorted sample: the
order statistics :func:`ranks` names (those ``scipy.stats.quantile_test`` picks). So a summary asks DuckDB
for the counts per group, then, per metric, for ``quantile_cont`` (the linear estimate, as ``numpy.quantile``)
and ``quantile_disc`` at the fractions that select exactly those ranks (``quantile_disc(q)`` is the value at
1-based rank ``ceil(q n)``: rank r is ``(r - 0.5) / n``). One query per metric, whatever the number of rows.
"""

from __future__ import annotations

import contextlib
import functools
import math
import uuid
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

Source = Any
"""What a summary reads: a pandas frame of call records, or a DuckDB relation of them (see :func:`relation`)."""
NOT_RECORDED = "not recorded"


@functools.lru_cache(maxsize=4096)
def ranks(n: int, p: float, confidence: float = 0.95) -> tuple[int | None, int | None]:
    """The 0-based order statistics bounding the p-quantile of n values at ``confidence`` (two-sided), None
    where n cannot give the bound: as ``scipy.stats.quantile_test(x, p=p).confidence_interval`` picks them
    (``binom(n, p).ppf`` and ``.isf`` at half the error rate), computed from n alone."""
    if n < 1:
        return None, None
    tail = (1 - confidence) / 2
    low, high = int(stats.binom.ppf(tail, n, p)) - 1, int(stats.binom.isf(tail, n, p))
    return (low if low >= 0 else None), (high if high < n else None)


def connect() -> Any:
    """A DuckDB connection for summaries: two threads at most (the machine is shared), no progress bar (it would
    print into a terminal's findings; inside Jupyter, DuckDB refuses the setting and shows none anyway)."""
    import duckdb

    con = duckdb.connect()
    con.sql("SET threads TO 2")
    with contextlib.suppress(duckdb.Error):
        con.sql("SET enable_progress_bar = false")
    return con


def fetch_frame(relation: Any) -> pd.DataFrame:
    """A DuckDB relation's rows as a pandas frame (DuckDB's own conversion; its use of a keyword pandas 3.1
    deprecates is silenced here, not in the caller's output)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword", category=FutureWarning)
        warnings.filterwarnings("ignore", message="The inplace keyword", category=DeprecationWarning)
        return relation.df()


def sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def value_sql(column: str) -> str:
    """A numeric column with NaN read as missing (pandas' NaN is a value to DuckDB)."""
    c = sql_name(column)
    return f"CASE WHEN isnan({c}) THEN NULL ELSE {c} END"


def _table(con: Any, source: Source) -> str:
    """The name ``source`` is queried by on ``con``."""
    if isinstance(source, pd.DataFrame):
        con.register("calls", source)
        return "calls"
    return source.alias if hasattr(source, "alias") else str(source)


def percentiles(source: Source, by: Sequence[str], metrics: Sequence[str],
                percentiles: Iterable[float] = (50, 95, 99), *, confidence: float = 0.95, con: Any = None,
                ok_only: bool = True) -> pd.DataFrame:
    """Per group, metric and percentile: ``n`` (calls with the metric recorded), ``estimate`` (linear, as
    ``numpy.quantile``), ``low`` and ``high`` (the order statistics of :func:`ranks`; -inf or +inf where n cannot
    bound it: "unbounded"), ``estimable`` and ``recorded`` (False: no call recorded the metric, "not recorded",
    never "unbounded"). Only successful calls count, unless ``ok_only`` is False."""
    con = con or connect()
    table = _table(con, source)
    pcts = [float(p) for p in percentiles]
    keys = [sql_name(b) for b in by]
    where = "WHERE status = 'ok'" if ok_only else ""
    group = f"GROUP BY {', '.join(keys)}" if keys else ""
    counts = fetch_frame(con.sql(f"SELECT {', '.join([*keys, 'count(*) AS calls']) if keys else 'count(*) AS calls'}, "
                         + ", ".join(f"count({value_sql(m)}) AS {sql_name('n_' + m)}" for m in metrics)
                         + f" FROM {table} {where} {group}"))
    rows = []
    for metric in metrics:
        needed = {}
        for i, row in counts.iterrows():
            n = int(row["n_" + metric])
            needed[i] = {p: ranks(n, p / 100, confidence) for p in pcts}
        fractions = sorted({(r + 0.5) / int(counts.loc[i, "n_" + metric]) for i, by_p in needed.items()
                            for pair in by_p.values() for r in pair if r is not None})
        wanted = [({b: counts.loc[i, b] for b in by}, int(counts.loc[i, "n_" + metric]),
                   sorted({r for pair in by_p.values() for r in pair if r is not None})) for i, by_p in needed.items()]
        values = _quantiles(con, table, keys, metric, pcts, fractions, where, group, wanted)
        for i, row in counts.iterrows():
            key = tuple(row[b] for b in by)
            n = int(row["n_" + metric])
            found = values.get(key, ({}, {}))
            for p in pcts:
                low_rank, high_rank = needed[i][p]
                low = found[1].get((low_rank + 0.5) / n, -math.inf) if low_rank is not None else -math.inf
                high = found[1].get((high_rank + 0.5) / n, math.inf) if high_rank is not None else math.inf
                rows.append({**dict(zip(by, key)), "metric": metric, "n": n, "calls": int(row["calls"]),
                             "percentile": int(p) if float(p).is_integer() else p,
                             "estimate": found[0].get(p, math.nan) if n else math.nan,
                             "low": low if n else math.nan, "high": high if n else math.nan,
                             "estimable": bool(n and math.isfinite(low) and math.isfinite(high)),
                             "recorded": bool(n)})
    columns = [*by, "metric", "n", "calls", "percentile", "estimate", "low", "high", "estimable", "recorded"]
    frame = pd.DataFrame(rows, columns=columns).astype({"estimable": bool, "recorded": bool})
    return frame.sort_values([*by, "metric"], kind="stable", ignore_index=True) if by else frame


MAX_DISC_CELLS = 50_000
"""Above this many groups x fractions, order statistics come from one sort (``row_number``) rather than
``quantile_disc``, which finds every fraction asked for in every group: 3 targets x 121 time bins of 10 million
calls (363 groups, 2,178 fractions) took 3.4 s by ``quantile_disc``; 12 targets (72 fractions) took 2.0 s by
``quantile_disc`` and 8.0 s by one sort."""


def _quantiles(con: Any, table: str, keys: list[str], metric: str, pcts: list[float], fractions: list[float],
               where: str, group: str, wanted: list[tuple[dict[str, Any], int, list[int]]]
               ) -> dict[tuple, tuple[dict[float, float], dict[float, float]]]:
    """Per group: the linear estimates by percentile, and the values at the ``fractions`` of ``quantile_disc``
    (with many fractions: the values at each group's ``wanted`` 0-based ranks, by ``row_number()`` over the
    sorted group, keyed by the same fractions)."""
    value = value_sql(metric)
    estimate = f"quantile_cont({value}, [{', '.join(repr(p / 100) for p in pcts)}]::DOUBLE[])"
    by_rank = len(fractions) * len(wanted) > MAX_DISC_CELLS
    disc = (f"quantile_disc({value}, [{', '.join(repr(f) for f in fractions)}]::DOUBLE[])"
            if fractions and not by_rank else "NULL")
    selected = [*keys, f"{estimate} AS est", f"{disc} AS disc"]
    found = {}
    for *key, est, disc in con.sql(f"SELECT {', '.join(selected)} FROM {table} {where} {group}").fetchall():
        found[tuple(key)] = ({p: math.nan if v is None else float(v) for p, v in zip(pcts, est or [])},
                             {f: float(v) for f, v in zip(fractions, disc or []) if v is not None})
    if by_rank:
        _order_statistics(con, table, keys, value, where, wanted, found)
    return found


def _order_statistics(con: Any, table: str, keys: list[str], value: str, where: str,
                      wanted: list[tuple[dict[str, Any], int, list[int]]], found: dict) -> None:
    """Fill ``found`` with each group's values at its ``wanted`` ranks: ``row_number()`` over each group sorted
    by value, joined to the ranks wanted (one sort of the rows, whatever the number of groups)."""
    names = [k.strip('"').replace('""', '"') for k in keys]
    ranks = pd.DataFrame([{**{f"k{j}": key[name] for j, name in enumerate(names)}, "r": r, "n": n}
                          for key, n, rs in wanted for r in rs],
                         columns=[*(f"k{j}" for j in range(len(names))), "r", "n"])
    if ranks.empty:
        return
    name = f"ranks_{uuid.uuid4().hex[:12]}"
    con.register(name, ranks)
    try:
        partition = f"PARTITION BY {', '.join(keys)}" if keys else ""
        on = " AND ".join([*(f"s.{k} IS NOT DISTINCT FROM w.k{j}" for j, k in enumerate(keys)), "s._r = w.r"])
        filtered = f"{where} AND {value} IS NOT NULL" if where else f"WHERE {value} IS NOT NULL"
        rows = con.sql(
            f"SELECT {', '.join(f's.{k}' for k in keys) + ', ' if keys else ''}w.r, w.n, s._v FROM "
            f"(SELECT {', '.join(keys) + ', ' if keys else ''}{value} AS _v, "
            f"row_number() OVER ({partition} ORDER BY {value}) - 1 AS _r FROM {table} {filtered}) s "
            f"JOIN {name} w ON {on}").fetchall()
    finally:
        con.unregister(name)
    for *key, r, n, v in rows:
        found.setdefault(tuple(key), ({}, {}))[1][(int(r) + 0.5) / int(n)] = float(v)


def error_rates(source: Source, by: Sequence[str], *, confidence: float = 0.95, con: Any = None) -> pd.DataFrame:
    """Per group: calls, errors and the error rate with an interval (:func:`rate_interval`)."""
    con = con or connect()
    table = _table(con, source)
    keys = [sql_name(b) for b in by]
    group = f"GROUP BY {', '.join(keys)}" if keys else ""
    select = [*keys, "count(*) AS n", "count(*) FILTER (WHERE status <> 'ok' OR status IS NULL) AS errors"]
    frame = fetch_frame(con.sql(f"SELECT {', '.join(select)} FROM {table} {group}"))
    frame = frame.rename(columns={k.strip('"'): k.strip('"') for k in keys})
    bounds = [rate_interval(int(e), int(n), confidence) for e, n in zip(frame["errors"], frame["n"], strict=True)]
    frame["error_rate"] = frame["errors"] / frame["n"]
    frame["low"], frame["high"], frame["method"] = zip(*bounds, strict=True) if bounds else ([], [], [])
    return frame.sort_values(list(by), ignore_index=True) if by else frame


def rate_interval(count: int, n: int, confidence: float = 0.95) -> tuple[float, float, str]:
    """An interval for a rate of ``count`` in ``n``, with the method's name: Wilson where it covers, the exact
    Clopper-Pearson where events are rare (fewer than 5 on either side), which keeps its level near 0 and 1
    (``statsmodels.stats.proportion.proportion_confint``)."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return math.nan, math.nan, "none"
    method = "beta" if min(count, n - count) < 5 else "wilson"
    low, high = proportion_confint(count, n, alpha=1 - confidence, method=method)
    return float(low), float(high), "Clopper-Pearson" if method == "beta" else "Wilson"


def throughput(source: Source, by: Sequence[str], *, objectives: dict[str, float] | None = None,
               con: Any = None) -> pd.DataFrame:
    """Per group: the span of the calls' starts, requests per second and output tokens per second achieved
    over it, and goodput: successful calls per second that met every objective (``{metric: at most ms}``; no
    objective: every successful call counts), with the share of calls that did."""
    con = con or connect()
    table = _table(con, source)
    keys = [sql_name(b) for b in by]
    group = f"GROUP BY {', '.join(keys)}" if keys else ""
    met = " AND ".join(["status = 'ok'", *(f"{value_sql(m)} <= {float(ms)!r}" for m, ms in (objectives or {}).items())])
    select = [*keys, "count(*) AS n",
              "epoch(max(started_at)) - epoch(min(started_at)) AS span_s",
              f"sum({value_sql('output_tokens')}) FILTER (WHERE status = 'ok') AS output_tokens",
              f"count(*) FILTER (WHERE {met}) AS good"]
    frame = fetch_frame(con.sql(f"SELECT {', '.join(select)} FROM {table} {group}"))
    span = frame["span_s"].where(frame["span_s"] > 0)
    frame["requests_per_s"] = (frame["n"] - 1) / span
    frame["output_tokens_per_s"] = frame["output_tokens"] / span
    frame["goodput_per_s"] = frame["good"] * (frame["n"] - 1) / frame["n"] / span
    frame["good_share"] = frame["good"] / frame["n"]
    return frame.sort_values(list(by), ignore_index=True) if by else frame


def values_at(x: np.ndarray, p: float, *, confidence: float = 0.95, method: str = "linear") -> dict[str, float]:
    """The p-quantile of an in-memory sample (``numpy.quantile`` with ``method``) with the bounds of :func:`ranks`
    (NaN where n cannot give one); NaN values are dropped, ``inf`` (never answered) kept."""
    x = np.sort(np.asarray(x, float)[~np.isnan(np.asarray(x, float))])
    if not len(x):
        return {"n": 0, "estimate": math.nan, "low": math.nan, "high": math.nan}
    low, high = ranks(len(x), p, confidence)
    return {"n": len(x), "estimate": float(np.quantile(x, p, method=method)),
            "low": math.nan if low is None else float(x[low]), "high": math.nan if high is None else float(x[high])}
