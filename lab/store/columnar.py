"""Call records as Arrow columns: the form of a run's ``calls.parquet`` (an import, a large run).

:data:`SCHEMA` is the record (:data:`lab.core.records.FIELDS`) as typed columns; :func:`conform` makes any
batch of record fields fit it; :func:`to_frame` reads a conformed table back as a frame of records.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lab.core.records import FIELDS, FLOATS, INTEGERS, typed_frame

_ATTEMPT_ERROR = pa.struct([("error_type", pa.string()), ("http_status", pa.int64()), ("duration_ms", pa.float64())])
TIMESTAMP = pa.timestamp("us", tz="UTC")
"""How a record's times are stored: microseconds, UTC."""
_TYPES = {
    **{name: pa.float64() for name in FLOATS},
    **{name: pa.int64() for name in INTEGERS},
    "started_at": TIMESTAMP,
    "scheduled_at": TIMESTAMP,
    "synthetic": pa.bool_(),
    "chunk_offsets_ms": pa.list_(pa.float64()),
    "attempt_errors": pa.list_(_ATTEMPT_ERROR),
}
SCHEMA = pa.schema([(name, _TYPES.get(name, pa.string())) for name in FIELDS])
"""The record as Arrow columns (the columns of a run's ``calls.parquet``)."""

def conform(table: pa.Table) -> pa.Table:
    """The batch with every record column, in order, typed as :data:`SCHEMA` (absent ones null)."""
    columns = []
    for field in SCHEMA:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table[field.name]
        if pa.types.is_integer(field.type) and pa.types.is_floating(column.type):
            column = pc.round(column)
        columns.append(column.cast(field.type, safe=not pa.types.is_integer(field.type)))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A conformed table as a frame of call records: chunk offsets and attempt errors as tuples, as
    :func:`lab.core.records.records_frame` gives them, other columns typed by :func:`lab.core.records.typed_frame`."""
    frame = table.drop_columns(["chunk_offsets_ms", "attempt_errors"]).to_pandas()
    for name in ("chunk_offsets_ms", "attempt_errors"):
        frame[name] = pd.Series([None if v is None else tuple(v) for v in table[name].to_pylist()], dtype=object)
    return typed_frame(frame[list(FIELDS)])
