"""One upstream attempt: sent with aiohttp's client, read on its own task as its bytes arrive,
timed, checked, and (across APIs) translated.

The clock is the lab's (see :mod:`lab.llm.transport`): it starts when the request is handed to
the connection pool (:class:`TimedConnector`; so a new connection's set-up is inside it, and also
counted as ``connect_ms``) and each piece of the body is stamped as it is read from the socket.
Time to first token is the piece holding the first event with generated content (text, thinking,
tool input), not the headers.

A stream is cut into whole server-sent events; each is checked and read before it is passed on,
so the proxy never relays a half event or one it could not read. Until the caller is given the
attempt, its events are held (``out``); then the reading task writes each read to the caller
itself, and waits only if the caller is more than 64 KiB behind (the clock's stamps are taken
before). What the proxy asks of a same-API upstream differs from the caller's request in one
header only: ``accept-encoding: identity``, so that it can read what it relays (the caller gets
the same bytes, uncompressed, over loopback).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import weakref
import zlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from lab.core import jsontext
from lab.core.redact import redact, remember_header
from lab.proxy import translate, wire
from lab.proxy.policy import RouteTarget
from lab.proxy.wire import ANTHROPIC, Ask

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
                        "expect"})
"""Headers that belong to one connection, never forwarded (nor those a ``connection`` header names)."""
CREDENTIALS = ("x-api-key", "authorization")
MAX_ERROR_BODY = 1 << 20
SKIP_AUTO = ("User-Agent", "Accept", "Content-Type")


class _CallerGone(Exception):
    """The caller closed its connection while its reply was being written."""


@dataclass(frozen=True)
class Failed:
    """Why an attempt failed, for its record: ``relayed`` when the upstream said so inside a stream
    (its error event is already among the events queued for the caller)."""

    error_type: str
    message: str
    relayed: bool = False


_CURRENT: ContextVar[Attempt | None] = ContextVar("lab_proxy_attempt", default=None)


class TimedConnector(aiohttp.TCPConnector):
    """aiohttp's connection pool, stamping the attempt whose request it is handed (the clock's start)
    and timing the opening of a new connection (``connect_ms``; 0 when a pooled one is reused)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._opened: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        attempt = _CURRENT.get()
        if attempt is not None and attempt.sent_ns is None:
            attempt.stamp_sent()
        began = time.perf_counter_ns()
        connection = await super().connect(req, traces, timeout)
        if connection.protocol is not None and connection.protocol not in self._opened:
            self._opened.add(connection.protocol)
            if attempt is not None:
                attempt.connect_ns = time.perf_counter_ns() - began
        return connection


