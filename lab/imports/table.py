"""Any CSV or Parquet table of calls, with a column mapping: ``field=column[:unit]``.

``field`` is a record field (:data:`lab.core.records.FIELDS`), ``column`` a column of the file and
``unit`` the unit of a time (``s``, ``ms``, ``us``, ``ns``): durations (``latency_ms``,
``ttft_ms``, ...) are converted to milliseconds, ``started_at``/``scheduled_at`` read as times
since 1970; without a unit durations are milliseconds and times ISO 8601 text (UTC when no zone
is given). A column named like a record field is taken as it is unless mapped otherwise, so a
frame of records written to CSV or Parquet reads back without a mapping.

``status`` accepts ok/error, success/failure, true/false; without a ``status`` column a row is an
error when its ``http_status`` is 400 or more or it has an ``error_type``, else ok; a failure
without an ``error_type`` gets one from its ``http_status``. CSV is read in blocks by
``pyarrow.csv`` (a malformed row is reported with its line number and skipped; a value that is
not a number, or not a time, becomes empty, reported once per column and block); Parquet in
batches of row groups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from lab.core.errors import BadInput
from lab.core.records import FIELDS, FLOATS, INTEGERS
from lab.imports import FORMATS
from lab.imports import columns as cols
from lab.imports.files import GZIP_MAGIC, damaged
from lab.store.lines import Where, report

NAME = "csv"
DESCRIPTION = FORMATS[NAME]

UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
TIMES = ("started_at", "scheduled_at")
_NUMBERS = frozenset(FLOATS) | frozenset(INTEGERS)
_OK = frozenset({"ok", "success", "succeeded", "true", "1"})
_ERROR = frozenset({"error", "failure", "failed", "false", "0"})
_PARQUET_MAGIC = b"PAR1"
BLOCK_BYTES = 16 * 1024 * 1024
LineOf = Callable[[int], int]
"""The line (CSV) or row (Parquet) of a batch's row, by its index in the batch."""


def sniff(head: bytes) -> bool:
    """A Parquet file, or text whose first line names record fields separated by commas."""
    if head.startswith(_PARQUET_MAGIC):
        return True
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lstrip("\ufeff")
    names = {n.strip().strip('"') for n in first.split(",")}
    return len(names) > 1 and bool(names & set(FIELDS))


def parse_mapping(pairs: Mapping[str, str] | list[str] | None) -> dict[str, tuple[str, str | None]]:
    """``{field: (column, unit)}`` from ``{field: "column[:unit]"}`` or ``["field=column[:unit]", ...]``;
    ``ValueError`` saying what is wrong with a pair."""
    if pairs is None:
        return {}
    items = pairs.items() if isinstance(pairs, Mapping) else [_split(p) for p in pairs]
    mapping = {}
    for field, spec in items:
        field = field.strip()
        if field not in FIELDS:
            raise BadInput(f"--map {field}=...: {field!r} is not a record field (fields: {', '.join(FIELDS)})")
        column, _, unit = spec.strip().rpartition(":") if ":" in spec else (spec.strip(), "", "")
        unit = unit.strip() or None
        if unit is not None and unit not in UNITS:
            raise BadInput(f"--map {field}={spec}: unknown unit {unit!r}; use one of {', '.join(UNITS)}")
        if unit is not None and field not in TIMES and field not in FLOATS:
            raise BadInput(f"--map {field}={spec}: a unit applies to times and durations only")
        if not column.strip():
            raise BadInput(f"--map {field}={spec}: name a column of the file")
        if field in mapping:
            raise BadInput(f"--map {field}=... is given twice: map each field once")
        mapping[field] = (column.strip(), unit)
    return mapping


def _split(pair: str) -> tuple[str, str]:
    field, sep, spec = pair.partition("=")
    if not sep:
        raise BadInput(f"--map {pair!r} is not field=column (e.g. latency_ms=e2e_s:s)")
    return field, spec


