"""Reading a source into call records, and storing it as a run (``calls.parquet`` and a manifest).

Records stream through in Arrow batches: a file is never held whole, and an import writes each
batch to Parquet as it comes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lab.core.errors import BadInput
from lab.core.redact import redact
from lab.imports import columns as cols
from lab.imports.formats import detect, module
from lab.store import Run, columnar, now, versions


@dataclass(frozen=True)
class Imported:
    """What a source held: its format, its records, the failures among them (``error_kinds``: how
    many of each ``error_type``, most first; ``None`` for failures of no type), and the record
    fields that no record of it holds (empty in every row, or only a placeholder)."""

    path: Path
    format: str
    rows: int
    errors: int
    missing_fields: tuple[str, ...]
    error_kinds: tuple[tuple[str | None, int], ...] = ()
    notes: tuple[str, ...] = ()
    """What a reader of the records must know: the tool's percentile method where it is not the
    lab's, streamed calls whose time to first token the file does not hold, and why."""

    @property
    def ok(self) -> int:
        return self.rows - self.errors


LAB_PERCENTILE_METHOD = "linear"
"""numpy's ``method=`` of the lab's own percentiles (numpy's and pandas' default)."""
ERROR_FIELDS = ("error_type", "http_status", "error_message")
"""Fields that describe failures: not lacking from a source that holds none."""


@dataclass
class _Tally:
    rows: int = 0
    errors: int = 0
    held: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    kinds: dict[str | None, int] = field(default_factory=dict)
    untimed: int = 0  # ok streams without a time to first token

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        failed = pc.fill_null(pc.equal(table["status"], "error"), False)
        self.errors += pc.sum(failed).as_py() or 0
        for item in pc.value_counts(pc.filter(table["error_type"], failed)).to_pylist():
            self.kinds[item["values"]] = self.kinds.get(item["values"], 0) + item["counts"]
        self.held |= cols.held(table)
        untimed = pc.and_(pc.and_(pc.equal(table["status"], "ok"), pc.equal(table["kind"], "stream")),
                          pc.is_null(table["ttft_ms"], nan_is_null=True))
        self.untimed += pc.sum(pc.fill_null(untimed, False)).as_py() or 0
        span = pc.min_max(table["started_at"]).as_py()
        if span["min"] is not None:
            self.first = min(filter(None, (self.first, span["min"])))
            self.last = max(filter(None, (self.last, span["max"])))

    def source(self, path: Path, name: str, fmt: ModuleType) -> Imported:
        placeholders = getattr(fmt, "PLACEHOLDERS", ())
        moot = ERROR_FIELDS if not self.errors else ()  # no failure to describe: not lacking
        lacking = [f for f in columnar.SCHEMA.names
                   if f not in cols.BOOKKEEPING and f not in moot and (f not in self.held or f in placeholders)]
        kinds = tuple(sorted(self.kinds.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or "")))
        return Imported(path, name, self.rows, self.errors, tuple(lacking), kinds, self._notes(name, fmt))

    def _notes(self, name: str, fmt: ModuleType) -> tuple[str, ...]:
        notes = []
        method = getattr(fmt, "PERCENTILE_METHOD", None)
        if method and method != LAB_PERCENTILE_METHOD:
            notes.append(f"{name}'s own percentiles are order statistics (numpy method={method!r}), the lab's "
                         f"interpolate ({LAB_PERCENTILE_METHOD!r}): compare with {name}'s summary using "
                         f"method={method!r}")
        if self.untimed:
            why = getattr(fmt, "NO_TTFT_REASON", "the file holds no time of their first content")
            notes.append(f"TTFT not recorded for {self.untimed:,} of the streamed calls: {why}")
        return tuple(notes)


def read(path: str | Path, format: str | None = None, *, mapping: Mapping[str, str] | None = None,
         ok_when: str | None = None, tz: str | None = None) -> pd.DataFrame:
    """The source's call records as a frame (columns :data:`lab.core.records.FIELDS`, typed by
    :func:`lab.core.records.typed_frame`); the format is detected from the content when not given.
    ``mapping``, ``ok_when`` and ``tz`` are the csv format's (:mod:`lab.imports.table`)."""
    path = Path(path)
    options = _options(mapping, ok_when, tz)
    tables = list(_batches(path, *_format(path, format, options), options, _Tally()))
    table = pa.concat_tables(tables) if tables else columnar.SCHEMA.empty_table()
    return columnar.to_frame(table)


def inspect(path: str | Path, format: str | None = None, *, mapping: Mapping[str, str] | None = None,
            ok_when: str | None = None, tz: str | None = None) -> Imported:
    """The source's format, record and failure counts and lacking fields, without keeping records."""
    tally = _Tally()
    path = Path(path)
    options = _options(mapping, ok_when, tz)
    name, fmt = _format(path, format, options)
    for _ in _batches(path, name, fmt, options, tally):
        pass
    return tally.source(path, name, fmt)


