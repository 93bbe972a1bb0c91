"""The proxy's aiohttp server: chat handlers that relay the chosen attempt to the caller chunk by
chunk, a plain pass-through for every other path, and clean shutdown.

What the caller gets:

* an answer: the upstream's status, headers (less hop-by-hop ones; ``content-length`` recomputed)
  and body bytes, unchanged, each stream event as soon as it is read (translated, across APIs);
* an upstream's error reply (429, 529, 5xx, 4xx): relayed as it is (translated, across APIs);
* a failure of the proxy's own making before anything was sent (no headers in time: 504; a
  connection failure, a cut or unreadable reply: 502; the proxy stopping: 503): an error in the
  caller's API;
* a failure after the stream began: an upstream's error event is relayed; an upstream that closes
  the connection mid-stream has the caller's connection closed the same way; otherwise (a timeout,
  an unreadable event, the proxy stopping) an error event in the caller's API ends the stream.

Other paths (model lists, token counting, the Responses API, ...) are forwarded unchanged to the
command line's upstream of their API, and not recorded.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from lab.core import endpoints
from lab.core.errors import BadInput
from lab.core.redact import clean_url, guard_logging, redact
from lab.core.replies import SYNTHETIC_HEADER
from lab.core.timing import frozen_heap, short_thread_switches
from lab.proxy import DEFAULT_GRACE_S, DEFAULT_TIMEOUT_S, forward, translate, wire
from lab.proxy.engine import Engine, Exchange
from lab.proxy.forward import Attempt, Failed
from lab.proxy.policy import DEFAULT_URLS, Policy, PolicyError, default_policy, load
from lab.proxy.record import Recording
from lab.proxy.wire import ANTHROPIC, CHAT_PATHS, OPENAI, REQUEST_ID_HEADER
from lab.store import Run

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Larger than either provider's request limit: the upstream decides."""
TASK_HEADER, ROUTE_HEADER = "x-lab-task", "x-lab-route"
_STATUS = {"timeout": 504, "cancelled": 503}
_STOPPED = "lab proxy stopped before the answer ended"
_LEFT = "the caller closed the connection"


def _label(value: str | None) -> str | None:
    """The ``x-lab-task`` header as a task label: printable, at most 100 characters."""
    if value is None:
        return None
    text = "".join(c for c in value.strip() if c.isprintable())[:100]
    return text or None


def _error(api: str, status: int, message: str) -> web.Response:
    return web.Response(status=status, body=wire.error_body(api, status, message),
                        headers={"content-type": "application/json"})


def _relay_headers(headers: Any, *, decoded: bool = False) -> CIMultiDict[str]:
    """An upstream's response headers for the caller: hop-by-hop ones and the length left out (the
    server sets it again, or chunks), and the encoding when the proxy decoded the body."""
    if headers is None:
        return CIMultiDict()
    dropped = forward.hop_by_hop(headers) | ({"content-encoding"} if decoded else set())
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


def _translated_headers(attempt: Attempt, caller: str, content_type: str) -> CIMultiDict[str]:
    """Headers of a reply translated to the caller's API: its type, the request id under the caller's
    API's name, and the few others that mean the same in both."""
    upstream = attempt.headers or {}
    headers = CIMultiDict({"content-type": content_type})
    request_id = upstream.get(REQUEST_ID_HEADER[attempt.api])
    if request_id:
        headers[REQUEST_ID_HEADER[caller]] = request_id
    for name in (SYNTHETIC_HEADER, "retry-after"):
        if name in upstream:
            headers[name] = upstream[name]
    return headers


