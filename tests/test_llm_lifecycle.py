"""Clients with a lifetime, streams with clear ends, settings and secrets, costs that tell the truth."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from lab import llm
from lab.core import config, prices
from lab.emulator import Emulator, FaultRule, LatencyProfile
from lab.hedge import Backend, RecentPercentile, single
from lab.llm import clients

from stubs import Scripted, StubServer, anthropic_message, openai_completion

FAST = LatencyProfile.fixed(ttft_ms=5, itl_ms=1, output_tokens=8)


@pytest.fixture(scope="module")
def emu():
    with Emulator(profile=FAST) as emulator:
        yield emulator


def on(emu, provider: str) -> dict:
    return {"provider": provider, "base_url": emu.url_for(provider)}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_async_clients_are_closed_when_their_loop_ends(emu):
    async def one() -> None:
        for provider in ("anthropic", "openai"):
            assert (await llm.acomplete("hi", max_tokens=8, **on(emu, provider))).ok

    asyncio.run(one())  # warm-up: imports, the emulator's own sockets
    before = open_fds()
    for _ in range(20):
        asyncio.run(one())
    assert open_fds() - before <= 2


def test_a_session_closes_its_clients_at_its_end(emu):
    async def main() -> int:
        async with llm.session():
            await llm.acomplete("hi", max_tokens=8, **on(emu, "openai"))
            inside = open_fds()
        return inside

    before = open_fds()
    inside = asyncio.run(main())
    assert inside > before and open_fds() <= before + 1


def test_concurrent_first_sync_calls_share_one_client(emu):
    with Emulator(profile=FAST) as fresh:
        barrier = threading.Barrier(8)

        def call() -> None:
            barrier.wait()
            assert llm.complete("hi", max_tokens=8, **on(fresh, "openai")).ok

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pool = clients._loop_pools[clients.background.loop()]
        made = [key for key in pool._clients if key[1] == fresh.url_for("openai")]
    assert len(made) == 1


HEDGING_UNDER_LOW_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
from lab.cli import main
sys.exit(main(["collect", "hedging", "--run", "fd-check", "--scenario", "healthy", "--n", "30", "--rate", "60"]))
"""


