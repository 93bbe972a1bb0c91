"""What the benchmarks share: an emulator in its own process, its request log, and summaries."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence

import numpy as np

from lab.collect.variance import PROMPT  # noqa: F401  (the benchmarks send the field report's prompt)

TRUTH_PROFILE = "fixed:ttft_ms=200,itl_ms=20,output_tokens=50"
"""The issue's configured truth: first token at 200 ms, then one token every 20 ms, 50 tokens."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def lab_process(args: Sequence[str], health_path: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``lab ARGS`` (which must include ``--port PORT``, a free port) in its own process, so it never
    competes with the client for the GIL; yield its base URL once ``health_path`` answers."""
    port = args[list(args).index("--port") + 1]
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", *args], stdout=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base_url}{health_path}", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def emulator_process(profile: str) -> contextlib.AbstractContextManager[str]:
    """``lab emulator --profile PROFILE`` in its own process; its base URL."""
    return lab_process(["emulator", "--port", str(free_port()), "--profile", profile], "/_emulator/health")


def server_log(base_url: str, clear: bool = False) -> list[dict]:
    """The emulator's request log (and clear it afterwards when asked)."""
    with urllib.request.urlopen(f"{base_url}/_emulator/requests", timeout=30) as response:
        entries = json.load(response)
    if clear:
        urllib.request.urlopen(urllib.request.Request(f"{base_url}/_emulator/requests", method="DELETE"), timeout=30)
    return entries


def summary(values_ms: Sequence[float]) -> str:
    a = np.asarray(values_ms, float)
    return f"median {np.median(a):+8.3f} ms   p99 {np.percentile(a, 99):+8.3f} ms   (n={a.size})"
