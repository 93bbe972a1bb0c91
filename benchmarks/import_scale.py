"""How fast ``lab.imports.import_run`` stores a large source, and how much memory it takes.

Generates N calls under /tmp, then imports them in a child process and reports the wall time and the
child's peak resident memory (``ru_maxrss``: Arrow allocates outside Python's heap, so tracemalloc
would not see it). ``--format csv`` (default, 10 million rows): a gateway log (start time,
end-to-end and first-token seconds, token counts, HTTP status, model; about 5% failures) imported
with a column mapping. ``--format aiperf``: AIPerf's profile_export.jsonl, the fixture's 40 lines
repeated (about 2.6 kB a line, with every chunk gap).

    .venv/bin/python benchmarks/import_scale.py [--rows 10000000] [--format csv|aiperf] [--keep]

Goals (issue 14): import under 120 s and peak memory under 4 GB on the 2-core CI machine; then the
summary with intervals (``lab.analysis.stats.interval_summary`` and ``error_rates`` per model, read column by
column from the Parquet file) under 30 s.
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
import pyarrow.csv as pa_csv

MAPPING = ["started_at=ts:s", "latency_ms=e2e_s:s", "ttft_ms=ttft_s:s", "input_tokens=prompt_tokens",
           "output_tokens=completion_tokens", "http_status=status_code", "model=model"]
CHUNK = 1_000_000


def generate(path: Path, rows: int, seed: int = 0, *, targets: int = 3, spacing_s: float = 0.01) -> None:
    """Write ``rows`` synthetic gateway-log rows as CSV, a million at a time: ``targets`` models (each a little
    slower than the one before), a call every ``spacing_s`` seconds."""
    rng = np.random.default_rng(seed)
    start = 1_796_000_000.0
    models = pa.array([f"model-{chr(ord('a') + i)}" if targets <= 26 else f"model-{i:03d}" for i in range(targets)])
    slowdown = 1 + 0.04 * np.arange(targets)
    with pa_csv.CSVWriter(path, pa.schema([
        ("ts", pa.float64()), ("e2e_s", pa.float64()), ("ttft_s", pa.float64()), ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()), ("status_code", pa.int64()), ("model", pa.string())])) as writer:
        for offset in range(0, rows, CHUNK):
            n = min(CHUNK, rows - offset)
            which = rng.integers(0, targets, n)
            ttft = rng.lognormal(np.log(0.4), 0.5, n) * slowdown[which]
            tokens = rng.integers(20, 400, n)
            failed = rng.random(n) < 0.05
            status = np.where(failed, rng.choice([429, 500, 503], n), 200)
            writer.write_table(pa.table({
                "ts": np.round(start + (offset + np.arange(n)) * spacing_s, 3),
                "e2e_s": np.round(ttft + tokens * rng.lognormal(np.log(0.02), 0.2, n), 6),
                "ttft_s": np.where(failed, np.nan, np.round(ttft, 6)),
                "prompt_tokens": rng.integers(50, 2000, n),
                "completion_tokens": np.where(failed, 0, tokens),
                "status_code": status,
                "model": models.take(pa.array(which)),
            }))


def generate_aiperf(path: Path, rows: int) -> None:
    """Write ``rows`` AIPerf records: the fixture's lines over and over."""
    fixture = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "aiperf" / "profile_export.jsonl"
    lines = fixture.read_bytes().splitlines(keepends=True)
    whole = b"".join(lines)
    with open(path, "wb") as out:
        for start in range(0, rows, len(lines)):
            out.write(whole if rows - start >= len(lines) else b"".join(lines[: rows - start]))


CHILD = """
import sys, time
from lab.imports import import_run
t0 = time.perf_counter()
mapping = dict(p.split("=", 1) for p in sys.argv[4:]) or None
source = import_run(sys.argv[1], "scale", format=sys.argv[3], root=sys.argv[2], mapping=mapping)
print(f"{time.perf_counter() - t0:.1f} {source.rows} {source.errors}")
"""


SUMMARY = """
import sys, time
from lab.analysis import stats
from lab.store import Run
t0 = time.perf_counter()
frame = Run("scale", sys.argv[1]).frame(["model", "status", "latency_ms", "ttft_ms"])
loaded = time.perf_counter() - t0
table = stats.interval_summary(frame, ["model"], ["latency_ms", "ttft_ms"], (50, 95, 99, 99.9))
errors = stats.error_rates(frame, ["model"])
print(f"loaded {len(frame):,} rows in {loaded:.1f} s; {len(table)} percentiles with intervals and "
      f"{len(errors)} error rates in {time.perf_counter() - t0 - loaded:.1f} s")
print(table.head(4).to_string(index=False))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--format", choices=("csv", "aiperf"), default="csv")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and run under /tmp")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lab-import-scale-"))
    source = folder / ("gateway.csv" if args.format == "csv" else "profile_export.jsonl")
    t0 = time.perf_counter()
    (generate if args.format == "csv" else generate_aiperf)(source, args.rows)
    size = source.stat().st_size / 1e9
    print(f"generated {args.rows:,} rows ({size:.2f} GB {args.format}) in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    mapping = MAPPING if args.format == "csv" else []
    out = subprocess.run([sys.executable, "-c", CHILD, str(source), str(folder / "runs"), args.format, *mapping],
                         check=True, capture_output=True, text=True).stdout.split()
    wall = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    parquet = folder / "runs" / "scale" / "calls.parquet"
    print(f"import_run: {out[0]} s inside the child ({wall:.1f} s with interpreter start), "
          f"{int(out[1]):,} rows, {int(out[2]):,} errors, peak RSS {peak_gb:.2f} GB, "
          f"calls.parquet {parquet.stat().st_size / 1e9:.2f} GB")
    print(f"goals: import under 120 s: {'met' if wall < 120 else 'MISSED'}; "
          f"peak memory under 4 GB: {'met' if peak_gb < 4 else 'MISSED'}")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SUMMARY, str(folder / "runs")], check=True, capture_output=True,
                         text=True).stdout
    wall = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    print(out.rstrip())
    print(f"summary with intervals: {wall:.1f} s with interpreter start, peak RSS {peak_gb:.2f} GB; goal under 30 s: "
          f"{'met' if wall < 30 else 'MISSED'}")
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
