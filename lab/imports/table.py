"""Any CSV or Parquet table of calls, with a column mapping: ``field=column[:unit]``.

``field`` is a record field (:data:`lab.core.records.FIELDS`), ``column`` a column of the file and
``unit`` the unit of a time (``s``, ``ms``, ``us``, ``ns``): durations (``latency_ms``,
``ttft_ms``, ...) are converted to milliseconds, ``started_at``/``scheduled_at`` read as times
since 1970; without a unit durations are milliseconds and times ISO 8601 text (UTC when no zone
is given). A column named like a record field is taken as it is unless mapped otherwise, so a
frame of records written to CSV or Parquet reads back without a mapping.

Numbers may group thousands (``1,234.5``); a duration may carry its unit (``250 ms``, ``1.2s``),
which then wins over the mapping's. Times written without a zone are taken in ``tz`` (``--tz``,
an IANA name such as ``Europe/Paris`` or an offset such as ``+02:00``; default UTC).

``status`` accepts ok/error, success/failure, true/false; any other vocabulary (``Online``,
``API FAILURE``, ``200``) is said with ``ok_when`` (``--ok-when COLUMN=VALUE[,VALUE]``: rows whose
column holds one of the values, in any case, are ok, all others errors, typed by the value they
hold unless an ``error_type`` or ``http_status`` says more). Without either a row is an error when
its ``http_status`` is 400 or more or it has an ``error_type``, else ok; a failure without an
``error_type`` gets one from its ``http_status``. CSV is read in blocks by ``pyarrow.csv`` (a
malformed row is reported with its line number and skipped; a value that is not a number, or not a
time, becomes empty, reported once per column and block); Parquet in batches of row groups.
"""

from __future__ import annotations

import re
import shlex
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
_DURATIONS = frozenset(FLOATS) - {"cost_usd"}
_OK = frozenset({"ok", "success", "succeeded", "true", "1"})
_ERROR = frozenset({"error", "failure", "failed", "false", "0"})
_OK_LIKE = re.compile(r"^(?:on.?line|up|pass(?:ed)?|healthy|available|operational|2\d\d|ok\w*|success\w*)$", re.I)
"""Values that look like an ok, to suggest one in ``--ok-when``."""
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


def parse_ok_when(spec: str | None) -> tuple[str, frozenset[str]] | None:
    """``(column, values)`` of ``COLUMN=VALUE[,VALUE]`` (values compared lowercased, trimmed);
    ``BadInput`` saying the form when it is not that."""
    if spec is None:
        return None
    column, sep, listed = spec.partition("=")
    values = frozenset(v.strip().lower() for v in listed.split(",") if v.strip())
    if not sep or not column.strip() or not values:
        raise BadInput(f"--ok-when {spec!r} is not COLUMN=VALUE[,VALUE]: name the column and the values that "
                       "mean ok (e.g. --ok-when status=Online or --ok-when code=200,201)")
    return column.strip(), values


_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$", re.I)


def parse_tz(name: str | None) -> tzinfo | None:
    """The zone of ``--tz``: an IANA name (``Europe/Paris``), ``UTC``, or an offset (``+02:00``,
    ``-0530``, ``UTC+2``); ``None`` for UTC or none given; ``BadInput`` otherwise."""
    if name is None or name.strip().upper() in ("UTC", "Z", "GMT", "+00:00", "00:00"):
        return None
    text = name.strip()
    offset = _OFFSET.match(text)
    if offset:
        sign, hours, minutes = offset.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta < timedelta(hours=24):
            return timezone(-delta if sign == "-" else delta)
    elif "/" in text or text.isalpha():
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise BadInput(f"--tz {name!r} is not a time zone: give an IANA name (e.g. Europe/Paris, America/New_York), "
                   "UTC, or an offset (e.g. +02:00)")


_LATENCY_NAME = re.compile(r"latency|duration|elapsed|response.?time|e2e|rtt|took|round.?trip|total.?time|"
                           r"request.?time|time.?taken|\btime\b|_ms\b|\(ms\)|_s\b", re.I)
_UNIT_NAME = [(re.compile(r"(?:\b|_)(?:ms|msec|millis(?:econds)?)\b|\(ms\)", re.I), "ms"),
              (re.compile(r"(?:\b|_)(?:us|µs|micros(?:econds)?)\b|\((?:us|µs)\)", re.I), "us"),
              (re.compile(r"(?:\b|_)(?:ns|nanos(?:econds)?)\b|\(ns\)", re.I), "ns"),
              (re.compile(r"(?:\b|_)(?:s|sec|secs|seconds)\b|\((?:s|sec)\)", re.I), "s")]