class ProxyServer:
    """State shared by the handlers: the policy, the engine (and its HTTP client), the recorder, the
    exchanges in flight, and the session's request counter."""

    def __init__(self, policy: Policy, recorder: Recording | None, *, keep_text: bool = False) -> None:
        self.policy, self.recorder, self.keep_text = policy, recorder, keep_text
        self.engine: Engine | None = None
        self.session: aiohttp.ClientSession | None = None
        self.stopping = False
        self.requests = 0
        self._flights: dict[asyncio.Task[None], Exchange] = {}

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/_lab/health", self._health)
        app.router.add_get("/health", self._health)  # the proxy's own: not an upstream's
        app.router.add_route("*", "/{tail:.*}", self._any)
        return app

    async def start(self) -> None:
        self.session = forward.client_session()
        self.engine = Engine(self.session, self.policy, keep_text=self.keep_text)

    async def _health(self, request: web.Request) -> web.Response:
        recorder = self.recorder
        return web.json_response({"status": "stopping" if self.stopping else "ok", "requests": self.requests,
                                  "run": recorder.run.id if recorder else None,
                                  "window": recorder.window if recorder else None})

    async def _any(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.method == "POST" and request.path in CHAT_PATHS:
                return await self._chat(CHAT_PATHS[request.path], request)
            return await self._pass(request)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # a bug of the proxy's: one line on stderr, a 502 to the caller, never a traceback
            api = wire.format_of(request.path, "anthropic-version" in request.headers)
            print(f"lab proxy: internal error on {request.method} {request.path[:100]}: "
                  f"{type(exc).__name__}: {redact(str(exc)[:200])}", file=sys.stderr, flush=True)
            return _error(api, 502, f"lab proxy: internal error ({type(exc).__name__})")

    # -- chat calls ------------------------------------------------------------------------------

    async def _chat(self, api: str, request: web.Request) -> web.StreamResponse:
        sample = self.requests
        self.requests += 1
        if self.stopping:
            return _error(api, 503, "lab proxy is stopping: send the request again once it is back")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(api, 413, f"lab proxy: the request body is over {MAX_BODY_BYTES // 2**20} MiB")
        data, ask = wire.read_request(api, body)
        try:
            route = self.policy.route_for(api, ask.model, request.headers.get(ROUTE_HEADER))
        except LookupError as exc:
            return _error(api, 400, f"lab proxy: {exc}")
        exchange = Exchange(sample, api, request.path, request.query_string, request.headers, body, data, ask,
                            route, _label(request.headers.get(TASK_HEADER)))
        assert self.engine is not None
        try:
            self.engine.prepare(exchange)
        except translate.Untranslatable as exc:
            others = sorted({t.upstream.name for t in route.targets() if t.upstream.format != api})
            message = (f"lab proxy: route {route.name!r} sends {api} requests to {', '.join(others)} "
                       f"({'anthropic' if api == OPENAI else 'openai'} API), which it translates for plain text chat "
                       f"only, and this request is not: {exc}. Send it through a route of its own API "
                       f"(header {ROUTE_HEADER}) or leave that out.")
            if self.recorder is not None:
                self.recorder.refused(exchange, message)
            return _error(api, 400, message)
        flight = asyncio.create_task(self.engine.run(exchange, self._record))
        self._flights[flight] = exchange
        flight.add_done_callback(lambda task: self._flights.pop(task, None))
        status = None
        try:
            attempt = await asyncio.shield(exchange.delivery)
            response, status = await self._relay(request, exchange, attempt)
            return response
        except asyncio.CancelledError:
            exchange.abandon("cancelled", _STOPPED if self.stopping else _LEFT)
            raise
        finally:
            exchange.relayed(status)

    def _record(self, exchange: Exchange, status: int | None) -> None:
        if self.recorder is None:
            return
        attempts = exchange.attempts
        delivered = attempts.index(exchange.delivery.result()) if exchange.delivery.done() else None
        chosen = attempts.index(exchange.chosen) if exchange.chosen in attempts else None
        self.recorder.exchange(exchange, delivered=delivered, chosen=chosen, caller_status=status)

    def _keep(self, exchange: Exchange, attempt: Attempt) -> None:
        """Write the delivered attempt's record before its answer to the caller completes."""
        if self.recorder is not None:
            self.recorder.delivered(exchange, attempt)

    async def _relay(self, request: web.Request, exchange: Exchange, attempt: Attempt
                     ) -> tuple[web.StreamResponse, int]:
        """Give the caller the delivered attempt; returns the response and the status sent. An answer sent
        whole (not streamed) is recorded before it is sent; a stream, before its end is."""
        if not exchange.ask.stream or attempt.failure is not None and not attempt.failure.relayed:
            await attempt.finished.wait()
            self._keep(exchange, attempt)
        caller, failure = exchange.api, attempt.failure
        if failure is not None and not failure.relayed:
            if attempt.error_reply is not None and attempt.status is not None:
                if attempt.translating:
                    headers = _translated_headers(attempt, caller, "application/json")
                    body = translate.error_body(attempt.status, attempt.error_reply, caller)
                else:
                    headers, body = _relay_headers(attempt.headers, decoded=attempt.decoded), attempt.error_reply
                return web.Response(status=attempt.status, body=body, headers=headers), attempt.status
            status = _STATUS.get(failure.error_type, 502)
            return _error(caller, status, f"lab proxy: {failure.message}"), status
        if not exchange.ask.stream:
            headers = (_translated_headers(attempt, caller, "application/json") if attempt.translating
                       else _relay_headers(attempt.headers, decoded=attempt.decoded))
            status = attempt.status or 200
            return web.Response(status=status, body=attempt.body, headers=headers), status
        return await self._relay_stream(request, exchange, attempt), attempt.status or 200

    async def _relay_stream(self, request: web.Request, exchange: Exchange, attempt: Attempt) -> web.StreamResponse:
        headers = (_translated_headers(attempt, exchange.api, "text/event-stream; charset=utf-8")
                   if attempt.translating else _relay_headers(attempt.headers, decoded=attempt.decoded))
        response = web.StreamResponse(status=attempt.status or 200, headers=headers)
        try:
            await response.prepare(request)
            await attempt.attach(response.write)
            await attempt.finished.wait()
            self._keep(exchange, attempt)
            failure: Failed | None = attempt.failure
            if failure is None or failure.relayed:
                await response.write_eof()
            elif failure.error_type == "cut_stream" and request.transport is not None:
                request.transport.close()  # as the upstream did: the caller's SDK sees the same cut
            else:
                status = _STATUS.get(failure.error_type, 502)
                await response.write(wire.error_event(exchange.api, status, f"lab proxy: {failure.message}"))
                await response.write_eof()
        except ConnectionError:
            exchange.abandon("cancelled", _LEFT)
        return response

    # -- everything else -------------------------------------------------------------------------

    async def _pass(self, request: web.Request) -> web.StreamResponse:
        """Forward a request that is not a chat call to its API's upstream, unchanged and unrecorded."""
        api = wire.format_of(request.path, "anthropic-version" in request.headers)
        route = self.policy.defaults[api]
        upstream = route.primary.upstream
        url = upstream.url + wire.upstream_path(api, request.path) + (
            f"?{request.query_string}" if request.query_string else "")
        headers = forward.upstream_headers(request.headers, api, route.primary, None)
        assert self.session is not None and self.engine is not None
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(api, 413, f"lab proxy: the request body is over {MAX_BODY_BYTES // 2**20} MiB")
        try:
            async with asyncio.timeout(route.timeout_s):
                async with self.session.request(request.method, url, data=body or None, headers=headers,
                                                allow_redirects=False, skip_auto_headers=forward.SKIP_AUTO,
                                                proxy=self.engine.proxies.get(upstream.name)) as up:
                    decoded = up.headers.get("content-encoding", "identity").lower() != "identity"
                    response = web.StreamResponse(status=up.status, headers=_relay_headers(up.headers))
                    if not decoded and up.content_length is not None:
                        response.content_length = up.content_length
                    await response.prepare(request)
                    async for piece in up.content.iter_any():
                        await response.write(piece)
                    await response.write_eof()
                    return response
        except TimeoutError:
            return _error(api, 504, f"lab proxy: no answer from {clean_url(upstream.url)} within "
                                    f"{route.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return _error(api, 502, f"lab proxy: {clean_url(upstream.url)}: {type(exc).__name__}")

    # -- stopping --------------------------------------------------------------------------------

    async def drain(self, grace_s: float) -> None:
        """Let the exchanges in flight end within ``grace_s``; then stop the rest (each recorded as
        cancelled, its caller told in its own API) and close the HTTP client."""
        self.stopping = True
        if self._flights:
            await asyncio.wait(list(self._flights), timeout=grace_s)
        for exchange in list(self._flights.values()):
            exchange.abandon("cancelled", _STOPPED)
        if self._flights:
            await asyncio.wait(list(self._flights), timeout=10)
        if self.session is not None:
            await self.session.close()


def window_label(run: Run, label: str | None) -> str:
    """The session's window: ``label``, or the start time (UTC, to the second), made unique in the run."""
    base = label or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    taken = {s.get("window") for s in run.manifest.get("sessions", [])} if run.exists else set()
    if label is not None and label in taken:
        raise BadInput(f"run {run.id} already has a proxy session labelled {label!r}: choose another --window")
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse an address beyond loopback unless the caller asked for it explicitly."""
    if host not in endpoints.LOOPBACK_HOSTS and not host.startswith("127.") and not allow_remote:
        raise BadInput(f"lab proxy listens on loopback only unless --host is given: {host!r} would expose "
                         "your keys and traffic to the network")


class Proxy:
    """The proxy on a background thread with its own event loop; a context manager (as
    :class:`lab.emulator.Emulator`). ``policy``: a TOML file, a :class:`Policy`, or None (each API
    to its upstream). The run is held as its only collector while the proxy runs."""

    def __init__(self, run: Run | str, *, anthropic_upstream: str = DEFAULT_URLS[ANTHROPIC],
                 openai_upstream: str = DEFAULT_URLS[OPENAI], policy: Policy | str | Path | None = None,
                 host: str = "127.0.0.1", port: int = 0, label: str | None = None, record_text: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S, grace_s: float = DEFAULT_GRACE_S,
                 allow_remote: bool = False, command: str = "lab proxy") -> None:
        check_host(host, allow_remote)
        self.run = run if isinstance(run, Run) else Run(run)
        if isinstance(policy, Policy):
            self.policy = policy
        elif policy is None:
            self.policy = default_policy(anthropic_upstream, openai_upstream, timeout_s)
        else:
            self.policy = load(policy, anthropic_url=anthropic_upstream, openai_url=openai_upstream,
                               timeout_s=timeout_s)
        self.policy.check_keys()  # before anything starts: a route whose key is unset would fail every request
        self.host, self.port, self.grace_s = host, port, grace_s
        self.label, self.record_text, self.command, self.timeout_s = label, record_text, command, timeout_s
        self.recorder: Recording | None = None
        self.server: ProxyServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url_for(self, api: str) -> str:
        """The SDK ``base_url`` for ``anthropic`` or ``openai`` (what ``ANTHROPIC_BASE_URL`` and
        ``OPENAI_BASE_URL`` are set to)."""
        return endpoints.sdk_base_url(self.base_url, api)

    def _check_loop(self) -> None:
        """An upstream that is this proxy would send every request round in circles."""
        for upstream in self.policy.upstreams.values():
            parts = urlsplit(upstream.url)
            if parts.port == self.port and (parts.hostname in endpoints.LOOPBACK_HOSTS or parts.hostname == self.host):
                raise PolicyError(f"upstream {upstream.name} ({clean_url(upstream.url)}) is this proxy: "
                                  "point it at the provider or the emulator")

    def design(self) -> dict[str, Any]:
        return {**self.policy.describe(), "timeout_s": self.timeout_s}

    async def _start(self) -> None:
        guard_logging()  # the web server's own error log prints request lines, which may carry a caller's key
        self.server = ProxyServer(self.policy, self.recorder, keep_text=self.record_text)
        await self.server.start()
        self._runner = web.AppRunner(self.server.application(), access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        assert self._runner.server is not None
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._runner.server, sock=self._socket, backlog=1024)

    async def _stop(self) -> None:
        if self._listener is not None:
            self._listener.close()  # no new connections
        if self._runner is not None and self._runner.server is not None:
            self._runner.server.pre_shutdown()  # keep-alive connections close after their request
        if self.server is not None:
            await self.server.drain(self.grace_s)
        if self._runner is not None:
            await self._runner.cleanup()

    def open(self) -> None:
        """Bind the port, check the upstreams, take the run and note the session (serving starts next)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.create_server((self.host, self.port), family=family, backlog=1024)
        try:
            self.port = self._socket.getsockname()[1]
            self._check_loop()
            window = window_label(self.run, self.label)
            self.recorder = Recording(self.run, window, self.design(),
                                     {"listen": f"{self.host}:{self.port}", "record_text": self.record_text},
                                     command=self.command).open()
        except BaseException:
            self._socket.close()
            raise

    def start(self) -> Proxy:
        if self._thread is not None:
            return self
        self.open()
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001  (raised again in start())
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._loop, self._thread = loop, threading.Thread(target=run, name="lab-proxy", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            self._socket.close()  # type: ignore[union-attr]
            self.recorder.close()  # type: ignore[union-attr]
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop as on SIGTERM: answers in flight get ``grace_s`` to finish; records are written."""
        if self._thread is None or self._loop is None:
            return
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=self.grace_s + 30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if self.recorder is not None:
                self.recorder.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(run: Run | str, **options: Any) -> int:
    """Run the proxy until SIGTERM or Ctrl-C (options as :class:`Proxy`); prints one line when ready and
    one when stopped. Returns the number of requests handled."""
    proxy = Proxy(run, **options)
    proxy.open()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    try:
        with short_thread_switches():  # the record writer's thread never holds up a chunk
            loop.run_until_complete(proxy._start())
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            assert proxy.recorder is not None
            print(f"lab proxy serving {proxy.base_url} into run {proxy.run.id} (window {proxy.recorder.window}); "
                  f"point your application at it: ANTHROPIC_BASE_URL={proxy.url_for(ANTHROPIC)} "
                  f"OPENAI_BASE_URL={proxy.url_for(OPENAI)}", flush=True)
            with frozen_heap():  # what the server holds once started is left out of full collections
                loop.run_until_complete(stop.wait())
            print(f"lab proxy stopping: in-flight answers have {proxy.grace_s:g} s to finish", flush=True)
            loop.run_until_complete(proxy._stop())
    finally:
        loop.close()
        if proxy.recorder is not None:
            proxy.recorder.close()
    recorder = proxy.recorder
    handled = proxy.server.requests if proxy.server else 0
    print(f"lab proxy stopped: {handled} requests, {recorder.records if recorder else 0} records in run "
          f"{proxy.run.id} (see `lab runs check --run {proxy.run.id}`)", flush=True)
    return handled
