"""``lab runs``: list the runs; ``lab runs check --run RUN``: verify one (exit 1 when it finds damage). Both only read."""

from __future__ import annotations

import argparse
import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lab.cli.common import RUNS_DIR_HELP, UsageError, add_run

SHOWN = 50
"""Damaged lines listed by ``lab runs check`` (the count covers them all)."""


@dataclass
class Tally:
    """What the append-only files of a run hold."""

    lines: dict[str, int] = field(default_factory=dict)  # readable lines per file
    records: int = 0
    errors: int = 0
    synthetic: int = 0
    keys: int = 0
    damaged: list[Any] = field(default_factory=list)  # DamagedLine warnings, second copies included

    @property
    def data(self) -> str:
        if not self.records:
            return "-"
        return "synthetic" if self.synthetic == self.records else "live" if not self.synthetic else "mixed"


@contextlib.contextmanager
def _damage(found: list[Any]) -> Iterator[None]:
    """Collect :class:`~lab.store.DamagedLine` warnings into ``found`` instead of printing them."""
    from lab.store.lines import DamagedLine

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if issubclass(warning.category, DamagedLine):
            found.append(warning.message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def tally(run: Any) -> Tally:
    """Read every append-only file of ``run`` (lines per file, damage), and count its calls as the store
    reads them (:meth:`lab.store.Run.frame`: any shape, an import's Parquet file included)."""
    found = Tally()
    with _damage(found.damaged):
        for name in run.line_files():
            found.lines[name] = sum(1 for _ in run.read_lines(name))
        found.keys = len(run.index)  # second copies of a record are reported here
        calls = run.frame(["status", "synthetic"])
    seen = set()  # a damaged line is reported by each read of its file: once is enough
    found.damaged = [d for d in found.damaged if (str(d), type(d)) not in seen and not seen.add((str(d), type(d)))]
    found.records = len(calls)
    found.errors = int(calls["status"].ne("ok").sum())
    found.synthetic = int(calls["synthetic"].fillna(False).astype(bool).sum())
    return found


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _when(stamp: Any) -> str:
    return str(stamp)[:16].replace("T", " ")


def last_session(run: Any, manifest: dict[str, Any]) -> str:
    """When the run's last session ended, or "running" (a collector holds it) or "incomplete" (one never ended)."""
    if run.collecting:
        return "running"
    sessions = manifest.get("sessions") or []
    if any(s.get("ended_at", "") is None for s in sessions):
        return "incomplete"
    ends = [s["ended_at"] for s in sessions if s.get("ended_at")] + [manifest.get("ended_at")]
    ends = [str(e) for e in ends if e]
    return _when(max(ends)) if ends else "-"


def _row(run: Any) -> dict[str, Any]:
    from lab.store import DamagedRun

    try:
        manifest, problem = run.manifest, ""
    except DamagedRun:
        manifest, problem = {}, "manifest damaged; "
    found = tally(run)
    damage = len(found.damaged)
    note = problem + (f"{_n(damage, 'damaged line', 'damaged lines')}; " if damage else "")
    return {"run": run.id, "experiment": manifest.get("experiment") or "-", "records": found.records,
            "errors": found.errors, "data": found.data, "last session": last_session(run, manifest),
            "check": f"{note}see `lab runs check --run {run.id}`" if note else "ok"}


def _list(args: argparse.Namespace) -> int:
    import pandas as pd

    from lab.store import Run, run_ids, runs_dir

    root = runs_dir()
    ids = run_ids(root)
    if not ids:
        print(f"no runs in {root} (set LAB_RUNS_DIR, or work in a folder that has data/runs)")
        return 0
    print(f"runs in {root}:")
    print(pd.DataFrame([_row(Run(i, root)) for i in ids]).to_string(index=False))
    return 0


def _check(args: argparse.Namespace) -> int:
    from lab.store import Run, runs_dir

    run = Run(args.run)
    if not run.dir.is_dir():
        raise UsageError(f"no run {args.run!r} in {runs_dir()}: `lab runs` lists the runs there")
    print(f"run {run.id} in {run.dir}")
    problems = [f"{run.manifest_path.name} unusable"] if not _check_manifest(run) else []
    found = tally(run)
    for name, count in found.lines.items():
        parts = " + ".join(part for part in (f"{name}.gz", name) if (run.dir / part).exists())
        keys = f", {_n(found.keys, 'key', 'keys')}" if name == run.calls_path.name else ""
        print(f"  {parts}: {_n(count, 'line', 'lines')} read{keys}")
    if not found.lines:
        print("  no append-only files (*.jsonl, *.jsonl.gz)")
    for leftover in sorted(run.dir.glob("*.tmp")):
        print(f"  {leftover.name}: left by an interrupted write, not read; safe to delete")
    problems += _damage_found(found)
    if problems:
        print(f"damage found in {run.id}: " + "; ".join(problems))
        return 1
    lines = sum(found.lines.values())
    print(f"clean: {_n(lines, 'line', 'lines')}, {_n(found.records, 'record', 'records')}, nothing damaged")
    return 0


def _check_manifest(run: Any) -> bool:
    """Print what the manifest says, or what is wrong with it (then False)."""
    from lab.store import DamagedRun, MissingRecord

    try:
        manifest = run.manifest
    except (DamagedRun, MissingRecord) as exc:
        print(f"  {exc}")
        return False
    sessions = _n(len(manifest.get("sessions") or []), "session", "sessions")
    print(f"  {run.manifest_path.name}: experiment {manifest.get('experiment')}, {sessions}, "
          f"last {last_session(run, manifest)}")
    return True


def _damage_found(found: Tally) -> list[str]:
    """Print the damaged lines in file order (the first :data:`SHOWN`); a summary of each kind."""
    from lab.store import RepeatedRecord

    found.damaged.sort(key=lambda d: (str(d.where.path), d.where.line))
    for damage in found.damaged[:SHOWN]:
        print(f"  {damage}")
    if len(found.damaged) > SHOWN:
        print(f"  ... and {len(found.damaged) - SHOWN} more")
    repeated = sum(isinstance(d, RepeatedRecord) for d in found.damaged)
    damaged = len(found.damaged) - repeated
    summary = []
    if damaged:
        summary.append(f"{_n(damaged, 'damaged line', 'damaged lines')} (what they held counts as not collected: "
                       "the collect command collects it again)")
    if repeated:
        summary.append(f"{_n(repeated, 'second copy', 'second copies')} of records (ignored, the first kept: "
                       "two collectors ran at once)")
    return summary


def register(commands: argparse._SubParsersAction) -> None:
    what = "list the runs (in LAB_RUNS_DIR, else the nearest data/runs); `lab runs check --run RUN` verifies one"
    runs = commands.add_parser("runs", help=what, description=f"Without ACTION: {what}. Both only read.")
    runs.set_defaults(handler=_list)
    actions = runs.add_subparsers(dest="action", metavar="ACTION", parser_class=type(runs))
    runs.add_argument("--runs-dir", metavar="DIR", help=RUNS_DIR_HELP)
    check = actions.add_parser("check", help="read every line of a run and report damage (exit 1 when found)",
                               description="Read every line of a run, report what is damaged with its file and "
                                           "line (exit 1 when something is), and what it holds.")
    add_run(check, "the run to check")
    check.set_defaults(handler=_check)
