"""Precise timers for asyncio: an event loop whose timers have microsecond resolution, and a sleep
that wakes on time. The emulator sends on schedule with them, and the open-loop driver sends on
its planned times.

``epoll_wait`` takes whole milliseconds, so asyncio's default loop on Linux rounds every timer up
to the next millisecond; :func:`new_event_loop` waits on its epoll fd with ``select()``, which
takes microseconds. :func:`sleep_until` sleeps to just before a deadline (wake-ups run late by
about 0.15 ms), then yields until it.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time

_FD_SETSIZE = 1024
_WAKE_MARGIN_S = 0.0003


class _PreciseSelector(getattr(selectors, "EpollSelector", selectors.DefaultSelector)):  # type: ignore[misc]
    """An epoll selector whose timeouts have microsecond, not millisecond, resolution."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            select.select([self.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop with precise timers where possible (select() needs the epoll fd < 1024)."""
    selector = _PreciseSelector()
    if selector.fileno() >= _FD_SETSIZE:
        selector.close()
        return asyncio.new_event_loop()
    return asyncio.SelectorEventLoop(selector)


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline``, a ``time.perf_counter()`` value."""
    remaining = deadline - time.perf_counter() - _WAKE_MARGIN_S
    if remaining > 0:
        await asyncio.sleep(remaining)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0)
