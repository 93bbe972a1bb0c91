"""How fast :mod:`lab.analysis.timeline` reads a large run, and how much memory it takes.

Writes N calls to a Parquet file under /tmp (``started_at`` timestamp[us, UTC], ``latency_ms``, ``status``,
``target``; three targets over 30 days: ``steady``; ``step``, 30% slower from day 18 on; ``daily``, 10% slower in the
afternoon (UTC); about 2% errors), then in a child process runs ``per_window`` by hour, ``over_time`` and
``change_points`` on it (DuckDB reads the file directly) and reports the wall time of each step and the child's
peak resident memory (``ru_maxrss``, as ``benchmarks/import_scale.py`` measures it). ``--tests`` adds
``window_tests`` by hour (one group's values in memory at a time; asymptotic Anderson-Darling at this n).

    .venv/bin/python benchmarks/timeline.py [--rows 10000000] [--tests] [--keep]

Goal: the three steps well under 30 s and under 1 GB peak RSS on the 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 1_000_000
DAYS = 30
START_US = 1_796_000_000 * 1_000_000
STEP_DAY = 18
TARGETS = ("steady", "step", "daily")


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` calls in time order, a million at a time (one row group each)."""
    rng = np.random.default_rng(seed)
    span_us = DAYS * 86_400 * 1_000_000
    schema = pa.schema([("started_at", pa.timestamp("us", tz="UTC")), ("latency_ms", pa.float64()),
                        ("status", pa.string()), ("target", pa.string())])
    names = pa.array(TARGETS)
    with pq.ParquetWriter(path, schema) as writer:
        for offset in range(0, rows, CHUNK):
            n = min(CHUNK, rows - offset)
            started = START_US + (offset + np.arange(n)) * (span_us // rows)
            target = rng.integers(0, len(TARGETS), n)
            latency = rng.lognormal(np.log(1500), 0.35, n)
            day = (started - START_US) / 86_400e6
            latency[(target == 1) & (day >= STEP_DAY)] *= 1.3
            hour = (started // 3_600_000_000) % 24
            latency[(target == 2) & (hour >= 12) & (hour < 18)] *= 1.1
            failed = rng.random(n) < 0.02
            writer.write_table(pa.table({
                "started_at": pa.array(started, pa.timestamp("us", tz="UTC")),
                "latency_ms": np.round(latency, 2),
                "status": pa.array(np.where(failed, "error", "ok")),
                "target": names.take(pa.array(target)),
            }, schema=schema))


CHILD = """
import sys, time
from lab.analysis import summary, timeline
path, tests = sys.argv[1], sys.argv[2] == "1"
con = timeline._connect()
t0 = time.perf_counter()
windows = timeline.per_window(path, "hour", con=con)
t1 = time.perf_counter()
over = timeline.over_time(path, con=con)
t2 = time.perf_counter()
changes = timeline.change_points(path, over=over, con=con)
t3 = time.perf_counter()
print(f"per_window by hour: {t1 - t0:.1f} s ({len(windows)} rows)")
print(f"over_time: {t2 - t1:.1f} s ({len(over)} bins of {over.attrs['width_name']})")
print(f"change_points: {t3 - t2:.1f} s")
print(f"the three: {t3 - t0:.1f} s")
print(changes[["target", "bins", "at", "ratio", "low", "high", "p_holm", "changed"]].to_string(index=False))
if tests:
    t4 = time.perf_counter()
    found = timeline.window_tests(path, "hour", con=con)
    print(f"window_tests by hour: {time.perf_counter() - t4:.1f} s")
    print(found[["target", "test", "n", "p_value", "note"]].to_string(index=False))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--tests", action="store_true", help="also run window_tests by hour")
    parser.add_argument("--keep", action="store_true", help="keep the generated file under /tmp")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lab-timeline-"))
    path = folder / "calls.parquet"
    t0 = time.perf_counter()
    generate(path, args.rows)
    print(f"generated {args.rows:,} calls ({path.stat().st_size / 1e6:.0f} MB Parquet) in "
          f"{time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), "1" if args.tests else "0"], check=True,
                         capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    print(out.rstrip())
    print(f"child: {wall:.1f} s with interpreter start and imports, peak RSS {peak_gb:.2f} GB")
    if not args.keep:
        shutil.rmtree(folder)
    else:
        print(f"kept {path}")


if __name__ == "__main__":
    main()
