"""One API for every provider: complete, stream and complete_json, with async twins.

Every call is timed and returns its :class:`~lab.core.records.CallRecord`. Provider errors,
timeouts, cut streams, replies in an unexpected shape and invalid JSON become records with
``status="error"``; they never raise. Only a set-up that cannot make a call at all raises
:class:`~lab.core.config.ConfigurationError`.

What the clock holds (see :mod:`lab.llm.transport`): from the moment the first attempt's
request is handed to the HTTP transport, with a client that already exists, to the arrival of
the last byte of the final response. Client construction, request building, parsing, JSON
validation and the caller's own work between chunks are outside it; so is consumer
back-pressure, because a stream is read ahead of its consumer, on its own task, and each
chunk's arrival is stamped when its bytes are read from the socket. ``timeout`` is a deadline
for the whole call, retries included.

The async functions use clients of the running event loop (closed when it shuts down, or at
the end of ``async with lab.llm.session():``); the sync ones run on the lab's background loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from queue import SimpleQueue
from typing import Any

from lab.core import config, prices
from lab.core.config import DEFAULT_MAX_TOKENS, DEFAULT_TIMEOUT_S
from lab.core.records import AttemptError, CallRecord, Kind, timed_fields
from lab.core.redact import clean_url
from lab.core.replies import NOTHING
from lab.llm import clients, schemas
from lab.llm.completion import Completion
from lab.llm.providers import ADAPTERS, CutStream, Failure, Reply, Request, classify, events, stream_headers
from lab.llm.retry import NO_RETRY, RetryPolicy
from lab.llm.transport import ATTEMPT, PLANNED, Clock

_CANCELLED = Failure("cancelled", None, "the caller stopped reading the stream")
_END = object()


class _Attempt:
    """What one attempt has seen: its transport clock, the reply so far and its content chunks."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.reply = Reply()
        self.offsets_ns: list[int] = []
        self.first_text_ns: int | None = None
        self.parts: list[str] = []


