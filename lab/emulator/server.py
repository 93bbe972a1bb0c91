"""The emulator's aiohttp server: handlers, per-request plans, the request log, and runners.

Each chat request becomes a :class:`Plan` (what bytes to send, at which offset from the moment
it was received) built from its latency draw, fault and answer; the writer then sleeps until
each offset, so delays never accumulate scheduling error. The event loop waits on its epoll fd
with ``select()``, which takes microsecond timeouts, because ``epoll_wait`` rounds them up to
whole milliseconds (a sub-millisecond overhead budget would not survive that).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import select
import selectors
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Literal

from aiohttp import web

from lab.emulator.content import ChatRequest, Responder, default_responder, estimate_tokens, split_tokens
from lab.emulator.faults import ERROR_KINDS, FAULT_HEADER, Fault, FaultRule, parse_fault_header, select_fault
from lab.emulator.profiles import Draw, LatencyProfile, ProfileSet, profile_set, request_rng
from lab.emulator.wire import ERROR_MESSAGES, WIRES, Reply, Wire, WireError

KEY_HEADER = "x-emulator-key"
KeyBy = Literal["arrival", "prompt"]
_FD_SETSIZE = 1024
_WAKE_MARGIN_S = 0.0003
_SWITCH_INTERVAL_S = 0.0005
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_JSON_HEADERS = {"content-type": "application/json"}


@dataclass
class RequestLogEntry:
    """What the server saw and did for one chat request. Holds no header values: ``auth_present``
    only says whether an ``x-api-key`` or ``authorization`` header came with it.

    ``outcome`` is ``ok``, ``error`` (error status or mid-stream error event), ``cut`` (closed
    mid-body on purpose) or ``disconnected`` (the client left first). Times: ``received_at``
    epoch seconds, ``elapsed_s`` since the emulator started; ``server_time_ms`` runs from the
    handler's start to the last byte written, ``overhead_ms`` is its excess over the plan."""

    request_id: str
    api: str
    path: str
    received_at: float
    elapsed_s: float
    retry_count: int | None
    auth_present: bool
    model: str | None = None
    stream: bool = False
    key: str | None = None
    fault: str | None = None
    http_status: int | None = None
    outcome: str = "ok"
    planned_delay_ms: float = 0.0
    server_time_ms: float = 0.0
    overhead_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


