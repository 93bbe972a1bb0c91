"""Routing policies at run time: for each request (an *exchange*), the attempts its route makes,
which one the caller gets, and what the route learns from it.

An attempt is *ready* when the caller could be given it: a stream at its first generated content
(``on = "ttft"``, the default) or at its end (``on = "latency"``: the caller then gets the answer at
once, not streamed); a reply not streamed when it is whole. The first attempt to be ready wins; the
others are cancelled (their HTTP requests closed) and recorded. So a hedged or fallen-back stream
can only switch upstream before the first byte of its body reaches the caller; after that the
proxy relays that one attempt to its end, whatever happens.

* ``single`` (no hedge, no fallback): the caller gets the primary's reply as it comes, from its
  headers on; nothing waits for content.
* ``fallback``: when every attempt so far has failed with an error another upstream may not have
  (rate limits, overload, 5xx, timeouts, connection failures, cut or unreadable replies; never a 4xx
  that says the request itself is wrong), or the primary is not ready after the fallback's
  ``timeout_s`` (then given up, recorded as a ``timeout``), the fallback target is tried.
* ``hedge``: when the primary is not ready after the delay (fixed, or a censoring-aware recent
  percentile of the primary's time to ready, :class:`lab.hedge.delays.RecentPercentile`), and the
  budget allows, the hedge target is started too. A primary that fails first starts it at once (a
  fallback, outside the budget). The budget: the hedges among the route's requests in the window
  (the last N requests, or the last T seconds) never exceed ``percent`` % of them.
* ``shadow``: the caller gets the primary's reply exactly as ``single`` would give it, while the
  policy runs beside it: its extra attempts are made, cancelled or kept as the live policy would,
  and recorded, so its effect can be measured on real traffic before it is turned on.

When every attempt fails, the caller gets the last failure: the upstream's own error reply, or a
502 (504 for a timeout) in the caller's API.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from lab.hedge.delays import RecentPercentile
from lab.proxy import translate, wire
from lab.proxy.forward import Attempt, env_proxy, upstream_headers
from lab.proxy.policy import Budget, Hedge, Policy, Route, RouteTarget
from lab.proxy.wire import Ask

RESTARTED = ("cancelled", "another attempt answered first")


@dataclass(frozen=True)
class _Prepared:
    """One target's request, built once per exchange."""

    url: str
    headers: Any
    body: bytes


@dataclass
class Exchange:
    """One chat request through the proxy, and its attempts in start order."""

    sample: int
    api: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    body: bytes
    data: dict[str, Any] | None
    ask: Ask
    route: Route
    task: str | None
    attempts: list[Attempt] = field(default_factory=list)
    chosen: Attempt | None = None
    abandoned: bool = False
    sha256: str = ""
    prepared: dict[RouteTarget, _Prepared] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    delivery: asyncio.Future[Attempt] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    caller_status: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    recorded: dict[int, Any] = field(default_factory=dict)  # id(attempt) -> (record, line), written already

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.body).hexdigest()

    @property
    def fixed(self) -> bool:
        """Whether the caller gets the primary's reply as it comes (no policy, or a policy in shadow mode)."""
        return self.route.plain or self.route.shadow

    def attempt_changed(self, attempt: Attempt) -> None:
        """An attempt reached a stage or ended: wake the engine; a primary the caller gets as it comes is
        handed over at once."""
        self.changed.set()
        if self.fixed and attempt.role == "primary" and (attempt.ready_ns("headers") is not None or attempt.done):
            self.deliver(attempt)

    def deliver(self, attempt: Attempt) -> None:
        if not self.delivery.done():
            self.delivery.set_result(attempt)

    def relayed(self, status: int | None) -> None:
        """The handler is done with the caller: it sent ``status`` (None: the caller left first)."""
        if not self.caller_status.done():
            self.caller_status.set_result(status)

    def abandon(self, error_type: str, message: str) -> None:
        """Stop every attempt (the caller left, or the proxy is stopping); nothing new starts."""
        self.abandoned = True
        for attempt in self.attempts:
            attempt.cancel(error_type, message)
        self.changed.set()


