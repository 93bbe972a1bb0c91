"""Damaged data is never fatal: reported with file:line, salvaged, and a failed write leaves no torn line."""

from __future__ import annotations

import builtins
import errno
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import types
import warnings
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab import store
from lab.core.records import CallRecord
from lab.store import Run
from lab.store.lines import DamagedLine

COMMITTED = Path(__file__).resolve().parents[1] / "data" / "runs" / "hedging-demo" / "outcomes.jsonl.gz"


def read(run: Run, name: str) -> tuple[list[dict], list[DamagedLine]]:
    """Every entry read, and the DamagedLine warnings raised while reading."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = [entry for _, entry in run.read_lines(name)]
    return entries, [w.message for w in caught if issubclass(w.category, DamagedLine)]


def decodable_lines(prefix: bytes) -> int:
    """Test oracle: how many whole lines the start of a sound gzip member holds."""
    return zlib.decompressobj(31).decompress(prefix).count(b"\n")


@pytest.fixture()
def demo(tmp_path):
    """A run holding a copy of the committed hedging-demo outcomes (never the committed file itself)."""
    if not COMMITTED.exists():
        pytest.skip(f"{COMMITTED} is not in this checkout")
    run = Run("demo", tmp_path)
    run.dir.mkdir()
    shutil.copyfile(COMMITTED, run.dir / "outcomes.jsonl.gz")
    original = [json.loads(line) for line in gzip.decompress(COMMITTED.read_bytes()).splitlines()]
    return run, COMMITTED.read_bytes(), original


# -- gzip parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [100, 8, 500_000])  # 8: only the member's trailer is lost
def test_a_truncated_gzip_part_yields_every_record_before_the_damage(demo, cut):
    run, data, original = demo
    damaged = data[:-cut]
    (run.dir / "outcomes.jsonl.gz").write_bytes(damaged)
    run.append_line({"after": "compaction"}, "outcomes.jsonl")
    entries, damage = read(run, "outcomes.jsonl")
    intact = decodable_lines(damaged)
    assert 0 < intact <= len(original) and intact > (len(original) // 3 if cut == 500_000 else len(original) - 10)
    assert entries == original[:intact] + [{"after": "compaction"}]  # then carries on with the plain file
    assert len(damage) == 1 and f"outcomes.jsonl.gz:{intact + 1}: truncated" in str(damage[0])


@pytest.mark.slow
def test_a_flipped_byte_reads_every_record_before_it_and_warns_once(demo):
    run, data, original = demo
    for position in random.Random(11).sample(range(100, len(data) - 8), 6):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        (run.dir / "outcomes.jsonl.gz").write_bytes(bytes(flipped))
        (run.dir / "outcomes.jsonl").write_text('{"after": "compaction"}\n')
        entries, damage = read(run, "outcomes.jsonl")
        before = decodable_lines(data[:position])  # what the bytes before the flip hold: intact
        assert entries[:before] == original[:before], position
        assert entries[-1] == {"after": "compaction"} and len(entries) <= len(original), position
        assert len(damage) == 1 and "outcomes.jsonl.gz:" in str(damage[0]), (position, damage[:3])
        assert "damaged compressed data" in str(damage[0])


def test_several_gzip_members_are_all_read_and_damage_in_one_keeps_the_others(tmp_path):
    run = Run("members", tmp_path)
    run.dir.mkdir()
    first = b"".join(json.dumps({"i": i}).encode() + b"\n" for i in range(50))
    second = b"".join(json.dumps({"i": i}).encode() + b"\n" for i in range(50, 100))
    part = run.dir / "events.jsonl.gz"
    part.write_bytes(gzip.compress(first) + gzip.compress(second) + b"\0" * 16)  # zero padding is allowed
    entries, damage = read(run, "events.jsonl")
    assert entries == [{"i": i} for i in range(100)] and damage == []

    part.write_bytes(gzip.compress(first) + gzip.compress(second)[:-30])
    entries, damage = read(run, "events.jsonl")
    assert entries[:50] == [{"i": i} for i in range(50)] and entries == [{"i": i} for i in range(len(entries))]
    assert len(damage) == 1 and f"events.jsonl.gz:{len(entries) + 1}: truncated" in str(damage[0])


def test_an_unreadable_line_stored_in_a_sound_gzip_part_is_reported_and_reading_goes_on(tmp_path):
    run = Run("stored", tmp_path)
    run.dir.mkdir()
    (run.dir / "events.jsonl.gz").write_bytes(gzip.compress(b'{"i": 0}\n{"i": 1, "to\n{"i": 2}\n'))
    entries, damage = read(run, "events.jsonl")
    assert entries == [{"i": 0}, {"i": 2}]
    assert len(damage) == 1 and "events.jsonl.gz:2: unreadable" in str(damage[0])


def test_compacting_onto_a_damaged_gzip_part_keeps_both_files(tmp_path):
    run = Run("compact", tmp_path)
    for i in range(200):
        run.append_line({"i": i, "pad": "x" * 50}, "events.jsonl")
    run.compact("events.jsonl")
    part = run.dir / "events.jsonl.gz"
    part.write_bytes(part.read_bytes()[:-40])
    damaged = part.read_bytes()
    run.append_line({"i": 200}, "events.jsonl")
    with pytest.warns(DamagedLine, match="not compacted"):
        run.compact("events.jsonl")
    assert part.read_bytes() == damaged and (run.dir / "events.jsonl").exists()
    entries, damage = read(run, "events.jsonl")
    assert entries[-1] == {"i": 200} and len(damage) == 1


# -- lines of unknown shape ------------------------------------------------------------------------


def a_record(**changes) -> dict:
    record = CallRecord(provider="openai", model="gpt-5-mini", endpoint="http://127.0.0.1:1", kind="complete",
                        started_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC), latency_ms=12.5, synthetic=True)
    return {**record.to_dict(), **changes}


BAD_LINES = {
    "key is a list": ({"key": ["a", "b"], "record": a_record()}, "its key is an array, not a string"),
    "key is a dict": ({"key": {"a": 1}, "record": a_record()}, "its key is an object, not a string"),
    "key is a number": ({"key": 7, "record": a_record()}, "its key is a number, not a string"),
    "no key": ({"record": a_record()}, "it lacks key"),
    "line is a list": ([1, 2], "an array, not an object"),
    "line is a string": ("calls", "a string, not an object"),
    "line is a number": (3, "a number, not an object"),
    "record is a list": ({"key": "k", "record": [1]}, "its record is an array, not an object"),
    "unknown line field": ({"key": "k", "record": a_record(), "extra": 1}, "unknown fields extra"),
    "unknown record field": ({"key": "k", "record": a_record(colour="blue")}, "unexpected keyword argument 'colour'"),
    "bad date": ({"key": "k", "record": a_record(started_at="yesterday")}, "Invalid isoformat string"),
    "date is a number": ({"key": "k", "record": a_record(started_at=5)}, "its record cannot be read (TypeError"),
    "no date": ({"key": "k", "record": {k: v for k, v in a_record().items() if k != "started_at"}},
                "its record lacks the field 'started_at'"),
    "bad attempt errors": ({"key": "k", "record": a_record(attempt_errors=["x"])}, "its record cannot be read"),
}


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_line_of_unknown_shape_is_reported_and_skipped(tmp_path, bad):
    entry, expected = bad
    run = Run("shapes", tmp_path)
    run.dir.mkdir()
    lines = [{"key": "first", "record": a_record()}, entry, {"key": "last", "record": a_record(latency_ms=1.0)}]
    run.calls_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = run.records()
    assert [r.latency_ms for r in records] == [12.5, 1.0]
    messages = [str(w.message) for w in caught if issubclass(w.category, DamagedLine)]
    assert len(messages) == 1 and messages[0].startswith(f"{run.calls_path}:2: unreadable"), messages
    assert expected in messages[0]


def test_a_second_copy_says_it_was_ignored(tmp_path):
    run = Run("twice", tmp_path)
    run.dir.mkdir()
    lines = [{"key": "k", "record": a_record()}, {"key": "k", "record": a_record(latency_ms=99.0)}]
    run.calls_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.warns(DamagedLine) as caught:
        records = run.records()
    assert [r.latency_ms for r in records] == [12.5]  # the first copy is kept
    message = str(caught[0].message)
    assert message == f"{run.calls_path}:2: a second copy of a record already read ({run.calls_path}:1); ignored, " \
                      "the first is kept"
    assert isinstance(caught[0].message, store.RepeatedRecord)


# -- manifests -------------------------------------------------------------------------------------


BAD_MANIFESTS = {
    "empty": (b"", "is empty"),
    "blank": (b"  \n", "is empty"),
    "cut short": (b'{\n  "run_id": "m",\n  "experiment": ', "is not valid JSON (Expecting value at line 3, column 17)"),
    "not JSON": (b"run: m\n", "is not valid JSON (Expecting value at line 1, column 1)"),
    "not UTF-8": (b'{"run_id": "\xff"}', "is not JSON text"),
    "an array": (b"[1, 2]", "holds an array, not an object"),
    "incomplete": (b'{"run_id": "m"}', "is incomplete: it lacks experiment, started_at"),
    "design without sessions": (b'{"run_id": "m", "experiment": "e", "started_at": "t", "design": {}}',
                                "is incomplete: it lacks sessions"),
    "sessions not a list": (b'{"run_id": "m", "experiment": "e", "started_at": "t", "design": {}, "sessions": 3}',
                            "is damaged: its sessions are not a list of objects"),
    "design not an object": (b'{"run_id": "m", "experiment": "e", "started_at": "t", "design": [], "sessions": []}',
                             "is damaged: its design is an array, not an object"),
}


@pytest.mark.parametrize("bad", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_a_damaged_manifest_says_what_is_wrong_and_how_to_repair_it(tmp_path, bad):
    content, problem = bad
    run = Run("m", tmp_path)
    run.dir.mkdir()
    run.manifest_path.write_bytes(content)
    with pytest.raises(store.DamagedRun) as caught:
        _ = run.manifest
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message.startswith(f"{run.manifest_path} {problem}")
    assert "restore it from version control" in message and f"move the run folder {run.dir} away" in message
    with pytest.raises(store.DamagedRun):  # and a collection stops on it with the same message, not a KeyError
        run.begin_session("e", {"n": 1}, {"window": "w"}, ("window",))
    assert run.manifest_path.read_bytes() == content  # left as it was


def test_a_manifest_without_sessions_is_sound(tmp_path):
    run = Run("quick", tmp_path)
    run.write_manifest({"run_id": "quick", "experiment": None, "started_at": "2026-11-27T09:17:51+00:00"})
    assert run.manifest["experiment"] is None


# -- durable appends -------------------------------------------------------------------------------


def os_with(monkeypatch, **replaced) -> None:
    """Give lab.store.lines (and only it) an ``os`` whose named functions are test doubles."""
    from lab.store import lines

    monkeypatch.setattr(lines, "os", types.SimpleNamespace(**{**vars(os), **replaced}))


def test_short_writes_are_completed(tmp_path, monkeypatch):
    sizes = []

    def short_write(fd, data):
        sizes.append(len(data))
        return os.write(fd, bytes(data[:5]))  # the OS may write less than asked

    os_with(monkeypatch, write=short_write)
    run = Run("short", tmp_path)
    for i in range(3):
        run.append_line({"i": i, "text": "a longer line than five bytes"}, "events.jsonl")
    assert len(sizes) > 3
    assert read(run, "events.jsonl") == ([{"i": i, "text": "a longer line than five bytes"} for i in range(3)], [])


@pytest.mark.parametrize("torn_before", [False, True])
@pytest.mark.parametrize("failure", ["write", "fsync", "no progress"])
def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch, failure, torn_before):
    run = Run("full", tmp_path)
    run.append_line({"i": 0}, "events.jsonl")
    path = run.dir / "events.jsonl"
    if torn_before:
        with open(path, "ab") as handle:
            handle.write(b'{"i": 1, "to')  # a line torn by an earlier kill
    before = path.read_bytes()

    def failing_write(fd, data):
        if failure == "no progress":
            return 0
        os.write(fd, bytes(data[:7]))  # part of the line reaches the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    os_with(monkeypatch, **({"fsync": failing_fsync} if failure == "fsync" else {"write": failing_write}))
    with pytest.raises(OSError) as caught:
        run.append_line({"i": 2, "text": "x" * 100}, "events.jsonl")
    assert caught.value.errno == {"write": errno.ENOSPC, "fsync": errno.EIO, "no progress": errno.EIO}[failure]
    assert path.read_bytes() == before  # no torn line left by the failed append
    monkeypatch.undo()
    run.append_line({"i": 3}, "events.jsonl")  # space freed: appending goes on
    entries, damage = read(run, "events.jsonl")
    assert entries == [{"i": 0}, {"i": 3}] and len(damage) == torn_before


FILL = """
import errno, json, sys
from lab.store import Run
run, written, error = Run("full", sys.argv[1]), 0, None
try:
    while True:
        run.append_line({"i": written, "pad": "x" * 900}, "events.jsonl")
        written += 1
