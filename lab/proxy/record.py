"""Turning attempts into call records, written off the response's critical path.

Every attempt of an exchange (primary, hedge, fallback; winners, losers and shadows) becomes one
:class:`~lab.records.CallRecord` in the run's ``calls.jsonl``, keyed by a
:class:`~lab.store.CallKey` whose request is ``{"sha256": ..., "sample": n, "attempt": i}``: the
hash of the caller's request body (never its text), the exchange's sequence number in the session
and the attempt's index, so every key is unique. Each exchange also gets one line in
``requests.jsonl``: its route and policy, its attempts by role (their keys), which one the caller
got and which one the policy chose (they differ in shadow mode).

Records are appended inside :meth:`lab.store.Run.batched`: a writer thread does the writing and the
fsync, so no chunk waits on the disk. They are appended with :meth:`~lab.store.Run.append_line`
rather than :meth:`~lab.store.Run.append`, which also keeps every record in memory: a proxy runs
for days.

Nothing here stores a header: no key, no credential. The manifest holds the upstreams' URLs
without credentials or query and the names (not values) of key variables.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lab import prices
from lab.proxy.wire import REQUEST_ID_HEADER
from lab.records import CallRecord, stream_timing
from lab.redact import clean_url
from lab.store import CallKey, Run

if TYPE_CHECKING:
    from lab.proxy.engine import Exchange
    from lab.proxy.forward import Attempt

EXPERIMENT = "proxy"
REQUESTS = "requests.jsonl"


def call_record(attempt: Attempt, exchange: Exchange, run_id: str, window: str) -> CallRecord:
    """An attempt's record: the upstream's timing, usage and outcome, labelled with the exchange's route,
    task, window and sample."""
    upstream, seen, failure = attempt.target.upstream, attempt.seen, attempt.failure
    t0 = attempt.sent_ns or attempt.end_ns or 0

    def ms(ns: int | None) -> float | None:
        return None if ns is None else round((ns - t0) / 1e6, 2)

    latency = ms(attempt.end_ns) or 0.0
    streamed = exchange.ask.stream
    offsets = tuple(ms(ns) for ns in attempt.offsets_ns) if streamed else None
    tpot, gap = stream_timing(latency, offsets, seen.output_tokens) if offsets is not None else (None, None)
    # A call cut short is priced from what is known: its chunks are a lower bound of its output.
    billed = seen.output_tokens if seen.output_tokens is not None else (len(offsets) if offsets is not None else None)
    model = attempt.target.model or exchange.ask.model
    headers = attempt.headers or {}
    request_id = headers.get(REQUEST_ID_HEADER[upstream.format]) or headers.get("request-id") or headers.get(
        "x-request-id")
    return CallRecord(
        provider=upstream.provider, model=model, endpoint=clean_url(upstream.url), kind=exchange.ask.kind,
        started_at=attempt.started_at, latency_ms=latency,  # type: ignore[arg-type]
        status="ok" if failure is None else "error",
        ttft_ms=offsets[0] if offsets else None, first_text_ms=ms(attempt.first_text_ns) if streamed else None,
        chunk_offsets_ms=offsets, tpot_ms=tpot, max_gap_ms=gap,
        connect_ms=round(attempt.connect_ns / 1e6, 2),
        input_tokens=seen.input_tokens, output_tokens=seen.output_tokens,
        cache_read_tokens=seen.cache_read_tokens, cache_write_tokens=seen.cache_write_tokens,
        cost_usd=prices.cost_usd(upstream.provider, model, seen.input_tokens, billed, seen.cache_read_tokens,
                                 seen.cache_write_tokens),
        error_type=failure.error_type if failure else None, http_status=attempt.status,
        error_message=failure.message if failure else None,
        text=attempt.text if attempt.keep_text else "", run_id=run_id, experiment=EXPERIMENT, window=window,
        sample=exchange.sample, stop_reason=seen.stop_reason, request_id=request_id,
        synthetic=headers.get("x-lab-synthetic") == "true", target=exchange.route.name, task=exchange.task)


def call_key(record: CallRecord, exchange: Exchange, index: int) -> CallKey:
    return CallKey(record.provider, record.endpoint, record.model, record.kind,
                   {"sha256": exchange.sha256, "sample": exchange.sample, "attempt": index},
                   window=record.window, sample=exchange.sample)


class Recorder:
    """A proxy session in a run: held as its only collector, noted in its manifest, records written
    by the batched writer. Use as a context manager (or :meth:`open` and :meth:`close`)."""

    def __init__(self, run: Run, window: str, design: Mapping[str, Any], session: Mapping[str, Any],
                 command: str = "lab proxy") -> None:
        self.run, self.window, self.design, self.command = run, window, dict(design), command
        self.session = {"window": window, **session}
        self.records = 0
        self.exchanges = 0
        self._stack: contextlib.ExitStack | None = None
        self._warned = False

    def open(self) -> Recorder:
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
        with stack:
            stack.callback(self.run.end_session, self.session, ("window",))

    def __enter__(self) -> Recorder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(self, exchange: Exchange, *, delivered: int | None, chosen: int | None,
                 caller_status: int | None) -> None:
        """Record every attempt of a finished exchange, and its line in ``requests.jsonl``. Never raises:
        a disk that fails is reported once on stderr, and the proxy keeps forwarding."""
        try:
            calls = []
            for i, attempt in enumerate(exchange.attempts):
                record = call_record(attempt, exchange, self.run.id, self.window)
                key = call_key(record, exchange, i)
                self.run.append_line({"key": key.digest, "record": record.to_dict()})
                calls.append({"key": key.digest, "role": attempt.role, "upstream": attempt.target.upstream.name,
                              "status": record.status, "error_type": record.error_type})
            self.run.append_line(self.line(exchange, calls, delivered, chosen, caller_status), REQUESTS)
            self.records += len(calls)
            self.exchanges += 1
        except OSError as exc:
            if not self._warned:
                self._warned = True
                print(f"lab proxy: cannot write records to {self.run.dir} ({exc.strerror or exc}); the proxy keeps "
                      "forwarding, but these calls are not recorded", file=sys.stderr, flush=True)

    def refused(self, exchange: Exchange, message: str) -> None:
        """A request refused before any attempt (it cannot be translated for its route)."""
        try:
            line = self.line(exchange, [], None, None, 400)
            self.run.append_line({**line, "refused": message}, REQUESTS)
            self.exchanges += 1
        except OSError:
            pass

    def line(self, exchange: Exchange, calls: list[dict[str, Any]], delivered: int | None, chosen: int | None,
             caller_status: int | None) -> dict[str, Any]:
        return {"window": self.window, "sample": exchange.sample, "route": exchange.route.name,
                "policy": exchange.route.policy, "shadow": exchange.route.shadow, "api": exchange.api,
                "model": exchange.ask.model, "kind": exchange.ask.kind, "task": exchange.task,
                "sha256": exchange.sha256, "calls": calls, "delivered": delivered, "chosen": chosen,
                "caller_status": caller_status}