class _Call:
    """One logical call: settings, attempts (with the lab's retries), and its final record."""

    def __init__(self, kind: Kind, request: Request, provider: str | None, model: str | None,
                 base_url: str | None, timeout: float, retry: RetryPolicy) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.settings = config.resolve(provider, model, base_url)
        self.adapter = ADAPTERS[self.settings.provider]
        self.params = self.adapter.params(self.settings.model, request, timeout)
        self.kind, self.timeout, self.retry = kind, timeout, retry
        self.attempt = _Attempt()
        self.attempts = 0
        self.errors: list[AttemptError] = []
        self.record: CallRecord | None = None
        self.settled = threading.Event()
        self._t0_ns: int | None = None
        self._started_at: datetime | None = None

    # -- running ------------------------------------------------------------------------------

    async def client(self) -> Any:
        """This loop's (or session's) SDK client for the call's provider, endpoint and key."""
        s = self.settings
        return (await clients.pool()).get((s.provider, s.endpoint, s.api_key), lambda: self.adapter.client(s))

    async def run(self, deliver: Callable[[str], Any] | None = None,
                  on_content: Callable[[], Any] | None = None) -> CallRecord:
        """Make the call (streamed when ``deliver`` is given: each visible text chunk goes to it,
        ``on_content`` is called at the first content chunk); returns the final record."""
        client = await self.client()
        loop = asyncio.get_running_loop()
        # The deadline runs from the first attempt's send, as the latency does (until then, from now).
        deadline = loop.time() + self.timeout
        self._started_at, fallback_ns = datetime.now(UTC), time.perf_counter_ns()
        try:
            while True:
                self.attempts += 1
                self.attempt = attempt = _Attempt()
                failure = None
                token = ATTEMPT.set(attempt.clock)
                try:
                    async with asyncio.timeout_at(deadline) as scope:
                        if self.attempts == 1:
                            def start_deadline(scope: asyncio.Timeout = scope) -> None:
                                nonlocal deadline
                                deadline = loop.time() + self.timeout
                                scope.reschedule(deadline)
                            attempt.clock.on_send = start_deadline
                        if deliver is None:
                            sent = await self.adapter.create(client, self.params)
                        else:
                            await self._read_stream(client, deliver, on_content)
                except Exception as exc:  # classify() re-raises anything that is not a provider failure
                    failure = classify(exc)
                finally:
                    ATTEMPT.reset(token)
                    if self._t0_ns is None:  # the call's clock starts with its first attempt's request
                        self._t0_ns = attempt.clock.sent_ns or fallback_ns
                        self._started_at = attempt.clock.started_at or self._started_at
                end_ns = attempt.clock.done_ns if failure is None else time.perf_counter_ns()
                if failure is None and deliver is None:
                    try:  # parsing the reply is outside the clock
                        attempt.reply = await self.adapter.reply(sent)
                    except Exception as exc:
                        failure = classify(exc)
                delay = self._retry_delay(failure, deadline - loop.time())
                if delay is None:
                    return self._settle(failure, end_ns)
                self.errors.append(AttemptError(failure.error_type, failure.http_status,  # type: ignore[union-attr]
                                                round((end_ns - (attempt.clock.sent_ns or end_ns)) / 1e6, 2)))
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._settle(_CANCELLED, time.perf_counter_ns())
            raise

    async def _read_stream(self, client: Any, deliver: Callable[[str], Any],
                           on_content: Callable[[], Any] | None) -> None:
        attempt = self.attempt
        sdk_stream = await self.adapter.open_stream(client, self.params)
        attempt.reply = stream_headers(sdk_stream)
        async for event in events(sdk_stream):
            piece = self.adapter.read_event(event, attempt.reply)
            if piece is NOTHING:
                continue
            at = attempt.clock.last_byte_ns or time.perf_counter_ns()
            if not attempt.offsets_ns and on_content is not None:
                on_content()
            attempt.offsets_ns.append(at)
            if piece.text:
                if attempt.first_text_ns is None:
                    attempt.first_text_ns = at
                attempt.parts.append(piece.text)
                deliver(piece.text)
        if not attempt.reply.finished:
            raise CutStream("the stream ended before its final event")

    def _retry_delay(self, failure: Failure | None, remaining_s: float) -> float | None:
        """Seconds to wait before the next attempt, or None to stop. A stream is retried only
        while no text has reached the caller, and no retry starts past the deadline."""
        if failure is None or self.attempt.parts or not self.retry.should_retry(self.attempts, failure.error_type):
            return None
        delay = self.retry.delay_s(self.attempts, failure.retry_after_s)
        return delay if delay < remaining_s else None

    # -- the record -----------------------------------------------------------------------------

    def _settle(self, failure: Failure | None, end_ns: int | None) -> CallRecord:
        """Build the final record once (later calls return it unchanged)."""
        if self.record is None:
            self.record = self._build(failure, end_ns or time.perf_counter_ns())
            self.settled.set()
        return self.record

    def _build(self, failure: Failure | None, end_ns: int) -> CallRecord:
        s, attempt, reply = self.settings, self.attempt, self.attempt.reply
        t0 = self._t0_ns or attempt.clock.sent_ns or end_ns
        started_at = self._started_at or datetime.now(UTC)
        planned = PLANNED.get()
        lag = None if planned is None else round((t0 - planned) / 1e6, 2)
        streamed = self.kind == "stream"
        text = "".join(attempt.parts) if streamed else reply.text
        output_tokens = reply.output_tokens
        timing, billed_output = timed_fields(t0, end_ns, attempt.offsets_ns, attempt.first_text_ns, output_tokens,
                                             streamed)
        return CallRecord(
            provider=s.provider, model=s.model, endpoint=clean_url(s.endpoint), kind=self.kind,
            started_at=started_at, **timing,
            scheduled_at=None if lag is None else started_at - timedelta(milliseconds=lag), send_lag_ms=lag,
            status="ok" if failure is None else "error",
            connect_ms=round(attempt.clock.connect_ns / 1e6, 2) if attempt.clock.sent_ns else None,
            input_tokens=reply.input_tokens, output_tokens=output_tokens,
            cache_read_tokens=reply.cache_read_tokens, cache_write_tokens=reply.cache_write_tokens,
            cost_usd=prices.cost_usd(s.provider, s.model, reply.input_tokens, billed_output,
                                     reply.cache_read_tokens, reply.cache_write_tokens),
            error_type=failure.error_type if failure else None,
            http_status=failure.http_status if failure else 200,
            error_message=failure.message if failure else None,
            attempts=max(self.attempts, 1), attempt_errors=tuple(self.errors), text=text,
            stop_reason=reply.stop_reason, request_id=reply.request_id or (failure.request_id if failure else None),
            synthetic=reply.synthetic or bool(failure and failure.synthetic),
        )


