"""Routing policies over :mod:`lab.llm`: a single call, fallback, and tail-latency hedging.

Each policy returns an :class:`Outcome`: the winning answer plus the record of every attempt,
losers included, so what hedging buys (latency) and costs (extra requests, tokens) can be measured.

Every attempt is a streamed call (:func:`lab.llm.astream`), read to its end. Streams already
record a cancelled attempt (``error_type="cancelled"``) and close its HTTP request when the task
reading them is cancelled, so no change to the provider layer is needed, and streaming is what
makes hedging on time to first token possible. The price: each attempt's ``latency_ms`` is end to
end over a stream (it includes SSE framing), which is what a caller of ``acomplete`` waits for too.

Cost of a cancelled loser (documented estimate, see :func:`estimate_cost`): its input tokens are
those the provider reported before the cancel (Anthropic sends them at the start of a stream),
else the winner's (the same prompt; another provider's tokenizer may count a few percent
differently); its output tokens are those reported, else the number of text chunks received (a lower
bound: a provider may have generated, and billed, tokens that had not arrived yet). When neither
is known (every attempt failed) the cost stays unknown and is left out of :attr:`Outcome.cost_usd`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from lab import llm
from lab.core import config, prices
from lab.core.records import CallRecord


@dataclass(frozen=True)
class Backend:
    """Where one attempt goes: a provider, and optionally a model and an endpoint."""

    provider: str
    model: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a policy produced: the winner (None if every attempt failed) and every attempt.

    ``attempts`` are in start order; ``attempt_costs`` holds each attempt's known or estimated
    cost (None when unknown); ``latency_ms`` runs from the policy's start to the winner's end,
    or to the last failure.
    """

    policy: str
    winner: CallRecord | None
    text: str
    attempts: tuple[CallRecord, ...]
    latency_ms: float
    attempt_costs: tuple[float | None, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.winner is not None

    @property
    def extra_requests(self) -> int:
        return len(self.attempts) - 1

    @property
    def cost_usd(self) -> float | None:
        """Sum of the known (or, for cancelled attempts, estimated) costs of every attempt; None when
        one is unknown (an unpriced attempt never counts as free)."""
        return prices.total_cost(list(self.attempt_costs))


def estimate_cost(record: CallRecord, chunks: int, winner: CallRecord | None) -> float | None:
    """The record's cost, or for a cancelled attempt an estimate (see the module docstring)."""
    if record.cost_usd is not None or record.error_type != "cancelled":
        return record.cost_usd
    input_tokens = record.input_tokens
    if input_tokens is None and winner is not None:
        input_tokens = winner.input_tokens
    output_tokens = record.output_tokens if record.output_tokens is not None else chunks
    return prices.cost_usd(record.provider, record.model, input_tokens, output_tokens)


class _Running:
    """One streamed attempt, run as a task; ``first_content`` is set when its first content arrives."""

    def __init__(self, prompt: str, route: Backend, options: dict[str, Any]) -> None:
        self.route = route
        self.chunks = 0
        self.stream = llm.astream(prompt, provider=route.provider, model=route.model,
                                  base_url=route.base_url, **options)
        self.first_content = self.stream.first_content
        self.started_at, self._t0 = datetime.now(UTC), time.perf_counter()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> CallRecord:
        async for _ in self.stream:
            self.chunks += 1
        assert self.stream.record is not None
        return self.stream.record

    @property
    def record(self) -> CallRecord:
        """The stream's record; a task cancelled before its stream began gets one made here."""
        if self.stream.record is not None:
            return self.stream.record
        s = config.resolve(self.route.provider, self.route.model, self.route.base_url, require_key=False)
        return CallRecord(provider=s.provider, model=s.model, endpoint=s.endpoint, kind="stream",
                          started_at=self.started_at, latency_ms=(time.perf_counter() - self._t0) * 1e3,
                          status="error", error_type="cancelled",
                          error_message="cancelled before the request was sent")


async def _cancel(attempts: list[_Running]) -> None:
    """Cancel every unfinished attempt and wait until each has recorded itself."""
    for a in attempts:
        a.task.cancel()
    await asyncio.gather(*(a.task for a in attempts), return_exceptions=True)


def _outcome(policy: str, attempts: list[_Running], winner: _Running | None, t0: float,
             end: float) -> Outcome:
    records = tuple(a.record for a in attempts)
    won = winner.record if winner else None
    return Outcome(policy=policy, winner=won, text=won.text if won else "", attempts=records,
                   latency_ms=(end - t0) * 1e3,
                   attempt_costs=tuple(estimate_cost(a.record, a.chunks, won) for a in attempts))


async def _race(policy: str, prompt: str, routes: list[Backend], options: dict[str, Any], *,
                delay_s: float | None, on: Literal["latency", "ttft"] = "latency") -> Outcome:
    """Start ``routes[0]``; start ``routes[1]`` when the first fails or, unless ``delay_s`` is None,
    has not succeeded (``on="latency"``) or produced text (``on="ttft"``) after ``delay_s``.
    With ``race`` semantics the first success wins and the rest are cancelled."""
    t0 = time.perf_counter()
    started = [_Running(prompt, routes[0], options)]
    pending = {started[0].task}
    end = t0
    try:
        while True:
            backup_due = len(started) < len(routes)
            timeout = None
            if backup_due and delay_s is not None:
                timeout = max(0.0, t0 + delay_s - time.perf_counter())
            done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            end = time.perf_counter()
            winner = next((a for a in started if a.task in done and a.task.result().ok), None)
            if winner is not None:
                await _cancel([a for a in started if a.task in pending])
                return _outcome(policy, started, winner, t0, end)
            primary_failed = started[0].task in done
            stalled = not done and (on == "latency" or not started[0].first_content.is_set())
            if backup_due and (primary_failed or stalled):
                started.append(_Running(prompt, routes[len(started)], options))
                pending.add(started[-1].task)
            elif not pending:
                return _outcome(policy, started, None, t0, end)
            elif not done and not stalled:
                delay_s = None  # ttft mode: the primary is streaming in time, so no hedge
    except BaseException:
        await _cancel(started)
        raise


def _options(options: dict[str, Any]) -> dict[str, Any]:
    allowed = {"max_tokens", "system", "timeout"}
    if unknown := set(options) - allowed:
        raise TypeError(f"unknown options {sorted(unknown)}; expected some of {sorted(allowed)}")
    return options


async def single(prompt: str, route: Backend, **options: Any) -> Outcome:
    """Baseline: one attempt on ``route``. Options (max_tokens, system, timeout) go to lab.llm."""
    return await _race("single", prompt, [route], _options(options), delay_s=None)


async def fallback(prompt: str, primary: Backend, backup: Backend, *, timeout_s: float | None = None,
                   **options: Any) -> Outcome:
    """Try ``primary``; only if it fails, or has not succeeded within ``timeout_s`` (it is then
    cancelled), try ``backup``."""
    options = _options(options)
    t0 = time.perf_counter()
    first = await _race("fallback", prompt, [primary], options, delay_s=None) if timeout_s is None else None
    if first is None:
        attempt = _Running(prompt, primary, options)
        try:
            done, _ = await asyncio.wait({attempt.task}, timeout=timeout_s)
        finally:
            if not attempt.task.done():
                await _cancel([attempt])
        first = _outcome("fallback", [attempt], attempt if done and attempt.task.result().ok else None,
                         t0, time.perf_counter())
    if first.ok:
        return first
    second = await _race("fallback", prompt, [backup], options, delay_s=None)
    return Outcome("fallback", second.winner, second.text, first.attempts + second.attempts,
                   (time.perf_counter() - t0) * 1e3, first.attempt_costs + second.attempt_costs)


async def hedge(prompt: str, primary: Backend, backup: Backend, *, delay_s: float | Callable[[], float],
                on: Literal["latency", "ttft"] = "latency", **options: Any) -> Outcome:
    """Start ``primary``; start ``backup`` if the primary fails, or has not succeeded
    (``on="latency"``) or produced any text (``on="ttft"``) after ``delay_s`` (a number or a
    callable such as :class:`RecentPercentile`). The first *successful* answer wins; a failure
    never beats a later success. The loser is cancelled, its HTTP request closed, and recorded.

    A ``delay_s`` with an ``observe`` method (:class:`RecentPercentile`) is fed the primary's
    latency (or TTFT when ``on="ttft"``) in seconds after each request: observed when the
    primary got there, censored at its elapsed time when it was cancelled or failed first.
    """
    if on not in ("latency", "ttft"):
        raise ValueError(f"on must be 'latency' or 'ttft', not {on!r}")
    delay = delay_s() if callable(delay_s) else delay_s
    outcome = await _race("hedge", prompt, [primary, backup], _options(options), delay_s=delay, on=on)
    first = outcome.attempts[0]
    observe = getattr(delay_s, "observe", None)
    if observe is not None:
        reached = first.ttft_ms if on == "ttft" else (first.latency_ms if first.ok else None)
        if reached is not None:
            observe(reached / 1e3)
        else:
            observe(first.latency_ms / 1e3, censored=True)
    return outcome
