"""The emulator's aiohttp server: handlers, per-request plans, the request log, and runners.

Each chat request becomes a :class:`Plan` (what bytes to send, at which offset from the moment
it was received) built from its latency draw, fault and answer; the writer then sleeps until
each offset, so delays never accumulate scheduling error. Its event loop has microsecond timers
(:mod:`lab.core.timing`): ``epoll_wait`` rounds timeouts up to whole milliseconds, and a
sub-millisecond overhead budget would not survive that.

Misuse never reaches a traceback: a malformed request, an unknown path, a wrong method, an
oversized or too slowly sent body, even an unparsable HTTP message, is answered with a 4xx in the
error format of the API the path belongs to (:func:`~lab.emulator.wire.wire_for_path`). Each
connection is a :class:`_Connection`: aiohttp's, plus a deadline for a request's headers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web

from lab.core import endpoints, jsontext
from lab.core.replies import SYNTHETIC_HEADER
from lab.core.timing import (
    frozen_heap,
    hold_short_thread_switches,
    new_event_loop,
    release_short_thread_switches,
    sleep_until,
)
from lab.emulator.content import (
    ChatRequest,
    Responder,
    UnsupportedSchema,
    default_responder,
    estimate_tokens,
    split_tokens,
    synthetic_thinking,
)
from lab.emulator.faults import ERROR_KINDS, FAULT_HEADER, Fault, FaultRule, parse_fault_header, select_fault
from lab.emulator.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from lab.emulator.metrics import Metrics
from lab.emulator.profiles import MAX_TOKENS_PARAMETER, Draw, LatencyProfile, ProfileSet, profile_set, request_rng
from lab.emulator.wire import ERROR_MESSAGES, WIRES, Answer, Wire, WireError, wire_for_path

KEY_HEADER = "x-emulator-key"
THINKING_HEADER = "x-emulator-thinking"
REQUESTED_THINKING_CAP = 16
"""Thinking tokens an Anthropic request's ``thinking`` budget gets at most (when nothing else sets them)."""
KEEPALIVE_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 32 * 1024 * 1024
"""Defaults: idle keep-alive connections close after 15 s; a request has 10 s to send its headers
(from its first byte) and 10 s more for its body; bodies over 32 MiB (Anthropic's limit) get 413."""
DEFAULT_MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6", "gpt-5-mini", "gpt-5")
"""Listed by ``GET /v1/models`` when the profile set serves them, before the model ids seen so far."""
MAX_LISTED_MODELS = 1000
KeyBy = Literal["arrival", "prompt"]
_BACKLOG = 1024
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_JSON_HEADERS = {"content-type": "application/json"}
_log = logging.getLogger(__name__)


@dataclass
class RequestLogEntry:
    """What the server saw and did for one chat request. Holds no header values: ``auth_present``
    only says whether an ``x-api-key`` or ``authorization`` header came with it.

    ``outcome`` is ``ok``, ``error`` (error status or mid-stream error event), ``cut`` (closed
    mid-body on purpose) or ``disconnected`` (the client left first). Times: ``received_at``
    epoch seconds, ``elapsed_s`` since the emulator started; ``server_time_ms`` runs from the
    handler's start to the last byte written, ``overhead_ms`` is its excess over the plan.

    The configured truth, for comparing a client's measurements with: ``planned_ttft_ms`` (first
    content byte, thinking or text; for a non-streamed reply, the body), ``planned_first_text_ms``
    (first text byte), ``planned_itl_ms`` (time between tokens), ``planned_end_ms`` (last byte;
    the same as ``planned_delay_ms``), all offsets from receipt, None when never sent; and
    ``thinking_tokens`` (included in ``output_tokens``)."""

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
    thinking_tokens: int = 0
    planned_ttft_ms: float | None = None
    planned_first_text_ms: float | None = None
    planned_itl_ms: float | None = None
    planned_end_ms: float | None = None