def env_proxy(url: str) -> str | None:
    """The outbound proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, ...), as the
    SDKs would use it; read once per upstream (aiohttp's ``trust_env`` reads it on every request,
    about half a millisecond each)."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def client_session() -> aiohttp.ClientSession:
    """The proxy's HTTP client: no pool limit, no timeouts of its own (each attempt has a deadline),
    no decompression, no redirects followed (the environment's outbound proxy: :func:`env_proxy`)."""
    connector = TimedConnector(limit=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False)


def hop_by_hop(headers: Any) -> frozenset[str]:
    """The headers (lower case) that end at this hop: the standard ones and those ``Connection`` names."""
    return HOP_BY_HOP | {h.strip().lower() for h in headers.get("connection", "").split(",")}


def upstream_headers(caller: CIMultiDictProxy[str] | CIMultiDict[str], caller_api: str, target: RouteTarget,
                     key: str | None) -> CIMultiDict[str]:
    """The caller's headers for one upstream: hop-by-hop and the proxy's own (``x-lab-*``) left out,
    credentials unchanged unless the upstream has its own key (``api_key_env``). Across APIs the
    caller's credentials and API headers are never sent: the key of one provider is not another's."""
    dropped = hop_by_hop(caller)
    for name in CREDENTIALS:  # masked wherever an upstream echoes them back (an error message, a log)
        for value in caller.getall(name, ()):
            remember_header(name, value)
    headers = CIMultiDict((k, v) for k, v in caller.items()
                          if (low := k.lower()) not in dropped and not low.startswith("x-lab-"))
    headers["accept-encoding"] = "identity"
    api = target.upstream.format
    if api != caller_api:
        for name in list(headers):
            if name.lower() in CREDENTIALS or name.lower().startswith(("anthropic-", "openai-")):
                headers.popall(name, None)
        headers["content-type"] = "application/json"
        if api == ANTHROPIC:
            headers["anthropic-version"] = translate.ANTHROPIC_VERSION
    if key:
        for name in CREDENTIALS:
            headers.popall(name, None)
        if api == ANTHROPIC:
            headers["x-api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
    return headers


def _decoder(encoding: str | None) -> Any:
    """A decompressor for a body the upstream compressed although asked not to (None: not compressed)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise wire.Garbage(f"the reply is compressed with {encoding[:40]!r}, which the proxy cannot read")


class Attempt:
    """One upstream request of an exchange, made and read on its own task from construction.

    Stages, each a ``time.perf_counter_ns`` value or None: ``headers_ns`` (a stream's reply began),
    ``first_content_ns`` (first generated content in a stream), ``ok_ns`` (the reply ended, whole and
    readable). ``on_change(attempt)`` is called at each, and when the attempt ends. A reply for the caller
    comes as ``body`` (not streamed) or as ``out`` (stream events in the caller's API, then None)
    until :meth:`attach` hands the stream to the caller; an upstream error reply is kept whole in
    ``error_reply``. ``finished`` is set when the attempt has ended.
    """

    def __init__(self, session: aiohttp.ClientSession, target: RouteTarget, role: str, *, url: str,
                 headers: CIMultiDict[str], body: bytes, ask: Ask, caller_api: str, timeout_s: float,
                 keep_text: bool, on_change: Callable[[Attempt], None], proxy: str | None = None) -> None:
        self.target, self.role, self.ask = target, role, ask
        self.api = target.upstream.format
        self.translating = self.api != caller_api
        self.timeout_s, self.keep_text, self.on_change = timeout_s, keep_text, on_change
        self.seen = wire.Seen()
        self._reader = wire.reader(self.api, self.seen)
        self._translator = (translate.StreamTranslator(self.api, self.seen, ask.include_usage)
                            if self.translating and ask.stream else None)
        self.started_at: datetime | None = None
        self.sent_ns: int | None = None
        self.connect_ns = 0
        self.end_ns: int | None = None
        self.status: int | None = None
        self.headers: CIMultiDictProxy[str] | None = None
        self.decoded = False
        self.headers_ns: int | None = None
        self.offsets_ns: list[int] = []
        self.first_text_ns: int | None = None
        self.ok_ns: int | None = None
        self.text = ""
        self.body: bytes | None = None
        self.error_reply: bytes | None = None
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.failure: Failed | None = None
        self._cancel_reason: tuple[str, str] = ("cancelled", "cancelled")
        self._session, self._url, self._request_headers, self._request_body = session, url, headers, body
        self._proxy = proxy
        self._sink: Callable[[bytes], Awaitable[Any]] | None = None
        self.finished = asyncio.Event()
        self.done = False
        self.task = asyncio.create_task(self._run())
        self.task.add_done_callback(lambda _: self._settle())  # also when cancelled before it ever ran

    # -- what the engine asks --------------------------------------------------------------------

    @property
    def first_content_ns(self) -> int | None:
        return self.offsets_ns[0] if self.offsets_ns else None

    def ready_ns(self, stage: str) -> int | None:
        """When the attempt reached ``stage``: ``headers`` (a stream may be relayed from here), ``content``
        (first content of a stream) or ``end`` (whole); a reply not streamed is ready when whole."""
        if not self.ask.stream or stage == "end":
            return self.ok_ns
        return self.headers_ns if stage == "headers" else self.first_content_ns

    def cancel(self, error_type: str = "cancelled", message: str = "cancelled") -> None:
        """Stop the attempt (its HTTP request is closed); it is recorded with this error."""
        if not self.task.done():
            self._cancel_reason = (error_type, message)
            self.task.cancel()

    async def attach(self, write: Callable[[bytes], Awaitable[Any]]) -> None:
        """Give the caller what was held back, then let the reading task ``write`` each read to the caller
        itself (no hand-over between tasks per read). Returns at once if the attempt has ended."""
        queue = self.out
        while not queue.empty():
            items = [queue.get_nowait() for _ in range(queue.qsize())]
            data = b"".join(item for item in items if item is not None)
            if data:
                await write(data)
            if items[-1] is None:
                return
        self._sink = write  # nothing held, and no await since the check: nothing can come between

    def stamp_sent(self) -> None:
        self.started_at, self.sent_ns = datetime.now(UTC), time.perf_counter_ns()

    # -- the request -----------------------------------------------------------------------------

    def _fail(self, error_type: str, message: str, relayed: bool = False) -> None:
        if self.failure is None:
            self.failure = Failed(error_type, redact(message[:500]) or "", relayed)

    async def _run(self) -> None:
        response = None
        _CURRENT.set(self)  # for the pool's stamp (this task's own context)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._session.request(
                    "POST", self._url, data=self._request_body, headers=self._request_headers, allow_redirects=False,
                    skip_auto_headers=SKIP_AUTO, proxy=self._proxy)
                await self._read(response)
        except TimeoutError:
            self._fail("timeout", f"no complete answer within the route's timeout_s ({self.timeout_s:g} s)")
        except asyncio.CancelledError:
            self._fail(*self._cancel_reason)
        except _CallerGone:
            self._fail("cancelled", "the caller closed the connection")
        except wire.Garbage as exc:
            self._fail("invalid_response", str(exc))
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            self._fail("cut_stream", f"the upstream closed the connection mid-reply ({type(exc).__name__}: {exc})")
        except (aiohttp.ClientError, OSError) as exc:
            kind = "cut_stream" if self.status is not None else "connection"
            self._fail(kind, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # anything unforeseen in a reply is the reply's fault: recorded, never raised
            self._fail("invalid_response", f"{type(exc).__name__}: {exc}")
        finally:
            if response is not None:
                if self.failure is None:
                    response.release()
                else:
                    response.close()  # a loser, a cut or an error: the upstream request is closed
            self._settle()

    def _settle(self) -> None:
        """The attempt has ended: note when (a failure when it was noticed, as in lab.llm), and tell."""
        if self.done:
            return
        self.done = True
        if self.task.done() and self.task.cancelled():
            self._fail(*self._cancel_reason)
        if self.sent_ns is None:
            self.stamp_sent()  # never reached the pool: a zero-length attempt
        if self.failure is not None or self.end_ns is None:
            self.end_ns = time.perf_counter_ns()
        self.out.put_nowait(None)
        self.finished.set()
        self.on_change(self)

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        arrived = self.end_ns = time.perf_counter_ns()
        if self.sent_ns is None:
            self.stamp_sent()
        self.status, self.headers = response.status, response.headers
        decoder = _decoder(response.headers.get("content-encoding"))
        self.decoded = decoder is not None
        if response.status >= 300:
            self.error_reply = await self._whole(response, decoder, MAX_ERROR_BODY)
            self._fail(*wire.parse_error_body(response.status, self.error_reply))
            return
        kind = response.headers.get("content-type", "")
        if self.ask.stream:
            if not kind.startswith("text/event-stream"):
                raise wire.Garbage(f"expected a stream of server-sent events, got content-type {kind[:60] or 'none'!r}")
            self.headers_ns = arrived
            self.on_change(self)
            await self._stream(response, decoder)
            return
        if "json" not in kind:
            raise wire.Garbage(f"expected JSON, got content-type {kind[:60] or 'none'!r}")
        raw = await self._whole(response, decoder)
        try:
            data = jsontext.loads(raw)
        except (ValueError, RecursionError):
            raise wire.Garbage("the reply is not valid JSON") from None
        text = self._reader.body(data)
        self.text = text if self.keep_text else ""
        self.body = translate.reply_body(data, self.api, self.seen, text) if self.translating else raw
        self.ok_ns = self.end_ns

    async def _give(self, data: bytes) -> None:
        """Pass on a read: held until the caller is given this attempt, then written to the caller (which
        waits only when the caller is 64 KiB behind)."""
        if self._sink is None:
            self.out.put_nowait(data)
            return
        try:
            await self._sink(data)
        except ConnectionError:
            self._sink = None
            raise _CallerGone from None

    async def _whole(self, response: aiohttp.ClientResponse, decoder: Any, limit: int | None = None) -> bytes:
        pieces, size = [], 0
        async for piece in response.content.iter_any():
            self.end_ns = time.perf_counter_ns()
            pieces.append(decoder.decompress(piece) if decoder else piece)
            size += len(piece)
            if limit is not None and size > limit:
                break
        return b"".join(pieces)

    async def _stream(self, response: aiohttp.ClientResponse, decoder: Any) -> None:
        splitter, reader, translator = wire.EventSplitter(), self._reader, self._translator
        seen = self.seen
        async for piece in response.content.iter_any():
            at = self.end_ns = time.perf_counter_ns()
            relayed: list[bytes] = []  # what this read gives the caller, queued at once
            try:
                for raw in splitter.feed(decoder.decompress(piece) if decoder else piece):
                    name, data = wire.parse_event(raw)
                    if data is None:  # a comment or keep-alive
                        if translator is None:
                            relayed.append(raw)
                        continue
                    event = wire.event_json(data)
                    got = reader.event(name, event)
                    if got.content:
                        self.offsets_ns.append(at)
                        if len(self.offsets_ns) == 1:
                            self.on_change(self)
                    if got.text:
                        if self.first_text_ns is None:
                            self.first_text_ns = at
                        if self.keep_text:
                            seen.text.append(got.text)
                    relayed.append(translator.event(event, got) if translator is not None else raw)
                    if seen.error is not None:
                        self._fail(*seen.error, relayed=True)
                        return
            finally:  # the events read before a bad one still go to the caller
                if relayed:
                    await self._give(b"".join(relayed))
        self.text = "".join(seen.text)
        if splitter.rest.strip() or not seen.finished:
            self._fail("cut_stream", "the stream ended before its final event")
            return
        self.ok_ns = self.end_ns
