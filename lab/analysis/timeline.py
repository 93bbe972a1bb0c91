"""Latency over time, for runs that span hours or months: windows from ``started_at``, summaries per window, the
experiment-1 tests on any run, medians per time bin, and change points.

**Windows.** A call's window is its hour of day ("00".."23"), weekday ("Mon".."Sun"), day ("2026-03-01") in a
time zone, or the ``window`` a session was labelled with. :func:`window_sql` gives the DuckDB expression,
:func:`window_labels` the same labels for a frame (ordered categoricals: hours and days in time, Monday first,
recorded windows in the order of their first call).

**Where the work happens.** A source is a frame of call records, a DuckDB relation or table name on ``con``, or
the path of a Parquet file (``Run.columnar_path``). Summaries run in DuckDB over a view that adds the label or the
time bin (:func:`lab.analysis.summary.percentiles`, ``summary.error_rates``): a 10-million-row import is never
loaded. The tests load one group's successful values of one metric at a time; change points read only the
medians per bin, then the group's values of one metric to size the change.

**Time-of-day tests** (:func:`window_tests`): ``lab.analysis.stats.time_of_day_tests`` (``scipy.stats.kruskal``;
``scipy.stats.anderson_ksamp``, midrank, permutation p-value) per group while the group has at most
``max_permutation_n`` calls (1,000: about 5 s for 9,999 resamples on this 2-core machine, the cost growing with
n); beyond it, ``anderson_ksamp``'s asymptotic p-value (Scholz and Stephens), which is accurate at such n but which
scipy clips to [0.001, 0.25]: the ``note`` says when it was capped or floored. The ``method`` column says which.

**Change points** (:func:`change_points`): one level shift per group, at most. The series is the medians per time
bin of :func:`over_time` (50 to 200 bins), whatever n; the statistic Pettitt's (1979) K = max_t |U_t|, with U_t
the Mann-Whitney statistic of the first t bins against the rest (``scipy.stats.rankdata``), its argmax the
location; the p-value ``scipy.stats.permutation_test`` on the order of the bins (seeded), which redoes the search
over every split in every resample, so the selection of the location is paid for. Holm across groups. The size is
``lab.analysis.stats.median_ratio`` of the calls after the change over those before it.

Why not pyhomogeneity's ``pettitt_test`` (1.1, 2020, unmaintained): at n = 10^5 calls its asymptotic p-value
(``2 exp(-6 K^2 / (n^3 + n^2))``) takes 0.07 s but tests independent calls, so at such n any drift is
"significant", and the approximation is conservative (3.3% rejections at a nominal 5% on 100 normal values);
its default Monte-Carlo p-value draws ``sim`` x n values from the unseeded global ``numpy.random`` (two calls on
the same data gave 0.986 and 0.980) in one array: 16 GB at its default 20,000 simulations and n = 10^5, 6 s
at 2,000 simulations and n = 10^4. ruptures (maintained) locates several changes given a penalty but gives no
p-value; a permutation of its fit costs far more than that of K.

Limits: bins are exchangeable under the null only if calls are independent and spread evenly; a daily cycle or
autocorrelated load can look like a change, and bins with few calls have noisier medians. One change per group
(the strongest); a series with several steps shows its largest. The ratio's interval is conditional on the
estimated time (not adjusted for its selection): read it where the test rejects. Bins are aligned to the Unix
epoch in UTC.
"""

from __future__ import annotations

import contextlib
import math
import uuid
import warnings
import zoneinfo
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lab.analysis import summary
from lab.analysis.stats import holm, median_ratio, time_of_day_tests, with_holm
from lab.core.errors import BadInput

WINDOWS = ("hour", "weekday", "day", "window")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOURS = tuple(f"{h:02d}" for h in range(24))
WIDTHS = ((1, "1 s"), (2, "2 s"), (5, "5 s"), (10, "10 s"), (15, "15 s"), (30, "30 s"), (60, "1 min"),
          (120, "2 min"), (300, "5 min"), (600, "10 min"), (900, "15 min"), (1800, "30 min"), (3600, "1 h"),
          (7200, "2 h"), (10800, "3 h"), (21600, "6 h"), (43200, "12 h"), (86400, "1 day"), (172800, "2 days"),
          (604800, "1 week"), (1209600, "2 weeks"), (2419200, "4 weeks"))
