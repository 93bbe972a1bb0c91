"""The lab's clock, at the HTTP transport: what a call's latency holds and what it does not.

Each attempt of a call runs with a :class:`Clock` in the context variable :data:`ATTEMPT`.
The SDK clients of :mod:`lab.llm.providers` send through :class:`TimedTransport`, which
stamps the clock when the SDK hands it the request (after client construction, imports,
request building and validation), notes connection set-up (TCP and TLS, from httpcore's
``trace`` extension) and stamps the arrival of every piece of the response body as it is
read from the socket. So the window holds the network and the provider only: parsing,
validation and the caller's own per-chunk work happen after the bytes' arrival is stamped.

Opening a connection stays inside the window (a real application pays it on a cold
connection) and is recorded separately as ``connect_ms``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import httpx2

from lab.core.timing import sleep_until

_CONNECT_PHASES = ("connection.connect_tcp.", "connection.connect_unix_socket.", "connection.start_tls.")


class Clock:
    """Transport times of one attempt, in ``time.perf_counter_ns`` units.

    ``sent_ns``: the request was handed to the transport (``started_at`` is the wall-clock
    time of that moment); ``last_byte_ns``: the latest response bytes arrived;
    ``done_ns``: the body ended; ``connect_ns``: spent opening connections. ``on_send``, if set,
    is called at the send: a call's deadline starts there, on the same clock as its latency.
    """

    __slots__ = ("sent_ns", "started_at", "last_byte_ns", "done_ns", "connect_ns", "on_send", "_phase_ns")

    def __init__(self, on_send: Callable[[], None] | None = None) -> None:
        self.sent_ns: int | None = None
        self.started_at: datetime | None = None
        self.last_byte_ns: int | None = None
        self.done_ns: int | None = None
        self.connect_ns = 0
        self.on_send = on_send
        self._phase_ns = 0

    def send(self) -> None:
        self.started_at = datetime.now(UTC)
        self.sent_ns = time.perf_counter_ns()
        if self.on_send is not None:
            self.on_send()

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: adds up connection set-up phases."""
        if event.startswith(_CONNECT_PHASES):
            now = time.perf_counter_ns()
            if event.endswith(".started"):
                self._phase_ns = now
            elif self._phase_ns:
                self.connect_ns += now - self._phase_ns
                self._phase_ns = 0


ATTEMPT: ContextVar[Clock | None] = ContextVar("lab_llm_attempt", default=None)
PLANNED: ContextVar[int | None] = ContextVar("lab_llm_planned_send", default=None)
"""The planned send time (``time.perf_counter_ns``) of calls made in this context, set by an
open-loop driver (:mod:`lab.collect.openloop`): their records get ``scheduled_at`` and ``send_lag_ms``, and a
request ready before that time is held at the transport until it."""


class _TimedBody(httpx2.AsyncByteStream):
    """A response body that stamps the arrival of each piece, and its end."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner, self._clock = inner, clock

    async def __aiter__(self) -> AsyncIterator[bytes]:
        clock = self._clock
        async for piece in self._inner:
            clock.last_byte_ns = time.perf_counter_ns()
            yield piece
        clock.done_ns = time.perf_counter_ns() if clock.last_byte_ns is None else clock.last_byte_ns

    async def aclose(self) -> None:
        await self._inner.aclose()


class TimedTransport(httpx2.AsyncBaseTransport):
    """Wraps an httpx2 transport; times requests sent while :data:`ATTEMPT` holds a clock."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        clock = ATTEMPT.get()
        if clock is None:
            return await self._inner.handle_async_request(request)
        request.extensions = {**request.extensions, "trace": clock.trace}
        if clock.sent_ns is None:  # a redirect is part of the same attempt
            planned = PLANNED.get()
            if planned is not None and time.perf_counter_ns() < planned:
                await sleep_until(planned / 1e9)  # prepared early (lab.collect.openloop.drive's early_s): released on time
            clock.send()
        response = await self._inner.handle_async_request(request)
        clock.last_byte_ns = time.perf_counter_ns()  # the status line and headers
        return httpx2.Response(status_code=response.status_code, headers=response.headers,
                               stream=_TimedBody(response.stream, clock), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()