def import_run(path: str | Path, run_id: str, format: str | None = None, root: str | Path | None = None, *,
               mapping: Mapping[str, str] | None = None, ok_when: str | None = None, tz: str | None = None,
               synthetic: bool = False) -> Imported:
    """Store a source as run ``run_id``: ``calls.parquet`` (the records, chunk offsets as a list
    column) and a manifest (experiment ``import``, not synthetic unless ``synthetic`` says the tool
    measured an emulator or a test server, the source's format, file name,
    size and SHA-256, the percentile method of the tool's own summary (``percentile_method``, a
    name of numpy's ``method=``, where the tool writes one), for csv the mapping, ``--ok-when``
    and the time zone of times written without one; the fields it lacked, the failures by type,
    the import time as ``started_at`` and ``imported_at``, the first and last call's start as
    ``calls_started``/``calls_ended``). The run must not exist yet."""
    path = Path(path)
    run = Run(run_id, root)
    options = _options(mapping, ok_when, tz)
    name, fmt = _format(path, format, options)
    created = not run.dir.exists()
    try:
        with run.locked():  # a second import of the same run waits, then finds it exists
            if run.exists:
                raise BadInput(f"run {run_id!r} already exists in {run.dir}: choose another --run")
            tally = _Tally()
            _write_calls(run, _batches(path, name, fmt, options, tally, run_id=run_id, experiment="import",
                                       synthetic=synthetic))
            source = tally.source(path, name, fmt)
            if not source.rows:
                raise BadInput(f"{path} holds no calls as {name} reads them: check --format")
            if {"latency_ms", "ttft_ms"} <= set(source.missing_fields):
                how = ("map its column with --map latency_ms=COLUMN[:unit] (units: ms, s, us, ns)" if name == "csv"
                       else "check --format")
                raise BadInput(f"{path} holds no latency in any of its {source.rows:,} rows as {name} reads it: "
                                 f"{how}")
            run.write_manifest(_manifest(run_id, path, source, fmt, tally, options, synthetic))
    except BaseException:
        if created and not run.exists:
            shutil.rmtree(run.dir, ignore_errors=True)
        raise
    return source


def _manifest(run_id: str, path: Path, source: Imported, fmt: ModuleType, tally: _Tally,
              options: dict[str, object], synthetic: bool) -> dict[str, object]:
    size, digest = _fingerprint(path)
    imported = now()
    times = {} if "started_at" in source.missing_fields else {
        "calls_started": _iso(tally.first), "calls_ended": _iso(tally.last)}
    method = getattr(fmt, "PERCENTILE_METHOD", None)
    csv = {}
    if source.format == "csv":
        csv = {**({"mapping": dict(options["mapping"])} if options.get("mapping") else {}),
               **({"ok_when": options["ok_when"]} if options.get("ok_when") else {}),
               "timezone": options.get("tz") or "UTC"}
    return {
        "run_id": run_id, "experiment": "import", "synthetic": synthetic, "started_at": imported,
        "imported_at": imported, **times,
        "source": {"format": source.format, "file": path.name, "size": size, "sha256": digest,
                   **({"percentile_method": method} if method else {}), **csv},
        "rows": source.rows, "errors": source.errors,
        "error_types": {kind if kind is not None else "unclassified": count for kind, count in source.error_kinds},
        "missing_fields": list(source.missing_fields),
        **({"notes": list(source.notes)} if source.notes else {}),
        "versions": versions(),
    }


def _write_calls(run: Run, batches: Iterator[pa.Table]) -> None:
    """Write the batches to the run's ``calls.parquet``, which appears whole or not at all."""
    target, partial = run.dir / "calls.parquet", run.dir / "calls.parquet.partial"
    try:
        with pq.ParquetWriter(partial, columnar.SCHEMA, compression="zstd") as writer:
            for table in batches:
                writer.write_table(table)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _options(mapping: Mapping[str, str] | None, ok_when: str | None, tz: str | None) -> dict[str, object]:
    """The csv format's options, those given."""
    return {k: v for k, v in (("mapping", mapping), ("ok_when", ok_when), ("tz", tz)) if v}


def _format(path: Path, format: str | None, options: Mapping[str, object]) -> tuple[str, ModuleType]:
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if format is None and options:
        format = "csv"
    fmt = module(format) if format is not None else module(detect(path))
    if options and fmt.NAME != "csv":
        flags = {"mapping": "--map", "ok_when": "--ok-when", "tz": "--tz"}
        raise BadInput(f"{', '.join(flags[k] for k in options)} applies to the csv format only, not {fmt.NAME}")
    if path.is_dir() and fmt.NAME != "llmperf":
        raise BadInput(f"{path} is a folder: name one {fmt.NAME} file")
    return fmt.NAME, fmt