"""Round bin widths in seconds, each at most 4 times the one before: the first giving at most 200 bins gives 50 or
more on any span of 50 seconds or longer."""
MAX_BINS = 200
LABEL = "_label"
_DATA_WORD = ("SYNTHETIC", "REAL", "MIXED")


# --- windows -------------------------------------------------------------------------------------------------------

def zone(tz: str) -> str:
    """``tz`` if it is an IANA time zone (``zoneinfo.ZoneInfo``), else :class:`BadInput` in one line."""
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadInput(f"unknown time zone {tz!r}: use an IANA name such as 'UTC' or 'Europe/Paris'") from None
    return tz


def _check_by(by: str) -> str:
    if by not in WINDOWS:
        raise BadInput(f"unknown window {by!r}: use one of {', '.join(WINDOWS)}")
    return by


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def window_sql(by: str, tz: str = "UTC", *, column: str = "started_at") -> str:
    """The DuckDB expression of each call's window label: ``column`` (a ``TIMESTAMP WITH TIME ZONE``) read in
    ``tz`` (``timezone(tz, ts)``), as :func:`window_labels` labels it; for ``"window"``, the recorded column."""
    if _check_by(by) == "window":
        return 'CAST("window" AS VARCHAR)'
    local = f"timezone('{zone(tz)}', {column})"
    if by == "hour":
        return f"strftime({local}, '%H')"
    if by == "weekday":
        return f"[{', '.join(repr(d) for d in WEEKDAYS)}][isodow({local})]"
    return f"strftime({local}, '%Y-%m-%d')"


def window_labels(frame: pd.DataFrame, by: str, tz: str = "UTC") -> pd.Series:
    """Each call's window label (as :func:`window_sql`), an ordered categorical: hours and days in time order,
    weekdays Monday first, recorded windows in the order of their first call (``Series.dt.tz_convert``)."""
    if _check_by(by) == "window":
        if "window" not in frame or frame["window"].isna().all():
            raise BadInput(_NO_WINDOW)
        labels = frame["window"].astype("string")
        first = frame["started_at"].groupby(labels, observed=True).min().sort_values(kind="stable")
        return pd.Series(pd.Categorical(labels, categories=list(first.index), ordered=True), index=frame.index,
                         name=by)
    started = pd.to_datetime(frame["started_at"])
    started = started.dt.tz_localize("UTC") if started.dt.tz is None else started
    local = started.dt.tz_convert(zone(tz))
    if by == "hour":
        codes, categories = local.dt.hour, HOURS
    elif by == "weekday":
        codes, categories = local.dt.day_of_week, WEEKDAYS
    else:
        days = local.dt.strftime("%Y-%m-%d")
        return pd.Series(pd.Categorical(days, categories=sorted(days.dropna().unique()), ordered=True),
                         index=frame.index, name=by)
    return pd.Series(pd.Categorical.from_codes(codes.fillna(-1).astype(int), categories=list(categories),
                                               ordered=True), index=frame.index, name=by)


_NO_WINDOW = "this run records no collection window: use by='hour', 'weekday' or 'day' (from started_at)"


def _natural(by: str, labels: Sequence[str], first: dict[str, int] | None = None) -> list[str]:
    """The labels in their natural order (``first``: the first call's time per recorded window)."""
    labels = [str(label) for label in labels]
    if by == "weekday":
        return [d for d in WEEKDAYS if d in set(labels)]
    if by == "window":
        return sorted(labels, key=lambda label: (first or {}).get(label, 0))
    return sorted(labels)


