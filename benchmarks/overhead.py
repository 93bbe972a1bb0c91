"""What ``lab.llm`` adds over a raw SDK call, and how faithful the emulator's timing is.

Run by hand (``make benchmark``); the numbers go in the issue note, not in tests.

1. Overhead: serial non-streamed calls against an emulator with no delay
   (profile ``instant``, in its own process), raw SDK and ``lab.llm``
   interleaved call by call so drift hits both alike. Goal: ``lab.llm`` adds
   under 0.5 ms per call (median).
2. Fidelity: profile ``fixed`` (200 ms before the first token, 20 tokens, no
   inter-token time), driven by the async Anthropic SDK at concurrency 1, 8
   and 32. The server's own clock gives the time it adds beyond the planned
   delay (goal: p99 under 1 ms at every concurrency); the client gives the
   latency it observes (goal: p99 under 230 ms at concurrency 8).

This script imports the SDKs directly on purpose: a raw SDK call is what it
compares ``lab.llm`` with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import anthropic
import numpy as np
import openai

from lab import llm

PROMPT = "Explain in 2-3 sentences why infrastructure reliability matters for software companies."


@contextlib.contextmanager
def emulator_process(profile: str) -> Iterator[str]:
    """Run ``lab emulator`` in its own process; yield its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "emulator", "--port", str(port), "--profile", profile],
                            stdout=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base_url}/_emulator/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def server_log(base_url: str) -> list[dict]:
    with urllib.request.urlopen(f"{base_url}/_emulator/requests", timeout=10) as response:
        return json.load(response)


def summary(values_ms: list[float]) -> str:
    a = np.asarray(values_ms)
    return f"median {np.median(a):7.3f} ms   p99 {np.percentile(a, 99):7.3f} ms   (n={a.size})"


def overhead(calls: int) -> None:
    print(f"\n1. lab.llm over the raw SDK: {calls} serial calls each, interleaved, no server delay")
    with emulator_process("instant") as base_url:
        raw_clients = {
            "anthropic": anthropic.Anthropic(base_url=base_url, api_key="benchmark", max_retries=0),
            "openai": openai.OpenAI(base_url=f"{base_url}/v1", api_key="benchmark", max_retries=0),
        }
        raw_calls = {
            "anthropic": lambda: raw_clients["anthropic"].messages.create(
                model="claude-haiku-4-5", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]),
            "openai": lambda: raw_clients["openai"].chat.completions.create(
                model="gpt-5-mini", max_completion_tokens=256, messages=[{"role": "user", "content": PROMPT}]),
        }
        for provider, raw_call in raw_calls.items():
            url = base_url if provider == "anthropic" else f"{base_url}/v1"
            model = "claude-haiku-4-5" if provider == "anthropic" else "gpt-5-mini"
            raw_ms, lab_ms = [], []
            for i in range(calls + 50):  # the first 50 of each warm up connections and caches
                t0 = time.perf_counter_ns()
                raw_call()
                raw = (time.perf_counter_ns() - t0) / 1e6
                t0 = time.perf_counter_ns()
                llm.complete(PROMPT, max_tokens=256, provider=provider, model=model, base_url=url)
                lab = (time.perf_counter_ns() - t0) / 1e6
                if i >= 50:
                    raw_ms.append(raw)
                    lab_ms.append(lab)
            added = np.median(lab_ms) - np.median(raw_ms)
            print(f"  {provider:9s} raw SDK  {summary(raw_ms)}")
            print(f"  {provider:9s} lab.llm  {summary(lab_ms)}")
            print(f"  {provider:9s} added    {added:7.3f} ms per call (median), ratio {np.median(lab_ms) / np.median(raw_ms):.3f}")


async def _closed_loop(base_url: str, concurrency: int, per_worker: int) -> list[float]:
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="benchmark", max_retries=0)
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            t0 = time.perf_counter_ns()
            await client.messages.create(model="claude-haiku-4-5", max_tokens=256,
                                         messages=[{"role": "user", "content": PROMPT}])
            latencies.append((time.perf_counter_ns() - t0) / 1e6)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()
    return latencies


def fidelity(requests: int) -> None:
    print(f"\n2. Emulator fidelity, profile fixed (200 ms), async Anthropic SDK, about {requests} requests per level")
    with emulator_process("fixed") as base_url:
        asyncio.run(_closed_loop(base_url, 4, 5))  # warm-up
        seen = len(server_log(base_url))
        for concurrency in (1, 8, 32):
            per_worker = max(requests // concurrency, 10) if concurrency > 1 else max(requests // 4, 25)
            client_ms = asyncio.run(_closed_loop(base_url, concurrency, per_worker))
            log = server_log(base_url)[seen:]
            seen += len(log)
            added = [entry["overhead_ms"] for entry in log]
            print(f"  concurrency {concurrency:2d}  client  {summary(client_ms)}")
            print(f"  concurrency {concurrency:2d}  server adds {summary(added)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="serial calls per provider and path")
    parser.add_argument("--requests", type=int, default=640, help="requests per concurrency level")
    args = parser.parse_args()
    overhead(args.calls)
    fidelity(args.requests)


if __name__ == "__main__":
    main()
