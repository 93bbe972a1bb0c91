"""Append-only JSON-lines files: durable appends, gzip compaction, and reads that survive damage.

An append takes an exclusive ``flock``, writes the whole line (looping over short writes) and
``fsync``s it before it counts; a write or fsync that fails cuts the file back to its size before
the append, so no torn line is left behind. Compaction moves a plain file into its gzip part
(``name.gz``), atomically. A read yields every readable line; a damaged one (torn by a kill, edited,
or beyond the damage in a truncated or corrupt gzip part) is reported as a :class:`DamagedLine`
warning naming the file and line, and skipped. Reading never writes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import os
import queue
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lab.core import jsontext

CHUNK = 1 << 16
SKIPPED = "skipped, what it held counts as not collected"


@dataclass(frozen=True)
class Where:
    """A line of a file, shown as ``path:line``."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


class DamagedLine(UserWarning):
    """A line that could not be read: ``where`` it is and what the ``problem`` is."""

    def __init__(self, where: Where, problem: str) -> None:
        super().__init__(where, problem)
        self.where, self.problem = where, problem

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def report(where: Where, problem: str) -> None:
    """Warn about a damaged line."""
    warnings.warn(DamagedLine(where, problem), stacklevel=3)


def kind(value: Any) -> str:
    """What a JSON value is, for messages: "an array", "a string", ..."""
    return _KINDS.get(type(value), type(value).__name__)


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "true or false", int: "a number",
          float: "a number", type(None): "null"}


# -- reading -----------------------------------------------------------------------------------


class _Damage(Exception):
    """Compressed data that cannot be read past this point."""


_Line = tuple[Where, bytes, "dict[str, Any] | None", "str | None"]  # where, raw bytes, entry or problem