# --- sources in DuckDB ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _calls(con: Any, source: Any, **columns: str) -> Iterator[str]:
    """A temporary view of ``source`` with ``_ts`` (``started_at`` as a UTC ``TIMESTAMP WITH TIME ZONE``) and
    ``columns`` (name: expression, which may use ``_ts``); rows without ``started_at`` left out."""
    name = f"timeline_{uuid.uuid4().hex[:12]}"
    registered = None
    if isinstance(source, pd.DataFrame):
        registered = f"{name}_frame"
        con.register(registered, source)
        base = registered
    elif isinstance(source, Path) or (isinstance(source, str) and source.endswith(".parquet")):
        base = "read_parquet('" + str(source).replace("'", "''") + "')"
    elif hasattr(source, "to_view"):
        registered = f"{name}_relation"
        source.to_view(registered)
        base = registered
    else:
        base = str(source)
    try:
        described = {r[0]: r[1] for r in con.sql(f"DESCRIBE SELECT * FROM {base}").fetchall()}
        kind = described.get("started_at", "missing")
        if "_ts" in described:
            ts = ""  # a view of this module's already
        elif "TIME ZONE" in kind or kind.startswith("TIMESTAMPTZ"):  # TIMESTAMPTZ_NS: pandas' Parquet files
            ts = ", CAST(started_at AS TIMESTAMP WITH TIME ZONE) AS _ts"
        elif kind.startswith("TIMESTAMP"):
            ts = ", timezone('UTC', CAST(started_at AS TIMESTAMP)) AS _ts"  # a naive time is UTC, as every record's
        else:
            raise BadInput(f"started_at is {kind}, not a timestamp: the calls need their start times")
        extra = "".join(f", {expression} AS {_q(n)}" for n, expression in columns.items())
        con.sql(f"CREATE TEMP VIEW {name} AS SELECT *{extra} FROM "
                    f"(SELECT *{ts} FROM {base} WHERE started_at IS NOT NULL)")
        yield name
    finally:
        con.sql(f"DROP VIEW IF EXISTS {name}")
        if registered and isinstance(source, pd.DataFrame):
            con.unregister(registered)
        elif registered:
            con.sql(f"DROP VIEW IF EXISTS {registered}")


def _labelled(con: Any, source: Any, by: str, tz: str) -> contextlib.AbstractContextManager[str]:
    if by == "window":
        with _calls(con, source) as probe:
            columns = {r[0] for r in con.sql(f"DESCRIBE {probe}").fetchall()}
            if "window" not in columns or not con.sql(f'SELECT count("window") FROM {probe}').fetchall()[0][0]:
                raise BadInput(_NO_WINDOW)
    return _calls(con, source, **{LABEL: window_sql(by, tz, column="_ts")})


def _first_calls(con: Any, view: str) -> dict[str, int]:
    """The first call's time (epoch microseconds) per label of ``view``: the order of recorded windows."""
    return dict(con.sql(f"SELECT {LABEL}, min(epoch_us(_ts)) FROM {view} WHERE {LABEL} IS NOT NULL "
                            "GROUP BY 1").fetchall())


# --- summaries per window ------------------------------------------------------------------------------------------

def per_window(source: Any, by: str, *, tz: str = "UTC", metrics: Sequence[str] = ("latency_ms",),
               group: str = "target", percentiles: Sequence[float] = (50, 95), confidence: float = 0.95,
               con: Any = None) -> pd.DataFrame:
    """Per group, window (``by``, an ordered categorical) and metric: ``calls``, ``n`` (successful calls with the
    metric), each percentile ``p50``, ``p50_low``, ``p50_high`` ... with its distribution-free interval
    (:func:`lab.analysis.summary.percentiles`; -inf/inf where n cannot bound it), and ``errors``, ``error_rate``,
    ``error_low``, ``error_high`` (:func:`lab.analysis.summary.error_rates`). Computed in DuckDB."""
    con = con or summary.connect()
    with _labelled(con, source, _check_by(by), tz) as view:
        first = _first_calls(con, view) if by == "window" else None
        keys = [group, LABEL]
        pct = summary.percentiles(view, keys, metrics, percentiles, confidence=confidence, con=con)
        errors = summary.error_rates(view, keys, confidence=confidence, con=con)
    errors = errors[errors[LABEL].notna()].rename(columns={"n": "calls", "low": "error_low", "high": "error_high",
                                                           "method": "error_method"})
    pct["name"] = ["p" + str(p) for p in pct["percentile"]]
    wide = pct.pivot_table(index=[*keys, "metric"], columns="name", values=["estimate", "low", "high"],
                           aggfunc="first", dropna=False)
    table = pd.DataFrame(index=wide.index)
    for p in dict.fromkeys(pct["name"]):
        table[p], table[p + "_low"], table[p + "_high"] = wide[("estimate", p)], wide[("low", p)], wide[("high", p)]
    table = table.join(pct.groupby([*keys, "metric"])["n"].first()).reset_index()
    grid = errors[keys].merge(pd.DataFrame({"metric": list(metrics)}), how="cross")
    table = grid.merge(table, on=[*keys, "metric"], how="left").merge(errors, on=keys, how="left")
    table["n"] = table["n"].fillna(0).astype(int)
    table[LABEL] = pd.Categorical(table[LABEL], categories=_natural(by, table[LABEL].unique(), first), ordered=True)
    table = table.sort_values([group, LABEL, "metric"], ignore_index=True).rename(columns={LABEL: by})
    metric_columns = [c for p in dict.fromkeys(pct["name"]) for c in (p, p + "_low", p + "_high")]
    return table[[group, by, "metric", "calls", "n", *metric_columns, "errors", "error_rate", "error_low",
                  "error_high"]]


