"""The store: every timed call recorded in a run, and replayed on a re-run.

A run lives in ``<runs_dir()>/<run-id>/``: ``manifest.json`` (what was collected, how, with
which versions) and append-only JSON-lines files (see :mod:`lab.store.lines`): ``calls.jsonl`` holds
one line per call, ``{"key": ..., "record": {...}}``; an experiment may keep others (the hedging
experiment's ``outcomes.jsonl``). A line counts once it is written in full and fsynced, so a
collection killed at any moment resumes with nothing lost or duplicated; one collector at a time
holds a run (:meth:`Run.collector`). A damaged line (torn by a kill, edited, of unknown shape, or
in a damaged gzip part) is reported with its file and line number and its call is collected
again; a damaged manifest raises :class:`DamagedRun`, which says how to repair it. Reading a run
writes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from lab.core import endpoints, jsontext
from lab.core.errors import BadInput, LabError
from lab.core.paths import valid_run_id
from lab.core.records import CallRecord, records_frame, typed_frame
from lab.core.redact import redact, scrub
from lab.store import lines
from lab.store.lines import SKIPPED, DamagedLine, Where
from lab.store.manifest import Manifest
from lab.store.manifest import problem as manifest_problem


def runs_dir() -> Path:
    """Where runs live: ``LAB_RUNS_DIR`` if set; else the nearest ``data/runs`` folder in the working folder
    or one of its parents (so a notebook run in ``notebooks/`` finds the project's); else ``./data/runs``
    (created when something is written)."""
    if os.environ.get("LAB_RUNS_DIR"):
        return Path(os.environ["LAB_RUNS_DIR"]).expanduser().absolute()
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "data" / "runs").is_dir():
            return folder / "data" / "runs"
    return here / "data" / "runs"


class MissingRecord(LabError, LookupError):
    """A call the run does not hold, with live calls not allowed; says how to collect it."""


class DamagedRun(LabError, ValueError):
    """A run whose manifest cannot be read; the message names the file, the problem and the repair."""


class RunBusy(LabError, RuntimeError):
    """A run another collector holds; the message says which process, and what to do."""


class RepeatedRecord(DamagedLine):
    """A second copy of a record already read (two collectors ran at once): ignored, the first is kept."""


@dataclass(frozen=True)
class CallKey:
    """What identifies a call: provider, endpoint, model, the full request, window and sample.

    The endpoint counts by its :func:`lab.core.endpoints.identity`: an in-process emulator is
    ``"emulator"`` whatever its port, any other server its URL (host, port and path).
    """

    provider: str
    endpoint: str
    model: str
    kind: str
    request: Mapping[str, Any]
    window: str | None = None
    sample: int | None = None

    @property
    def digest(self) -> str:
        fields = {**dataclasses.asdict(self), "endpoint": endpoints.identity(self.endpoint),
                  "request": dict(self.request)}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def describe(self) -> str:
        return f"{self.provider}/{self.model} {self.kind}, window {self.window!r}, sample {self.sample}"


def versions() -> dict[str, str]:
    """Versions of the lab and the SDKs, for the manifest."""
    found = {}
    for dist in ("inference-lab", "anthropic", "openai"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


class Run:
    """One run's folder: its manifest, its append-only files, and the lock of its collector."""

    def __init__(self, run_id: str, root: Path | str | None = None) -> None:
        if not valid_run_id(run_id):
            raise BadInput(f"invalid run id {run_id!r}: use 1 to 100 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
        self.id = run_id
        self.dir = Path(runs_dir() if root is None else root) / run_id
        self.calls_path = self.dir / "calls.jsonl"
        self.manifest_path = self.dir / "manifest.json"
        self.collector_path = self.dir / ".collector.lock"
        self._index: dict[str, CallRecord] | None = None
        self._writer: lines.BatchWriter | None = None

    # -- manifest ---------------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return self.manifest_path.exists()

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest: :class:`MissingRecord` when the run does not exist, :class:`DamagedRun` when its
        manifest cannot be read."""
        if not self.exists:
            raise MissingRecord(f"run {self.id!r} does not exist: no {self.manifest_path}")
        raw = self.manifest_path.read_bytes()
        try:
            manifest = jsontext.loads(raw, jsontext.MAX_DEPTH)
        except json.JSONDecodeError as exc:
            problem = "is empty" if not raw.strip() else (
                f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")
        except ValueError as exc:  # not UTF-8
            problem = f"is not JSON text ({exc})"
        else:
            problem = manifest_problem(manifest)
        if problem:
            raise DamagedRun(f"{self.manifest_path} {problem}: restore it from version control, or move the run "
                             f"folder {self.dir} away and collect the run again")
        return manifest

    @property
    def about(self) -> Manifest:
        """The manifest, typed (:class:`lab.store.manifest.Manifest`): what the run is, of which kind."""
        return Manifest.of(self.manifest)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock, for a read-modify-write of its manifest (creates the lock file: writes only)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Replace the manifest atomically, every credential in it masked (:func:`lab.core.redact.scrub`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(scrub(manifest), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        os.replace(tmp, self.manifest_path)

    def begin_session(self, experiment: str, design: Mapping[str, Any], session: Mapping[str, Any],
                      identity: tuple[str, ...], *, kind: str | None = None) -> None:
        """Create the manifest, or check that ``design`` is the run's; note ``session`` (one collection).

        A session with the same ``identity`` fields is a resumption: it replaces the earlier entry and
        keeps its start time. A different design raises :class:`~lab.core.config.ConfigurationError`.
        """
        from lab.core.config import ConfigurationError

        with self.locked():
            manifest = self.manifest if self.exists else {
                "run_id": self.id, "kind": kind, "experiment": experiment, "design": scrub(dict(design)),
                "started_at": now(), "sessions": [],
            }
            design = scrub(dict(design))  # as the manifest keeps it
            if manifest.get("design") != design:
                raise ConfigurationError(f"run {self.id!r} was collected with {manifest.get('design')}; "
                                         f"this command asks for {design}: use a new --run")
            sessions = manifest.get("sessions", [])
            same = [e for e in sessions if all(e.get(f) == session[f] for f in identity)]
            entry = {**session, "started_at": same[0]["started_at"] if same else now(), "ended_at": None,
                     "versions": versions()}
            manifest["sessions"] = [e for e in sessions if e not in same] + [entry]
            self.write_manifest(manifest)

    def end_session(self, session: Mapping[str, Any], identity: tuple[str, ...]) -> None:
        """Stamp the end of a session (and of the run so far)."""
        with self.locked():
            manifest = self.manifest
            for entry in manifest.get("sessions", []):
                if all(entry.get(f) == session[f] for f in identity):
                    entry["ended_at"] = now()
            manifest["ended_at"] = now()
            self.write_manifest(manifest)

    # -- the collector ----------------------------------------------------------------------

    @contextlib.contextmanager
    def collector(self, command: str, *, wait: bool = False) -> Iterator[None]:
        """Hold the run as its only collector while the block runs: an exclusive ``flock`` on its
        ``.collector.lock``, which notes who holds it (pid, host, ``command``, start time). A second
        collector of the run raises :class:`RunBusy` naming the first, or waits for it with ``wait``.
        The lock dies with its process: a killed collector leaves none behind."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.collector_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise RunBusy(self._busy(fd)) from None
                fcntl.flock(fd, fcntl.LOCK_EX)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": redact(command), "since": now()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder, ensure_ascii=False).encode() + b"\n", 0)
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # no one holds it now
        finally:
            os.close(fd)

    def _busy(self, fd: int) -> str:
        holder = None
        for _ in range(50):  # the holder writes who it is just after it takes the lock
            holder = _holder(os.pread(fd, 4096, 0))
            if holder:
                break
            time.sleep(0.01)
        who = "another process"
        if holder:
            host = holder.get("host")
            where = f" on {host}" if host != socket.gethostname() else ""
            who = f"pid {holder.get('pid')}{where} (`{holder.get('command')}`, since {holder.get('since')})"
        return f"run {self.id} is being collected by {who}; wait for it to finish or pass --wait"

    @property
    def collecting(self) -> dict[str, Any] | None:
        """Who collects the run now (``pid``, ``host``, ``command``, ``since``), or None. Reads only: the
        note a collector left when it was killed is ignored once its process is gone."""
        try:
            holder = _holder(self.collector_path.read_bytes())
        except FileNotFoundError:
            return None
        if holder is None or holder.get("host") != socket.gethostname():
            return holder  # another machine's process cannot be checked from here
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return None
        except (PermissionError, KeyError, TypeError, ValueError, OverflowError):
            pass
        return holder

    # -- append-only files ------------------------------------------------------------------

    def line_files(self) -> list[str]:
        """The run's append-only files (``calls.jsonl``, ...), each whether plain, compacted or both."""
        return lines.names(self.dir) if self.dir.is_dir() else []

    def read_lines(self, name: str = "calls.jsonl") -> Iterator[tuple[Where, dict[str, Any]]]:
        """(where, entry) for each readable line of an append-only file of the run: first its compacted
        part (``name.gz``, see :meth:`compact`), then the plain file; see :func:`lab.store.lines.read`."""
        return lines.read([self.dir / f"{name}.gz", self.dir / name])

    def append_line(self, entry: Mapping[str, Any], name: str = "calls.jsonl") -> None:
        """Append one JSON line durably (see :func:`lab.store.lines.append`); inside :meth:`batched`, on the
        writer thread."""
        if self._writer is not None:
            self._writer.put(name, entry)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        lines.append(self.dir / name, entry)

    def append_now(self, entry: Mapping[str, Any], name: str = "calls.jsonl") -> None:
        """Append one JSON line before returning, even inside :meth:`batched` (where the writer thread syncs
        it soon after): what was answered is on disk before the answer completes."""
        if self._writer is not None:
            self._writer.write_now(name, entry)
            return
        self.append_line(entry, name)

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Appends made inside the block go to a writer thread that writes what has queued up in one
        write and one fsync: appending never blocks the caller (an open-loop schedule, a proxy) on the
        disk. Everything is written when the block ends; a kill loses at most the last batch."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writer = lines.BatchWriter(self.dir)
        try:
            yield
        finally:
            writer, self._writer = self._writer, None
            writer.close()

    def compact(self, name: str = "calls.jsonl") -> None:
        """Move every line of an append-only file into its gzip part ``name.gz`` (see :func:`lab.store.lines.compact`)."""
        lines.compact(self.dir / name, self.dir / f"{name}.gz")

    # -- call records -----------------------------------------------------------------------

    def reload(self) -> None:
        """Forget what was read of the run's records: the next look reads them again (another collector may
        have appended since)."""
        self._index = None

    @property
    def index(self) -> dict[str, CallRecord]:
        """Every readable record by key (see :func:`index_of`), read once."""
        if self._index is None:
            self._index = index_of(self.read_lines())
        return self._index

    def get(self, key: CallKey) -> CallRecord | None:
        return self.index.get(key.digest)

    def append(self, key: CallKey, record: CallRecord) -> None:
        """Record one call durably (see :meth:`append_line`)."""
        self.append_line({"key": key.digest, "record": record.to_dict()})
        self.index[key.digest] = record

    def records(self) -> list[CallRecord]:
        """Every call record of the run's JSON-lines files, whatever wrote them: ``calls.jsonl`` (by key, in the
        order collected) and the attempts of each outcome of ``outcomes.jsonl`` (the hedging experiment).
        Damaged lines are reported and skipped. An import's rows (``calls.parquet``, where a row may lack
        fields a record needs, such as its provider) are in :meth:`frame`."""
        found = list(self.index.values())
        if OUTCOMES in self.line_files():
            found += [r for where, entry in self.read_lines(OUTCOMES) for r in _attempts(where, entry)]
        return found

    @property
    def columnar_path(self) -> Path:
        """Where an imported run keeps its records: a Parquet file (see :func:`lab.imports.import_run`)."""
        return self.dir / "calls.parquet"

    def frame_of_columns(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The records of the run's Parquet file (only ``columns``, read column by column: an import of
        millions of calls loads only what is asked for)."""
        import pyarrow.parquet as pq

        if columns is not None:
            return typed_frame(pq.read_table(self.columnar_path, columns=list(columns)).to_pandas())[list(columns)]
        from lab.store.columnar import to_frame

        return to_frame(pq.read_table(self.columnar_path))

    def frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every call of the run, whatever wrote it, as a frame (:func:`lab.core.records.records_frame` columns,
        or only ``columns``): the records of :meth:`records` and the rows of an import's Parquet file (read
        column by column)."""
        records = self.records()
        if not records and self.columnar_path.exists():
            return self.frame_of_columns(columns)
        frame = records_frame(records)
        if self.columnar_path.exists():
            frame = pd.concat([frame, self.frame_of_columns()], ignore_index=True)
        return frame if columns is None else frame[list(columns)]


OUTCOMES = "outcomes.jsonl"
"""The hedging experiment's file: one outcome per line, with the call records of its ``attempts``."""


def _attempts(where: Where, entry: dict[str, Any]) -> list[CallRecord]:
    """The call records of an outcome's attempts; none, reported, when one is damaged."""
    attempts = entry.get("attempts")
    if not isinstance(attempts, list):
        lines.report(where, f"unreadable: its attempts are {lines.kind(attempts)}, not an array; {SKIPPED}")
        return []
    records = [record_of(where, a, f"attempt {i}") for i, a in enumerate(attempts)]
    return [] if None in records else records  # type: ignore[return-value]


def _holder(raw: bytes) -> dict[str, Any] | None:
    try:
        holder = jsontext.loads(raw)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def record_of(where: Where, data: Any, what: str = "record") -> CallRecord | None:
    """The call record ``data`` holds, or None, reported as a :class:`DamagedLine`, when it cannot be read."""
    if not isinstance(data, dict):
        problem = f"its {what} is {lines.kind(data)}, not an object"
    else:
        try:
            return CallRecord.from_dict(data)
        except KeyError as exc:
            problem = f"its {what} lacks the field {exc}"
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            problem = f"its {what} cannot be read ({type(exc).__name__}: {exc})"
    lines.report(where, f"unreadable: {problem}; {SKIPPED}")
    return None


def index_of(entries: Iterable[tuple[Where, dict[str, Any]]]) -> dict[str, CallRecord]:
    """The records of ``calls.jsonl`` lines by key, in the order read; a line that holds no record is
    reported as a :class:`DamagedLine`, a second copy of a record as a :class:`RepeatedRecord`."""
    index: dict[str, CallRecord] = {}
    first: dict[str, Where] = {}
    for where, entry in entries:
        call = _call(where, entry)
        if call is None:
            continue
        key, record = call
        if key in index:
            warnings.warn(RepeatedRecord(where, f"a second copy of a record already read ({first[key]}); "
                                                "ignored, the first is kept"), stacklevel=2)
            continue
        index[key], first[key] = record, where
    return index


def _call(where: Where, entry: dict[str, Any]) -> tuple[str, CallRecord] | None:
    """A line of ``calls.jsonl`` as (key, record), or None, reported, when it is not one."""
    lacking = [f for f in ("key", "record") if f not in entry]
    unknown = sorted(set(entry) - {"key", "record"})
    if lacking:
        problem = f"it lacks {' and '.join(lacking)}"
    elif not isinstance(entry["key"], str):
        problem = f"its key is {lines.kind(entry['key'])}, not a string"
    elif unknown:
        problem = f"unknown fields {', '.join(unknown)}"
    else:
        record = record_of(where, entry["record"])
        return None if record is None else (entry["key"], record)
    lines.report(where, f"unreadable: {problem}; {SKIPPED}")
    return None


def run_ids(root: Path | str | None = None) -> list[str]:
    """The runs under ``root`` (default: :func:`runs_dir`)."""
    folder = runs_dir() if root is None else Path(root)
    return sorted(p.parent.name for p in folder.glob("*/manifest.json") if valid_run_id(p.parent.name))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def tagged(record: CallRecord, run: Run, key: CallKey) -> CallRecord:
    """The record with its run, experiment, window and sample filled in."""
    experiment = run.manifest.get("experiment") if run.exists else None
    return dataclasses.replace(record, run_id=run.id, experiment=experiment, window=key.window, sample=key.sample)


