"""``lab proxy`` as a command: one-line mistakes, loopback only unless asked, one proxy per run, and
SIGTERM (answers in flight finish within the grace period, or are cut with a recorded outcome; the
records are written either way)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import anthropic
import pytest

from lab import cli
from lab.emulator import Emulator
from lab.proxy import Proxy
from lab.store import Run

from test_proxy import KEYS, MODELS, records

SLOW = "fixed:ttft_ms=10,itl_ms=40,output_tokens=30"


@pytest.fixture()
def lab_main(monkeypatch, tmp_path):
    """``lab`` in process: its exit status, whether it returns or exits (argparse mistakes)."""
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))

    def main(argv: list[str]) -> int:
        try:
            return cli.main(argv)
        except SystemExit as exc:
            return exc.code

    return main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "0"], "0 is too small: a TCP port of at least 1"),
    (["--port", "70000"], "70000 is too large: a TCP port of at most 65535"),
    (["--run", "no spaces"], "invalid run id 'no spaces'"),
    (["--anthropic-upstream", "ftp://example.com"], "not an http:// or https:// URL"),
    (["--timeout", "0"], "0 is too small"),
    (["--grace", "-1"], "-1 is too small"),
    (["--window", "a\nb"], "is not a label"),
    (["--policy", "absent.toml"], "policy file absent.toml does not exist"),
])
def test_mistakes_are_one_line(lab_main, capsys, args, message):
    base = {"--run": "r", "--port": str(free_port())}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    code = lab_main(["proxy", *[item for pair in base.items() for item in pair]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_bad_policy_file_and_a_busy_port_are_one_line(lab_main, capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[routes]]\nname = 'x'\nupstream = 'nowhere'\n")
    assert lab_main(["proxy", "--run", "r", "--policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: routes[0].upstream: no upstream named 'nowhere'" in err and len(err.splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert lab_main(["proxy", "--run", "r", "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "the port is in use: choose another with --port" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing was written before the port was had


def test_loopback_only_unless_asked(tmp_path):
    with pytest.raises(ValueError, match="loopback only unless --host"):
        Proxy(Run("open", tmp_path), host="0.0.0.0")
    with Proxy(Run("open", tmp_path), host="0.0.0.0", allow_remote=True) as proxy:
        with urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}/_lab/health", timeout=5) as response:
            assert json.load(response)["status"] == "ok"


def start_proxy(tmp_path: Path, upstream: str, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "proxy", "--run", "served", "--port", str(port), "--anthropic-upstream",
         upstream, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LAB_RUNS_DIR": str(tmp_path)})
    guard = threading.Timer(120, process.kill)  # a hang detector: the proxy says when it is ready
    guard.start()
    try:
        ready = process.stdout.readline()
    finally:
        guard.cancel()
    if "lab proxy serving" not in ready:
        process.kill()
        raise AssertionError(f"lab proxy did not start: {ready!r} {process.communicate()}")
    return process, port


def stream_in_thread(port: int, first: threading.Event) -> dict:
    outcome: dict = {}

    def run() -> None:
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=KEYS["anthropic"], max_retries=0)
        parts = []
        try:
            with client.messages.stream(model=MODELS["anthropic"], max_tokens=100,
                                        messages=[{"role": "user", "content": "stop me"}]) as stream:
                for text in stream.text_stream:
                    parts.append(text)
                    first.set()
        except anthropic.APIError as exc:
            outcome["error"] = exc
        outcome["text"] = "".join(parts)
        first.set()

    outcome["thread"] = threading.Thread(target=run, daemon=True)
    outcome["thread"].start()
    return outcome


def test_sigterm_lets_streams_in_flight_finish(tmp_path):
    with Emulator(SLOW, key_by="prompt") as emu:
        process, port = start_proxy(tmp_path, emu.base_url, "--grace", "20")
        first = threading.Event()
        outcome = stream_in_thread(port, first)
        assert first.wait(20)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        outcome["thread"].join(30)
        with emu and anthropic.Anthropic(base_url=emu.base_url, api_key="x", max_retries=0) as direct:
            whole = direct.messages.create(model=MODELS["anthropic"], max_tokens=100,
                                           messages=[{"role": "user", "content": "stop me"}]).content[0].text
    assert process.returncode == 0 and "Traceback" not in err
    assert "error" not in outcome and outcome["text"] == whole  # finished, whole, within the grace period
    assert "lab proxy stopped: 1 requests, 1 records" in out
    (record,) = records(tmp_path / "served")
    assert record["status"] == "ok" and len(record["chunk_deltas"]) == 30
    manifest = json.loads((tmp_path / "served" / "manifest.json").read_text())
    assert manifest["sessions"][0]["ended_at"] is not None


def test_sigterm_past_the_grace_period_cuts_with_a_recorded_outcome(tmp_path):
    with Emulator("fixed:ttft_ms=10,itl_ms=300,output_tokens=100") as emu:  # a 30 s answer
        process, port = start_proxy(tmp_path, emu.base_url, "--grace", "0.3")
        first = threading.Event()
        outcome = stream_in_thread(port, first)
        assert first.wait(20)
        began = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        stopped = time.perf_counter() - began
        outcome["thread"].join(30)
    assert process.returncode == 0 and "Traceback" not in err and stopped < 10  # about 1.5 s; the answer, 30 s
    assert "stopped" in str(outcome["error"])  # the caller is told, in its own API's error event
    (record,) = records(tmp_path / "served")
    assert record["error_type"] == "cancelled" and "stopped" in record["error_message"]
    assert record["latency_ms"] < 10_000


def test_one_proxy_per_run(tmp_path, lab_main, capsys):
    with Emulator(SLOW) as emu:
        process, port = start_proxy(tmp_path, emu.base_url)
        try:
            assert lab_main(["proxy", "--run", "served", "--port", str(free_port())]) == 2
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
    err = capsys.readouterr().err
    assert "run served is being collected by pid" in err and len(err.strip().splitlines()) == 1


def test_a_policy_key_that_is_not_set_stops_the_proxy_before_it_starts(lab_main, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("LAB_UNSET_BACKUP_KEY", raising=False)
    policy = tmp_path / "p.toml"
    policy.write_text('[upstreams.backup]\nurl = "http://127.0.0.1:9/v1"\nformat = "openai"\n'
                      'api_key_env = "LAB_UNSET_BACKUP_KEY"\n')
    assert lab_main(["proxy", "--run", "r", "--port", str(free_port()), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert "LAB_UNSET_BACKUP_KEY (upstream backup)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_the_proxy_answers_its_own_health(tmp_path):
    with Proxy(Run("health", tmp_path), anthropic_upstream="http://127.0.0.1:9") as proxy:  # no upstream there
        for path in ("/health", "/_lab/health"):
            with urllib.request.urlopen(proxy.base_url + path, timeout=30) as response:
                assert json.load(response)["status"] == "ok"