except OSError as exc:
    error = exc.errno
data = (run.dir / "events.jsonl").read_bytes()
print(json.dumps({"written": written, "error": error, "lines": [json.loads(l)["i"] for l in data.splitlines()],
                  "ends_with_newline": data.endswith(b"\\n")}))
"""


def in_namespace(script: str, *args: str) -> str:
    """``script`` run by a shell in a new user and mount namespace (root there; its mounts, on the folder
    ``args[0]``, are seen by no other process and end with it)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            'mount -t tmpfs -o size=16k tmpfs "$1"', "sh", args[0]], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a user namespace here: {probe.stderr.decode().strip()}")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-euc", script, "sh", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_really_full_disk_leaves_no_torn_line(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    out = in_namespace('mount -t tmpfs -o size=24k tmpfs "$1" && "$2" -c "$3" "$1"', str(mount), sys.executable,
                       FILL)
    result = json.loads(out)
    assert result["error"] == errno.ENOSPC and result["written"] > 0
    assert result["lines"] == list(range(result["written"])) and result["ends_with_newline"]


# -- reading never writes --------------------------------------------------------------------------


def a_run_to_read(tmp_path) -> Run:
    """A run with a manifest, calls (one a second copy, one torn) and a compacted part, in ``tmp_path``."""
    run = Run("readonly", tmp_path)
    run.write_manifest({"run_id": "readonly", "experiment": "e", "started_at": "t", "design": {"n": 1},
                        "sessions": [{"window": "w", "ended_at": None}]})
    run.append_line({"key": "a", "record": a_record()})
    run.append_line({"key": "b", "record": a_record(latency_ms=2.0)})
    run.compact()
    run.append_line({"key": "c", "record": a_record(latency_ms=3.0)})
    run.append_line({"key": "c", "record": a_record(latency_ms=4.0)})
    with open(run.calls_path, "ab") as handle:
        handle.write(b'{"key": "d", "rec')
    return run


def reads_everything(run: Run) -> None:
    fresh = Run(run.id, run.dir.parent)
    assert fresh.manifest["experiment"] == "e"
    with pytest.warns(DamagedLine):
        assert [r.latency_ms for r in fresh.records()] == [12.5, 2.0, 3.0]
    assert set(fresh.index) == {"a", "b", "c"}
    with pytest.warns(DamagedLine):
        assert len(list(fresh.read_lines())) == 4
    assert fresh.line_files() == ["calls.jsonl"] and fresh.collecting is None
    assert store.run_ids(run.dir.parent) == ["readonly"]


READ_ONLY = """
import errno, sys
from lab.store import Run
from tests.test_store_damage import reads_everything
run = Run("readonly", sys.argv[1])
try:
    (run.dir / "probe").touch()
    sys.exit("the folder is writable")
except OSError as exc:
    assert exc.errno == getattr(errno, sys.argv[2]), exc
reads_everything(run)
print("read")
"""


def test_reading_works_in_a_folder_without_write_permission(tmp_path):
    run = a_run_to_read(tmp_path)
    for path in [run.dir, *run.dir.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        if os.geteuid() != 0:
            done = subprocess.run([sys.executable, "-c", READ_ONLY, str(tmp_path), "EACCES"], capture_output=True,
                                  text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
        elif shutil.which("unshare") is None:
            pytest.skip("permissions do not stop root, and unshare(1), to read without root's privileges, is absent")
        else:  # root ignores permissions: read as root without its privileges, in a user namespace of its own
            done = subprocess.run(["unshare", "--user", sys.executable, "-c", READ_ONLY, str(tmp_path), "EACCES"],
                                  capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
            if "unshare:" in done.stderr:
                pytest.skip(f"permissions do not stop root, and no user namespace here: {done.stderr.strip()}")
        assert done.returncode == 0 and done.stdout == "read\n", done.stderr
    finally:
        run.dir.chmod(0o755)


@pytest.mark.slow
def test_reading_works_on_a_read_only_mount(tmp_path):
    a_run_to_read(tmp_path)
    out = in_namespace('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && "$2" -c "$3" "$1" EROFS',
                       str(tmp_path), sys.executable, READ_ONLY)
    assert out.strip() == "read"


def test_reading_works_when_every_write_fails(tmp_path, monkeypatch):
    run = a_run_to_read(tmp_path)
    snapshot = {p.name: p.read_bytes() for p in run.dir.iterdir()}

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system (test double)")

    real_open, real_os_open = builtins.open, os.open

    def open_for_reading(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            refuse()
        return real_open(file, mode, *args, **kwargs)

    def os_open_for_reading(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            refuse()
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_for_reading)
    monkeypatch.setattr(io, "open", open_for_reading)
    monkeypatch.setattr(os, "open", os_open_for_reading)
    for name in ("mkdir", "makedirs", "replace", "rename", "unlink", "remove", "ftruncate", "write", "rmdir"):
        monkeypatch.setattr(os, name, refuse)
    for name in ("mkdir", "touch", "unlink", "write_text", "write_bytes", "rename", "replace"):
        monkeypatch.setattr(Path, name, refuse)
    with pytest.raises(OSError):  # the double refuses writes ...
        run.append_line({"key": "e"})
    reads_everything(run)  # ... and reading needs none
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in run.dir.iterdir()} == snapshot