# --- the experiment-1 tests on any run -----------------------------------------------------------------------------

def _groups(source: Any, by: str, tz: str, metric: str, group: str, con: Any) -> Iterator[tuple[Any, pd.DataFrame]]:
    """Per group (sorted): its successful calls with ``metric``, columns ``by`` (an ordered categorical of every
    window of the run) and ``metric``. A frame keeps its row order; a DuckDB source is read group by group, in
    time order."""
    if isinstance(source, pd.DataFrame):
        labels = window_labels(source, by, tz)
        ok = source["status"].eq("ok") & source[metric].notna() & labels.notna()
        data = pd.DataFrame({by: labels[ok], metric: source.loc[ok, metric].astype(float)})
        keys = source.loc[ok, group]
        for key in sorted(source[group].dropna().unique()):
            yield key, data[keys == key]
        return
    import pyarrow.compute as pc

    con = con or summary.connect()
    with _labelled(con, source, by, tz) as view:
        order = {"hour": list(HOURS), "weekday": list(WEEKDAYS)}.get(by)
        if by == "window":
            first = _first_calls(con, view)
            order = _natural(by, list(first), first)
        value = summary.value_sql(metric)
        for (key,) in con.sql(f"SELECT DISTINCT {_q(group)} FROM {view} WHERE {_q(group)} IS NOT NULL "
                                  "ORDER BY 1").fetchall():
            table = con.sql(f"SELECT {LABEL}, {value} AS v FROM {view} WHERE status = 'ok' AND {_q(group)} = $1 "
                            f"AND {value} IS NOT NULL AND {LABEL} IS NOT NULL ORDER BY epoch_us(_ts), v",
                            params=[key]).to_arrow_table()
            labels = table[LABEL].to_pandas() if not len(table) else pc.dictionary_encode(table[LABEL]).to_pandas()
            data = pd.DataFrame({by: pd.Categorical(labels, categories=order or sorted(set(labels)), ordered=True),
                                 metric: table["v"].to_numpy()})
            yield key, data