class RequestLog:
    """Thread-safe list of :class:`RequestLogEntry`, appended when a request finishes."""

    def __init__(self) -> None:
        self._entries: list[RequestLogEntry] = []
        self._changed = threading.Condition()

    def append(self, entry: RequestLogEntry) -> None:
        with self._changed:
            self._entries.append(entry)
            self._changed.notify_all()

    def snapshot(self) -> list[RequestLogEntry]:
        with self._changed:
            return list(self._entries)

    def clear(self) -> None:
        with self._changed:
            self._entries.clear()

    def wait_for(self, count: int, timeout: float) -> list[RequestLogEntry]:
        """Wait until at least ``count`` entries exist (or ``timeout`` passes); return them all."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._entries) >= count, timeout)
            return list(self._entries)


@dataclass
class Plan:
    """Bytes to send at offsets (seconds after receipt); headers go out with the first event.
    ``abort``: close the connection after the last event instead of finishing the body."""

    status: int
    headers: dict[str, str]
    events: list[tuple[float, bytes]]
    content_length: int | None = None
    abort: bool = False
    outcome: str = "ok"
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def delay_ms(self) -> float:
        return self.events[-1][0] * 1000


def error_plan(wire: Wire, kind: str, message: str, request_id: str, retry_after: float | None = None) -> Plan:
    """An immediate HTTP error response."""
    headers = {wire.request_id_header: request_id, **_JSON_HEADERS}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = wire.error(kind, message, request_id)
    return Plan(wire.statuses[kind], headers, [(0.0, body)], len(body), outcome="error")


def build_plan(
    wire: Wire, chat: ChatRequest, draw: Draw, fault: Fault | None, responder: Responder, token: str
) -> Plan:
    """Turn one request's draw, fault and answer into a :class:`Plan` (pure; no I/O)."""
    kind, params = (fault.kind, fault.params) if fault else (None, {})
    request_id = wire.request_id(token)
    if kind in ERROR_KINDS and not (chat.stream and "after" in params):
        return error_plan(wire, kind, ERROR_MESSAGES[kind], request_id, params.get("retry_after"))

    tokens = split_tokens(responder(chat))
    truncated = chat.max_tokens is not None and len(tokens) >= chat.max_tokens
    tokens = tokens[: chat.max_tokens]
    if kind == "malformed_json" and chat.structured:
        tokens = tokens[: max(1, len(tokens) // 2)]
    input_tokens = estimate_tokens(chat.prompt)
    reply = Reply(token, chat.model, "".join(tokens), input_tokens, len(tokens), truncated, int(time.time()))

    wait = params["ms"] / 1000 if kind == "timeout" else 0.0
    first = wait + (draw.ttft_ms + draw.stall_ms + (params["ms"] if kind == "stall_first_token" else 0.0)) / 1000
    itl = draw.itl_ms * (params["factor"] if kind == "slow_stream" else 1.0) / 1000
    end = first + len(tokens) * itl
    plan = Plan(200, {wire.request_id_header: request_id}, [], input_tokens=input_tokens, output_tokens=len(tokens))

    if not chat.stream:
        body = wire.completion(reply)
        if kind == "malformed_json" and not chat.structured:
            body = body[: len(body) // 2]
        plan.headers.update(_JSON_HEADERS)
        plan.content_length = len(body)
        if kind == "cut_stream":
            body, plan.abort, plan.outcome = body[: len(body) // 2], True, "cut"
        plan.events = [(end, body)]
        return plan

    deltas = wire.stream_deltas(reply, tokens)
    if kind == "malformed_json" and not chat.structured:
        deltas[0] = deltas[0][:-3] + b"\n\n"  # drop the closing brace of the first event's JSON
    plan.headers.update(_SSE_HEADERS)
    plan.events = [(wait, wire.stream_start(reply)), *((first + i * itl, d) for i, d in enumerate(deltas))]
    if kind == "cut_stream":
        del plan.events[1 + int(params.get("after", len(deltas) // 2)) :]
        plan.abort, plan.outcome = True, "cut"
    elif kind in ERROR_KINDS:
        after = min(int(params["after"]), len(deltas))
        del plan.events[1 + after :]
        plan.events.append((first + after * itl, wire.stream_error(kind, ERROR_MESSAGES[kind], request_id)))
        plan.outcome = "error"
    else:
        plan.events.append((end, wire.stream_stop(reply, chat)))
    return plan


async def _sleep_until(deadline: float) -> None:
    """Sleep to just before ``deadline`` (wake-ups run late by about 0.15 ms), then yield until it."""
    remaining = deadline - time.perf_counter() - _WAKE_MARGIN_S
    if remaining > 0:
        await asyncio.sleep(remaining)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0)


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


async def _send(request: web.Request, plan: Plan, t0: float) -> tuple[web.StreamResponse, str]:
    """Write ``plan`` on schedule; returns the response and the outcome."""
    events = plan.events
    single = len(events) == 1 and not plan.abort
    response: web.StreamResponse
    if single:
        # A plain Response buffers its headers until the body goes: prepare it now, send both at the deadline.
        response = web.Response(status=plan.status, headers=plan.headers, body=events[0][1])
        await response.prepare(request)
    else:
        response = web.StreamResponse(status=plan.status, headers=plan.headers)
        response.content_length = plan.content_length
    try:
        await _sleep_until(t0 + events[0][0])
        if single:
            await response.write_eof()
        else:
            await response.prepare(request)
            await _write_events(response, events, t0, finish=not plan.abort)
            if plan.abort and request.transport is not None:
                request.transport.close()
    except ConnectionError:
        return response, "disconnected"
    return response, plan.outcome


async def _write_events(
    response: web.StreamResponse, events: list[tuple[float, bytes]], t0: float, finish: bool
) -> None:
    """Write each event at its offset, coalescing events already due; the last write ends the body if ``finish``."""
    i = 0
    while i < len(events):
        await _sleep_until(t0 + events[i][0])
        due = time.perf_counter() - t0
        j = i + 1
        while j < len(events) and events[j][0] <= due:
            j += 1
        data = b"".join(chunk for _, chunk in events[i:j])
        i = j
        if finish and i == len(events):
            await response.write_eof(data)
        else:
            await response.write(data)


async def _mark_synthetic(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["x-lab-synthetic"] = "true"


class EmulatorServer:
    """State shared by the handlers: profiles, fault rules, seed, responder, arrival counters, log."""

    def __init__(
        self,
        profiles: ProfileSet,
        *,
        seed: int = 0,
        faults: Sequence[FaultRule] = (),
        responder: Responder = default_responder,
        key_by: KeyBy = "arrival",
    ) -> None:
        if key_by not in ("arrival", "prompt"):
            raise ValueError(f"key_by must be 'arrival' or 'prompt', not {key_by!r}")
        self.profiles = profiles
        self.seed = seed
        self.key_by = key_by
        self.faults = tuple(faults)
        self.responder = responder
        self.log = RequestLog()
        self.started = time.perf_counter()
        self._arrivals: Counter[str] = Counter()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", partial(self._chat, WIRES["anthropic"]))
        app.router.add_post("/v1/chat/completions", partial(self._chat, WIRES["openai"]))
        app.router.add_get("/_emulator/requests", self._requests)
        app.router.add_delete("/_emulator/requests", self._clear_requests)
        app.router.add_get("/_emulator/health", self._health)
        app.on_response_prepare.append(_mark_synthetic)
        return app

    async def _requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(entry) for entry in self.log.snapshot()])

    async def _clear_requests(self, request: web.Request) -> web.Response:
        self.log.clear()
        return web.json_response({"cleared": True})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _chat(self, wire: Wire, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        token = uuid.uuid4().hex[:24]
        retry = request.headers.get("x-stainless-retry-count", "")
        entry = RequestLogEntry(
            request_id=wire.request_id(token),
            api=wire.api,
            path=request.path,
            received_at=time.time(),
            elapsed_s=t0 - self.started,
            retry_count=int(retry) if retry.isdigit() else None,
            auth_present="x-api-key" in request.headers or "authorization" in request.headers,
        )
        try:
            plan = await self._plan(wire, request, entry, token)
            entry.http_status, entry.planned_delay_ms = plan.status, plan.delay_ms
            entry.input_tokens, entry.output_tokens = plan.input_tokens, plan.output_tokens
            response, entry.outcome = await _send(request, plan, t0)
            return response
        except asyncio.CancelledError:
            entry.outcome = "disconnected"
            raise
        except Exception:
            entry.outcome, entry.http_status = "error", 500
            raise
        finally:
            entry.server_time_ms = (time.perf_counter() - t0) * 1000
            entry.overhead_ms = entry.server_time_ms - entry.planned_delay_ms
            self.log.append(entry)

    async def _plan(self, wire: Wire, request: web.Request, entry: RequestLogEntry, token: str) -> Plan:
        try:
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise WireError("invalid_request", "the request body is not valid JSON") from None
            chat = wire.parse(body)
            entry.model, entry.stream = chat.model, chat.stream
            try:
                profile = self.profiles.for_model(chat.model)
            except LookupError:
                raise WireError("not_found", f"model: {chat.model}") from None
            forced = request.headers.get(FAULT_HEADER)
            try:
                fault = parse_fault_header(forced) if forced else None
            except ValueError as exc:
                raise WireError("invalid_request", f"{FAULT_HEADER}: {exc}") from None
        except WireError as exc:
            return error_plan(wire, exc.kind, exc.message, entry.request_id)

        key = request.headers.get(KEY_HEADER)
        if key is None and self.key_by == "prompt":
            key = chat.prompt
        if key is None:
            key = str(self._arrivals[chat.model])
            self._arrivals[chat.model] += 1
        rng = request_rng(self.seed, chat.model, key)
        draw = profile.draw(rng, chat.max_tokens)
        fault = fault or select_fault(self.faults, model=chat.model, elapsed_s=entry.elapsed_s, rng=rng)
        entry.key, entry.fault = key, fault.kind if fault else None
        chat = replace(chat, output_tokens=draw.output_tokens, variant=rng.getrandbits(32))
        return build_plan(wire, chat, draw, fault, self.responder, token)


class _GilSwitchInterval:
    """Shortens the interpreter's thread switch interval (default 5 ms) while any in-process emulator
    runs, so a busy client thread cannot hold the GIL for milliseconds past a response deadline."""

    _lock = threading.Lock()
    _users = 0
    _saved = 0.0

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            if cls._users == 0:
                cls._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(cls._saved, _SWITCH_INTERVAL_S))
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0:
                sys.setswitchinterval(cls._saved)


async def _start_runner(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


class Emulator:
    """The emulator on a background thread with its own event loop; a context manager.

    While running it lowers the process-wide GIL switch interval to 0.5 ms (restored on stop),
    so the server thread meets its deadlines even when the client thread is busy.

    ``profile``: ``report`` (haiku/sonnet fitted profiles by model id), a profile name (``fixed``,
    ``instant``, ``haiku``, ``sonnet``) or :class:`LatencyProfile` for every model, or a mapping
    {model substring or ``"*"``: profile}. ``port=0`` picks a free port.

    ``key_by`` chooses each request's RNG key when it has no ``x-emulator-key`` header:
    ``arrival`` (the per-model arrival counter) or ``prompt`` (its text, so the same request draws
    the same latency and faults whatever else was sent before it). Fault rules' time windows count
    from :meth:`start`, or from the last :meth:`restart_clock`."""

    def __init__(
        self,
        profile: str | LatencyProfile | Mapping[str, LatencyProfile] = "fixed",
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Sequence[FaultRule] | None = None,
        responder: Responder = default_responder,
        key_by: KeyBy = "arrival",
    ) -> None:
        self.host = host
        self.port = port
        self.server = EmulatorServer(profile_set(profile), seed=seed, faults=faults or (), responder=responder,
                                     key_by=key_by)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, api: str) -> str:
        """The SDK ``base_url`` for ``anthropic``, ``openai`` or ``openai-compatible``."""
        if api == "anthropic":
            return self.base_url
        if api in ("openai", "openai-compatible"):
            return f"{self.base_url}/v1"
        raise ValueError(f"unknown api {api!r}")

    @property
    def requests(self) -> list[RequestLogEntry]:
        """A copy of the request log."""
        return self.server.log.snapshot()

    def reset_log(self) -> None:
        self.server.log.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RequestLogEntry]:
        """The log once it holds ``count`` entries (a request is logged when the server is done with it)."""
        return self.server.log.wait_for(count, timeout)

    def restart_clock(self, at: float | None = None) -> None:
        """Count fault windows from ``at`` (a ``time.perf_counter()`` value; default: now)."""
        self.server.started = time.perf_counter() if at is None else at

    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        loop = new_event_loop()
        ready: concurrent.futures.Future[web.AppRunner] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                runner = loop.run_until_complete(_start_runner(self.server.application(), self.host, self.port))
                ready.set_result(runner)
            except Exception as exc:
                ready.set_exception(exc)
            else:
                loop.run_forever()
                leftovers = asyncio.all_tasks(loop)
                for task in leftovers:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.close()

        thread = threading.Thread(target=run, name="lab-emulator", daemon=True)
        thread.start()
        self._runner = ready.result()
        self._loop, self._thread = loop, thread
        self.port = self._runner.addresses[0][1]
        self.server.started = time.perf_counter()
        _GilSwitchInterval.acquire()
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._runner is None:
            return
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        _GilSwitchInterval.release()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    port: int = 8765,
    profile: str = "report",
    seed: int = 0,
    host: str = "127.0.0.1",
    faults: Sequence[FaultRule] | None = None,
) -> None:
    """Run the emulator until interrupted, printing one line with its base URL once ready."""
    with Emulator(profile, seed=seed, host=host, port=port, faults=faults) as emulator:
        print(f"lab emulator serving {emulator.base_url} (profile {profile}, seed {seed})", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