class HedgeBudget:
    """Allows a hedge while the hedges among the route's requests in the window stay within
    ``percent`` % of those requests (the window: the last N requests, or the last T seconds)."""

    def __init__(self, spec: Budget) -> None:
        self.spec = spec
        self._seq = 0
        self._requests: deque[tuple[int, float]] = deque()
        self._hedges: deque[tuple[int, float]] = deque()

    def _prune(self, now: float) -> None:
        if self.spec.requests is not None:
            oldest = self._seq - self.spec.requests
            index = 0
        else:
            oldest = now - self.spec.seconds  # type: ignore[operator]
            index = 1
        for entries in (self._requests, self._hedges):
            while entries and entries[0][index] <= oldest:
                entries.popleft()

    def arrive(self) -> int:
        """Count a request; returns its number, for :meth:`spend`."""
        self._seq += 1
        self._requests.append((self._seq, time.monotonic()))
        return self._seq

    def allows(self) -> bool:
        self._prune(time.monotonic())
        return (len(self._hedges) + 1) * 100 <= self.spec.percent * len(self._requests)

    def spend(self, request: int) -> None:
        self._hedges.append((request, time.monotonic()))


class Delay:
    """A hedge's delay in seconds: fixed, or a censoring-aware recent percentile of the primary's
    time to ready (learned per route and per stage: a stream's first content, a whole reply)."""

    def __init__(self, hedge: Hedge) -> None:
        self.fixed = hedge.delay_s
        self.estimator: RecentPercentile | None = None
        if hedge.percentile is not None:
            self.estimator = RecentPercentile(hedge.percentile, hedge.window, hedge.initial_s)

    def __call__(self) -> float:
        return self.fixed if self.estimator is None else self.estimator()  # type: ignore[return-value]

    def observe(self, seconds: float, censored: bool) -> None:
        if self.estimator is not None:
            self.estimator.observe(seconds, censored=censored)


class _RouteState:
    """What a route learns across requests: its hedge budget, and a delay per stage (a stream's first
    content, a whole reply)."""

    def __init__(self, route: Route) -> None:
        self.budget = HedgeBudget(route.hedge.budget) if route.hedge else None
        self.delays = {stage: Delay(route.hedge) for stage in ("content", "end")} if route.hedge else {}

    def delay(self, stage: str) -> Delay:
        return self.delays[stage]