@pytest.mark.slow
def test_a_hedging_collection_runs_within_128_open_files(tmp_path):
    # Six arms, each with its own event loop and up to 30 connections per provider: clients left open
    # by earlier arms would exhaust the limit.
    done = subprocess.run([sys.executable, "-c", HEDGING_UNDER_LOW_LIMIT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "LAB_RUNS_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Too many open files" not in done.stderr


def test_an_async_stream_left_with_break_has_its_record_at_once(emu):
    slow = LatencyProfile.fixed(ttft_ms=5, itl_ms=50, output_tokens=40)

    async def main():
        with Emulator(profile=slow) as emulator:
            chunks = llm.astream("hi", max_tokens=64, **on(emulator, "anthropic"))
            async for _ in chunks:
                break
            record = chunks.record
            return record, (await asyncio.to_thread(emulator.wait_for_requests, 1, 30))[-1]

    record, served = asyncio.run(main())
    assert record is not None and record.error_type == "cancelled" and record.latency_ms < 40 * 50  # not read to its end
    assert served.outcome == "disconnected"  # the HTTP request was closed, not read to its end


def test_an_async_stream_used_as_a_context_manager_closes_on_exit():
    async def main():
        with Emulator(profile=LatencyProfile.fixed(ttft_ms=5, itl_ms=50, output_tokens=40)) as emulator:
            async with llm.astream("hi", max_tokens=64, **on(emulator, "openai")) as chunks:
                async for _ in chunks:
                    break
            return chunks.record

    record = asyncio.run(main())
    assert record.error_type == "cancelled"


def test_a_sync_stream_left_with_break_is_cancelled():
    # A sync stream is read ahead of its consumer: 40 tokens 250 ms apart are still coming at the break.
    with Emulator(profile=LatencyProfile.fixed(ttft_ms=5, itl_ms=250, output_tokens=40)) as slow:
        chunks = llm.stream("hi", max_tokens=64, **on(slow, "anthropic"))
        for _ in chunks:
            break
    assert chunks.record is not None and chunks.record.error_type == "cancelled"


@pytest.mark.parametrize("kind", ["stream", "astream"])
def test_a_stream_is_read_once(emu, kind):
    if kind == "stream":
        chunks = llm.stream("hi", max_tokens=8, **on(emu, "openai"))
        list(chunks)
        with pytest.raises(RuntimeError, match="already been read"):
            list(chunks)
    else:
        async def twice():
            chunks = llm.astream("hi", max_tokens=8, **on(emu, "openai"))
            async for _ in chunks:
                pass
            async for _ in chunks:
                pass

        with pytest.raises(RuntimeError, match="already been read"):
            asyncio.run(twice())
    assert len([r for r in emu.requests if r.stream]) >= 1


def test_provider_model_variables_win_and_llm_model_stays_with_its_provider(monkeypatch):
    monkeypatch.delenv("LLM_PROVIDER", raising=False)
    monkeypatch.setenv("LLM_MODEL", "claude-sonnet-4-6")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    monkeypatch.delenv("ANTHROPIC_MODEL", raising=False)
    assert config.resolve("openai").model == "gpt-5-mini"  # a Claude id never goes to OpenAI
    assert config.resolve("anthropic").model == "claude-sonnet-4-6"
    assert config.resolve().model == "claude-sonnet-4-6"
    monkeypatch.setenv("ANTHROPIC_MODEL", "claude-haiku-4-5")
    assert config.resolve("anthropic").model == "claude-haiku-4-5"
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-5")
    assert config.resolve().model == "gpt-5"


KEY = "sk-ant-" "api03-LEAKYleakyLEAKY0123456789abcdefXYZ"


def test_a_key_echoed_in_an_error_message_is_never_stored(monkeypatch, capsys, tmp_path):
    body = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key: {KEY}"}}
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    with StubServer([Scripted(401, body)]) as stub:
        record = llm.complete("hi", max_tokens=8, provider="anthropic", base_url=stub.url).record
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        from lab.cli import main

        main(["doctor", "--call", "--provider", "anthropic"])
    assert record.error_type == "auth" and KEY not in record.error_message and "invalid x-api-key" in record.error_message
    assert KEY not in str(record.to_dict())
    assert KEY not in capsys.readouterr().out


def test_credentials_in_a_base_url_are_never_stored():
    with StubServer([Scripted(200, openai_completion())]) as stub:
        url = stub.url_for("openai").replace("http://", "http://user:s3cretpassword@")
        record = llm.complete("hi", max_tokens=8, provider="openai-compatible", model="m", base_url=url).record
        seen = stub.requests[0]["headers"]
    assert record.ok and "s3cret" not in record.endpoint and record.endpoint == stub.url_for("openai")
    assert "Authorization" in seen or "authorization" in seen  # the credentials were used, not stored


def test_an_unpriced_route_costs_unknown_not_zero(emu):
    outcome = asyncio.run(single("hi", Backend("openai-compatible", "my-local-model", emu.url_for("openai")),
                                 max_tokens=8))
    assert outcome.ok and outcome.attempts[0].cost_usd is None and outcome.cost_usd is None


def test_a_stream_cut_after_text_is_priced_from_what_is_known():
    with Emulator(profile=FAST, faults=[FaultRule("cut_stream", params={"after": 3})]) as cut:
        record = llm.drain(llm.stream("hi", max_tokens=64, **on(cut, "anthropic"))).record
    assert record.error_type == "cut_stream" and record.input_tokens and record.output_tokens is None
    assert record.cost_usd == pytest.approx(prices.cost_usd("anthropic", "claude-haiku-4-5", record.input_tokens, 3))


def test_dated_model_ids_are_priced_as_their_model():
    assert prices.cost_usd("anthropic", "claude-haiku-4-5-20251001", 1000, 100) == prices.cost_usd(
        "anthropic", "claude-haiku-4-5", 1000, 100) > 0
    assert prices.cost_usd("openai", "gpt-5-mini-2025-08-07", 1000, 100) > 0
    assert prices.cost_usd("anthropic", "claude-haiku-4-5-29990101", 1000, 100) is None  # unknown snapshot


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_prompt_cache_tokens_are_priced_at_their_own_rates(provider):
    if provider == "anthropic":
        usage = {"input_tokens": 100, "output_tokens": 10, "cache_read_input_tokens": 800,
                 "cache_creation_input_tokens": 100}
        reply = anthropic_message(usage=usage)
    else:
        usage = {"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
                 "prompt_tokens_details": {"cached_tokens": 800}}
        reply = openai_completion(usage=usage)
    with StubServer([Scripted(200, reply)]) as stub:
        record = llm.complete("hi", max_tokens=8, provider=provider, base_url=stub.url_for(provider)).record
    model = record.model
    rate = prices.price(provider, model)
    assert (record.input_tokens, record.cache_read_tokens) == (1000, 800)
    uncached = 1000 - 800 - (record.cache_write_tokens or 0)
    expected = (uncached * rate.input + 800 * rate.cache_read + (record.cache_write_tokens or 0)
                * (rate.cache_write or 0) + 10 * rate.output) / 1e6
    assert record.cost_usd == pytest.approx(expected)
    assert record.cost_usd < prices.cost_usd(provider, model, 1000, 10)


def test_recent_percentile_learns_from_cancelled_primaries_too():
    # A hedge at the recent p95 should fire on about 5% of requests. Learning only from primaries
    # that won (a censored sample) would put the delay too low and hedge about 8% of requests.
    rng = np.random.default_rng(7)
    delay = RecentPercentile(q=95, window=200, initial_s=1.0)
    hedged = []
    for _ in range(6000):
        primary, backup = rng.lognormal(0, 0.5), rng.lognormal(0, 0.5)
        d = delay()
        fired = primary > d
        hedged.append(fired)
        if fired and d + backup < primary:
            delay.observe(d + backup, censored=True)  # cancelled when the backup won
        else:
            delay.observe(primary)
    rate = float(np.mean(hedged[1000:]))
    assert 0.04 <= rate <= 0.06, rate