def _batches(path: Path, name: str, fmt: ModuleType, options: Mapping[str, object], tally: _Tally, *,
             run_id: str | None = None, experiment: str | None = None, synthetic: bool = False) -> Iterator[pa.Table]:
    """Conformed record batches with the importer's bookkeeping: ``endpoint`` ``<format>:<file>``
    (unless the format names one), ``target`` (:func:`_targets`), ``sample`` the record's index in
    the source, ``experiment`` the format (or ``import``), ``run_id``, and ``synthetic`` (false
    unless told); ``name`` and ``fmt`` as :func:`_format` resolved them."""
    raw = fmt.batches(path, **options) if name == "csv" else fmt.batches(path)
    sample = 0
    for batch in raw:
        table = columnar.conform(batch)
        rows = table.num_rows
        endpoint = pc.coalesce(table["endpoint"], pa.scalar(f"{name}:{path.name}"))
        fill = {
            "endpoint": endpoint,
            "target": _targets(table, name, endpoint),
            "sample": pc.coalesce(table["sample"], pa.array(range(sample, sample + rows), pa.int64())),
            "experiment": pc.coalesce(table["experiment"], pa.scalar(name)) if experiment is None
            else cols.constant(experiment, rows),
            "run_id": table["run_id"] if run_id is None else cols.constant(run_id, rows),
            "synthetic": cols.constant(synthetic, rows),
        }
        fill |= {column: _redacted(fill.get(column, table[column])) for column in ("endpoint", "error_message")}
        for column, values in fill.items():
            table = table.set_column(table.schema.get_field_index(column), column,
                                     pa.chunked_array([values]).cast(columnar.SCHEMA.field(column).type))
        table = _checked(table, path, sample)
        sample += rows
        tally.add(table)
        yield table


def _targets(table: pa.Table, name: str, endpoint: pa.ChunkedArray) -> pa.ChunkedArray:
    """Every row's ``target``: the source's own, else ``provider/model``, else ``<format>/<model>``
    (a tool that names the model but not who served it), else the provider, else the endpoint
    (the URL the source names, or ``<format>:<file name>``). Empty text counts as none."""

    def named(column: str) -> pa.ChunkedArray:
        values = table[column]
        return pc.if_else(pc.equal(pc.utf8_trim_whitespace(values), ""), pa.scalar(None, pa.string()), values)

    provider, model = named("provider"), named("model")
    return pc.coalesce(named("target"), pc.binary_join_element_wise(provider, model, "/"),
                       pc.binary_join_element_wise(pa.scalar(name), model, "/"), provider, endpoint)


TIMES = ("latency_ms", "ttft_ms", "first_text_ms", "tpot_ms", "max_gap_ms", "connect_ms")
"""Durations a record holds: finite and at least 0 when known (NaN from a source means unknown)."""
COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")


def _checked(table: pa.Table, path: Path, first_row: int) -> pa.Table:
    """The batch with NaN times as unknown (null); a negative or infinite time, token count or cost refused
    with the row and the column, as a file read in the wrong unit or by the wrong importer would show."""
    for name in (*TIMES, *COUNTS, "chunk_offsets_ms"):
        values = table[name]
        flat = pc.list_flatten(values) if name == "chunk_offsets_ms" else values
        if pa.types.is_floating(flat.type):
            bad = pc.or_(pc.is_inf(flat), pc.less(flat, 0))
        else:
            bad = pc.less(flat, 0)
        if pc.any(bad).as_py():
            if name == "chunk_offsets_ms":  # the first row with a bad offset
                row = next(i for i, v in enumerate(values.to_pylist()) if v and any(
                    x is not None and (x < 0 or x == float("inf")) for x in v))
            else:
                row = int(pc.index(bad, True).as_py())
            value = values[row].as_py()
            raise BadInput(f"{path}: record {first_row + row + 1} has {name} = {value!r}: times, token counts and "
                             "costs must be finite and at least 0 (check the column and its unit with --map, or "
                             "--format)")
        if name in TIMES and pa.types.is_floating(values.type) and pc.any(pc.is_nan(values)).as_py():
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values))
    return table


def _redacted(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A text column with every credential masked (:func:`lab.core.redact.redact`), each distinct value once."""
    values = pa.chunked_array([values]) if isinstance(values, pa.Array) else values
    distinct = pc.unique(values).drop_null()
    if len(distinct) == 0:
        return values.combine_chunks()
    masked = pa.array([redact(v) for v in distinct.to_pylist()], pa.string())
    return pc.take(masked, pc.index_in(values, value_set=distinct)).combine_chunks()


def _fingerprint(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file (of a folder: total size, digest over its files in name order)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    size = 0
    for file in files:
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
                size += len(chunk)
    return size, digest.hexdigest()