def batches(path: Path, mapping: Mapping[str, str] | list[str] | None = None) -> Iterator[pa.Table]:
    fields = parse_mapping(mapping)
    with open(path, "rb") as handle:
        parquet = handle.read(4) == _PARQUET_MAGIC
    names = _parquet_columns(path) if parquet else _csv_columns(path)
    for field in FIELDS:
        if field in names and field not in fields and field not in {c for c, _ in fields.values()}:
            fields[field] = (field, None)
    absent = sorted({column for column, _ in fields.values()} - set(names))
    if absent:
        raise BadInput(f"{path} has no column {', '.join(map(repr, absent))}: its columns are {', '.join(names)}")
    if not fields:
        raise BadInput(f"no column of {path} is a record field: map them with --map field=column[:unit] "
                         "(e.g. --map latency_ms=e2e_s:s --map started_at=timestamp)")
    source = _parquet(path, fields) if parquet else _csv(path, fields)
    for line_of, raw in source:
        yield _records(path, line_of, raw, fields)


def _parquet_columns(path: Path) -> list[str]:
    try:
        return pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(f"{path}: not a readable Parquet file ({exc})") from None


def _csv_columns(path: Path) -> list[str]:
    with _csv_reader(path, None, None) as reader:
        return reader.schema.names


def _parquet(path: Path, fields: dict[str, tuple[str, str | None]]) -> Iterator[tuple[LineOf, pa.Table]]:
    file = pq.ParquetFile(path)
    before = 0
    for batch in file.iter_batches(batch_size=1 << 20, columns=sorted({c for c, _ in fields.values()})):
        yield (lambda k, b=before: b + k + 1), pa.Table.from_batches([batch])
        before += batch.num_rows


def _csv(path: Path, fields: dict[str, tuple[str, str | None]]) -> Iterator[tuple[LineOf, pa.Table]]:
    wanted = sorted({c for c, _ in fields.values()})
    skipped: list[int] = []  # lines of malformed rows, reported and left out

    def line_of(row: int) -> int:
        """The line of the ``row``-th good row (0-based), after the header and around skipped lines."""
        line = row + 2
        for number in skipped:
            line += number <= line
        return line

    before = 0
    with _csv_reader(path, wanted, skipped) as reader:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise BadInput(f"{path}: cannot be read as CSV after line {line_of(before)} ({exc})") from None
            yield (lambda k, b=before: line_of(b + k)), pa.Table.from_batches([batch])
            before += batch.num_rows


