"""How long ``lab analyze`` takes, and how much memory, from a real-sized trace to 100M calls.

Generates a gateway log with issue 14's generator (:func:`import_scale.generate`: ``--targets`` models,
lognormal first-token times, about 5% failures), imports it with ``lab import`` (or, with ``--direct``,
writes the run's ``calls.parquet`` itself, for sizes whose CSV would not fit the disk), then runs
``lab analyze`` in a child process twice: the terminal verdict only (``--no-page``), then with its HTML
page. Each is reported as CPU seconds of the child and everything it started (``RUSAGE_CHILDREN``),
wall seconds, and peak resident memory (``VmHWM``: DuckDB and Arrow allocate outside Python's heap).

    .venv/bin/python benchmarks/analyze.py --rows 3500 --targets 12 --span-days 420
    .venv/bin/python benchmarks/analyze.py --rows 10000000 --targets 12
    .venv/bin/python benchmarks/analyze.py --rows 100000000 --targets 12 --direct

Goals (issue 22): 3,500 calls to 12 targets, verdict under 5 s of CPU and with its page under 10 s;
10M calls under 30 s and 1 GB; 100M calls in Parquet under 5 minutes and 4 GB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.import_scale import MAPPING, generate

CHUNK = 5_000_000


def write_direct(folder: Path, rows: int, targets: int, seed: int = 0) -> None:
    """Write run ``scale`` as an import would leave it: a manifest and ``calls.parquet`` of record columns."""
    from lab.store import Run
    from lab.store.columnar import SCHEMA, conform

    run = Run("scale", folder)
    run.write_manifest({"run_id": "scale", "experiment": "import", "kind": "import",
                        "started_at": "2026-12-07T00:00:00+00:00", "synthetic": True})
    rng = np.random.default_rng(seed)
    names = [f"model-{i:02d}" for i in range(targets)]
    start = np.datetime64("2026-01-01T00:00:00", "us")
    with pq.ParquetWriter(run.columnar_path, SCHEMA) as writer:
        for offset in range(0, rows, CHUNK):
            n = min(CHUNK, rows - offset)
            which = rng.integers(0, targets, n)
            ttft = rng.lognormal(np.log(400), 0.5, n) * (1 + 0.04 * which)
            tokens = rng.integers(20, 400, n)
            failed = rng.random(n) < 0.05
            latency = ttft + tokens * rng.lognormal(np.log(20), 0.2, n)
            table = pa.table({
                "provider": pa.array(["gateway"] * n), "model": pa.array(names).take(pa.array(which)),
                "endpoint": pa.array(["https://gateway.example"] * n), "kind": pa.array(["stream"] * n),
                "started_at": pa.array(start + (offset + np.arange(n)) * 10_000, pa.timestamp("us", tz="UTC")),
                "latency_ms": latency, "ttft_ms": np.where(failed, np.nan, ttft),
                "status": pa.array(np.where(failed, "error", "ok")),
                "output_tokens": np.where(failed, 0, tokens), "synthetic": np.ones(n, bool)})
            writer.write_table(conform(table))


WRAPPED = """
import resource, sys
from lab.cli import main
code = main(sys.argv[1:])
mine, theirs = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = mine.ru_utime + mine.ru_stime + theirs.ru_utime + theirs.ru_stime
# VmHWM, not ru_maxrss: the latter keeps the forking parent's size from before exec (the generator's gigabytes)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(f"@@ {cpu} {max(hwm, theirs.ru_maxrss)}", file=sys.stderr)
sys.exit(code)
"""


def child(args: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run ``lab ARGS`` in a child; its CPU seconds (its own children included), wall seconds, its own peak
    RSS in GB, and its output."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPED, *args], capture_output=True, text=True, env=env,
                          check=False)
    wall = time.perf_counter() - t0
    said = [line for line in done.stderr.splitlines() if line.startswith("@@ ")]
    if done.returncode or not said:
        sys.exit(f"lab {' '.join(args)} failed: {done.stderr.strip()}")
    cpu, peak_kb = map(float, said[-1].split()[1:])
    return cpu, wall, peak_kb * 1024 / 1e9, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3500)
    parser.add_argument("--targets", type=int, default=12)
    parser.add_argument("--span-days", type=float, default=None,
                        help="spread the calls over this many days (default: one every 10 ms)")
    parser.add_argument("--direct", action="store_true", help="write calls.parquet directly instead of importing")
    parser.add_argument("--by", choices=("hour", "weekday", "day"), help="also time windows")
    parser.add_argument("--keep", action="store_true", help="keep the generated run under /tmp")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lab-analyze-bench-"))
    env = {**os.environ, "LAB_RUNS_DIR": str(folder / "runs")}
    t0 = time.perf_counter()
    if args.direct:
        write_direct(folder / "runs", args.rows, args.targets)
    else:
        source = folder / "gateway.csv"
        spacing = args.span_days * 86400 / args.rows if args.span_days else 0.01
        generate(source, args.rows, targets=args.targets, spacing_s=spacing)
        mapping = [a for m in MAPPING for a in ("--map", m)]
        child(["import", str(source), "--run", "scale", "--format", "csv", *mapping], env)
    print(f"{args.rows:,} calls to {args.targets} targets ready in {time.perf_counter() - t0:.0f} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    extra = ["--by", args.by] if args.by else []
    cpu, wall, peak, out = child(["analyze", "--run", "scale", "--no-page", *extra], env)
    print(out.rstrip()[:3000])
    print(f"verdict only: {cpu:.1f} s CPU, {wall:.1f} s wall, peak RSS {peak:.2f} GB")
    cpu_page, wall_page, peak_page, _ = child(["analyze", "--run", "scale", "--out", str(folder / "page.html"),
                                               *extra], env)
    print(f"with its page: {cpu_page:.1f} s CPU, {wall_page:.1f} s wall, peak RSS {peak_page:.2f} GB, "
          f"page {(folder / 'page.html').stat().st_size / 1e3:.0f} kB")
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
