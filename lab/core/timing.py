"""Precise timers for asyncio: an event loop whose timers have microsecond resolution, and a sleep
that wakes on time. The emulator sends on schedule with them, and the open-loop driver sends on
its planned times. And two process-wide settings held while calls are timed or served:
:func:`frozen_heap` keeps full garbage collections short, :func:`short_thread_switches` keeps a busy
thread from holding the GIL for milliseconds.

``epoll_wait`` takes whole milliseconds, so asyncio's default loop on Linux rounds every timer up
to the next millisecond; :func:`new_event_loop` waits on its epoll fd with ``select()``, which
takes microseconds. :func:`sleep_until` sleeps to just before a deadline (wake-ups run late by
about 0.15 ms), then yields until it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import select
import selectors
import sys
import threading
import time
from collections.abc import Iterator

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


_frozen_depth = 0
_frozen_lock = threading.Lock()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Within: what existed at entry (modules, clients, data already loaded) is left out of garbage
    collection (:func:`gc.freeze`). A full collection scans the whole heap and, with pandas and two
    SDKs imported, stops every thread for 50 to 180 ms, which a timed call in flight would count;
    frozen, it scans only what is new. Reentrant (each entry freezes what is new since); the outermost
    exit unfreezes."""
    global _frozen_depth
    with _frozen_lock:
        gc.freeze()  # at every entry: what was imported or built since an outer entry joins
        _frozen_depth += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_depth -= 1
            if _frozen_depth == 0:
                gc.unfreeze()


def refreeze() -> None:
    """Inside :func:`frozen_heap`, freeze what is new now (say, an SDK just imported on first use)."""
    with _frozen_lock:
        if _frozen_depth:
            gc.freeze()


SWITCH_INTERVAL_S = 0.0005
_switch_users = 0
_switch_saved = 0.0
_switch_lock = threading.Lock()


def hold_short_thread_switches() -> None:
    """Shorten the interpreter's thread switch interval (default 5 ms) to :data:`SWITCH_INTERVAL_S`
    until every holder has released it, so a busy thread cannot hold the GIL for milliseconds past
    another thread's deadline (an in-process emulator's, a proxy's record writer)."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL_S))
        _switch_users += 1


def release_short_thread_switches() -> None:
    global _switch_users
    with _switch_lock:
        _switch_users -= 1
        if _switch_users == 0:
            sys.setswitchinterval(_switch_saved)


@contextlib.contextmanager
def short_thread_switches() -> Iterator[None]:
    """:func:`hold_short_thread_switches` within the block."""
    hold_short_thread_switches()
    try:
        yield
    finally:
        release_short_thread_switches()