def _csv_reader(path: Path, wanted: list[str] | None, skipped: list[int] | None) -> pa_csv.CSVStreamingReader:
    """A streaming reader of ``wanted`` columns as text; a malformed row is skipped, and reported
    (its line noted in ``skipped``) unless ``skipped`` is None (a first look at the header)."""

    def skip(row: pa_csv.InvalidRow) -> str:
        if skipped is not None:
            skipped.append(row.number)
            damaged(path, row.number, f"{row.actual_columns} fields where the header has {row.expected_columns}")
        return "skip"

    with open(path, "rb") as handle:
        compressed = handle.read(2) == GZIP_MAGIC
    stream = pa.CompressedInputStream(pa.OSFile(str(path)), "gzip") if compressed else pa.OSFile(str(path))
    convert = pa_csv.ConvertOptions(include_columns=wanted, strings_can_be_null=True,
                                    column_types={c: pa.string() for c in wanted or []})
    try:
        read = pa_csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False)  # use_threads hides row numbers
        return pa_csv.open_csv(stream, read_options=read,
                               parse_options=pa_csv.ParseOptions(invalid_row_handler=skip),
                               convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise BadInput(f"{path}: cannot be read as CSV ({exc})") from None


def _records(path: Path, line: LineOf, raw: pa.Table, fields: dict[str, tuple[str, str | None]]) -> pa.Table:
    out = {}
    for field, (column, unit) in fields.items():
        values = raw[column]
        if pa.types.is_null(values.type):
            continue  # a column with no value at all
        if field in TIMES:
            out[field] = cols.epoch(_numbers(path, line, column, values), unit) if unit else _times(path, line, column,
                                                                                                    values)
        elif field in _NUMBERS:
            numbers = _numbers(path, line, column, values)
            out[field] = pc.multiply(numbers, UNITS[unit]) if unit else numbers
        elif field == "status":
            out[field] = _status(path, column, values)
        elif field == "synthetic":
            out[field] = pc.is_in(pc.utf8_lower(values.cast(pa.string())), pa.array(sorted(_OK)))
        elif field in ("chunk_offsets_ms", "attempt_errors"):
            if not pa.types.is_list(values.type):
                raise BadInput(f"{path}: {field} needs a list column (Parquet), not {values.type} in {column!r}")
            out[field] = values
        else:
            out[field] = values.cast(pa.string())
    table = pa.table(out)
    if "status" not in table.column_names:
        failed = pc.or_(pc.fill_null(pc.greater_equal(table["http_status"], 400.0), False)
                        if "http_status" in table.column_names else pa.scalar(False),
                        pc.is_valid(table["error_type"]) if "error_type" in table.column_names else pa.scalar(False))
        if isinstance(failed, pa.Scalar):
            return table
        table = table.append_column("status", pc.if_else(failed, "error", "ok"))
    if "http_status" in table.column_names:
        derived = cols.http_error_types(table["http_status"])
        current = table["error_type"] if "error_type" in table.column_names else pa.nulls(table.num_rows, pa.string())
        kinds = pc.if_else(pc.equal(table["status"], "error"), pc.coalesce(current, derived), current)
        table = table.drop_columns(["error_type"]) if "error_type" in table.column_names else table
        table = table.append_column("error_type", kinds)
    return table


def _numbers(path: Path, line: LineOf, column: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return values.cast(pa.float64())
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    text = pc.if_else(pc.equal(text, ""), None, text)
    try:
        return text.cast(pa.float64())
    except pa.ArrowInvalid:
        numeric = pc.match_substring_regex(text, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$",
                                           ignore_case=True)
        bad = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(numeric, False)))
        first = pc.index(bad, True).as_py()
        report(Where(path, line(first)), f"column {column!r} holds {pc.sum(bad).as_py()} value(s) that are not "
                                          f"numbers in this block (first {text[first].as_py()!r}); they are left empty")
        return pc.if_else(bad, None, text).cast(pa.float64())


def _times(path: Path, line: LineOf, column: str, values: pa.ChunkedArray) -> pa.Array:
    times = cols.timestamps(values)
    bad = pc.and_(pc.is_valid(values), pc.is_null(times))
    if pc.any(bad).as_py():
        first = pc.index(bad, True).as_py()
        report(Where(path, line(first)), f"column {column!r} holds {pc.sum(bad).as_py()} value(s) that are not "
                                          f"ISO 8601 times in this block (first {values[first].as_py()!r}); "
                                          "they are left empty")
    return times


def _status(path: Path, column: str, values: pa.ChunkedArray) -> pa.Array:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values.cast(pa.string())))
    ok, error = pc.is_in(lowered, pa.array(sorted(_OK))), pc.is_in(lowered, pa.array(sorted(_ERROR)))
    unknown = pc.and_(pc.is_valid(lowered), pc.invert(pc.or_(ok, error)))
    if pc.any(unknown).as_py():
        examples = sorted(set(pc.filter(values.cast(pa.string()), unknown).to_pylist()))[:3]
        raise BadInput(f"{path}: column {column!r} mapped to status holds {', '.join(map(repr, examples))}; "
                         "expected ok/error, success/failure or true/false")
    return pc.if_else(ok, "ok", pc.if_else(error, "error", None))
