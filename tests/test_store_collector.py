"""One collector per run: an exclusive flock, who holds it in the message, --wait, no stale locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lab.store import Run, RunBusy

from events import wait_until_blocked_on

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys
from lab.store import Run, RunBusy
try:
    with Run(sys.argv[1], sys.argv[2]).collector(sys.argv[3]):
        print("holding", flush=True)
        sys.stdin.readline()  # until the test says so
except RunBusy as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""
COMMAND = "lab collect variance --run shared --window W --n 3"


def holder(root: Path, run_id: str = "shared", command: str = COMMAND) -> subprocess.Popen:
    """A second process that takes the run's collector lock and holds it until its stdin gets a line."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, run_id, str(root), command], cwd=ROOT, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline() == "holding\n", process.stderr.read()
    return process


def release(process: subprocess.Popen) -> None:
    process.stdin.write("done\n")
    process.stdin.close()
    assert process.wait(timeout=60) == 0


def test_a_second_collector_is_refused_with_who_holds_the_run(tmp_path):
    first = holder(tmp_path)
    try:
        with pytest.raises(RunBusy) as caught:
            with Run("shared", tmp_path).collector("lab collect variance --run shared"):
                pytest.fail("two collectors held one run")
        message = str(caught.value)
        assert message.startswith(f"run shared is being collected by pid {first.pid} (`{COMMAND}`, since ")
        assert message.endswith("); wait for it to finish or pass --wait")
        assert isinstance(caught.value, RuntimeError)
        holding = Run("shared", tmp_path).collecting
        assert holding["pid"] == first.pid and holding["command"] == COMMAND
    finally:
        release(first)
    assert Run("shared", tmp_path).collecting is None
    with Run("shared", tmp_path).collector("again"):  # free once the first is done
        pass


def test_other_runs_are_collected_in_parallel(tmp_path):
    first = holder(tmp_path, "one")
    try:
        with Run("two", tmp_path).collector("lab collect variance --run two"):
            assert Run("two", tmp_path).collecting["pid"] == os.getpid()
            assert Run("one", tmp_path).collecting["pid"] == first.pid
    finally:
        release(first)


def test_two_processes_started_together_one_collects(tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", HOLD, "race", str(tmp_path), f"collector {i}"], cwd=ROOT,
                                  text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}) for i in range(2)]
    first_line = [p.stdout.readline() for p in processes]  # "holding", or "" from the refused one as it exits
    assert sorted(first_line) == ["", "holding\n"], [p.stderr.read() for p in processes]
    refused = processes[first_line.index("")]
    winner = processes[first_line.index("holding\n")]
    assert refused.wait(timeout=60) == 2
    assert f"run race is being collected by pid {winner.pid}" in refused.stderr.read()
    release(winner)


def test_wait_blocks_until_the_holder_is_done(tmp_path):
    first = holder(tmp_path)
    events = []

    def wait_for_the_run():
        with Run("shared", tmp_path).collector("waiting", wait=True):
            events.append("acquired")

    waiter = threading.Thread(target=wait_for_the_run)
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and events == []  # still waiting while the first collector holds the run
    release(first)
    waiter.join(timeout=60)
    assert events == ["acquired"]


def test_a_killed_collector_leaves_no_stale_lock(tmp_path):
    first = holder(tmp_path)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    run = Run("shared", tmp_path)
    assert run.collecting is None  # its note stays in the file, but its process is gone
    with run.collector("after the kill"):
        assert run.collecting["command"] == "after the kill"


def test_nothing_is_left_held_after_an_exception_inside(tmp_path):
    run = Run("r", tmp_path)
    with pytest.raises(KeyError):
        with run.collector("failing"):
            raise KeyError("boom")
    assert run.collecting is None
    with run.collector("next"):
        pass


OPEN_LOOP = """
[[targets]]
provider = "openai"
model = "gpt-5-mini"
[prompts]
items = [{prompt = "hi"}]
[design]
mode = "open-loop"
rate_per_s = [40, 80]
requests = 20
"""


@pytest.mark.parametrize("experiment", [["variance", "--n", "12", "--pause", "0"], ["run", "open-loop.toml"]])
def test_collectors_that_waited_never_make_a_call_twice(tmp_path, experiment):
    # The run holds an earlier window; two collectors of another window plan while a third process holds the run,
    # then wait: the one that gets the lock second must plan again from what the first recorded.
    (tmp_path / "open-loop.toml").write_text(OPEN_LOOP)
    command = [sys.executable, "-m", "lab.cli", "collect", *experiment, "--run", "shared", "--wait",
               "--emulator", "fixed:ttft_ms=5,itl_ms=1,output_tokens=4"]
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    subprocess.run([*command, "--window", "earlier"], cwd=tmp_path, env=env, check=True, capture_output=True)
    first = holder(tmp_path)
    waiting = [subprocess.Popen([*command, "--window", "W"], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    wait_until_blocked_on(tmp_path / "shared" / ".collector.lock", count=2)
    release(first)
    outputs = [p.communicate(timeout=600) for p in waiting]
    assert [p.returncode for p in waiting] == [0, 0], outputs
    keys = [line.split('"key": "')[1][:64] for name in ("calls.jsonl", "calls.jsonl.gz")
            for line in _text(tmp_path / "shared" / name).splitlines()]
    assert keys and len(keys) == len(set(keys))  # every call made once
    made = sorted(out.split("\n")[-2] for out, _ in outputs)
    assert made[0].startswith("0 ") and not made[1].startswith("0 "), made  # the second found nothing to do


def _text(path: Path) -> str:
    import gzip

    if not path.exists():
        return ""
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
