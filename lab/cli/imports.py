"""``lab import``: store what another tool or gateway recorded as a run of call records."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from lab.cli.common import UsageError, add_run


def _import(args: argparse.Namespace) -> int:
    from lab import imports as io
    from lab.imports.table import parse_mapping
    from lab.store import Run
    from lab.store.lines import DamagedLine

    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    if args.map:
        parse_mapping(args.map)  # a malformed pair stops here, before anything is written
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedLine)
        source = io.import_run(path, args.run, args.format, mapping=_pairs(args.map), synthetic=args.synthetic)
    damaged = [w for w in caught if issubclass(w.category, DamagedLine)]
    for warning in damaged[:20]:
        print(f"lab: warning: {warning.message}", file=sys.stderr)
    if len(damaged) > 20:
        print(f"lab: warning: {len(damaged) - 20} more damaged lines", file=sys.stderr)
    skipped = f", {len(damaged)} damaged lines skipped" if damaged else ""
    what = "folder" if path.is_dir() else "file"
    print(f"imported {source.rows} calls ({source.errors} errors{skipped}) from {source.format} {what} {path.name} "
          f"into run {args.run} at {Run(args.run).dir}")
    return 0


def _pairs(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    return {field.strip(): spec for field, _, spec in (p.partition("=") for p in pairs)}


def register(commands: argparse._SubParsersAction) -> None:
    from lab.imports import FORMATS

    command = commands.add_parser(
        "import", help="store another tool's per-request results (AIPerf, GuideLLM, LiteLLM, ...) as a run",
        description="Store another tool's per-request results as a new run of call records, so every analysis "
                    "applies to them. Formats: " + "; ".join(f"{name}: {text}" for name, text in FORMATS.items()))
    command.add_argument("path", metavar="PATH", help="the file to import (gzip is fine; LLMPerf: a folder too)")
    command.add_argument("--format", choices=sorted(FORMATS), help="the file's format (default: detected)")
    command.add_argument("--map", action="append", metavar="FIELD=COLUMN[:UNIT]",
                         help="csv: which column holds a record field, with the unit of a time (s, ms, us, ns); "
                              "repeat for each field, e.g. --map latency_ms=e2e_s:s (default: columns named as "
                              "record fields)")
    command.add_argument("--synthetic", action="store_true",
                         help="the tool measured an emulator or a test server: label the run SYNTHETIC")
    add_run(command, "the new run (it must not exist yet)")
    command.set_defaults(handler=_import)
