"""The store: replay identity, crash safety under SIGKILL, damaged lines."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from lab.collect import experiment
from lab.collect.recorder import Recorder
from lab.core import endpoints
from lab.emulator import Emulator, LatencyProfile
from lab.store import CallKey, MissingRecord, Run
from lab.store.lines import DamagedLine

from events import wait_until_blocked_on

PROMPT = "Explain in 2-3 sentences why infrastructure reliability matters for software companies."


@pytest.fixture()
def emulator():
    with Emulator(profile=LatencyProfile.fixed(ttft_ms=5, itl_ms=1, output_tokens=10)) as emu:
        yield emu


def test_replay_is_byte_for_byte(tmp_path, emulator):
    run = Run("r1", tmp_path)
    recorder = Recorder(run)
    options = {"provider": "anthropic", "model": "claude-haiku-4-5", "base_url": emulator.url_for("anthropic")}
    first = recorder.complete(PROMPT, max_tokens=64, sample=0, window="w", **options)
    streamed = recorder.stream(PROMPT, max_tokens=64, sample=0, window="w", **options)
    assert "".join(streamed) == streamed.text
    assert len(emulator.wait_for_requests(2)) == 2

    replay = Recorder(Run("r1", tmp_path))  # a fresh process would see only the file
    again = replay.complete(PROMPT, max_tokens=64, sample=0, window="w", **options)
    again_streamed = replay.stream(PROMPT, max_tokens=64, sample=0, window="w", **options)
    assert "".join(again_streamed) == streamed.text
    assert again.record == first.record and again_streamed.record == streamed.record
    assert json.dumps(again.record.to_dict()) == json.dumps(first.record.to_dict())
    assert (again.record.run_id, again.record.window, again.record.sample) == ("r1", "w", 0)
    assert len(emulator.requests) == 2  # the replays made no call


def test_key_covers_request_window_and_sample_but_not_an_emulators_port():
    base = CallKey("anthropic", "http://127.0.0.1:8000", "m", "complete", {"prompt": "a"}, "w", 0)
    same = CallKey("anthropic", "http://127.0.0.1:9999", "m", "complete", {"prompt": "a"}, "w", 0)
    assert base.digest != same.digest  # two local servers: a vLLM's answer never replays for another's
    for url in ("http://127.0.0.1:8000", "http://127.0.0.1:9999"):
        endpoints.register_emulator(url)  # as an in-process emulator does when it starts
    try:
        assert base.digest == same.digest
        for other in (
            CallKey("anthropic", "http://127.0.0.1:8000", "m", "complete", {"prompt": "b"}, "w", 0),
            CallKey("anthropic", "http://127.0.0.1:8000", "m", "complete", {"prompt": "a"}, "w", 1),
            CallKey("anthropic", "http://127.0.0.1:8000", "m", "complete", {"prompt": "a"}, "v", 0),
            CallKey("anthropic", "http://127.0.0.1:8000", "m2", "complete", {"prompt": "a"}, "w", 0),
            CallKey("anthropic", "http://127.0.0.1:8000", "m", "stream", {"prompt": "a"}, "w", 0),
            CallKey("openai", "http://127.0.0.1:8000", "m", "complete", {"prompt": "a"}, "w", 0),
            CallKey("anthropic", "https://api.anthropic.com", "m", "complete", {"prompt": "a"}, "w", 0),
        ):
            assert other.digest != base.digest
    finally:
        for url in ("http://127.0.0.1:8000", "http://127.0.0.1:9999"):
            endpoints.unregister_emulator(url)


def test_a_miss_without_live_calls_names_the_run_the_record_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-used")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    recorder = Recorder(Run("paid", tmp_path), collect_hint="lab collect variance --run paid ...")
    with pytest.raises(MissingRecord) as caught:
        recorder.complete(PROMPT, max_tokens=256, sample=3, window="Friday", provider="anthropic",
                          model="claude-sonnet-4-6")
    message = str(caught.value)
    assert "'paid'" in message and "claude-sonnet-4-6" in message and "sample 3" in message
    assert "lab collect variance --run paid" in message and "--live" in message


def collect_cmd(run_id: str, n: int = 20) -> list[str]:
    return [sys.executable, "-m", "lab.cli", "collect", "variance", "--run", run_id, "--emulator", "instant",
            "--model", "claude-haiku-4-5", "--model", "claude-sonnet-4-6", "--window", "W", "--n", str(n),
            "--pause", "0.02", "--stream"]


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_gives_exactly_the_planned_records(tmp_path):
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path)}
    calls = tmp_path / "killed" / "calls.jsonl"
    rng = random.Random(7)
    lines_after_each_kill = []

    def lines() -> int:
        return len(calls.read_bytes().splitlines()) if calls.exists() else 0

    for _ in range(6):
        before = lines()
        proc = subprocess.Popen(collect_cmd("killed", n=40), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while lines() == before and time.monotonic() < deadline:  # wait until it is collecting
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))  # then kill at a random moment
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lines_after_each_kill.append(lines())
    # The kills really did land in the middle of collecting.
    assert len(set(lines_after_each_kill)) >= 3 and lines_after_each_kill[-1] < 160, lines_after_each_kill

    finished = subprocess.run(collect_cmd("killed", n=40), env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    frame = experiment.load(Run("killed", tmp_path))  # any torn line is reported as a DamagedLine warning
    assert len(frame) == 2 * 40 * 2  # models x samples x kinds
    assert not frame.duplicated(["model", "sample", "kind"]).any()
    keys = [json.loads(line)["key"] for line in calls.read_text().splitlines() if line.endswith("}}")]
    assert len(keys) == len(set(keys)) == 160


@pytest.mark.slow
def test_a_torn_last_line_is_reported_and_its_call_collected_again(tmp_path):
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path)}
    subprocess.run(collect_cmd("torn", n=3), env=env, check=True, capture_output=True, timeout=300)
    calls = tmp_path / "torn" / "calls.jsonl"
    lines = calls.read_bytes().splitlines(keepends=True)
    calls.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # as if killed mid-write

    with pytest.warns(DamagedLine, match=rf"calls\.jsonl:{len(lines)}: incomplete"):
        with pytest.raises(MissingRecord, match="lab collect variance --run torn"):
            experiment.load(Run("torn", tmp_path))
    resumed = subprocess.run(collect_cmd("torn", n=3), env=env, capture_output=True, text=True, timeout=300)
    assert "1 calls made, 11 already recorded" in resumed.stdout
    with pytest.warns(DamagedLine):  # the torn line stays in the file, and is still reported
        assert len(experiment.load(Run("torn", tmp_path))) == 12


def test_a_damaged_line_in_the_middle_is_reported_not_fatal(tmp_path, emulator):
    run = Run("damaged", tmp_path)
    recorder = Recorder(run)
    options = {"provider": "openai", "model": "gpt-5-mini", "base_url": emulator.url_for("openai")}
    for sample in range(3):
        recorder.complete(PROMPT, max_tokens=32, sample=sample, **options)
    lines = run.calls_path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"record"', '"rec0rd"')
    run.calls_path.write_text("".join(lines))

    with pytest.warns(DamagedLine, match=r"calls\.jsonl:2: unreadable"):
        records = Run("damaged", tmp_path).records()
    assert [r.sample for r in records] == [0, 2]


def _lines(run: Run, name: str) -> list[dict]:
    return [entry for _, entry in run.read_lines(name)]


def test_compact_keeps_every_line_and_appending_goes_on(tmp_path):
    run = Run("packed", tmp_path)
    for i in range(3):
        run.append_line({"i": i}, "events.jsonl")
    plain = run.dir / "events.jsonl"
    with open(plain, "ab") as handle:
        handle.write(b'{"i": 99, "torn')  # a write cut short by a kill
    run.compact("events.jsonl")
    assert not plain.exists() and (run.dir / "events.jsonl.gz").exists()
    run.append_line({"i": 3}, "events.jsonl")
    run.compact("events.jsonl")
    run.append_line({"i": 4}, "events.jsonl")
    with pytest.warns(DamagedLine, match="unreadable"):
        assert _lines(run, "events.jsonl") == [{"i": i} for i in range(5)]


def test_a_compaction_killed_before_removing_the_plain_file_duplicates_nothing(tmp_path):
    run = Run("half", tmp_path)
    for i in range(3):
        run.append_line({"i": i}, "events.jsonl")
    kept = (run.dir / "events.jsonl").read_bytes()
    run.compact("events.jsonl")
    (run.dir / "events.jsonl").write_bytes(kept)  # as if killed between the rename and the unlink
    run.append_line({"i": 3}, "events.jsonl")
    assert _lines(run, "events.jsonl") == [{"i": i} for i in range(4)]
    run.compact("events.jsonl")
    assert _lines(run, "events.jsonl") == [{"i": i} for i in range(4)]


def test_calls_are_replayed_from_a_compacted_run(tmp_path, emulator):
    run = Run("r2", tmp_path)
    options = {"provider": "openai", "model": "gpt-5-mini", "base_url": emulator.url_for("openai")}
    first = Recorder(run).complete(PROMPT, max_tokens=32, sample=0, **options)
    run.compact()
    again = Recorder(Run("r2", tmp_path), mode="replay").complete(PROMPT, max_tokens=32, sample=0, **options)
    assert again.record == first.record


def test_overlapping_compactions_and_an_append_lose_nothing(tmp_path, monkeypatch):
    run = Run("race", tmp_path)
    for i in range(3):
        run.append_line({"i": i}, "events.jsonl")
    plain = run.dir / "events.jsonl"
    first = os.open(plain, os.O_RDWR)  # compaction A holds the lock ...
    fcntl.flock(first, fcntl.LOCK_EX)
    second = threading.Thread(target=run.compact, args=("events.jsonl",))
    second.start()  # ... so compaction B waits on the same file
    wait_until_blocked_on(plain)
    (run.dir / "events.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))  # A finishes its work
    plain.unlink()
    appenders = []
    replace = os.replace

    def append_while_b_works(src, dst):  # a collector appends while B is between its read and its unlink
        if threading.current_thread() is second:
            appenders.append(threading.Thread(target=run.append_line, args=({"i": 4}, "events.jsonl")))
            appenders[-1].start()
            wait_until_blocked_on(plain)  # the appender waits for B's lock on the new plain file
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", append_while_b_works)
    run.append_line({"i": 3}, "events.jsonl")  # a new plain file
    os.close(first)  # A releases its lock
    second.join(timeout=10)
    for thread in appenders:
        thread.join(timeout=10)
    assert sorted(e["i"] for e in _lines(run, "events.jsonl")) == [0, 1, 2, 3, 4]
