"""One API for every provider: complete, stream and complete_json, with async twins.

Every call is timed and returns its :class:`~lab.records.CallRecord`.
Provider errors, timeouts, cut streams and invalid JSON become records with
``status="error"``; they never raise. Only a set-up that cannot make a call
at all raises :class:`~lab.config.ConfigurationError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lab import config, prices
from lab.llm import schemas
from lab.llm.providers import ADAPTERS, CutStream, Failure, Reply, Request, aiterate, classify, iterate, stream_headers
from lab.llm.retry import NO_RETRY, RetryPolicy
from lab.records import CallRecord, Kind

DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Completion:
    """A finished call: its text (empty on error), its record, and for JSON calls its data."""

    text: str
    record: CallRecord
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.record.ok


class _Call:
    """One logical call: settings, timing from just before the first attempt, and its record."""

    def __init__(self, kind: Kind, request: Request, provider: str | None, model: str | None,
                 base_url: str | None, retry: RetryPolicy) -> None:
        self.settings = config.resolve(provider, model, base_url)
        self.adapter = ADAPTERS[self.settings.provider]
        self.params = self.adapter.params(self.settings.model, request)
        self.kind, self.retry = kind, retry

    def start(self) -> None:
        """Start the clock, just before the first attempt."""
        self.started_at = datetime.now(UTC)
        self._t0 = time.perf_counter_ns()

    def elapsed_ms(self) -> float:
        return (time.perf_counter_ns() - self._t0) / 1e6

    def record(self, reply: Reply, failure: Failure | None, attempts: int, ttft_ms: float | None = None) -> CallRecord:
        latency_ms = self.elapsed_ms()
        s = self.settings
        return CallRecord(
            provider=s.provider, model=s.model, endpoint=s.endpoint, kind=self.kind,
            started_at=self.started_at, latency_ms=latency_ms, ttft_ms=ttft_ms,
            status="ok" if failure is None else "error",
            input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            cost_usd=prices.cost_usd(s.provider, s.model, reply.input_tokens, reply.output_tokens),
            error_type=failure.error_type if failure else None,
            http_status=failure.http_status if failure else 200,
            error_message=failure.message if failure else None,
            attempts=attempts, text=reply.text, stop_reason=reply.stop_reason,
            request_id=reply.request_id or (failure.request_id if failure else None),
            synthetic=reply.synthetic or bool(failure and failure.synthetic),
        )

    def retry_delay(self, attempt: int, failure: Failure | None) -> float | None:
        """Seconds to wait before the next attempt, or None to stop."""
        if failure is None or not self.retry.should_retry(attempt, failure.error_type):
            return None
        return self.retry.delay_s(attempt, failure.retry_after_s)


def _request(prompt: str, max_tokens: int, system: str | None, timeout: float,
             schema: schemas.Schema | None = None) -> Request:
    return Request(prompt, max_tokens, system, schemas.json_schema(schema) if schema is not None else None, timeout)


def _finish(call: _Call, reply: Reply, failure: Failure | None, attempts: int,
            schema: schemas.Schema | None) -> Completion:
    data = None
    if failure is None and schema is not None:
        try:
            data = schemas.parse(reply.text, schema)
        except schemas.InvalidJSON as exc:
            failure = Failure(exc.error_type, 200, str(exc))
    record = call.record(reply, failure, attempts)
    return Completion(record.text if failure is None else "", record, data)


def _complete(call: _Call, schema: schemas.Schema | None) -> Completion:
    call.start()
    attempt = 0
    while True:
        attempt += 1
        reply, failure = Reply(), None
        try:
            reply = call.adapter.create(call.settings, call.params)
        except Exception as exc:  # classify() re-raises anything that is not a provider failure
            failure = classify(exc)
        delay = call.retry_delay(attempt, failure)
        if delay is None:
            return _finish(call, reply, failure, attempt, schema)
        time.sleep(delay)


async def _acomplete(call: _Call, schema: schemas.Schema | None) -> Completion:
    call.start()
    attempt = 0
    while True:
        attempt += 1
        reply, failure = Reply(), None
        try:
            reply = await call.adapter.acreate(call.settings, call.params)
        except Exception as exc:
            failure = classify(exc)
        delay = call.retry_delay(attempt, failure)
        if delay is None:
            return _finish(call, reply, failure, attempt, schema)
        await asyncio.sleep(delay)


def complete(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
             provider: str | None = None, model: str | None = None, base_url: str | None = None,
             timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> Completion:
    """One non-streamed completion; latency runs to the complete response."""
    request = _request(prompt, max_tokens, system, timeout)
    return _complete(_Call("complete", request, provider, model, base_url, retry), None)


async def acomplete(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
                    provider: str | None = None, model: str | None = None, base_url: str | None = None,
                    timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> Completion:
    """Async twin of :func:`complete`."""
    request = _request(prompt, max_tokens, system, timeout)
    return await _acomplete(_Call("complete", request, provider, model, base_url, retry), None)


def complete_json(prompt: str, schema: schemas.Schema, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                  system: str | None = None, provider: str | None = None, model: str | None = None,
                  base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                  retry: RetryPolicy = NO_RETRY) -> Completion:
    """Structured output through the provider's native JSON-schema mode.

    ``schema`` is a JSON schema dict or a pydantic model class; ``.data`` is the
    validated dict or model instance. Invalid JSON or a schema mismatch gives an
    error record (``invalid_json`` or ``schema_mismatch``) with the raw answer kept.
    """
    request = _request(prompt, max_tokens, system, timeout, schema)
    return _complete(_Call("json", request, provider, model, base_url, retry), schema)


async def acomplete_json(prompt: str, schema: schemas.Schema, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                         system: str | None = None, provider: str | None = None, model: str | None = None,
                         base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                         retry: RetryPolicy = NO_RETRY) -> Completion:
    """Async twin of :func:`complete_json`."""
    request = _request(prompt, max_tokens, system, timeout, schema)
    return await _acomplete(_Call("json", request, provider, model, base_url, retry), schema)


class _StreamState:
    """What one stream attempt has seen so far."""

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.reply = Reply()
        self.parts: list[str] = []
        self.ttft_ms: float | None = None

    def text_of(self, event: Any) -> str:
        text = self.call.adapter.read_event(event, self.reply)
        if text:
            if self.ttft_ms is None:
                self.ttft_ms = self.call.elapsed_ms()
            self.parts.append(text)
        return text

    def end(self) -> None:
        if not self.reply.finished:
            raise CutStream("the stream ended before its final event")

    def record(self, failure: Failure | None, attempts: int) -> CallRecord:
        self.reply.text = "".join(self.parts)
        return self.call.record(self.reply, failure, attempts, self.ttft_ms)


_CANCELLED = Failure("cancelled", None, "the caller stopped reading the stream")


class _Stream:
    """What the sync and async streams share: the call, its record, and when to retry."""

    def __init__(self, call: _Call) -> None:
        self._call = call
        self.record: CallRecord | None = None

    @property
    def text(self) -> str:
        return self.record.text if self.record else ""

    def _settle(self, state: _StreamState, failure: Failure | None, attempt: int) -> float | None:
        """After an attempt: seconds to wait before retrying, or None once the record is final.

        A stream is retried only while no text has reached the caller."""
        delay = None if state.ttft_ms is not None else self._call.retry_delay(attempt, failure)
        if delay is None:
            self.record = state.record(failure, attempt)
        return delay


class TextStream(_Stream):
    """Text chunks as they arrive; ``.record`` is set once the stream has ended.

    Stopping early records the call as ``cancelled`` and closes the HTTP request.
    """

    def __iter__(self) -> Iterator[str]:
        self._call.start()
        attempt = 0
        while True:
            attempt += 1
            state, failure = _StreamState(self._call), None
            try:
                sdk_stream = self._call.adapter.open_stream(self._call.settings, self._call.params)
                state.reply = stream_headers(sdk_stream)
                for event in iterate(sdk_stream):
                    if text := state.text_of(event):
                        yield text
                state.end()
            except GeneratorExit:
                self.record = state.record(_CANCELLED, attempt)
                raise
            except Exception as exc:  # classify() re-raises anything that is not a provider failure
                failure = classify(exc)
            if (delay := self._settle(state, failure, attempt)) is None:
                return
            time.sleep(delay)


class AsyncTextStream(_Stream):
    """Async twin of :class:`TextStream`; task cancellation closes the HTTP request."""

    async def __aiter__(self) -> AsyncIterator[str]:
        self._call.start()
        attempt = 0
        while True:
            attempt += 1
            state, failure = _StreamState(self._call), None
            try:
                sdk_stream = await self._call.adapter.aopen_stream(self._call.settings, self._call.params)
                state.reply = stream_headers(sdk_stream)
                async for event in aiterate(sdk_stream):
                    if text := state.text_of(event):
                        yield text
                state.end()
            except (GeneratorExit, asyncio.CancelledError):
                self.record = state.record(_CANCELLED, attempt)
                raise
            except Exception as exc:
                failure = classify(exc)
            if (delay := self._settle(state, failure, attempt)) is None:
                return
            await asyncio.sleep(delay)


def stream(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
           provider: str | None = None, model: str | None = None, base_url: str | None = None,
           timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> TextStream:
    """Stream a completion: iterate for text chunks, then read ``.record``."""
    request = _request(prompt, max_tokens, system, timeout)
    return TextStream(_Call("stream", request, provider, model, base_url, retry))


def astream(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
            provider: str | None = None, model: str | None = None, base_url: str | None = None,
            timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> AsyncTextStream:
    """Async twin of :func:`stream`: ``async for chunk in astream(...)``."""
    request = _request(prompt, max_tokens, system, timeout)
    return AsyncTextStream(_Call("stream", request, provider, model, base_url, retry))


def drain(chunks: TextStream) -> Completion:
    """Read a stream to its end and return it as a :class:`Completion`."""
    for _ in chunks:
        pass
    assert chunks.record is not None
    return Completion(chunks.text if chunks.record.ok else "", chunks.record)