def window_tests(source: Any, by: str, *, tz: str = "UTC", metric: str = "latency_ms", group: str = "target",
                 n_resamples: int = 9999, seed: int | np.random.Generator = 0, alpha: float = 0.05,
                 max_permutation_n: int = 1000, max_permutation_cells: int = 5_000, con: Any = None) -> pd.DataFrame:
    """Do a group's windows share one distribution of ``metric``? Successful calls, per group: Kruskal-Wallis and
    the Anderson-Darling k-sample test by :func:`lab.analysis.stats.time_of_day_tests` (permutation p-value, one
    seeded generator for all groups) up to ``max_permutation_n`` calls and ``max_permutation_cells`` calls x windows
    (the statistic's cost: notebook 03's 250 calls in 5 windows take 0.3 s), beyond them ``scipy.stats.kruskal`` and
    ``scipy.stats.anderson_ksamp``'s asymptotic p-value; Holm across all rows. Windows with one call are left out
    (``left_out`` names them), groups with fewer than two windows left are not tested (a row with ``note``).

    Columns: ``group``, ``test``, ``windows``, ``n``, ``statistic``, ``p_value``, ``method``, ``left_out``,
    ``note``, ``p_holm``, ``reject``. ``source``: a frame (its row order kept) or a DuckDB source (see module)."""
    _check_by(by)
    zone(tz)
    rng = np.random.default_rng(seed)
    rows = []
    for key, data in _groups(source, by, tz, metric, group, con):
        counts = data[by].value_counts(sort=False)
        few = [str(w) for w, c in counts.items() if c == 1]
        data = data[~data[by].isin(few)]
        base = {group: key, "windows": int((counts >= 2).sum()), "n": len(data), "left_out": ", ".join(few)}
        if base["windows"] < 2 or data[metric].nunique() < 2:
            note = ("fewer than 2 windows with 2 or more successful calls" if base["windows"] < 2
                    else "every value is the same")
            rows.append({**base, "test": None, "statistic": math.nan, "p_value": math.nan, "method": "",
                         "note": note})
            continue
        if len(data) <= max_permutation_n and len(data) * base["windows"] <= max_permutation_cells:
            found = time_of_day_tests(data.assign(**{group: key}), value=metric, window=by, by=group,
                                      n_resamples=n_resamples, seed=rng, alpha=alpha)
            for r in found.itertuples(index=False):
                permuted = "Anderson" in r.test
                rows.append({**base, "test": r.test, "statistic": r.statistic, "p_value": r.p_value,
                             "method": f"permutation, {n_resamples} resamples" if permuted else "asymptotic chi2",
                             "note": ""})
            continue
        samples = [g[metric].to_numpy() for _, g in data.groupby(by, sort=True, observed=True)]
        kw = stats.kruskal(*samples)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ad = stats.anderson_ksamp(samples, variant="midrank")
        clipped = next((str(w.message).split(":")[0] for w in caught if "p-value" in str(w.message)), "")
        rows.append({**base, "test": "Kruskal-Wallis", "statistic": float(kw.statistic), "p_value": float(kw.pvalue),
                     "method": "asymptotic chi2", "note": ""})
        rows.append({**base, "test": "Anderson-Darling k-sample (asymptotic)", "statistic": float(ad.statistic),
                     "p_value": float(ad.pvalue),
                     "method": f"asymptotic (n > {max_permutation_n} or n x windows > {max_permutation_cells:,}; "
                               "scipy clips p to [0.001, 0.25])",
                     "note": clipped})
    columns = [group, "test", "windows", "n", "statistic", "p_value", "method", "left_out", "note"]
    return with_holm(pd.DataFrame(rows, columns=columns), alpha=alpha)


# --- latency over time ---------------------------------------------------------------------------------------------

def bin_width(span: pd.Timedelta | float, max_bins: int = MAX_BINS) -> tuple[pd.Timedelta, str]:
    """The narrowest round width (:data:`WIDTHS`) that cuts ``span`` (seconds or a Timedelta) into at most
    ``max_bins`` bins, and its name."""
    seconds = span.total_seconds() if isinstance(span, pd.Timedelta) else float(span)
    for width, name in WIDTHS:
        if math.floor(seconds / width) + 1 <= max_bins:
            return pd.Timedelta(seconds=width), name
    return pd.Timedelta(seconds=WIDTHS[-1][0]), WIDTHS[-1][1]


def _width_name(width: pd.Timedelta) -> str:
    return next((name for seconds, name in WIDTHS if pd.Timedelta(seconds=seconds) == width), str(width))