def _request(prompt: str, max_tokens: int, system: str | None, schema: schemas.Schema | None = None) -> Request:
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a whole number of at least 1, not {max_tokens!r}")
    return Request(prompt, max_tokens, system, schemas.json_schema(schema) if schema is not None else None)


def _completion(record: CallRecord, schema: schemas.Schema | None) -> Completion:
    """The call's answer; for JSON calls the answer is validated here, outside the clock."""
    data = None
    if record.ok and schema is not None:
        try:
            data = schemas.parse(record.text, schema)
        except schemas.InvalidJSON as exc:
            record = _with_failure(record, exc.error_type, str(exc))
    return Completion.of(record, data)


def _with_failure(record: CallRecord, error_type: str, message: str) -> CallRecord:
    return replace(record, status="error", error_type=error_type, error_message=message[:500])


def complete(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
             provider: str | None = None, model: str | None = None, base_url: str | None = None,
             timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> Completion:
    """One non-streamed completion; latency runs to the last byte of the response."""
    call = _Call("complete", _request(prompt, max_tokens, system), provider, model, base_url, timeout, retry)
    return _completion(clients.background.run(call.run()), None)


async def acomplete(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
                    provider: str | None = None, model: str | None = None, base_url: str | None = None,
                    timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> Completion:
    """Async twin of :func:`complete`."""
    call = _Call("complete", _request(prompt, max_tokens, system), provider, model, base_url, timeout, retry)
    return _completion(await call.run(), None)


def complete_json(prompt: str, schema: schemas.Schema, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                  system: str | None = None, provider: str | None = None, model: str | None = None,
                  base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                  retry: RetryPolicy = NO_RETRY) -> Completion:
    """Structured output through the provider's native JSON-schema mode.

    ``schema`` is a JSON schema dict or a pydantic model class; ``.data`` is the
    validated dict or model instance. Invalid JSON or a schema mismatch gives an
    error record (``invalid_json`` or ``schema_mismatch``) with the raw answer kept.
    """
    call = _Call("json", _request(prompt, max_tokens, system, schema), provider, model, base_url, timeout, retry)
    return _completion(clients.background.run(call.run()), schema)


async def acomplete_json(prompt: str, schema: schemas.Schema, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                         system: str | None = None, provider: str | None = None, model: str | None = None,
                         base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                         retry: RetryPolicy = NO_RETRY) -> Completion:
    """Async twin of :func:`complete_json`."""
    call = _Call("json", _request(prompt, max_tokens, system, schema), provider, model, base_url, timeout, retry)
    return _completion(await call.run(), schema)


_READ_TWICE = ("this stream has already been read; its text is in .text and its record in .record "
               "(call lab.llm.stream again for a new request)")


class _Stream:
    """What the sync and async streams share: the call and its record."""

    def __init__(self, call: _Call) -> None:
        self._call = call
        self._started = False

    def _start(self) -> None:
        if self._started:
            raise RuntimeError(_READ_TWICE)
        self._started = True

    @property
    def text(self) -> str:
        record = self.record
        return record.text if record else ""

    @property
    def record(self) -> CallRecord | None:
        return self._call.record


class TextStream(_Stream):
    """Text chunks as they arrive; ``.record`` is set once the stream has ended.

    The stream is read ahead on the lab's background loop, so the consumer's own work does not
    delay the timing. Stopping early (``break``) records the call as ``cancelled`` and closes
    the HTTP request. A stream can be iterated once.
    """

    def __iter__(self) -> Iterator[str]:
        self._start()
        chunks: SimpleQueue[Any] = SimpleQueue()
        future = clients.background.submit(self._call.run(deliver=chunks.put))
        future.add_done_callback(lambda _: chunks.put(_END))
        try:
            while (chunk := chunks.get()) is not _END:
                yield chunk
        except GeneratorExit:
            future.cancel()
            self._call.settled.wait(timeout=10)
            raise
        future.result()


class AsyncTextStream(_Stream):
    """Async twin of :class:`TextStream`: ``async for chunk in astream(...)``, read ahead on a task.

    Leave early with ``async with astream(...) as chunks:`` (or ``await chunks.aclose()``);
    reading ``.record`` before the stream has ended also stops it. Either way the call is
    recorded as ``cancelled`` and its HTTP request closed. Cancelling the task that reads it
    does the same. ``first_content`` is set when the first content chunk arrives.
    """

    def __init__(self, call: _Call) -> None:
        super().__init__(call)
        self.first_content = asyncio.Event()
        self._chunks: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[CallRecord] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        self._start()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> CallRecord:
        try:
            return await self._call.run(deliver=self._chunks.put_nowait, on_content=self.first_content.set)
        finally:
            self._chunks.put_nowait(_END)

    async def __anext__(self) -> str:
        try:
            chunk = await self._chunks.get()
        except asyncio.CancelledError:
            self._stop()
            raise
        if chunk is _END:
            raise StopAsyncIteration
        return chunk

    def _stop(self) -> None:
        """Stop reading now: the record says cancelled, and the task closes the HTTP request."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._call._settle(_CANCELLED, time.perf_counter_ns())

    @property
    def record(self) -> CallRecord | None:
        self._stop()
        return self._call.record

    async def aclose(self) -> None:
        """Stop the stream (if still running) and wait until its HTTP request is closed."""
        self._stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def __aenter__(self) -> AsyncTextStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def stream(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
           provider: str | None = None, model: str | None = None, base_url: str | None = None,
           timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> TextStream:
    """Stream a completion: iterate for text chunks, then read ``.record``."""
    return TextStream(_Call("stream", _request(prompt, max_tokens, system), provider, model, base_url, timeout, retry))


def astream(prompt: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, system: str | None = None,
            provider: str | None = None, model: str | None = None, base_url: str | None = None,
            timeout: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = NO_RETRY) -> AsyncTextStream:
    """Async twin of :func:`stream`: ``async for chunk in astream(...)``."""
    return AsyncTextStream(_Call("stream", _request(prompt, max_tokens, system), provider, model, base_url, timeout,
                                 retry))


async def prepare(*, provider: str | None = None, model: str | None = None, base_url: str | None = None) -> None:
    """Build the running loop's SDK client for a provider and endpoint now, without sending anything,
    so that the first call of an open-loop schedule does not spend its time building it (nor opening the
    price table, a file a schedule at the open-file limit could not open)."""
    await _Call("complete", _request("", 1, None), provider, model, base_url, DEFAULT_TIMEOUT_S, NO_RETRY).client()
    prices.price_table()


def drain(chunks: TextStream) -> Completion:
    """Read a stream to its end and return it as a :class:`Completion`."""
    for _ in chunks:
        pass
    record = chunks.record
    assert record is not None
    return Completion.of(record)


session = clients.session
