"""Open-loop load: requests sent on a precomputed schedule, whatever the replies do.

A closed-loop client sends its next request when a reply comes back, so a slow server slows the
client down and its slow periods are under-sampled; a load generator that falls behind its own
schedule and then times each request from its *actual* send hides its lateness the same way
(coordinated omission). Here the send times are fixed before the first send (:func:`schedule`:
constant or Poisson arrivals, seeded), every request runs on its own task, and each call records
its planned send (``scheduled_at``) and its lag (``send_lag_ms``: actual minus planned send, the
actual send being when its request reached the HTTP transport). Response time from the planned
send, ``send_lag_ms + latency_ms``, is what the analysis reports by default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

import numpy as np

from lab.core.records import CallRecord
from lab.core.timing import frozen_heap, new_event_loop, sleep_until
from lab.llm.transport import PLANNED

T = TypeVar("T")
Arrival = Literal["constant", "poisson"]
ARRIVALS: tuple[str, ...] = ("constant", "poisson")
LEAD_S = 0.05
"""Time between the start of :func:`drive` and the first planned send (for the first task's set-up)."""
BEHIND_MS = 10.0
"""Send lag p99 (ms) above which a schedule's client is said to have fallen behind."""
EARLY_S = 0.005
"""How long before its planned send :func:`drive` starts a call made with :mod:`lab.llm`, so the
SDK builds its request beforehand (about 1 ms, more on a busy loop) and the transport releases it on time."""


def schedule(rate_per_s: float, *, n: int | None = None, duration_s: float | None = None,
             arrival: Arrival = "poisson", seed: int = 0) -> np.ndarray:
    """Planned send offsets in seconds from the start: ``n`` sends, or every send within ``duration_s``.

    ``constant``: one every ``1 / rate`` seconds from 0. ``poisson``: exponential gaps of mean
    ``1 / rate`` (``numpy.random.Generator.exponential``, seeded), the first at 0.
    """
    if not rate_per_s > 0:
        raise ValueError(f"the rate must be above 0 requests per second, not {rate_per_s!r}")
    if (n is None) == (duration_s is None):
        raise ValueError("give either n or duration_s")
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, not {arrival!r}")
    count = n if n is not None else int(np.ceil(duration_s * rate_per_s * 1.5)) + 10  # type: ignore[operator]
    if arrival == "constant":
        offsets = np.arange(count) / rate_per_s
    else:
        gaps = np.random.default_rng(seed).exponential(1 / rate_per_s, size=count)
        offsets = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    if duration_s is not None:
        offsets = offsets[offsets < duration_s]
    return offsets


async def drive(offsets: Sequence[float], send: Callable[[int], Awaitable[T]], *,
                max_concurrency: int | None = None, start: float | None = None, early_s: float = 0.0) -> list[T]:
    """Call ``send(i)`` at each planned offset (seconds from ``start``, a ``time.perf_counter()``
    value, by default :data:`LEAD_S` from now), each on its own task, never waiting for a reply
    before the next send; returns the results in plan order.

    With ``max_concurrency``, a send waits for a free slot when that many requests are in flight:
    its lag then shows in its record. Inside ``send(i)``, :mod:`lab.llm` calls record the planned
    send time and their lag.

    With ``early_s`` (:data:`EARLY_S`), ``send(i)`` starts that long before its planned time and the
    HTTP transport holds a :mod:`lab.llm` request ready earlier until the planned instant; use it only
    when ``send(i)`` makes one such call first thing (anything else it does would run early).
    """
    slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    start = time.perf_counter() + LEAD_S if start is None else start

    async def one(i: int, planned: float) -> T:
        PLANNED.set(int(planned * 1e9))
        try:
            return await send(i)
        finally:
            if slots is not None:
                slots.release()

    tasks = []
    with frozen_heap():
        for i, offset in enumerate(offsets):
            planned = start + float(offset)
            await sleep_until(planned - early_s)
            if slots is not None:
                await slots.acquire()
            tasks.append(asyncio.create_task(one(i, planned)))
        return list(await asyncio.gather(*tasks))


FD_RESERVE = 64
"""Open files left free beside an open-loop schedule's calls (the run's files, the event loop, threads)."""


def descriptor_cap(per_call: int = 1) -> int | None:
    """How many calls can be in flight at once within this process's open-file limit (``ulimit -n``), at
    ``per_call`` descriptors each (2 when the server answering is in this process too), keeping
    :data:`FD_RESERVE` free for everything else; None when there is no limit."""
    import os
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 3
    return max(1, (soft - open_now - FD_RESERVE) // max(1, per_call))


def concurrency(max_concurrency: int | None, per_call: int = 1) -> tuple[int | None, str]:
    """The in-flight cap a schedule runs with: the design's ``max_concurrency`` or, when lower, what the
    open-file limit allows (:func:`descriptor_cap`); and a clause for the summary line when the limit set it
    (sends then wait for a free slot, and their lateness shows in their send lag)."""
    cap = descriptor_cap(per_call)
    if cap is None or (max_concurrency is not None and max_concurrency <= cap):
        return max_concurrency, ""
    return cap, (f"; at most {cap} calls in flight (the open-file limit, `ulimit -n`, allows no more): a send that "
                 "waited for a free slot shows it in its send lag; raise the limit to send on time")


def lateness_warning(records: Sequence[CallRecord], capped: bool = False) -> str:
    """A clause for a schedule's summary line when its client fell behind (send lag p99 over
    :data:`BEHIND_MS`), else ``""``: its response times from the planned send include that lateness.
    ``capped``: the open-file limit held sends back (see :func:`concurrency`), not the CPU."""
    lags = [r.send_lag_ms for r in records if r.send_lag_ms is not None]
    if not lags or (p99 := float(np.percentile(lags, 99))) <= BEHIND_MS:
        return ""
    why = ("sends waited for a free slot under the open-file limit" if capped else
           "this machine's CPU could not keep up, so lower the rate or the streams' length")
    return f"; the client fell behind its schedule (send lag p99 {p99:,.0f} ms, counted in the response times " \
           f"from the planned send): {why}"


def run(coroutine: Awaitable[T]) -> T:
    """Run a driver coroutine on an event loop with precise timers (:func:`lab.core.timing.new_event_loop`)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coroutine)  # type: ignore[arg-type]
