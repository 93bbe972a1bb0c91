"""Turning attempts into call records, written off the response's critical path.

Every attempt of an exchange (primary, hedge, fallback; winners, losers and shadows) becomes one
:class:`~lab.core.records.CallRecord` in the run's ``calls.jsonl``, keyed by a
:class:`~lab.store.CallKey` whose request is ``{"sha256": ..., "sample": n, "attempt": i}``: the
hash of the caller's request body (never its text), the exchange's sequence number in the session
and the attempt's index, so every key is unique. Each exchange also gets one line in
``requests.jsonl``: its route and policy, its attempts by role (their keys), which one the caller
got and which one the policy chose (they differ in shadow mode).

Off the critical path, twice over: a finished exchange is only queued; its records are built in
small slices a moment later, on the event loop while it waits on the network (so building them
never holds up a chunk), and appended inside :meth:`lab.store.Run.batched`, whose writer thread
does the writing and the fsync (so no chunk waits on the disk). They are appended with
:meth:`~lab.store.Run.append_line` rather than :meth:`~lab.store.Run.append`, which also keeps
every record in memory: a proxy runs for days. Closing the recorder writes whatever is queued.

Nothing here stores a header: no key, no credential. The manifest holds the upstreams' URLs
without credentials or query and the names (not values) of key variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lab.core import prices
from lab.core.records import CallRecord, timed_fields
from lab.core.redact import clean_url, redact
from lab.core.replies import SYNTHETIC_HEADER
from lab.proxy.wire import REQUEST_ID_HEADER
from lab.store import CallKey, Run

if TYPE_CHECKING:
    from lab.proxy.engine import Exchange
    from lab.proxy.forward import Attempt

EXPERIMENT = "proxy"
REQUESTS = "requests.jsonl"
DELAY_S = 0.1


def call_record(attempt: Attempt, exchange: Exchange, run_id: str, window: str) -> CallRecord:
    """An attempt's record: the upstream's timing, usage and outcome, labelled with the exchange's route,
    task, window and sample."""
    upstream, seen, failure = attempt.target.upstream, attempt.seen, attempt.failure
    t0 = attempt.sent_ns or attempt.end_ns or 0
    timing, billed = timed_fields(t0, attempt.end_ns if attempt.end_ns is not None else t0, attempt.offsets_ns,
                                  attempt.first_text_ns, seen.output_tokens, exchange.ask.stream)
    model = attempt.target.model or exchange.ask.model
    headers = attempt.headers or {}
    request_id = headers.get(REQUEST_ID_HEADER[upstream.format]) or headers.get("request-id") or headers.get(
        "x-request-id")
    return CallRecord(
        provider=upstream.provider, model=model, endpoint=clean_url(upstream.url), kind=exchange.ask.kind,
        started_at=attempt.started_at, **timing,  # type: ignore[arg-type]
        status="ok" if failure is None else "error",
        connect_ms=round(attempt.connect_ns / 1e6, 2),
        input_tokens=seen.input_tokens, output_tokens=seen.output_tokens,
        cache_read_tokens=seen.cache_read_tokens, cache_write_tokens=seen.cache_write_tokens,
        cost_usd=prices.cost_usd(upstream.provider, model, seen.input_tokens, billed, seen.cache_read_tokens,
                                 seen.cache_write_tokens),
        error_type=failure.error_type if failure else None, http_status=attempt.status,
        error_message=failure.message if failure else None,
        text=attempt.text if attempt.keep_text else "", run_id=run_id, experiment=EXPERIMENT, window=window,
        sample=exchange.sample, stop_reason=seen.stop_reason, request_id=request_id,
        synthetic=headers.get(SYNTHETIC_HEADER) == "true", target=exchange.route.name, task=exchange.task)


def call_key(record: CallRecord, exchange: Exchange, index: int) -> CallKey:
    return CallKey(record.provider, record.endpoint, record.model, record.kind,
                   {"sha256": exchange.sha256, "sample": exchange.sample, "attempt": index},
                   window=record.window, sample=exchange.sample)


class Recording:
    """A proxy session in a run: held as its only collector, noted in its manifest, records written
    by the batched writer. Use as a context manager (or :meth:`open` and :meth:`close`)."""

    def __init__(self, run: Run, window: str, design: Mapping[str, Any], session: Mapping[str, Any],
                 command: str = "lab proxy") -> None:
        self.run, self.window, self.design, self.command = run, window, dict(design), command
        self.session = {"window": window, **session}
        self.records = 0
        self._stack: contextlib.ExitStack | None = None
        self._warned = False
        self._queued: deque[tuple[Exchange, int | None, int | None, int | None]] = deque()
        self._lines: list[tuple[str, dict[str, Any]]] = []
        self._scheduled = False

    def open(self) -> Recording:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(self.run.collector(self.command))
            self.run.begin_session(EXPERIMENT, self.design, self.session, ("window",))
            stack.enter_context(self.run.batched())
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def close(self) -> None:
        """Write what is queued, stamp the session's end and let the run go."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self.flush()
        with stack:
            stack.callback(self.run.end_session, self.session, ("window",))

    def __enter__(self) -> Recording:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(self, exchange: Exchange, *, delivered: int | None, chosen: int | None,
                 caller_status: int | None) -> None:
        """Queue a finished exchange (called on the event loop); its records follow shortly."""
        self._queued.append((exchange, delivered, chosen, caller_status))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(DELAY_S, self._write_some)

    def _write_some(self, slice_size: int = 8) -> None:
        """Build a few exchanges' lines, yielding to the network between slices; hand them all to the
        writer thread at the end, so it wakes (and syncs) once per batch."""
        for _ in range(min(slice_size, len(self._queued))):
            self._lines.extend(self._build(*self._queued.popleft()))
        if self._queued:
            asyncio.get_running_loop().call_soon(self._write_some)  # network events come first
            return
        self._scheduled = False
        self._append()

    def flush(self) -> None:
        """Write every queued exchange now."""
        while self._queued:
            self._lines.extend(self._build(*self._queued.popleft()))
        self._append()

    def _build(self, exchange: Exchange, delivered: int | None, chosen: int | None, caller_status: int | None
               ) -> list[tuple[str, dict[str, Any]]]:
        """The lines of a finished exchange (none, reported once, if they cannot be built)."""
        try:
            return self._lines_of(exchange, delivered, chosen, caller_status)
        except Exception as exc:  # a bug of the proxy's: one line, never a traceback, and forwarding goes on
            self._report(f"cannot record sample {exchange.sample} ({type(exc).__name__}: {exc})")
            return []

    def delivered(self, exchange: Exchange, attempt: Attempt) -> None:
        """The attempt the caller gets has ended: its record is written now, before the caller's answer
        completes, so a proxy killed from then on keeps it (the exchange's other lines follow as usual).
        Never raises (see :meth:`_append`)."""
        if id(attempt) in exchange.recorded:
            return
        exchange.recorded[id(attempt)] = self._attempt_line(exchange, exchange.attempts.index(attempt), attempt)
        try:
            self.run.append_now(exchange.recorded[id(attempt)][1])
        except OSError as exc:
            self._report(f"cannot write records to {self.run.dir} ({exc.strerror or exc})")
        except Exception as exc:  # a bug of the proxy's: one line, never a traceback, and forwarding goes on
            self._report(f"cannot record sample {exchange.sample} ({type(exc).__name__}: {exc})")

    def _attempt_line(self, exchange: Exchange, index: int, attempt: Attempt) -> tuple[CallRecord, dict[str, Any]]:
        record = call_record(attempt, exchange, self.run.id, self.window)
        return record, {"key": call_key(record, exchange, index).digest, "record": record.to_dict()}

    def _lines_of(self, exchange: Exchange, delivered: int | None, chosen: int | None, caller_status: int | None
                  ) -> list[tuple[str, dict[str, Any]]]:
        """The lines of a finished exchange: a record per attempt (but the one written when it was delivered),
        and its line in ``requests.jsonl``."""
        built, calls = [], []
        for i, attempt in enumerate(exchange.attempts):
            written = exchange.recorded.get(id(attempt))
            record, line = written or self._attempt_line(exchange, i, attempt)
            if written is None:
                built.append(("calls.jsonl", line))
            calls.append({"key": line["key"], "role": attempt.role, "upstream": attempt.target.upstream.name,
                          "status": record.status, "error_type": record.error_type})
        built.append((REQUESTS, self.line(exchange, calls, delivered, chosen, caller_status)))
        self.records += len(calls)
        return built

    def _append(self) -> None:
        """Hand the built lines to the run's writer. Never raises: a disk that fails is reported once on
        stderr, and the proxy keeps forwarding."""
        lines, self._lines = self._lines, []
        try:
            for name, entry in lines:
                self.run.append_line(entry, name)
        except OSError as exc:
            self._report(f"cannot write records to {self.run.dir} ({exc.strerror or exc})")

    def _report(self, problem: str) -> None:
        if not self._warned:
            self._warned = True
            print(f"lab proxy: {redact(problem)}; the proxy keeps forwarding, but these calls are not recorded",
                  file=sys.stderr, flush=True)

    def refused(self, exchange: Exchange, message: str) -> None:
        """A request refused before any attempt (it cannot be translated for its route)."""
        try:
            line = self.line(exchange, [], None, None, 400)
            self.run.append_line({**line, "refused": message}, REQUESTS)
        except OSError:
            pass

    def line(self, exchange: Exchange, calls: list[dict[str, Any]], delivered: int | None, chosen: int | None,
             caller_status: int | None) -> dict[str, Any]:
        return {"window": self.window, "sample": exchange.sample, "route": exchange.route.name,
                "policy": exchange.route.policy, "shadow": exchange.route.shadow, "api": exchange.api,
                "model": exchange.ask.model, "kind": exchange.ask.kind, "task": exchange.task,
                "sha256": exchange.sha256, "calls": calls, "delivered": delivered, "chosen": chosen,
                "caller_status": caller_status}
