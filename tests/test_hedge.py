"""Routing policies (lab.hedge) against two in-process emulators: primary and backup providers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from lab.core import prices
from lab.core.records import CallRecord
from lab.emulator import Emulator, FaultRule, LatencyProfile
from lab.hedge import Backend, RecentPercentile
from lab.hedge import policies as hedge

PROMPT = "Explain in 2-3 sentences why infrastructure reliability matters for software companies."
FAST = LatencyProfile.fixed(ttft_ms=20, itl_ms=1, output_tokens=12)
SLOW = LatencyProfile.fixed(ttft_ms=600, itl_ms=1, output_tokens=12)
STALL = FaultRule("stall_first_token", params={"ms": 30_000})
HANG_S = 10  # hang detector only


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, HANG_S))


def primary_route(emu: Emulator) -> Backend:
    return Backend("anthropic", "claude-haiku-4-5", emu.url_for("anthropic"))


def backup_route(emu: Emulator) -> Backend:
    return Backend("openai", "gpt-5-mini", emu.url_for("openai"))


@pytest.fixture
def pair(request):
    """(primary, backup) emulators; parametrize indirectly with (primary kwargs, backup kwargs)."""
    primary_kw, backup_kw = getattr(request, "param", ({}, {}))
    with Emulator(**{"profile": FAST, **primary_kw}) as p, Emulator(**{"profile": FAST, **backup_kw}) as b:
        yield p, b


def test_single_returns_its_record(pair):
    p, _ = pair
    out = run(hedge.single(PROMPT, primary_route(p), max_tokens=64))
    assert out.ok and out.policy == "single" and out.extra_requests == 0
    assert out.attempts == (out.winner,) and out.winner.provider == "anthropic"
    assert out.text == out.winner.text and out.text
    assert out.cost_usd == pytest.approx(out.winner.cost_usd) and out.cost_usd > 0
    assert out.latency_ms >= out.winner.latency_ms


@pytest.mark.parametrize("pair", [({"faults": [FaultRule("overloaded")]}, {})], indirect=True)
def test_fallback_uses_backup_after_overloaded(pair):
    p, b = pair
    out = run(hedge.fallback(PROMPT, primary_route(p), backup_route(b)))
    assert out.ok and out.winner.provider == "openai"
    first, second = out.attempts
    assert first.error_type == "overloaded" and first.http_status == 529
    assert second is out.winner and out.extra_requests == 1


@pytest.mark.parametrize("pair", [({"faults": [STALL]}, {})], indirect=True)
def test_fallback_uses_backup_after_timeout(pair):
    p, b = pair
    out = run(hedge.fallback(PROMPT, primary_route(p), backup_route(b), timeout_s=0.3))
    assert out.ok and out.winner.provider == "openai"
    assert out.attempts[0].error_type == "cancelled"
    assert p.wait_for_requests(1)[0].outcome == "disconnected"
    assert out.latency_ms >= 300


def test_fallback_does_not_touch_backup_when_primary_succeeds(pair):
    p, b = pair
    out = run(hedge.fallback(PROMPT, primary_route(p), backup_route(b), timeout_s=5))
    assert out.ok and out.winner.provider == "anthropic" and len(out.attempts) == 1
    assert b.requests == []


def test_hedge_fast_primary_wins_without_hedging(pair):
    p, b = pair
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=1.0))
    assert out.ok and out.winner.provider == "anthropic"
    assert len(out.attempts) == 1 and out.extra_requests == 0
    assert b.requests == []


@pytest.mark.parametrize("pair", [({"faults": [STALL]}, {}), ({"profile": SLOW}, {})], indirect=True)
def test_hedge_stalled_primary_loses_and_is_cancelled(pair):
    p, b = pair
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=0.1))
    assert out.ok and out.winner.provider == "openai" and out.extra_requests == 1
    loser, winner = out.attempts
    assert winner is out.winner and loser.provider == "anthropic"
    assert loser.status == "error" and loser.error_type == "cancelled"
    assert p.wait_for_requests(1)[0].outcome == "disconnected"
    assert b.wait_for_requests(1)[0].outcome == "ok"
    assert out.latency_ms >= 100  # the backup started only after the delay
    # The loser's cost is estimated: Anthropic reports input tokens at the start of the stream.
    assert loser.input_tokens and out.attempt_costs[0] > 0
    assert out.cost_usd == pytest.approx(out.attempt_costs[0] + winner.cost_usd)


@pytest.mark.parametrize("pair", [({"faults": [FaultRule("overloaded")]}, {})], indirect=True)
def test_hedge_fast_failure_starts_backup_at_once(pair):
    p, b = pair
    # A delay far beyond the hang detector: waiting for it would fail the test.
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=60.0))
    assert out.ok and out.winner.provider == "openai"  # the failure did not win
    assert out.attempts[0].error_type == "overloaded"


@pytest.mark.parametrize(
    "pair",
    [({"profile": LatencyProfile.fixed(ttft_ms=400, itl_ms=1, output_tokens=12)},
      {"faults": [FaultRule("overloaded")]})],
    indirect=True,
)
def test_hedge_first_finisher_fails_then_later_success_wins(pair):
    p, b = pair
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=0.05))
    assert out.ok and out.winner.provider == "anthropic"
    primary, backup = out.attempts
    assert primary is out.winner and backup.error_type == "overloaded"
    assert out.latency_ms >= 400


@pytest.mark.parametrize("pair", [({"faults": [FaultRule("overloaded")]}, {"faults": [FaultRule("server_error")]})],
                         indirect=True)
def test_hedge_all_failures(pair):
    p, b = pair
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=0.05))
    assert not out.ok and out.winner is None and out.text == ""
    assert [r.error_type for r in out.attempts] == ["overloaded", "server_error"]


def test_cancelled_loser_cost_estimate_uses_winner_input_tokens():
    winner = CallRecord(provider="openai", model="gpt-5-mini", endpoint="x", kind="stream",
                              started_at=datetime.now(UTC), latency_ms=1, input_tokens=100,
                              output_tokens=10, cost_usd=0.001)
    loser = CallRecord(provider="openai", model="gpt-5-mini", endpoint="x", kind="stream",
                             started_at=winner.started_at, latency_ms=1, status="error",
                             error_type="cancelled")
    estimate = hedge.estimate_cost(loser, 3, winner)
    assert estimate == pytest.approx(prices.cost_usd("openai", "gpt-5-mini", 100, 3))
    other = CallRecord(**{**winner.to_dict(), "started_at": winner.started_at, "provider": "anthropic",
                          "model": "claude-haiku-4-5"})
    # the same prompt on another provider: its input tokens stand in, priced at the loser's rates
    assert hedge.estimate_cost(loser, 3, other) == pytest.approx(prices.cost_usd("openai", "gpt-5-mini", 100, 3))
    assert hedge.estimate_cost(loser, 3, None) is None  # nothing known: not counted


@pytest.mark.parametrize("pair", [({"faults": [STALL]}, {})], indirect=True)
def test_hedge_on_ttft(pair):
    p, b = pair
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=0.1, on="ttft"))
    assert out.winner.provider == "openai" and out.attempts[0].error_type == "cancelled"


@pytest.mark.parametrize("pair", [({"profile": LatencyProfile.fixed(ttft_ms=10, itl_ms=150, output_tokens=10)}, {})],
                         indirect=True)
def test_hedge_on_ttft_does_not_fire_once_text_flows(pair):
    p, b = pair
    # End to end the primary takes ~1.5 s, far beyond the delay, but its first token comes at 10 ms:
    # a 500 ms delay leaves a 50x margin for a busy machine.
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=0.5, on="ttft"))
    assert out.winner.provider == "anthropic" and len(out.attempts) == 1
    assert b.requests == []


def test_recent_percentile():
    delay = RecentPercentile(q=50, window=3, initial_s=0.7)
    assert delay() == 0.7
    for s in (0.1, 0.2, 0.3, 0.4):
        delay.observe(s)
    assert delay() == pytest.approx(0.3)  # the median of the last three, 0.2, 0.3 and 0.4
    delay.observe(0.5, censored=True)  # not answered after 0.5 s: the median of 0.3, 0.4 and >0.5 is 0.4
    assert delay() == pytest.approx(0.4)
    for _ in range(3):
        delay.observe(0.6, censored=True)
    assert delay() == pytest.approx(0.6)  # nothing answered: the largest time seen, a lower bound


def test_recent_percentile_is_fed_by_hedge(pair):
    p, b = pair
    delay = RecentPercentile(initial_s=1.0)
    out = run(hedge.hedge(PROMPT, primary_route(p), backup_route(b), delay_s=delay))
    assert out.ok and list(delay.samples) == [(pytest.approx(out.winner.latency_ms / 1e3), True)]
    assert delay() == pytest.approx(out.winner.latency_ms / 1e3)


def test_unknown_option_is_an_error(pair):
    with pytest.raises(TypeError, match="unknown options"):
        run(hedge.single(PROMPT, primary_route(pair[0]), temperature=0))


def test_attempt_cancelled_before_its_request_still_has_a_record(pair):
    async def go():
        attempt = hedge._Running(PROMPT, primary_route(pair[0]), {})
        await hedge._cancel([attempt])
        return attempt.record

    record = run(go())
    assert record.error_type == "cancelled" and record.provider == "anthropic"
    assert record.model == "claude-haiku-4-5" and record.cost_usd is None