def read(paths: Sequence[Path]) -> Iterator[tuple[Where, dict[str, Any]]]:
    """``(where, entry)`` for each readable line of ``paths`` in turn (absent files are skipped). A line
    found again verbatim (a compaction killed before it removed the plain file) is read once."""
    seen: set[bytes] = set()
    for path in paths:
        for where, raw, entry, problem in _lines(path):
            digest = hashlib.blake2b(raw, digest_size=16).digest()
            if digest in seen:
                continue
            seen.add(digest)
            if problem:
                report(where, f"{problem}; {SKIPPED}")
            else:
                yield where, entry


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A raw line as (entry, None), or (None, what is wrong with it)."""
    if not raw.endswith(b"\n"):
        return None, "incomplete (no line end: its write was cut short)"
    try:
        entry = jsontext.loads(raw, jsontext.MAX_DEPTH)
    except ValueError as exc:
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(entry, dict):
        return None, f"unreadable ({kind(entry)}, not an object)"
    return entry, None


def _lines(path: Path) -> Iterator[_Line]:
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        if path.suffix == ".gz":
            yield from _gzip_lines(path, handle)
        else:
            for number, raw in enumerate(handle, start=1):
                yield (Where(path, number), raw, *_parse(raw))


def _gzip_lines(path: Path, handle: BinaryIO) -> Iterator[_Line]:
    """The lines of a gzip file. One that cannot be read is held back until its gzip member passes its
    checksum: then it was stored so (a torn line compacted with the others) and is passed on; if the
    member turns out damaged, one warning names the first unreadable line and the rest is not read."""
    number, pending, held = 0, b"", []
    try:
        for chunk in _gunzip(handle):
            if chunk is None:  # a member ended and passed its checksum
                yield from held
                held = []
                continue
            *complete, pending = (pending + chunk).split(b"\n")
            for raw in complete:
                number += 1
                line = (Where(path, number), raw + b"\n", *_parse(raw + b"\n"))
                if held or line[3]:
                    held.append(line)
                else:
                    yield line
    except _Damage as damage:
        report(held[0][0] if held else Where(path, number + 1), str(damage))
        return
    if pending:
        yield (Where(path, number + 1), pending, *_parse(pending))


def _gunzip(handle: BinaryIO) -> Iterator[bytes | None]:
    """The decompressed data of every gzip member in ``handle``, streamed, with ``None`` where a member ends
    (its checksum verified); raises :class:`_Damage` where the data cannot be read further."""
    member, fresh = zlib.decompressobj(16 + zlib.MAX_WBITS), True  # 16+: gzip header and trailer
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        while chunk:
            if fresh:
                chunk = chunk.lstrip(b"\0")  # zero padding may follow a member, as gzip allows
                if not chunk:
                    break
            saved = member.copy()
            try:
                data = member.decompress(chunk)
            except zlib.error as exc:
                yield _until_error(saved, chunk)  # what the chunk held before the damage
                raise _Damage(f"damaged compressed data ({exc}): {_LOST}; {_READ}, though a damaged byte can "
                              "alter lines before it shows (compare with a copy, e.g. from version control)") from None
            fresh = False
            if data:
                yield data
            chunk = b""
            if member.eof:  # checked; another member may follow
                yield None
                chunk, member, fresh = member.unused_data, zlib.decompressobj(16 + zlib.MAX_WBITS), True
    if not fresh:
        raise _Damage(f"truncated compressed data (the file ends inside a gzip member): {_LOST}; {_READ}")


def _until_error(member: Any, data: bytes) -> bytes:
    """What ``member`` decompresses from ``data`` before it finds it damaged, fed byte by byte."""
    out = []
    for i in range(len(data)):
        try:
            out.append(member.decompress(data[i:i + 1]))
        except zlib.error:
            break
    return b"".join(out)


_LOST = "this line and the rest of the file cannot be read and count as not collected"
_READ = "the lines before it were read"


# -- writing -----------------------------------------------------------------------------------


def append(path: Path, *entries: Mapping[str, Any], sync: bool = True) -> None:
    """Append JSON lines durably, one per entry: under an exclusive lock, in one write, then one fsync
    (``sync=False``: the caller syncs later; a killed process keeps what was written, a power cut may not).
    When a write or the fsync fails (disk full, I/O error), the file is cut back to its size before
    the append and the :class:`OSError` raised: all of the entries are written, or none."""
    line = "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries).encode()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                continue  # a compaction removed the file while we waited: open the new one
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # keep a torn last line on its own line
            try:
                if line:
                    _write_all(fd, b"\n" + line if torn else line)
                if sync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # the first error is the one to report
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                raise
            return
        finally:
            os.close(fd)


class BatchWriter:
    """Appends lines to the files of one folder on a thread of its own, each batch in one write and
    one fsync (see :func:`append`); :meth:`write_now` writes at once, in the caller's thread, and leaves
    only the fsync to the thread. :meth:`close` writes what is queued and raises the first error."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._queue: queue.SimpleQueue[tuple[str, Mapping[str, Any] | None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # one write at a time to a file, from the caller or the thread
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="lab-writer", daemon=True)
        self._thread.start()

    def put(self, name: str, entry: Mapping[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((name, entry))

    def write_now(self, name: str, *entries: Mapping[str, Any]) -> None:
        """Write the lines before returning (a process killed from now on keeps them); the writer thread
        syncs the file soon after (against a power cut). Raises the :class:`OSError` of a failed write."""
        if self._error is not None:
            raise self._error
        with self._lock:
            append(self._folder / name, *entries, sync=False)
        self._queue.put((name, None))  # the thread's next batch syncs it

    def _run(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            done = None in batch
            by_file: dict[str, list[Mapping[str, Any]]] = {}
            for item in batch:
                if item is not None:
                    entries = by_file.setdefault(item[0], [])
                    if item[1] is not None:
                        entries.append(item[1])
            for name, entries in by_file.items():
                try:
                    with self._lock:
                        append(self._folder / name, *entries)  # no entries: only the fsync
                except OSError as exc:
                    self._error = self._error or exc

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "a write made no progress")
        view = view[written:]


def compact(plain: Path, packed: Path) -> None:
    """Move every line of ``plain`` into its gzip part ``packed`` (about ten times smaller). Safe against a
    kill at any moment: the new ``packed`` replaces the old one atomically before ``plain`` is removed,
    and :func:`read` reads a line found in both once; appending afterwards starts a new plain file. A
    damaged ``packed`` is reported and left as it is, and so is ``plain``."""
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
        packed_data = _packed_data(packed)
        if packed_data is None:
            return
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read()
        if data and not data.endswith(b"\n"):
            data += b"\n"  # a torn line stays on its own line
        tmp = packed.with_name(packed.name + ".tmp")
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as out:
            out.write(packed_data)
            out.write(data)
        _fsync(tmp)
        os.replace(tmp, packed)
        _fsync(plain.parent)  # the rename is durable before the plain file goes
        plain.unlink()
    finally:
        os.close(fd)


def _packed_data(packed: Path) -> bytes | None:
    """What a gzip part holds (empty when absent); ``None``, reported, when it is damaged."""
    chunks: list[bytes] = []
    try:
        with open(packed, "rb") as handle:
            chunks.extend(chunk for chunk in _gunzip(handle) if chunk)
    except FileNotFoundError:
        return b""
    except _Damage as damage:
        line = sum(chunk.count(b"\n") for chunk in chunks) + 1
        report(Where(packed, line), f"{damage}; not compacted: {packed.name[:-3]} stays as it is "
                                    "(`lab runs check` lists the damage)")
        return None
    return b"".join(chunks)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def names(folder: Path) -> list[str]:
    """The append-only files of ``folder``, by the name of the plain file (whether it, its gzip part or both exist)."""
    found = (p.name for p in folder.glob("*.jsonl*"))
    return sorted({name.removesuffix(".gz") for name in found if name.endswith((".jsonl", ".jsonl.gz"))})
