"""What ``lab proxy`` adds over a direct call, and the highest request rate it sustains.

Run by hand (``python -m benchmarks.proxy``); the numbers go in the issue note, not in tests. The
emulator and the proxy each run in their own process (``lab emulator``, ``lab proxy``, recording
into a temporary run); this process is the client (aiohttp, raw HTTP: its own cost is the same
for both arms). Requests are streamed Anthropic Messages calls.

1. Added latency and TTFT: profile ``fixed:ttft_ms=20,itl_ms=1,output_tokens=20``. Pairs of
   requests, one direct and one through the proxy, in random order within each pair, sent by
   1, 8 and 64 concurrent workers. Per pair: proxied minus direct, for the time to the last byte
   and to the first content event. Goal: under 1 ms at the median and 5 ms at p99 at 8.
2. Sustained rate: profile ``instant``; open-loop steps of 4 s at rising rates, direct and through
   the proxy. A rate is sustained when every request succeeds, the requests finish at the offered
   rate (98 %) and the p99 response time from the planned send stays under 250 ms (past its
   capacity a server's queue grows, and with it the response time, to seconds; below it, a
   shared machine's hiccups stay well under that).

This machine is shared: the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator

import aiohttp
import numpy as np

from benchmarks.common import PROMPT, emulator_process, free_port, lab_process, summary

LATENCY_PROFILE = "fixed:ttft_ms=20,itl_ms=1,output_tokens=20"
BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
                   "messages": [{"role": "user", "content": PROMPT}]}).encode()
HEADERS = {"content-type": "application/json", "x-api-key": "benchmark", "anthropic-version": "2023-06-01"}


@contextlib.contextmanager
def proxy_process(upstream: str) -> Iterator[str]:
    """Run ``lab proxy`` in its own process, recording into a temporary run; yield its base URL."""
    with tempfile.TemporaryDirectory() as runs, lab_process(
            ["proxy", "--run", "benchmark", "--port", str(free_port()), "--anthropic-upstream", upstream],
            "/_lab/health", env={"LAB_RUNS_DIR": runs}) as base_url:
        yield base_url


async def call(session: aiohttp.ClientSession, base_url: str) -> tuple[float, float, bool]:
    """One streamed call: (seconds to the first content event, seconds to the last byte, ok)."""
    t0 = time.perf_counter()
    first = None
    async with session.post(f"{base_url}/v1/messages", data=BODY, headers=HEADERS) as response:
        ok = response.status == 200
        async for piece in response.content.iter_any():
            if first is None and b"content_block_delta" in piece:
                first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - t0, end - t0, ok


async def added_latency(direct: str, proxied: str, concurrency: int, pairs: int) -> None:
    differences: list[tuple[float, float]] = []
    rng = random.Random(concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        for _ in range(min(20, pairs)):  # warm up both paths' connections
            await call(session, direct), await call(session, proxied)
        remaining = [pairs]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                order = [direct, proxied] if rng.random() < 0.5 else [proxied, direct]
                results = {url: await call(session, url) for url in order}
                (d_ttft, d_end, d_ok), (p_ttft, p_end, p_ok) = results[direct], results[proxied]
                if d_ok and p_ok:
                    differences.append((p_ttft - d_ttft, p_end - d_end))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ttft, end = zip(*differences)
    print(f"  concurrency {concurrency:2d} ({len(differences)} pairs)   added latency {summary(np.asarray(end) * 1e3)}   "
          f"added TTFT {summary(np.asarray(ttft) * 1e3)}")


async def open_loop(base_url: str, rate: float, seconds: float) -> tuple[bool, str]:
    """Send ``rate`` requests a second for ``seconds``; whether the rate was sustained, and why."""
    n = int(rate * seconds)
    times: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        start = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            nonlocal failures
            planned = start + i / rate
            await asyncio.sleep(max(0.0, planned - time.perf_counter()))
            try:
                _, _, ok = await call(session, base_url)
            except aiohttp.ClientError:
                ok = False
            failures += not ok
            times.append(time.perf_counter() - planned)

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - began - 0.2
    p99 = float(np.percentile(times, 99)) * 1e3
    achieved = n / elapsed
    ok = failures == 0 and achieved >= 0.98 * rate and p99 < 250
    return ok, f"achieved {achieved:7.1f}/s, p99 from planned send {p99:8.1f} ms, failures {failures}"


async def sustained(base_url: str, label: str, seconds: float) -> float:
    best, rate = 0.0, 100.0
    while rate <= 5000:
        ok, detail = await open_loop(base_url, rate, seconds)
        print(f"  {label:8s} {rate:6.0f}/s offered: {detail}{'' if ok else '   <- not sustained'}")
        if not ok:
            break
        best, rate = rate, rate * 1.5
        await asyncio.sleep(1)
    return best


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400, help="pairs per concurrency level (x3 at 64)")
    parser.add_argument("--step-seconds", type=float, default=4.0, help="length of each open-loop step")
    args = parser.parse_args()
    print(f"load average (1, 5, 15 min) before: {load()}  on {os.cpu_count()} cores")
    print(f"\n1. Added latency and TTFT through the proxy, profile {LATENCY_PROFILE}, streamed, interleaved pairs")
    with emulator_process(LATENCY_PROFILE) as emulator, proxy_process(emulator) as proxy:
        for concurrency, pairs in ((1, args.pairs), (8, args.pairs * 2), (64, args.pairs * 3)):
            asyncio.run(added_latency(emulator, proxy, concurrency, pairs))
    print(f"\n2. Highest sustained rate, profile instant, streamed, open loop ({args.step_seconds:g} s steps)")
    with emulator_process("instant") as emulator, proxy_process(emulator) as proxy:
        direct = asyncio.run(sustained(emulator, "direct", args.step_seconds))
        proxied = asyncio.run(sustained(proxy, "proxied", args.step_seconds))
    print(f"  sustained: direct {direct:.0f}/s, through the proxy {proxied:.0f}/s")
    print(f"\nload average (1, 5, 15 min) after: {load()}")


if __name__ == "__main__":
    main()