def latency_hint(columns: list[str]) -> str:
    """The ``--map latency_ms=...`` a table most likely needs: its first column named like a duration
    (``latency``, ``duration``, ``response_time``, ``elapsed``, ...), with the unit its name says
    (``_s``, ``_ms``, ``(ms)``, ...; ms when it says none); ``COLUMN[:unit]`` when none is."""
    for column in columns:
        if _LATENCY_NAME.search(column.replace("-", "_")):
            unit = next((u for pattern, u in _UNIT_NAME if pattern.search(column)), "ms")
            return "--map " + shlex.quote(f"latency_ms={column}:{unit}")
    return "--map latency_ms=COLUMN[:unit]"


def _split(pair: str) -> tuple[str, str]:
    field, sep, spec = pair.partition("=")
    if not sep:
        raise BadInput(f"--map {pair!r} is not field=column (e.g. latency_ms=e2e_s:s)")
    return field, spec


def batches(path: Path, mapping: Mapping[str, str] | list[str] | None = None, ok_when: str | None = None,
            tz: str | None = None) -> Iterator[pa.Table]:
    fields = parse_mapping(mapping)
    ok = parse_ok_when(ok_when)
    zone = parse_tz(tz)
    if ok is not None and "status" in fields:
        raise BadInput(f"--ok-when and --map status={fields['status'][0]} both say which rows are ok: give one")
    with open(path, "rb") as handle:
        parquet = handle.read(4) == _PARQUET_MAGIC
    names = _parquet_columns(path) if parquet else _csv_columns(path)
    for field in FIELDS:
        if field in names and field not in fields and field not in {c for c, _ in fields.values()}:
            if not (field == "status" and ok is not None):  # --ok-when says which rows are ok
                fields[field] = (field, None)
    wanted = {column for column, _ in fields.values()} | ({ok[0]} if ok else set())
    absent = sorted(wanted - set(names))
    if absent:
        raise BadInput(f"{path} has no column {', '.join(map(repr, absent))}: its columns are {', '.join(names)}")
    if not fields:
        raise BadInput(f"no column of {path} is a record field: map them with --map field=column[:unit] "
                       f"(e.g. {latency_hint(names)} --map started_at=timestamp)")
    if "latency_ms" not in fields and "ttft_ms" not in fields:
        raise BadInput(f"{path} has no latency column (its columns: {', '.join(names)}): map the one that holds "
                       f"each call's duration with {latency_hint(names)} (units: ms, s, us, ns)")
    if ok is None and not {"status", "http_status", "error_type"} & set(fields):
        likely = [n for n in names if any(w in n.lower() for w in ("status", "state", "success", "error", "code"))]
        warnings.warn(f"{path.name}: no column says which calls failed (status, http_status or error_type), so every "
                      f"row counts as ok; say which do with --ok-when COLUMN=VALUE[,VALUE] or --map status=COLUMN"
                      + (f" (perhaps {', '.join(likely)})" if likely else ""), stacklevel=2)
    source = _parquet(path, sorted(wanted)) if parquet else _csv(path, sorted(wanted))
    for line_of, raw in source:
        yield _records(path, line_of, raw, fields, ok, zone)


def _parquet_columns(path: Path) -> list[str]:
    try:
        return pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(f"{path}: not a readable Parquet file ({exc})") from None


def _csv_columns(path: Path) -> list[str]:
    with _csv_reader(path, None, None) as reader:
        return reader.schema.names


def _parquet(path: Path, wanted: list[str]) -> Iterator[tuple[LineOf, pa.Table]]:
    file = pq.ParquetFile(path)
    before = 0
    for batch in file.iter_batches(batch_size=1 << 20, columns=wanted):
        yield (lambda k, b=before: b + k + 1), pa.Table.from_batches([batch])
        before += batch.num_rows


def _csv(path: Path, wanted: list[str]) -> Iterator[tuple[LineOf, pa.Table]]:
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


def _records(path: Path, line: LineOf, raw: pa.Table, fields: dict[str, tuple[str, str | None]],
             ok: tuple[str, frozenset[str]] | None = None, zone: tzinfo | None = None) -> pa.Table:
    out = {}
    for field, (column, unit) in fields.items():
        values = raw[column]
        if pa.types.is_null(values.type):
            continue  # a column with no value at all
        if field in TIMES:
            out[field] = cols.epoch(_numbers(path, line, column, values), unit) if unit else _times(
                path, line, column, values, zone)
        elif field in _DURATIONS:
            out[field] = _numbers(path, line, column, values, unit or "ms")
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
    table = pa.table(out) if out else pa.table({"_": pa.nulls(raw.num_rows)}).drop_columns(["_"])
    if ok is not None:
        table = _ok_when(table, raw[ok[0]], ok[1])
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
    if "_said" in table.column_names:  # the --ok-when value, when nothing says more
        said = table["_said"]
        table = table.drop_columns(["_said"])
        if "error_type" in table.column_names:
            said = pc.coalesce(table["error_type"], said)
            table = table.drop_columns(["error_type"])
        table = table.append_column("error_type", said)
    return table


