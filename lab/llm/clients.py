"""SDK clients with a lifetime, and the event loop that runs the synchronous API.

Async calls use clients of the running event loop: one per provider API, endpoint and key,
made on first use and closed when the loop shuts down (``asyncio.run`` ends) or, inside
``async with lab.llm.session():``, when the block ends. Sync calls run on one background
event loop thread of the lab's, started on first use (and again after a fork), so every
thread shares one set of clients and a sync stream is read ahead of its consumer.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio

from lab.core.timing import frozen_heap, refreeze

T = TypeVar("T")
Factory = Callable[[], Any]


class Pool:
    """Clients by key, closed together."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, ...], Any] = {}
        self._watcher: Any = None

    def get(self, key: tuple[str, ...], make: Factory) -> Any:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = make()
            refreeze()  # the SDK it imported on first use joins a frozen heap, if there is one
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()

    async def close_with_loop(self) -> None:
        """Register with the running loop so its shutdown (``asyncio.run``'s end) closes the clients.

        The loop finalises every async generator it started when it shuts down; this pool keeps
        one suspended, whose ``finally`` closes the clients."""

        async def watcher() -> AsyncIterator[None]:
            try:
                yield
            finally:
                await self.aclose()

        self._watcher = watcher()
        await self._watcher.__anext__()


_loop_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()
_session: ContextVar[Pool | None] = ContextVar("lab_llm_session", default=None)


async def pool() -> Pool:
    """The clients to use here: the session's, else the running loop's."""
    global _backend_loaded
    if not _backend_loaded:
        await anyio.sleep(0)  # loads anyio's event-loop backend (see below)
        await anyio.getaddrinfo("127.0.0.1", 0)  # and its socket layer: a numeric address, no lookup
        _backend_loaded = True
    current = _session.get()
    if current is not None:
        return current
    loop = asyncio.get_running_loop()
    found = _loop_pools.get(loop)
    if found is None:
        found = _loop_pools[loop] = Pool()
        await found.close_with_loop()
    return found


_backend_loaded = False
# httpcore opens connections through anyio, which imports its asyncio backend and socket layer on
# first use: 5 to 10 ms that would land inside the first call's clock. pool() loads them, with the
# clients, before any clock starts. No request is sent.


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[None]:
    """``async with lab.llm.session():`` calls inside the block share clients closed at its end, and
    full garbage collections stay short while they run (:func:`lab.core.timing.frozen_heap`)."""
    mine = Pool()
    token = _session.set(mine)
    try:
        with frozen_heap():
            yield
    finally:
        _session.reset(token)
        await mine.aclose()


class _Background:
    """The lab's own event loop on a daemon thread, for the synchronous API."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="lab-llm", daemon=True)
                self._thread.start()
                started.wait()
                self._loop = loop
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a synchronous lab.llm call cannot run inside lab.llm's own loop; use the async API")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the background loop and wait; Ctrl-C cancels it (closing its requests)."""
        future = self.submit(coroutine)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Close the background loop's clients and stop it (at exit)."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_close_loop_pool(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)

    def forget(self) -> None:
        """After a fork: the child has no background thread, so start afresh."""
        self._lock = threading.Lock()
        self._loop = self._thread = None


async def _close_loop_pool() -> None:
    found = _loop_pools.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


background = _Background()
atexit.register(background.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=background.forget)