class Engine:
    """Makes each exchange's attempts as its route says; see the module docstring."""

    def __init__(self, session: aiohttp.ClientSession, policy: Policy, *, keep_text: bool = False,
                 keys: dict[str, str | None] | None = None) -> None:
        self.session, self.policy, self.keep_text = session, policy, keep_text
        self._keys = policy.keys() if keys is None else keys
        self.proxies = {name: env_proxy(u.url) for name, u in policy.upstreams.items()}
        # Built now: a percentile delay loads statsmodels, which must not happen on a request's time.
        self._states = {r.name: _RouteState(r) for r in (*policy.routes, *policy.defaults.values())}

    def prepare(self, exchange: Exchange) -> None:
        """Build each target's request now; raises :class:`~lab.proxy.translate.Untranslatable` when a
        target of the other API cannot be given this request."""
        for target in exchange.route.targets():
            upstream = target.upstream
            body = exchange.body
            path = exchange.path
            if upstream.format != exchange.api:
                if exchange.data is None:
                    raise translate.Untranslatable("its body is not a JSON object")
                field_name = "max_tokens" if upstream.provider == "openai-compatible" else "max_completion_tokens"
                translated = translate.request(exchange.data, exchange.api, target.model or exchange.ask.model,
                                               max_tokens_field=field_name)
                body = translate.json_bytes(translated)
                path = next(p for p, api in wire.CHAT_PATHS.items() if api == upstream.format)
            elif target.model is not None and exchange.data is not None:
                body = translate.json_bytes({**exchange.data, "model": target.model})
            url = upstream.url + wire.upstream_path(upstream.format, path)
            if exchange.query and upstream.format == exchange.api:
                url += "?" + exchange.query
            headers = upstream_headers(exchange.headers, exchange.api, target, self._keys.get(upstream.name))
            exchange.prepared[target] = _Prepared(url, headers, body)

    def _start(self, exchange: Exchange, target: RouteTarget, role: str) -> Attempt:
        p = exchange.prepared[target]
        attempt = Attempt(self.session, target, role, url=p.url, headers=p.headers, body=p.body, ask=exchange.ask,
                          caller_api=exchange.api, timeout_s=exchange.route.timeout_s, keep_text=self.keep_text,
                          on_change=exchange.attempt_changed, proxy=self.proxies.get(target.upstream.name))
        exchange.attempts.append(attempt)
        exchange.changed.set()
        return attempt

    async def run(self, exchange: Exchange, record: Callable[[Exchange, int | None], None]) -> None:
        """Make the exchange's attempts, settle its delivery, wait for every attempt (shadows included)
        and for the caller's reply to end, then ``record(exchange, caller_status)``."""
        route = exchange.route
        state = self._states[route.name]
        on_latency = route.hedge is not None and route.hedge.on == "latency"
        stage = "content" if exchange.ask.stream and not on_latency else "end"
        primary = None
        try:
            primary = self._start(exchange, route.primary, "primary")
            await self._race(exchange, primary, stage, state)
        finally:
            if primary is not None and not exchange.fixed:
                exchange.deliver(primary)  # only if the race ended without a word (it was cancelled)
            await asyncio.gather(*(a.task for a in exchange.attempts), return_exceptions=True)
            if primary is not None and route.hedge is not None:
                self._learn(state.delay(stage), primary, stage)
            status = await exchange.caller_status
            record(exchange, status)

    @staticmethod
    def _learn(delay: Delay, primary: Attempt, stage: str) -> None:
        """Feed the primary's time to ready to a percentile delay: censored at its elapsed time when it
        was cancelled or failed before it got there."""
        start = primary.sent_ns or 0
        ready = primary.ready_ns(stage)
        if ready is not None:
            delay.observe((ready - start) / 1e9, censored=False)
        elif primary.end_ns is not None:
            delay.observe((primary.end_ns - start) / 1e9, censored=True)

    async def _race(self, exchange: Exchange, primary: Attempt, stage: str, state: _RouteState) -> None:
        route = exchange.route
        fixed = exchange.fixed
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        request = state.budget.arrive() if state.budget is not None else 0
        hedge_at = t0 + state.delay(stage)() if route.hedge is not None else None
        fallback_at = t0 + route.fallback.timeout_s if route.fallback and route.fallback.timeout_s else None
        roles = lambda: {a.role for a in exchange.attempts}  # noqa: E731
        while True:  # (in fixed mode the primary is handed to the caller by Exchange.attempt_changed)
            exchange.changed.clear()
            ready = [(a.ready_ns(stage), i) for i, a in enumerate(exchange.attempts) if a.ready_ns(stage) is not None]
            if ready:
                winner = exchange.attempts[min(ready)[1]]
                exchange.chosen = winner
                for attempt in exchange.attempts:
                    if attempt is not winner and not (fixed and attempt is primary):
                        attempt.cancel(*RESTARTED)
                if not fixed:
                    exchange.deliver(winner)
                return
            if exchange.abandoned:
                return
            now = loop.time()
            if fallback_at is not None and now >= fallback_at and route.fallback is not None:
                fallback_at = None
                if not primary.done and "fallback" not in roles():
                    if not fixed:
                        primary.cancel("timeout", f"not ready within the fallback's timeout_s "
                                                  f"({route.fallback.timeout_s:g} s): given up")
                    self._start(exchange, route.fallback.target, "fallback")
                    continue
            if hedge_at is not None and now >= hedge_at:
                hedge_at = None
                if (not primary.done and "hedge" not in roles() and route.hedge is not None
                        and state.budget is not None and state.budget.allows()):
                    state.budget.spend(request)
                    self._start(exchange, route.hedge.target, "hedge")
                    continue
            if all(a.done for a in exchange.attempts):
                last = max(exchange.attempts, key=lambda a: a.end_ns or 0)
                spare = self._spare(route, roles(), last)
                if spare is not None:
                    role, target = spare
                    hedge_at = None if role == "hedge" else hedge_at
                    fallback_at = None if role == "fallback" else fallback_at
                    self._start(exchange, target, role)
                    continue
                exchange.deliver(primary if fixed else last)
                return
            deadlines = [d for d in (hedge_at, fallback_at) if d is not None]
            try:
                await asyncio.wait_for(exchange.changed.wait(), min(deadlines) - now if deadlines else None)
            except TimeoutError:
                pass

    @staticmethod
    def _spare(route: Route, roles: set[str], last: Attempt) -> tuple[str, RouteTarget] | None:
        """What to try after every attempt failed: the fallback, else the hedge target (outside the budget)."""
        if last.failure is None or last.failure.error_type not in wire.RETRYABLE:
            return None
        if route.fallback is not None and "fallback" not in roles:
            return "fallback", route.fallback.target
        if route.hedge is not None and "hedge" not in roles:
            return "hedge", route.hedge.target
        return None
