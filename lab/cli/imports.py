"""``lab import``: store what another tool or gateway recorded as a run of call records."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cli.common import UsageError, add_run

if TYPE_CHECKING:
    from lab.imports.importing import Imported


def _import(args: argparse.Namespace) -> int:
    from lab import imports as io
    from lab.imports.table import parse_mapping, parse_ok_when, parse_tz
    from lab.store import Run
    from lab.store.lines import DamagedLine

    path = Path(args.path)
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    if args.map:
        parse_mapping(args.map)  # a malformed pair stops here, before anything is written
    parse_ok_when(args.ok_when)
    parse_tz(args.tz)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedLine)
        source = io.import_run(path, args.run, args.format, mapping=_pairs(args.map), ok_when=args.ok_when,
                               tz=args.tz, synthetic=args.synthetic)
    damaged = [w for w in caught if issubclass(w.category, DamagedLine)]
    for warning in damaged[:20]:
        print(f"lab: warning: {warning.message}", file=sys.stderr)
    if len(damaged) > 20:
        print(f"lab: warning: {len(damaged) - 20} more damaged lines", file=sys.stderr)
    for message in dict.fromkeys(str(w.message) for w in caught if not issubclass(w.category, DamagedLine)):
        print(f"lab: warning: {message}", file=sys.stderr)
    print(summary(source, args.run, Run(args.run).dir, len(damaged)))
    return 0


def summary(source: Imported, run: str, folder: Path, damaged: int = 0) -> str:
    """The one line an import prints: the calls by status, the failures by type, the damaged lines
    skipped, where the run is, the record fields no row filled, and the source's notes (a tool's
    percentile method unlike the lab's, streams without a time to first token)."""
    errors = ""
    if source.errors:
        kinds = ", ".join(f"{kind if kind is not None else 'unclassified'} {count:,}"
                          for kind, count in source.error_kinds)
        errors = f", {source.errors:,} {'error' if source.errors == 1 else 'errors'} ({kinds})"
    skipped = f"; {damaged:,} damaged lines skipped" if damaged else ""
    what = "folder" if source.path.is_dir() else "file"
    lacking = f"; no row has {', '.join(source.missing_fields)}" if source.missing_fields else ""
    notes = "".join(f"; {note}" for note in source.notes)
    return (f"imported {source.rows:,} calls: {source.ok:,} ok{errors}{skipped} from {source.format} {what} "
            f"{source.path.name} into run {run} at {folder}{lacking}{notes}")


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
    command.add_argument("--ok-when", metavar="COLUMN=VALUE[,VALUE]",
                         help="csv: which rows are ok: those whose COLUMN holds one of the values (any case), "
                              "e.g. --ok-when status=Online or --ok-when code=200; all other rows are errors, "
                              "typed by the value they hold (default: a status column of ok/error, "
                              "success/failure or true/false, else http_status and error_type)")
    command.add_argument("--tz", metavar="ZONE",
                         help="csv: the time zone of times written without one: an IANA name (Europe/Paris), "
                              "UTC or an offset (+02:00); recorded in the run's manifest (default: UTC)")
    command.add_argument("--synthetic", action="store_true",
                         help="the tool measured an emulator or a test server: label the run SYNTHETIC")
    add_run(command, "the new run (it must not exist yet)")
    command.set_defaults(handler=_import)
