"""A run's calls where DuckDB can query them, whatever wrote the run, with every call labelled.

:class:`Calls` opens a run through the store (:meth:`lab.store.Run.frame`; for a run an experiment
collected, the calls its plan holds, :func:`lab.collect.experiment.load`) and exposes it as the view
``calls`` on a DuckDB connection: an import's Parquet file is queried in place (a summary never loads
every row), any other run's records are registered as a frame. In the view every call has a
``target`` (its own, else provider/model, model, provider, endpoint or the run's id: what the
data do say) and a ``task`` ("all" where none was recorded), and an open-loop call its times
from the planned send (``response_ms``, ``ttft_from_planned_ms``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lab.analysis import summary
from lab.core.records import FIELDS
from lab.store import MissingRecord, Run

SCALARS = tuple(f for f in FIELDS if f not in ("chunk_offsets_ms", "attempt_errors", "text"))
"""The record's columns a summary can use (chunk lists, errors per attempt and texts stay out)."""


class Calls:
    """One run's calls on a DuckDB connection (see the module's notes)."""

    def __init__(self, run: Run | str, con: Any = None) -> None:
        self.run = run if isinstance(run, Run) else Run(run)
        self.about = self.run.about
        self.con = con or summary.connect()
        self._open()

    def _open(self) -> None:
        run = self.run
        if run.columnar_path.exists() and not run.records():
            path = str(run.columnar_path).replace("'", "''")
            self.con.sql(f"CREATE OR REPLACE VIEW base AS SELECT * RENAME (file_row_number AS row_number) "
                         f"FROM read_parquet('{path}', file_row_number = true)")
        else:
            frame = self._frame()[list(SCALARS)]
            self.con.register("base", frame.assign(row_number=np.arange(len(frame), dtype=np.int64)))
        name = _sql_quote(run.id)
        self.con.sql(f"""CREATE OR REPLACE VIEW calls AS SELECT * REPLACE (
            coalesce(nullif(target, ''), provider || '/' || model, model, provider, endpoint, {name}) AS target,
            coalesce(nullif(task, ''), 'all') AS task),
            send_lag_ms + latency_ms AS response_ms, send_lag_ms + ttft_ms AS ttft_from_planned_ms
            FROM base""")
        if not self.count():
            raise MissingRecord(f"run {run.id!r} holds no call records yet"
                                + (" (the simulations' cache)" if self.about.kind == "simulations" else ""))

    def _frame(self) -> pd.DataFrame:
        """The run's records: for a collected run, the calls its plan holds (a collection not finished is
        refused with what to do, :class:`MissingRecord`); every record otherwise."""
        if self.about.collected:
            from lab.collect import experiment

            return experiment.load(self.run)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damage is reported by `lab runs check`, not by each analysis
            return self.run.frame()

    @functools.cached_property
    def provenance(self) -> dict[str, Any]:
        """Who answered, judged on the successful calls (on all calls where none succeeded: a failure may carry
        no answer to judge): ``synthetic`` and ``real`` (calls the emulator answered or not), ``providers`` (of
        the real ones, sorted), and ``first`` and ``last`` (the first and last day a call started, UTC)."""
        judged = "status = 'ok'" if self.con.sql("SELECT count(*) FROM calls WHERE status = 'ok'").fetchall()[0][0] \
            else "TRUE"
        synthetic, real, providers = self.con.sql(
            "SELECT count(*) FILTER (WHERE coalesce(synthetic, false)), count(*) FILTER (WHERE NOT coalesce("
            "synthetic, false)), list(DISTINCT provider) FILTER (WHERE NOT coalesce(synthetic, false) AND provider "
            f"IS NOT NULL) FROM calls WHERE {judged}").fetchall()[0]
        first, last = self.con.sql("SELECT epoch_us(min(started_at)), epoch_us(max(started_at)) FROM calls").fetchall()[0]
        day = lambda us: None if us is None else pd.Timestamp(us, unit="us", tz="UTC").date().isoformat()  # noqa: E731
        return {"synthetic": int(synthetic), "real": int(real), "providers": sorted(map(str, providers or [])),
                "first": day(first), "last": day(last)}

    @property
    def label(self) -> str:
        """SYNTHETIC, REAL or MIXED (:attr:`provenance`)."""
        found = self.provenance
        return "MIXED" if found["synthetic"] and found["real"] else "SYNTHETIC" if found["synthetic"] else "REAL"

    def sql(self, query: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """The result of a query on the view ``calls`` as a frame."""
        return summary.fetch_frame(self.con.sql(query, params=list(params) or None))

    def count(self) -> int:
        return int(self.con.sql("SELECT count(*) FROM calls").fetchall()[0][0])

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.con.sql("SELECT * FROM calls LIMIT 0").columns)

    def recorded(self, columns: Sequence[str]) -> dict[str, int]:
        """How many calls have a value in each of ``columns`` (NaN counts as none)."""
        parts = ", ".join(f"count({summary.value_sql(c)})" for c in columns)
        return dict(zip(columns, map(int, self.con.sql(f"SELECT {parts} FROM calls").fetchall()[0]), strict=True))

    def values(self, metric: str, by: Sequence[str] = ("target",), *, most: int | None = None,
               seed: int = 0) -> dict[tuple, np.ndarray]:
        """The successful calls' values of ``metric`` per group of ``by`` (every group, missing values left out),
        in the order the run holds them; with ``most``, a group that has more gets a seeded random sample of
        ``most`` (drawn in two steps: a hash of each call's row number and the seed keeps a little more than
        ``most`` in DuckDB, so a run of 100 million calls is never loaded whole, then ``numpy`` keeps ``most``).

        Two scans: the groups with their counts, then each call's group as a number (its keys' positions among
        their values, ``list_position``, in mixed radix) beside its value, never as text."""
        keys = [summary.sql_name(b) for b in by]
        value = summary.value_sql(metric)
        counted = self.con.sql(f"SELECT {', '.join(keys)}, count({value}) FILTER (WHERE status = 'ok') FROM calls "
                               "GROUP BY ALL ORDER BY ALL").fetchall()
        groups, counts = [tuple(row[:-1]) for row in counted], [int(row[-1]) for row in counted]
        levels = [sorted({str(g[i]) for g in groups if g[i] is not None}) for i in range(len(keys))]
        radix = np.cumprod([1] + [len(level) + 1 for level in levels])  # position 0: the key is missing
        codes_of = [sum(int(radix[i]) * (0 if v is None else levels[i].index(str(v)) + 1) for i, v in enumerate(g))
                    for g in groups]
        code = " + ".join(f"coalesce(list_position(${i + 1}, CAST({k} AS VARCHAR)), 0) * {int(radix[i])}"
                          for i, k in enumerate(keys))
        kept = ""
        if most is not None and max(counts, default=0) > most:
            # a large group keeps each call with a chance that leaves most + 5 standard deviations on average:
            # it falls short of most once in 3.5 million
            enough = most + 5 * math.sqrt(most) + 10
            shares = [0.0] * int(radix[-1])
            for c, n in zip(codes_of, counts, strict=True):
                shares[c] = min(1.0, enough / n) if n else 1.0
            kept = (f" AND (hash(row_number, {int(seed)}) % 1000000) < 1000000 * "
                    f"list_extract(${len(keys) + 1}::DOUBLE[], ({code}) + 1)")
        found = self.con.sql(f"SELECT {code} AS code, {value} AS v FROM calls WHERE status = 'ok' AND {value} "
                             f"IS NOT NULL{kept}", params=[*levels, shares] if kept else levels).fetchnumpy()
        small = np.int16 if radix[-1] < 2**15 else np.int64  # numpy's stable sort of int16 is a radix sort
        codes, values = np.asarray(found["code"], small), np.asarray(found["v"], float)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        rng = np.random.default_rng(seed)
        out = {}
        for group, c in zip(groups, codes_of, strict=True):
            low, high = np.searchsorted(sorted_codes, [c, c + 1])
            picked = values[order[low:high]]
            if most is not None and len(picked) > most:
                picked = picked[np.sort(rng.choice(len(picked), most, replace=False))]
            out[group] = picked
        return out

    def frame(self, columns: Sequence[str], where: str = "") -> pd.DataFrame:
        """Only ``columns`` of the calls (``where``: an SQL condition), as a frame."""
        names = ", ".join(summary.sql_name(c) for c in columns)
        return self.sql(f"SELECT {names} FROM calls" + (f" WHERE {where}" if where else ""))


def _sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