def over_time(source: Any, metric: str = "latency_ms", *, group: str = "target",
              bins: int | str | pd.Timedelta | None = None, confidence: float = 0.95, con: Any = None) -> pd.DataFrame:
    """Per group and time bin: ``start``, ``end``, ``n`` (successful calls with ``metric``) and the ``median`` with
    its distribution-free interval ``low``, ``high`` (:func:`lab.analysis.summary.percentiles`, in DuckDB; -inf/inf
    where n cannot bound it). ``bins``: a width ("1h", a Timedelta), at most that many bins (an int), or None:
    at most 200 (:func:`bin_width`). The width is ``attrs["width"]`` (and ``attrs["width_name"]``)."""
    con = con or summary.connect()
    with _calls(con, source) as probe:
        low, high = con.sql(f"SELECT min(epoch_us(_ts)), max(epoch_us(_ts)) FROM {probe}").fetchall()[0]
    if low is None:
        raise BadInput("the source holds no calls with a start time")
    if bins is None or isinstance(bins, int):
        width, name = bin_width((high - low) / 1e6, bins or MAX_BINS)
    else:
        width = pd.Timedelta(bins)
        if width <= pd.Timedelta(0):
            raise BadInput(f"bin width {bins!r} is not positive")
        name = _width_name(width)
    step = int(width / pd.Timedelta(microseconds=1))
    with _calls(con, source, _bin=f"epoch_us(_ts) // {step}") as view:
        table = summary.percentiles(view, [group, "_bin"], [metric], (50,), confidence=confidence, con=con)
    start = pd.to_datetime(table["_bin"].astype("int64") * step, unit="us", utc=True)
    frame = pd.DataFrame({group: table[group], "metric": metric, "start": start, "end": start + width,
                          "n": table["n"].astype(int), "median": table["estimate"], "low": table["low"],
                          "high": table["high"]})
    frame = frame.sort_values([group, "start"], ignore_index=True)
    frame.attrs.update(width=width, width_name=name, group=group, metric=metric, confidence=confidence)
    return frame


def figure(over: pd.DataFrame, *, label: str | None = None, changes: pd.DataFrame | None = None,
           ax: Any = None) -> Any:
    """The medians of :func:`over_time`: one line per group with its interval as a band (where n bounds it), a log
    y-axis in plain numbers (:func:`lab.analysis.plots.plain_log_ticks`), a legend, dashed lines at the changes
    :func:`change_points` found; ``label`` names the data and must say SYNTHETIC, REAL or MIXED."""
    import matplotlib.pyplot as plt

    from lab.analysis.plots import plain_log_ticks

    if label is not None and not any(word in label for word in _DATA_WORD):
        raise BadInput(f"figure label {label!r} must say whether the data are SYNTHETIC, REAL or MIXED")
    group, metric = over.columns[0], str(over["metric"].iloc[0]) if len(over) else "latency_ms"
    fig, ax = plt.subplots(figsize=(9, 4)) if ax is None else (ax.figure, ax)
    colours = {}
    for key, series in over.groupby(group, sort=True):
        middle = series["start"] + (series["end"] - series["start"]) / 2
        (line,) = ax.plot(middle, series["median"], marker=".", markersize=3, linewidth=1, label=str(key))
        colours[key] = line.get_color()
        bounded = np.isfinite(series["low"]) & np.isfinite(series["high"])
        ax.fill_between(middle, series["low"].where(bounded), series["high"].where(bounded), color=line.get_color(),
                        alpha=0.2, linewidth=0)
    if changes is not None:
        for r in changes[changes["changed"]].itertuples(index=False):
            key = getattr(r, group) if hasattr(r, group) else r[0]
            ax.axvline(r.at, color=colours.get(key, "grey"), linestyle="--", linewidth=1)
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    width = over["end"].iloc[0] - over["start"].iloc[0] if len(over) else pd.Timedelta(0)
    confidence = over.attrs.get("confidence", 0.95)
    ax.set(xlabel="start time (UTC)", ylabel=f"median {metric}")
    ax.set_title(f"Median {metric} per {_width_name(width)}, {confidence:.0%} interval"
                 + (f"\n{label}" if label else ""))
    ax.legend(title=group, fontsize="small")
    fig.autofmt_xdate()
    return fig


# --- change points -------------------------------------------------------------------------------------------------

