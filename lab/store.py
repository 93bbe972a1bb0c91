"""The store: every timed call recorded in a run, and replayed on a re-run.

A run lives in ``data/runs/<run-id>/``: ``manifest.json`` (what was collected,
how, with which versions) and ``calls.jsonl``, an append-only file with one
line per call: ``{"key": ..., "record": {...}}``. A record is written with a
single ``write`` and ``fsync``ed before the call counts as collected, so a
collection killed at any moment resumes with nothing lost or duplicated. A
damaged line (a write torn by the kill, or an edit) is reported with its file
and line number and its call is collected again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from lab.paths import DATA_DIR
from lab.records import CallRecord, records_frame

RUNS_DIR = Path(os.environ.get("LAB_RUNS_DIR", DATA_DIR / "runs"))  # tests point it elsewhere
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class MissingRecord(LookupError):
    """A call the run does not hold, with live calls not allowed; says how to collect it."""


class DamagedLine(UserWarning):
    """A line of a run's ``calls.jsonl`` that could not be read."""


def is_local(endpoint: str) -> bool:
    """True for a server on this machine (the emulator, a local vLLM): calling it costs nothing."""
    return urlsplit(endpoint).hostname in LOOPBACK_HOSTS


@dataclass(frozen=True)
class CallKey:
    """What identifies a call: provider, endpoint, model, the full request, window and sample.

    A local server's port is not part of the key, so a run collected against
    the emulator replays whichever free port the emulator gets next time.
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
        endpoint = "local" if is_local(self.endpoint) else self.endpoint
        fields = {**dataclasses.asdict(self), "endpoint": endpoint, "request": dict(self.request)}
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
    """One run's folder: its manifest and its append-only call records."""

    def __init__(self, run_id: str, root: Path | str = RUNS_DIR) -> None:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"invalid run id {run_id!r}: use letters, digits, '-' and '_'")
        self.id = run_id
        self.dir = Path(root) / run_id
        self.calls_path = self.dir / "calls.jsonl"
        self.manifest_path = self.dir / "manifest.json"
        self._index: dict[str, CallRecord] | None = None

    # -- manifest ---------------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return self.manifest_path.exists()

    @property
    def manifest(self) -> dict[str, Any]:
        if not self.exists:
            raise MissingRecord(f"run {self.id!r} does not exist: no {self.manifest_path}")
        return json.loads(self.manifest_path.read_text())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock, for a read-modify-write of its manifest by concurrent collectors."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Replace the manifest atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        os.replace(tmp, self.manifest_path)

    def begin_session(self, experiment: str, design: Mapping[str, Any], session: Mapping[str, Any],
                      identity: tuple[str, ...]) -> None:
        """Create the manifest, or check that ``design`` is the run's; note ``session`` (one collection).

        A session with the same ``identity`` fields is a resumption: it replaces the earlier entry and
        keeps its start time. A different design raises :class:`~lab.config.ConfigurationError`.
        """
        from lab.config import ConfigurationError

        with self.locked():
            manifest = self.manifest if self.exists else {
                "run_id": self.id, "experiment": experiment, "design": dict(design), "started_at": now(),
                "sessions": [],
            }
            if manifest["design"] != dict(design):
                raise ConfigurationError(f"run {self.id!r} was collected with {manifest['design']}; "
                                         f"this command asks for {dict(design)}: use a new --run")
            same = [e for e in manifest["sessions"] if all(e[f] == session[f] for f in identity)]
            entry = {**session, "started_at": same[0]["started_at"] if same else now(), "ended_at": None,
                     "versions": versions()}
            manifest["sessions"] = [e for e in manifest["sessions"] if e not in same] + [entry]
            self.write_manifest(manifest)

    def end_session(self, session: Mapping[str, Any], identity: tuple[str, ...]) -> None:
        """Stamp the end of a session (and of the run so far)."""
        with self.locked():
            manifest = self.manifest
            for entry in manifest["sessions"]:
                if all(entry[f] == session[f] for f in identity):
                    entry["ended_at"] = now()
            manifest["ended_at"] = now()
            self.write_manifest(manifest)

    # -- records ----------------------------------------------------------------------------

    def read_lines(self, name: str = "calls.jsonl") -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, entry) for each readable line of an append-only file of the run: first its
        compacted part (``name.gz``, see :meth:`compact`), then the plain file. A damaged line is
        reported as a :class:`DamagedLine` warning and skipped; a line found in both parts (a
        compaction killed before it removed the plain file) is read once."""
        seen: set[bytes] = set()
        for path in (self.dir / f"{name}.gz", self.dir / name):
            if not path.exists():
                continue
            with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    digest = hashlib.blake2b(raw, digest_size=16).digest()
                    if digest in seen:
                        continue
                    seen.add(digest)
                    if not raw.endswith(b"\n"):
                        self._damaged(path, number, "incomplete (no line end: its write was cut short)")
                        continue
                    try:
                        yield number, json.loads(raw)
                    except ValueError as exc:
                        self._damaged(path, number, f"unreadable ({type(exc).__name__}: {exc})")

    @staticmethod
    def _damaged(path: Path, number: int, problem: str) -> None:
        warnings.warn(f"{path}:{number}: {problem}; line ignored, what it held counts as not collected",
                      DamagedLine, stacklevel=4)

    def append_line(self, entry: Mapping[str, Any], name: str = "calls.jsonl") -> None:
        """Append one JSON line durably: one write under an exclusive lock, then fsync."""
        self.dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        while True:
            fd = os.open(self.dir / name, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink == 0:
                    continue  # a compaction removed the file while we waited: open the new one
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    os.write(fd, b"\n")  # a torn last line stays on its own line, reported on load
                os.write(fd, line.encode())
                os.fsync(fd)
                return
            finally:
                os.close(fd)

    def compact(self, name: str = "calls.jsonl") -> None:
        """Move every line of an append-only file into its gzip part ``name.gz`` (about ten times
        smaller), for runs committed to the repository. Safe against a kill at any moment: the new
        ``.gz`` replaces the old one atomically before the plain file is removed, and
        :meth:`read_lines` reads a line found in both once. Appending afterwards starts a new plain file."""
        plain, packed = self.dir / name, self.dir / f"{name}.gz"
        while True:
            try:
                fd = os.open(plain, os.O_RDWR)
            except FileNotFoundError:
                return
            fcntl.flock(fd, fcntl.LOCK_EX)  # appenders wait, then find the file gone and start a new one
            try:
                if os.fstat(fd).st_ino == os.stat(plain).st_ino:
                    break  # still the file at that path: no other compaction removed it while we waited
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
            if data and not data.endswith(b"\n"):
                data += b"\n"  # a torn last line stays on its own line
            tmp = packed.with_name(packed.name + ".tmp")
            with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                if packed.exists():
                    out.write(gzip.decompress(packed.read_bytes()))
                out.write(data)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, packed)
            directory = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename is durable before the plain file goes
            finally:
                os.close(directory)
            plain.unlink()
        finally:
            os.close(fd)

    def _load(self) -> dict[str, CallRecord]:
        index: dict[str, CallRecord] = {}
        for number, entry in self.read_lines():
            try:
                key, record = entry["key"], CallRecord.from_dict(entry["record"])
            except (KeyError, TypeError, ValueError) as exc:
                self._damaged(self.calls_path, number, f"unreadable ({type(exc).__name__}: {exc})")
                continue
            if key in index:
                self._damaged(self.calls_path, number, "a second record for a call already recorded")
                continue
            index[key] = record
        return index

    @property
    def index(self) -> dict[str, CallRecord]:
        if self._index is None:
            self._index = self._load()
        return self._index

    def get(self, key: CallKey) -> CallRecord | None:
        return self.index.get(key.digest)

    def append(self, key: CallKey, record: CallRecord) -> None:
        """Record one call durably (see :meth:`append_line`)."""
        self.append_line({"key": key.digest, "record": record.to_dict()})
        self.index[key.digest] = record

    def records(self) -> list[CallRecord]:
        """Every readable record, in the order collected."""
        return list(self.index.values())

    def frame(self) -> pd.DataFrame:
        return records_frame(self.records())


def run_ids(root: Path | str = RUNS_DIR) -> list[str]:
    """The runs under ``root``."""
    return sorted(p.parent.name for p in Path(root).glob("*/manifest.json"))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def tagged(record: CallRecord, run: Run, key: CallKey) -> CallRecord:
    """The record with its run, experiment, window and sample filled in."""
    experiment = run.manifest.get("experiment") if run.exists else None
    return dataclasses.replace(record, run_id=run.id, experiment=experiment, window=key.window, sample=key.sample)


def missing(keys: Iterable[CallKey], run: Run) -> list[CallKey]:
    """The keys whose calls the run does not hold."""
    return [key for key in keys if run.get(key) is None]