class RequestLog:
    """Thread-safe list of :class:`RequestLogEntry`, appended when a request finishes, and the count of
    requests begun and not yet finished."""

    def __init__(self) -> None:
        self._entries: list[RequestLogEntry] = []
        self._in_flight = 0
        self._changed = threading.Condition()

    def begin(self) -> None:
        with self._changed:
            self._in_flight += 1
            self._changed.notify_all()

    def append(self, entry: RequestLogEntry) -> None:
        """A request finished (begun with :meth:`begin`)."""
        with self._changed:
            self._entries.append(entry)
            self._in_flight -= 1
            self._changed.notify_all()

    def wait_in_flight(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` requests are being answered (or ``timeout`` passes)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight >= count, timeout)

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
    ``abort``: close the connection after the last event instead of finishing the body.
    ``ttft_s``/``first_text_s``: offsets of the first content and first text byte (None: not sent)."""

    status: int
    headers: dict[str, str]
    events: list[tuple[float, bytes]]
    content_length: int | None = None
    abort: bool = False
    outcome: str = "ok"
    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    ttft_s: float | None = None
    first_text_s: float | None = None
    itl_s: float | None = None

    @property
    def delay_ms(self) -> float:
        return self.events[-1][0] * 1000


def error_plan(
    wire: Wire, kind: str, message: str, request_id: str, retry_after: float | None = None, close: bool = False
) -> Plan:
    """An immediate HTTP error response; ``close``: then close the connection."""
    headers = {wire.request_id_header: request_id, **_JSON_HEADERS}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = wire.error(kind, message, request_id)
    return Plan(wire.statuses[kind], headers, [(0.0, body)], len(body), abort=close, outcome="error")


def build_plan(
    wire: Wire, chat: ChatRequest, draw: Draw, fault: Fault | None, responder: Responder, token: str
) -> Plan:
    """Turn one request's draw, fault and answer into a :class:`Plan` (pure; no I/O). Thinking
    tokens, then text tokens, one every inter-token time from the TTFT on. Raises
    :class:`~lab.emulator.content.UnsupportedSchema` when the requested schema cannot be met."""
    kind, params = (fault.kind, fault.params) if fault else (None, {})
    request_id = wire.request_id(token)
    if kind in ERROR_KINDS and not (chat.stream and "after" in params):
        return error_plan(wire, kind, ERROR_MESSAGES[kind], request_id, params.get("retry_after"))

    text_cap = None if chat.max_tokens is None else chat.max_tokens - draw.thinking_tokens
    tokens = split_tokens(responder(chat))
    truncated = text_cap is not None and len(tokens) >= text_cap
    tokens = tokens[:text_cap]
    if kind == "malformed_json" and chat.structured:
        tokens = tokens[: max(1, len(tokens) // 2)]
    thinking = split_tokens(synthetic_thinking(draw.thinking_tokens, chat.variant))
    input_tokens = estimate_tokens(chat.prompt)
    reply = Answer(token, chat.model, "".join(tokens), input_tokens, len(thinking) + len(tokens), truncated,
                  int(time.time()), "".join(thinking), len(thinking))

    wait = params["ms"] / 1000 if kind == "timeout" else 0.0
    first = wait + (draw.ttft_ms + draw.stall_ms + (params["ms"] if kind == "stall_first_token" else 0.0)) / 1000
    itl = draw.itl_ms * (params["factor"] if kind == "slow_stream" else 1.0) / 1000
    end = first + reply.output_tokens * itl
    plan = Plan(200, {wire.request_id_header: request_id}, [], input_tokens=input_tokens,
                output_tokens=reply.output_tokens, thinking_tokens=len(thinking), itl_s=itl)

    if not chat.stream:
        body = wire.completion(reply)
        if kind == "malformed_json" and not chat.structured:
            body = body[: len(body) // 2]
        plan.headers.update(_JSON_HEADERS)
        plan.content_length = len(body)
        if kind == "cut_stream":
            body, plan.abort, plan.outcome = body[: len(body) // 2], True, "cut"
        plan.events = [(end, body)]
        plan.ttft_s = plan.first_text_s = end
        return plan

    deltas = wire.thinking_deltas(reply, thinking) + wire.stream_deltas(reply, tokens)
    stop = wire.stream_stop(reply, chat)
    if thinking and tokens:
        deltas[len(thinking)] = wire.thinking_end(reply) + deltas[len(thinking)]
    elif thinking:
        stop = wire.thinking_end(reply) + stop
    if kind == "malformed_json" and not chat.structured and deltas:
        deltas[0] = deltas[0][:-3] + b"\n\n"  # drop the closing brace of the first event's JSON
    plan.headers.update(_SSE_HEADERS)
    plan.events = [(wait, wire.stream_start(reply)), *((first + i * itl, d) for i, d in enumerate(deltas))]
    sent = len(deltas)
    if kind == "cut_stream":
        sent = min(int(params.get("after", len(deltas) // 2)), len(deltas))
        del plan.events[1 + sent :]
        plan.abort, plan.outcome = True, "cut"
    elif kind in ERROR_KINDS:
        sent = min(int(params["after"]), len(deltas))
        del plan.events[1 + sent :]
        plan.events.append((first + sent * itl, wire.stream_error(kind, ERROR_MESSAGES[kind], request_id)))
        plan.outcome = "error"
    else:
        plan.events.append((end, stop))
    plan.ttft_s = first if sent else None
    plan.first_text_s = first + len(thinking) * itl if sent > len(thinking) else None
    return plan


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
        await sleep_until(t0 + events[0][0])
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
        await sleep_until(t0 + events[i][0])
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
    response.headers[SYNTHETIC_HEADER] = "true"


class EmulatorServer:
    """State shared by the handlers: profiles, fault rules, seed, responder, limits, arrival
    counters, models seen, metrics and the request log."""

    def __init__(
        self,
        profiles: ProfileSet,
        *,
        seed: int = 0,
        faults: Sequence[FaultRule] = (),
        responder: Responder = default_responder,
        key_by: KeyBy = "arrival",
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if key_by not in ("arrival", "prompt"):
            raise ValueError(f"key_by must be 'arrival' or 'prompt', not {key_by!r}")
        for name, value in (("keepalive_timeout_s", keepalive_timeout_s), ("request_timeout_s", request_timeout_s),
                            ("max_body_bytes", max_body_bytes)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive finite number, not {value!r}")
        self.profiles = profiles
        self.seed = seed
        self.key_by = key_by
        self.faults = tuple(faults)
        self.responder = responder
        self.keepalive_timeout_s = float(keepalive_timeout_s)
        self.request_timeout_s = float(request_timeout_s)
        self.max_body_bytes = int(max_body_bytes)
        self.log = RequestLog()
        self.metrics = Metrics()
        self.started = time.perf_counter()
        self.created = int(time.time())
        self._arrivals: Counter[str] = Counter()
        self._seen_models: dict[str, None] = {}

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._api_errors])
        app.router.add_post("/v1/messages", partial(self._chat, WIRES["anthropic"]))
        app.router.add_post("/v1/chat/completions", partial(self._chat, WIRES["openai"]))
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model:.+}", self._model)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/_emulator/requests", self._requests)
        app.router.add_delete("/_emulator/requests", self._clear_requests)
        app.router.add_get("/_emulator/health", self._health)
        app.on_response_prepare.append(_mark_synthetic)
        return app

    @web.middleware
    async def _api_errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Answer routing errors (404, 405) and anything unexpected in the API's own error format."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = _ERROR_KINDS_BY_STATUS.get(exc.status, "invalid_request")
            message = _http_error_message(request.method, request.path, exc)
            response = _error_response(wire_for_path(request.path), exc.status, kind, message)
            if isinstance(exc, web.HTTPMethodNotAllowed):
                response.headers["allow"] = ", ".join(sorted(exc.allowed_methods))
            self.metrics.requests[wire_for_path(request.path).api, exc.status] += 1
            return response
        except Exception as exc:  # a bug in the emulator: one line, the traceback only at debug level
            _log.error("emulator bug answering %s %s: %s: %s", request.method, request.path[:200],
                       type(exc).__name__, exc)
            _log.debug("traceback", exc_info=True)
            return _error_response(wire_for_path(request.path), 500, "server_error", "internal error in the emulator")

    async def _requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(entry) for entry in self.log.snapshot()])

    async def _clear_requests(self, request: web.Request) -> web.Response:
        self.log.clear()
        return web.json_response({"cleared": True})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render().encode(), headers={"content-type": METRICS_CONTENT_TYPE})

    def _models_wire(self, request: web.Request) -> Wire:
        """The Anthropic listing for a request with ``anthropic-version`` (the Anthropic SDK's), else OpenAI's."""
        return WIRES["anthropic" if "anthropic-version" in request.headers else "openai"]

    def served_models(self) -> list[str]:
        """The model ids ``GET /v1/models`` lists: the defaults the profile set serves, then those seen."""
        listed = dict.fromkeys(m for m in DEFAULT_MODELS if self._serves(m))
        listed.update(self._seen_models)
        return list(listed)

    def _serves(self, model: str) -> bool:
        try:
            self.profiles.for_model(model)
        except LookupError:
            return False
        return True

    async def _models(self, request: web.Request) -> web.Response:
        return web.Response(body=self._models_wire(request).models(self.served_models(), self.created),
                            headers=_JSON_HEADERS)

    async def _model(self, request: web.Request) -> web.Response:
        model, wire = request.match_info["model"], self._models_wire(request)
        if not self._serves(model):
            return _error_response(wire, 404, "not_found", f"model: {model[:200]}")
        return web.Response(body=wire.model(model, self.created), headers=_JSON_HEADERS)

    async def _chat(self, wire: Wire, request: web.Request) -> web.StreamResponse:
        t0 = time.perf_counter()
        token = uuid.uuid4().hex[:24]
        entry = RequestLogEntry(
            request_id=wire.request_id(token),
            api=wire.api,
            path=request.path,
            received_at=time.time(),
            elapsed_s=t0 - self.started,
            retry_count=_retry_count(request.headers.get("x-stainless-retry-count")),
            auth_present="x-api-key" in request.headers or "authorization" in request.headers,
        )
        self.metrics.in_flight += 1
        self.log.begin()
        try:
            plan = await self._plan(wire, request, entry, token)
            entry.http_status, entry.planned_delay_ms = plan.status, plan.delay_ms
            entry.input_tokens, entry.output_tokens = plan.input_tokens, plan.output_tokens
            entry.thinking_tokens, entry.planned_end_ms = plan.thinking_tokens, plan.delay_ms
            entry.planned_ttft_ms, entry.planned_first_text_ms, entry.planned_itl_ms = (
                None if value is None else value * 1000 for value in (plan.ttft_s, plan.first_text_s, plan.itl_s)
            )
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
            self.metrics.in_flight -= 1
            self.metrics.requests[wire.api, entry.http_status or 500] += 1
            if entry.outcome == "ok" and entry.http_status == 200:
                self.metrics.output_tokens += entry.output_tokens

    async def _read_json(self, request: web.Request) -> Any:
        """The body as JSON; raises :class:`WireError` when too large, too slow or not JSON."""
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise WireError("too_large", f"the request body is over the emulator's limit of {limit:,} bytes")
        try:
            async with asyncio.timeout(self.request_timeout_s):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise WireError("too_large", f"the request body is over the emulator's limit of {limit:,} bytes") from None
        except TimeoutError:
            message = f"the request body did not arrive within {self.request_timeout_s:g} s"
            raise WireError("request_timeout", message) from None
        except web.RequestPayloadError as exc:  # e.g. a Content-Encoding the body does not match
            reason = str(exc).splitlines()[-1].strip()
            raise WireError("invalid_request", f"the request body cannot be read ({reason})") from None
        try:
            return jsontext.loads(raw)
        except (ValueError, RecursionError):
            raise WireError("invalid_request", "the request body is not valid JSON (or nests too deeply)") from None

    async def _plan(self, wire: Wire, request: web.Request, entry: RequestLogEntry, token: str) -> Plan:
        try:
            chat = wire.parse(await self._read_json(request))
            entry.model, entry.stream = chat.model, chat.stream
            try:
                profile = self.profiles.for_model(chat.model)
            except LookupError:
                raise WireError("not_found", f"model: {chat.model[:200]}") from None
            forced = request.headers.get(FAULT_HEADER)
            try:
                fault = parse_fault_header(forced) if forced else None
            except ValueError as exc:
                raise WireError("invalid_request", f"{FAULT_HEADER}: {exc}") from None
            thinking = _thinking_tokens(request.headers.get(THINKING_HEADER), profile, chat)
        except WireError as exc:
            closing = exc.kind in ("too_large", "request_timeout")  # the rest of the body may still be coming
            return error_plan(wire, exc.kind, exc.message, entry.request_id, close=closing)

        if len(self._seen_models) < MAX_LISTED_MODELS:
            self._seen_models[chat.model] = None
        key = request.headers.get(KEY_HEADER)
        if key is None and self.key_by == "prompt":
            key = chat.prompt
        if key is None:
            key = str(self._arrivals[chat.model])
            self._arrivals[chat.model] += 1
        rng = request_rng(self.seed, chat.model, key)
        draw = profile.draw(rng, chat.max_tokens, thinking)
        fault = fault or select_fault(self.faults, model=chat.model, elapsed_s=entry.elapsed_s, rng=rng)
        entry.key, entry.fault = key, fault.kind if fault else None
        chat = replace(chat, output_tokens=draw.output_tokens, variant=rng.getrandbits(32))
        try:
            return build_plan(wire, chat, draw, fault, self.responder, token)
        except UnsupportedSchema as exc:
            return error_plan(wire, "invalid_request", f"output schema: {exc}", entry.request_id)


_ERROR_KINDS_BY_STATUS = {404: "no_route", 405: "method_not_allowed", 408: "request_timeout", 413: "too_large"}


def _http_error_message(method: str, path: str, exc: web.HTTPException) -> str:
    where = f"{method} {path if len(path) <= 200 else path[:197] + '...'}"
    if isinstance(exc, web.HTTPNotFound):
        return f"no such endpoint: {where}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"method not allowed: {where} (allowed: {', '.join(sorted(exc.allowed_methods))})"
    return f"{exc.status} {exc.reason}: {where}"


def _error_response(wire: Wire, status: int, kind: str, message: str) -> web.Response:
    request_id = wire.request_id(uuid.uuid4().hex[:24])
    headers = {wire.request_id_header: request_id, **_JSON_HEADERS}
    return web.Response(status=status, body=wire.error(kind, message, request_id), headers=headers)


def _retry_count(header: str | None) -> int | None:
    """The SDK's ``x-stainless-retry-count`` as an int (None when absent or not a small number)."""
    if header is None or len(header) > 9:
        return None
    try:
        return int(header)
    except ValueError:
        return None


def _thinking_tokens(header: str | None, profile: LatencyProfile, chat: ChatRequest) -> int | None:
    """This request's thinking tokens: the ``x-emulator-thinking`` header, else the profile's (None),
    else ``min(budget, 16)`` when an Anthropic request asks for thinking; raises :class:`WireError`."""
    if header is not None:
        value = header.strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) > MAX_TOKENS_PARAMETER:
            raise WireError("invalid_request", f"{THINKING_HEADER}: expected a whole number from 0 to "
                                               f"{MAX_TOKENS_PARAMETER:,}, not {header[:40]!r}")
        return int(value)
    if profile.thinking_tokens or chat.thinking_budget is None:
        return None
    return min(chat.thinking_budget, REQUESTED_THINKING_CAP)


class _Connection(web.RequestHandler):
    """aiohttp's handler for one connection, plus a deadline for each request's headers: a request
    whose headers are not all in ``header_timeout`` seconds after its first byte arrived is dropped
    (the connection closes). Idle connections close after aiohttp's ``keepalive_timeout``. Protocol
    errors (an unparsable request line or header) are answered as JSON, and not logged (a malformed
    header line could hold a key)."""

    __slots__ = ("_header_timeout", "_header_timer")

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def _waiting_for_headers(self) -> bool:
        return self._waiter is not None and not self._waiter.done() and not self._messages

    def data_received(self, data: bytes) -> None:
        starting = self._header_timer is None and self._waiting_for_headers()
        super().data_received(data)
        if not self._waiting_for_headers():
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
        elif starting:
            self._header_timer = self._loop.call_later(self._header_timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers():
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; cannot send an error")
        if status >= 500:
            _log.error("emulator bug: %s", type(exc).__name__ if exc else "error")
        kind = _ERROR_KINDS_BY_STATUS.get(status, "invalid_request" if status < 500 else "server_error")
        reason = HTTPStatus(status).phrase.lower() if status in iter(HTTPStatus) else "error"
        text = f"malformed HTTP request ({reason})" if status < 500 else "internal error in the emulator"
        response = _error_response(WIRES["openai"], status, kind, text)
        response.headers[SYNTHETIC_HEADER] = "true"
        response.force_close()
        return response


async def _start_listening(server: EmulatorServer, host: str, port: int) -> tuple[web.AppRunner, asyncio.Server]:
    """Set up the application and listen, one :class:`_Connection` per accepted connection."""
    runner = web.AppRunner(server.application(), access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    loop = asyncio.get_running_loop()
    web_server = runner.server
    assert web_server is not None

    def connection() -> _Connection:
        return _Connection(web_server, loop=loop, access_log=None, keepalive_timeout=server.keepalive_timeout_s,
                           header_timeout=server.request_timeout_s, lingering_time=min(server.request_timeout_s, 10.0))

    try:
        listener = await loop.create_server(connection, host, port, backlog=_BACKLOG)
    except BaseException:
        await runner.cleanup()
        raise
    return runner, listener


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
    from :meth:`start`, or from the last :meth:`restart_clock`.

    Limits: an idle connection closes after ``keepalive_timeout_s``; a request has
    ``request_timeout_s`` from its first byte to send its headers (else the connection closes) and
    as long again for its body (else 408); a body over ``max_body_bytes`` gets 413. An unknown
    profile name raises ``ValueError``."""

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
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.server = EmulatorServer(profile_set(profile), seed=seed, faults=faults or (), responder=responder,
                                     key_by=key_by, keepalive_timeout_s=keepalive_timeout_s,
                                     request_timeout_s=request_timeout_s, max_body_bytes=max_body_bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, api: str) -> str:
        """The SDK ``base_url`` for ``anthropic``, ``openai`` or ``openai-compatible``."""
        return endpoints.sdk_base_url(self.base_url, api)

    @property
    def requests(self) -> list[RequestLogEntry]:
        """A copy of the request log."""
        return self.server.log.snapshot()

    def reset_log(self) -> None:
        self.server.log.clear()

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[RequestLogEntry]:
        """The log once it holds ``count`` entries (a request is logged when the server is done with it)."""
        return self.server.log.wait_for(count, timeout)

    def wait_in_flight(self, count: int = 1, timeout: float = 30.0) -> bool:
        """True once ``count`` requests are being answered at once (False if ``timeout`` passes first): a test
        waits on this event instead of sleeping until a request has arrived."""
        return self.server.log.wait_in_flight(count, timeout)

    def restart_clock(self, at: float | None = None) -> None:
        """Count fault windows from ``at`` (a ``time.perf_counter()`` value; default: now)."""
        self.server.started = time.perf_counter() if at is None else at

    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        loop = new_event_loop()
        ready: concurrent.futures.Future[tuple[web.AppRunner, asyncio.Server]] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                ready.set_result(loop.run_until_complete(_start_listening(self.server, self.host, self.port)))
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
        self._runner, self._listener = ready.result()
        self._loop, self._thread = loop, thread
        self.port = self._listener.sockets[0].getsockname()[1]
        self.server.started = time.perf_counter()
        hold_short_thread_switches()
        endpoints.register_emulator(self.base_url)
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._runner is None or self._listener is None:
            return
        loop, thread, runner, listener = self._loop, self._thread, self._runner, self._listener
        self._loop = self._thread = self._runner = self._listener = None
        endpoints.unregister_emulator(self.base_url)

        async def shut_down() -> None:
            listener.close()
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shut_down(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        release_short_thread_switches()

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
    *,
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> None:
    """Run the emulator until interrupted (Ctrl-C) or told to stop (SIGTERM), printing one line with its base
    URL once ready. ``profile`` is a name or spec string; an unknown one raises ``ValueError`` before anything
    starts."""
    stop = threading.Event()
    with Emulator(profile, seed=seed, host=host, port=port, faults=faults, keepalive_timeout_s=keepalive_timeout_s,
                  request_timeout_s=request_timeout_s, max_body_bytes=max_body_bytes) as emulator:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"lab emulator serving {emulator.base_url} (profile {profile}, seed {seed})", flush=True)
        try:
            with frozen_heap():  # full collections stay short: no 100 ms pause in what the clients measure
                while not stop.wait(1.0):  # woken by SIGTERM (or Ctrl-C) within a second
                    pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
