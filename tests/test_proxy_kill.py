"""A proxy killed with SIGKILL under load keeps the record of every call whose answer its caller received
whole: the attempt the caller gets is written before its answer completes."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from lab.emulator import Emulator
from lab.store import Run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KILLS = 6
CALLERS = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(tmp_path: Path, upstream: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "lab.cli", "proxy", "--run", "killed", "--port", str(port),
                                "--anthropic-upstream", upstream], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               env={**os.environ, "LAB_RUNS_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    guard = threading.Timer(120, process.kill)
    guard.start()
    try:
        assert "lab proxy serving" in process.stdout.readline(), process.stderr.read()
    finally:
        guard.cancel()
    return process, port


def caller(port: int, stop: threading.Event, answered: list[str], seed: int) -> None:
    """Asks until told to stop; notes the upstream request id of every answer it received whole."""
    rng = random.Random(seed)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while not stop.is_set():
            stream = rng.random() < 0.5
            body = {"model": "claude-haiku-4-5", "max_tokens": 16, "stream": stream,
                    "messages": [{"role": "user", "content": f"call {rng.random()}"}]}
            try:
                with client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": "k",
                                                                              "anthropic-version": "2023-06-01"}) as r:
                    data = b"".join(r.iter_bytes())
                    if r.status_code == 200 and (b"message_stop" in data or not stream):
                        answered.append(r.headers["request-id"])
            except httpx.HTTPError:
                return  # the proxy was killed: this call was not answered


def test_sigkill_under_load_loses_no_answered_call(tmp_path):
    rng = random.Random(11)
    answered: list[str] = []
    with Emulator("fixed:ttft_ms=5,itl_ms=2,output_tokens=8") as emu:
        for kill in range(KILLS):
            process, port = start(tmp_path, emu.base_url)
            stop = threading.Event()
            threads = [threading.Thread(target=caller, args=(port, stop, answered, 100 * kill + i))
                       for i in range(CALLERS)]
            for thread in threads:
                thread.start()
            stop.wait(rng.uniform(0.5, 2.0))  # under load for a while, then killed at that moment
            process.send_signal(signal.SIGKILL)
            process.wait(60)
            stop.set()
            for thread in threads:
                thread.join(60)
            process.stdout.close()
            process.stderr.close()

    run = Run("killed", tmp_path)
    lines = [entry for _, entry in run.read_lines()]
    recorded = {entry["record"]["request_id"] for entry in lines}
    assert len(answered) > 50 * KILLS  # the proxy was under load at each kill
    lost = set(answered) - recorded
    assert not lost, f"{len(lost)} of {len(answered)} answered calls not recorded over {KILLS} kills"
    assert len({entry["key"] for entry in lines}) == len(lines)  # nothing twice
    done = subprocess.run([sys.executable, "-m", "lab.cli", "runs", "check", "--run", "killed"], cwd=tmp_path, text=True,
                          capture_output=True, env={**os.environ, "LAB_RUNS_DIR": str(tmp_path)})
    assert "Traceback" not in done.stderr
    assert json.loads(run.manifest_path.read_text())["sessions"]
