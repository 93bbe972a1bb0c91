"""How faithful is the emulator's own timing? Run by hand (``make benchmark``); numbers go in the issue note.

Profile ``fixed`` (200 ms before the first token, 20 tokens, no inter-token time), driven by the async
Anthropic SDK at concurrency 1, 8 and 32. The server's own clock gives the time it adds beyond the
planned delay (goal: p99 under 1 ms on a quiet machine); the client gives the latency it observes.
The emulator runs in its own process. This script imports the SDK directly on purpose: it measures the
server, not the lab's client.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import anthropic

from benchmarks.common import PROMPT, emulator_process, server_log, summary


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
    print(f"Emulator fidelity, profile fixed (200 ms), async Anthropic SDK, about {requests} requests per level")
    with emulator_process("fixed") as base_url:
        asyncio.run(_closed_loop(base_url, 4, 5))  # warm-up
        server_log(base_url, clear=True)
        for concurrency in (1, 8, 32):
            per_worker = max(requests // concurrency, 10) if concurrency > 1 else max(requests // 4, 25)
            client_ms = asyncio.run(_closed_loop(base_url, concurrency, per_worker))
            added = [entry["overhead_ms"] for entry in server_log(base_url, clear=True)]
            print(f"  concurrency {concurrency:2d}  client  {summary(client_ms)}")
            print(f"  concurrency {concurrency:2d}  server adds {summary(added)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=640, help="requests per concurrency level")
    fidelity(parser.parse_args().requests)


if __name__ == "__main__":
    main()