_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_THOUSANDS = "^[+-]?\\d{1,3}(?:[,\u00a0\u202f_' ]\\d{3})+(?:\\.\\d+)?$"
_SUFFIXES = {"ns": "ns", "us": "us", "µs": "us", "μs": "us", "ms": "ms", "s": "s", "sec": "s", "secs": "s"}
_WITH_UNIT = rf"^(?P<number>{_NUMBER})\s*(?P<unit>{'|'.join(sorted(_SUFFIXES, key=len, reverse=True))})$"


def _numbers(path: Path, line: LineOf, column: str, values: pa.ChunkedArray, duration: str | None = None
             ) -> pa.ChunkedArray:
    """The column as numbers; thousands may be grouped (``1,234.5``). ``duration``: the column is a
    duration in that unit, returned in milliseconds, and a value may say its own unit (``250 ms``)."""
    scale = UNITS[duration] if duration else 1.0
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pc.multiply(values.cast(pa.float64()), scale)
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    text = pc.if_else(pc.equal(text, ""), None, text)
    try:
        return pc.multiply(text.cast(pa.float64()), scale)
    except pa.ArrowInvalid:
        pass
    grouped = pc.fill_null(pc.match_substring_regex(text, _THOUSANDS), False)
    text = pc.if_else(grouped, pc.replace_substring_regex(text, r"[^\d.+-]", ""), text)
    numeric = pc.fill_null(pc.match_substring_regex(text, rf"^{_NUMBER}$|^[+-]?(inf|nan)$", ignore_case=True),
                           False)
    numbers = pc.multiply(pc.if_else(numeric, text, None).cast(pa.float64()), scale)
    if duration:
        parts = pc.extract_regex(pc.if_else(numeric, None, text), _WITH_UNIT)
        unit = pc.struct_field(parts, "unit")
        suffixed = pc.multiply(pc.struct_field(parts, "number").cast(pa.float64()),
                               _unit_scales(unit))
        numbers = pc.coalesce(numbers, suffixed)
    bad = pc.and_(pc.is_valid(text), pc.is_null(numbers))
    if pc.any(bad).as_py():
        first = pc.index(bad, True).as_py()
        report(Where(path, line(first)), f"column {column!r} holds {pc.sum(bad).as_py()} value(s) that are not "
                                          f"numbers in this block (first {text[first].as_py()!r}); they are left empty")
    return numbers


def _unit_scales(units: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Milliseconds per unit, for unit suffixes (null where none)."""
    known = pa.array(list(_SUFFIXES))
    scales = pa.array([UNITS[_SUFFIXES[u]] for u in known.to_pylist()], pa.float64())
    return pc.take(scales, pc.index_in(units, value_set=known))


def _times(path: Path, line: LineOf, column: str, values: pa.ChunkedArray, zone: tzinfo | None = None) -> pa.Array:
    times = cols.timestamps(values, zone)
    bad = pc.and_(pc.is_valid(values), pc.is_null(times))
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        bad = pc.and_(bad, pc.not_equal(pc.utf8_trim_whitespace(values), ""))
    if pc.any(bad).as_py():
        first = pc.index(bad, True).as_py()
        where = "" if zone is None else f" (or local times that {zone} skips or repeats)"
        report(Where(path, line(first)), f"column {column!r} holds {pc.sum(bad).as_py()} value(s) that are not "
                                          f"ISO 8601 times{where} in this block (first {values[first].as_py()!r}); "
                                          "they are left empty")
    return times


def _status(path: Path, column: str, values: pa.ChunkedArray) -> pa.Array:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values.cast(pa.string())))
    ok, error = pc.is_in(lowered, pa.array(sorted(_OK))), pc.is_in(lowered, pa.array(sorted(_ERROR)))
    unknown = pc.and_(pc.is_valid(lowered), pc.invert(pc.or_(ok, error)))
    if pc.any(unknown).as_py():
        examples = sorted(set(pc.filter(values.cast(pa.string()), unknown).to_pylist()))[:3]
        good = next((e for e in examples if _OK_LIKE.search(e)), examples[0])
        raise BadInput(f"{path}: column {column!r} mapped to status holds {', '.join(map(repr, examples))}, which "
                       f"the lab does not read as ok or error: say which values mean ok with --ok-when "
                       f"{column}=VALUE[,VALUE] (e.g. --ok-when {shlex.quote(f'{column}={good}')}); rows with other values are errors")
    return pc.if_else(ok, "ok", pc.if_else(error, "error", None))


def _ok_when(table: pa.Table, values: pa.ChunkedArray, ok: frozenset[str]) -> pa.Table:
    """``status`` from ``--ok-when``: ok where the column holds one of the values, else an error, whose
    ``error_type`` (unless the row has one) is the value as written."""
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    good = pc.fill_null(pc.is_in(pc.utf8_lower(text), pa.array(sorted(ok))), False)
    table = table.append_column("status", pc.if_else(good, "ok", "error"))
    said = pc.if_else(pc.or_(good, pc.equal(pc.fill_null(text, ""), "")), pa.scalar(None, pa.string()), text)
    return table.append_column("_said", said)