def _pettitt_u(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pettitt's U_t = 2 S_t - t (n + 1), S_t the rank sum of the first t values (``scipy.stats.rankdata``),
    t = 1..n-1, along ``axis``: the Mann-Whitney statistic of the first t values against the rest, centred."""
    x = np.moveaxis(np.asarray(x, float), axis, -1)
    n = x.shape[-1]
    t = np.arange(1, n)
    return 2 * np.cumsum(stats.rankdata(x, axis=-1), axis=-1)[..., :-1] - t * (n + 1)


def _pettitt_k(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.abs(_pettitt_u(x, axis)).max(axis=-1)


def change_points(source: Any, metric: str = "latency_ms", *, group: str = "target", alpha: float = 0.05,
                  bins: int | str | pd.Timedelta | None = None, over: pd.DataFrame | None = None,
                  n_resamples: int = 9999, seed: int | np.random.Generator = 0, confidence: float = 0.95,
                  min_bins: int = 10, con: Any = None) -> pd.DataFrame:
    """Did a group's level of ``metric`` move, and when? Per group, on its medians per bin (:func:`over_time`):
    Pettitt's K, its permutation p-value (``scipy.stats.permutation_test``, the search over splits redone in each
    resample), Holm across groups (:func:`lab.analysis.stats.holm`). See the module for the method and its limits.

    Columns: ``group``, ``bins`` (bins with calls), ``at`` (start of the first bin after the split),
    ``n_before``, ``n_after`` (successful calls), ``ratio``, ``low``, ``high`` (median after / median before,
    :func:`lab.analysis.stats.median_ratio` at ``confidence``), ``statistic`` (K), ``p_value``, ``p_holm``,
    ``changed``, ``method``, ``note``. The split is reported whether or not it is significant. ``over``: the
    :func:`over_time` frame of the same source, metric and group, if at hand (its bins are used)."""
    con = con or summary.connect()
    rng = np.random.default_rng(seed)
    rows = []
    with _calls(con, source) as view:
        if over is None:
            over = over_time(view, metric, group=group, bins=bins, confidence=confidence, con=con)
        elif over.columns[0] != group or not over["metric"].eq(metric).all():
            raise BadInput(f"the over_time frame is not of {metric} by {group}")
        width = over.attrs["width_name"]
        for key, series in over.groupby(group, sort=True):
            series = series[series["n"] > 0].sort_values("start")
            row = {group: key, "bins": len(series), "at": pd.NaT, "n_before": 0, "n_after": 0, "ratio": math.nan,
                   "low": math.nan, "high": math.nan, "statistic": math.nan, "p_value": math.nan,
                   "method": f"Pettitt's K on medians per {width}, permutation ({n_resamples} resamples)",
                   "note": ""}
            medians = series["median"].to_numpy(float)
            if len(series) < min_bins or np.unique(medians).size < 2:
                rows.append({**row, "method": "", "note": f"fewer than {min_bins} bins with calls"
                             if len(series) < min_bins else "every bin has the same median"})
                continue
            test = stats.permutation_test((medians,), _pettitt_k, permutation_type="pairings", vectorized=True,
                                          n_resamples=n_resamples, alternative="greater", rng=rng)
            split = int(np.argmax(np.abs(_pettitt_u(medians)))) + 1
            at = series["start"].iloc[split]
            before, after = _split(con, view, metric, group, key, at)
            ratio = median_ratio(before, after, confidence=confidence)
            rows.append({**row, "at": at, "n_before": len(before), "n_after": len(after),
                         "ratio": ratio["estimate"], "low": ratio["low"], "high": ratio["high"],
                         "statistic": float(test.statistic), "p_value": float(test.pvalue)})
    columns = [group, "bins", "at", "n_before", "n_after", "ratio", "low", "high", "statistic", "p_value"]
    frame = pd.DataFrame(rows, columns=[*columns, "method", "note"])
    frame["p_holm"], frame["changed"] = holm(frame["p_value"].to_numpy(float), alpha)
    frame.attrs.update(width=over.attrs["width"], width_name=width)
    return frame[[*columns, "p_holm", "changed", "method", "note"]]


def _split(con: Any, view: str, metric: str, group: str, key: Any, at: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """One group's successful values of ``metric``, before ``at`` and from it on (one column read)."""
    value = summary.value_sql(metric)
    found = con.sql(f"SELECT {value} AS v, epoch_us(_ts) >= $2 AS after FROM {view} WHERE status = 'ok' "
                    f"AND {_q(group)} = $1 AND {value} IS NOT NULL",
                    params=[key, int(at.value // 1000)]).fetchnumpy()
    values, after = np.asarray(found["v"], float), np.asarray(found["after"], bool)
    return values[~after], values[after]
