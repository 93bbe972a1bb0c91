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
    """What a source held: its format, its records, the failures among them, and the record
    fields that no record of it holds (empty in every row, or only a placeholder)."""

    path: Path
    format: str
    rows: int
    errors: int
    missing_fields: tuple[str, ...]


@dataclass
class _Tally:
    rows: int = 0
    errors: int = 0
    held: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        self.errors += pc.sum(pc.equal(table["status"], "error")).as_py() or 0
        self.held |= cols.held(table)
        span = pc.min_max(table["started_at"]).as_py()
        if span["min"] is not None:
            self.first = min(filter(None, (self.first, span["min"])))
            self.last = max(filter(None, (self.last, span["max"])))

    def source(self, path: Path, name: str, placeholders: tuple[str, ...]) -> Imported:
        lacking = [f for f in columnar.SCHEMA.names
                   if f not in cols.BOOKKEEPING and (f not in self.held or f in placeholders)]
        return Imported(path, name, self.rows, self.errors, tuple(lacking))


def read(path: str | Path, format: str | None = None, *, mapping: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The source's call records as a frame (columns :data:`lab.core.records.FIELDS`, typed by
    :func:`lab.core.records.typed_frame`); the format is detected from the content when not given."""
    path = Path(path)
    tables = list(_batches(path, *_format(path, format, mapping), mapping, _Tally()))
    table = pa.concat_tables(tables) if tables else columnar.SCHEMA.empty_table()
    return columnar.to_frame(table)


def inspect(path: str | Path, format: str | None = None, *, mapping: Mapping[str, str] | None = None) -> Imported:
    """The source's format, record and failure counts and lacking fields, without keeping records."""
    tally = _Tally()
    path = Path(path)
    name, fmt = _format(path, format, mapping)
    for _ in _batches(path, name, fmt, mapping, tally):
        pass
    return tally.source(path, name, getattr(fmt, "PLACEHOLDERS", ()))


def import_run(path: str | Path, run_id: str, format: str | None = None, root: str | Path | None = None, *,
               mapping: Mapping[str, str] | None = None, synthetic: bool = False) -> Imported:
    """Store a source as run ``run_id``: ``calls.parquet`` (the records, chunk offsets as a list
    column) and a manifest (experiment ``import``, not synthetic unless ``synthetic`` says the tool
    measured an emulator or a test server, the source's format, file name,
    size and SHA-256, the fields it lacked, the import time as ``started_at`` and ``imported_at``,
    the first and last call's start as ``calls_started``/``calls_ended``). The run must not exist yet."""
    path = Path(path)
    run = Run(run_id, root)
    name, fmt = _format(path, format, mapping)
    created = not run.dir.exists()
    try:
        with run.locked():  # a second import of the same run waits, then finds it exists
            if run.exists:
                raise BadInput(f"run {run_id!r} already exists in {run.dir}: choose another --run")
            tally = _Tally()
            _write_calls(run, _batches(path, name, fmt, mapping, tally, run_id=run_id, experiment="import",
                                       synthetic=synthetic))
            source = tally.source(path, name, getattr(fmt, "PLACEHOLDERS", ()))
            if not source.rows:
                raise BadInput(f"{path} holds no calls as {name} reads them: check --format")
            if {"latency_ms", "ttft_ms"} <= set(source.missing_fields):
                how = ("map its column with --map latency_ms=COLUMN[:unit] (units: ms, s, us, ns)" if name == "csv"
                       else "check --format")
                raise BadInput(f"{path} holds no latency in any of its {source.rows:,} rows as {name} reads it: "
                                 f"{how}")
            run.write_manifest(_manifest(run_id, path, source, tally, mapping, synthetic))
    except BaseException:
        if created and not run.exists:
            shutil.rmtree(run.dir, ignore_errors=True)
        raise
    return source


def _manifest(run_id: str, path: Path, source: Imported, tally: _Tally, mapping: Mapping[str, str] | None,
              synthetic: bool) -> dict[str, object]:
    size, digest = _fingerprint(path)
    imported = now()
    times = {} if "started_at" in source.missing_fields else {
        "calls_started": _iso(tally.first), "calls_ended": _iso(tally.last)}
    return {
        "run_id": run_id, "experiment": "import", "synthetic": synthetic, "started_at": imported,
        "imported_at": imported, **times,
        "source": {"format": source.format, "file": path.name, "size": size, "sha256": digest,
                   **({"mapping": dict(mapping)} if mapping else {})},
        "rows": source.rows, "errors": source.errors, "missing_fields": list(source.missing_fields),
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


def _format(path: Path, format: str | None, mapping: Mapping[str, str] | None) -> tuple[str, ModuleType]:
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if format is None and mapping:
        format = "csv"
    fmt = module(format) if format is not None else module(detect(path))
    if mapping and fmt.NAME != "csv":
        raise BadInput(f"--map applies to the csv format only, not {fmt.NAME}")
    if path.is_dir() and fmt.NAME != "llmperf":
        raise BadInput(f"{path} is a folder: name one {fmt.NAME} file")
    return fmt.NAME, fmt


def _batches(path: Path, name: str, fmt: ModuleType, mapping: Mapping[str, str] | None, tally: _Tally, *,
             run_id: str | None = None, experiment: str | None = None, synthetic: bool = False) -> Iterator[pa.Table]:
    """Conformed record batches with the importer's bookkeeping: ``endpoint`` ``<format>:<file>``
    (unless the format names one), ``sample`` the record's index in the source, ``experiment``
    the format (or ``import``), ``run_id``, and ``synthetic`` (false unless told); ``name`` and
    ``fmt`` as :func:`_format` resolved them."""
    raw = fmt.batches(path, mapping) if name == "csv" else fmt.batches(path)
    sample = 0
    for batch in raw:
        table = columnar.conform(batch)
        rows = table.num_rows
        fill = {
            "endpoint": pc.coalesce(table["endpoint"], pa.scalar(f"{name}:{path.name}")),
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
