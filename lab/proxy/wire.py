"""The two wire formats as the proxy reads them: which API a path speaks, what a chat request asks
for, server-sent events, what each event or JSON body carries (generated content, visible text,
usage, the end), and errors in each API's own format.

Readers never trust the upstream: an event or body that is not what its API sends raises
:class:`Garbage`, which the proxy records as ``invalid_response`` and answers with a 502.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lab.core import jsontext
from lab.core.records import Kind
from lab.core.replies import NOTHING, Piece, count, error_type

ANTHROPIC, OPENAI = "anthropic", "openai"
FORMATS = (ANTHROPIC, OPENAI)
CHAT_PATHS = {"/v1/messages": ANTHROPIC, "/v1/chat/completions": OPENAI}
"""The paths whose POSTs are chat calls: recorded, routed, timed."""
REQUEST_ID_HEADER = {ANTHROPIC: "request-id", OPENAI: "x-request-id"}
DONE = "[DONE]"
"""OpenAI's last stream event."""


def format_of(path: str, has_anthropic_version: bool) -> str:
    """The API a request speaks: Anthropic under ``/v1/messages`` or with an ``anthropic-version``
    header (a model listing, say), OpenAI otherwise."""
    if path == "/v1/messages" or path.startswith("/v1/messages/") or has_anthropic_version:
        return ANTHROPIC
    return OPENAI


def upstream_path(api: str, path: str) -> str:
    """The path to append to an upstream's base URL, which is given as the SDKs take it: Anthropic's
    without ``/v1`` (``https://api.anthropic.com``), OpenAI's with it (``https://api.openai.com/v1``)."""
    if api == OPENAI and path.startswith("/v1/"):
        return path[3:]
    return path


class Garbage(Exception):
    """A reply that is not what its API sends (the message says what is wrong)."""


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """What a chat request asks for: its model, whether it streams, the record's kind, and (OpenAI)
    whether the caller asked for the final usage chunk."""

    model: str
    stream: bool
    kind: Kind
    include_usage: bool = False


def read_request(api: str, body: bytes) -> tuple[dict[str, Any] | None, Ask]:
    """The request's JSON object (None when the body is not one: it is forwarded as it is, and the
    upstream answers it) and what it asks for."""
    try:
        data = jsontext.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return None, Ask("", False, "complete")
    model = data.get("model") if isinstance(data.get("model"), str) else ""
    stream = data.get("stream") is True
    if api == ANTHROPIC:
        config = data.get("output_config")
        wants_json = isinstance(config, dict) and bool(config.get("format"))
        usage = False
    else:
        fmt = data.get("response_format")
        wants_json = isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")
        options = data.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
    kind: Kind = "json" if wants_json else "stream" if stream else "complete"
    return data, Ask(model[:200], stream, kind, usage)


# -- server-sent events ------------------------------------------------------------------------


class EventSplitter:
    """Cuts a byte stream into whole server-sent events, each with its blank-line terminator, so the
    proxy relays events whole and exactly as sent."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        events = []
        start = 0
        crlf = buffer.find(b"\r\n\r\n")  # searched again only once passed (most streams have none)
        while True:
            lf = buffer.find(b"\n\n", start)
            if 0 <= crlf < start:
                crlf = buffer.find(b"\r\n\r\n", start)
            if lf < 0 and crlf < 0:
                break
            end = (lf + 2) if crlf < 0 or 0 <= lf < crlf else crlf + 4
            events.append(buffer[start:end])
            start = end
        self._buffer = buffer[start:]
        return events

    @property
    def rest(self) -> bytes:
        """Bytes after the last whole event."""
        return self._buffer


def parse_event(raw: bytes) -> tuple[str | None, bytes | None]:
    """An event's name and its data (None when it has no ``data:`` line: a comment or keep-alive)."""
    if raw.startswith(b"data: ") and raw.count(b"\n") == 2 and raw.endswith(b"\n\n"):
        return None, raw[6:-2]  # the usual OpenAI event, read at once
    if raw.startswith(b"event: ") and raw.count(b"\n") == 3 and raw.endswith(b"\n\n"):
        line, _, data = raw.partition(b"\n")  # the usual Anthropic event
        if data.startswith(b"data: "):
            return line[7:].strip().decode("utf-8", "replace"), data[6:-2]
    name, data = None, []
    for line in raw.splitlines():
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    return name, (b"\n".join(data) if data else None)


def event_json(data: bytes) -> Any:
    """An event's data as JSON (:data:`DONE` for OpenAI's last event); raises :class:`Garbage`."""
    if data.strip() == b"[DONE]":
        return DONE
    try:
        return jsontext.loads(data.decode())
    except (ValueError, RecursionError):
        raise Garbage(f"a stream event is not JSON: {_excerpt(data)}") from None


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _excerpt(data: bytes) -> str:
    text = data[:80].decode("utf-8", "replace")
    return repr(text + ("..." if len(data) > 80 else ""))


# -- what replies carry ------------------------------------------------------------------------


@dataclass
class Seen:
    """What an upstream's reply said so far: usage, stop reason, whether it ended properly, and an
    error it reported inside a stream (``error``: error type and message)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    stop_reason: str | None = None
    finished: bool = False
    error: tuple[str, str] | None = None
    text: list[str] = field(default_factory=list)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Garbage(f"{what} is not a JSON object")
    return value


class Reader:
    """Reads one upstream reply of one API into a :class:`Seen`."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def event(self, name: str | None, data: Any) -> Piece:
        raise NotImplementedError

    def body(self, data: Any) -> str:
        """Read a whole JSON reply; returns its text."""
        raise NotImplementedError


class AnthropicReader(Reader):
    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        plain, reads, writes = (count(usage.get(k)) for k in
                                ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
        if plain is not None:  # Anthropic's input_tokens leave the cache out; the record's count it all
            seen = self.seen
            seen.input_tokens = plain + (reads or 0) + (writes or 0)
            seen.cache_read_tokens, seen.cache_write_tokens = reads, writes
        if count(usage.get("output_tokens")) is not None:
            self.seen.output_tokens = usage["output_tokens"]

    def event(self, name: str | None, data: Any) -> Piece:
        event = _object(data, "a stream event")
        kind = event.get("type")
        if not isinstance(kind, str):
            raise Garbage("a stream event has no type")
        if kind == "content_block_delta":
            delta = _object(event.get("delta"), "a content_block_delta's delta")
            if delta.get("type") == "text_delta":
                text = delta.get("text")
                if not isinstance(text, str):
                    raise Garbage("a text_delta has no text")
                return Piece(True, text)
            if delta.get("type") in ("thinking_delta", "input_json_delta"):
                return Piece(True)
        elif kind == "message_start":
            message = _object(event.get("message"), "message_start's message")
            usage = message.get("usage")
            if isinstance(usage, dict):  # its output count is a placeholder: the final one comes last
                self._usage({k: v for k, v in usage.items() if k != "output_tokens"})
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.seen.stop_reason = delta["stop_reason"]
            self._usage(event.get("usage"))
        elif kind == "message_stop":
            self.seen.finished = True
        elif kind == "error":
            self.seen.error = error_of(None, event)
        return NOTHING

    def body(self, data: Any) -> str:
        message = _object(data, "the reply")
        if message.get("type") != "message" or not isinstance(message.get("content"), list):
            raise Garbage("the reply is not a message (no type 'message' with a content list)")
        texts = [b.get("text") for b in message["content"] if isinstance(b, dict) and b.get("type") == "text"]
        if not all(isinstance(t, str) for t in texts):
            raise Garbage("a text block of the reply has no text")
        self._usage(message.get("usage"))
        if isinstance(message.get("stop_reason"), str):
            self.seen.stop_reason = message["stop_reason"]
        self.seen.finished = True
        return "".join(texts)


class OpenAIReader(Reader):
    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        seen = self.seen
        seen.input_tokens = count(usage.get("prompt_tokens"))
        seen.output_tokens = count(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        seen.cache_read_tokens = count(details.get("cached_tokens")) if isinstance(details, dict) else None

    def event(self, name: str | None, data: Any) -> Piece:
        if data == DONE:
            self.seen.finished = True
            return NOTHING
        chunk = _object(data, "a stream chunk")
        if chunk.get("error"):
            self.seen.error = error_of(None, chunk)
            return NOTHING
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise Garbage("a stream chunk has no choices list")
        self._usage(chunk.get("usage"))
        if not choices:
            return NOTHING
        choice = _object(choices[0], "a chunk's choice")
        if isinstance(choice.get("finish_reason"), str):
            self.seen.stop_reason = choice["finish_reason"]
            self.seen.finished = True
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return NOTHING
        text = delta.get("content") or delta.get("refusal") or ""
        if not isinstance(text, str):
            raise Garbage("a chunk's delta content is not text")
        if text:
            return Piece(True, text)
        if delta.get("reasoning_content") or delta.get("reasoning") or delta.get("tool_calls"):
            return Piece(True)
        return NOTHING

    def body(self, data: Any) -> str:
        completion = _object(data, "the reply")
        choices = completion.get("choices")
        if not isinstance(choices, list) or not choices:
            raise Garbage("the reply has no choices")
        message = _object(_object(choices[0], "the reply's choice").get("message"), "the reply's message")
        text = message.get("content")
        if text is not None and not isinstance(text, str):
            raise Garbage("the reply's message content is not text")
        self._usage(completion.get("usage"))
        if isinstance(choices[0].get("finish_reason"), str):
            self.seen.stop_reason = choices[0]["finish_reason"]
        self.seen.finished = True
        return text or ""


def reader(api: str, seen: Seen) -> Reader:
    return AnthropicReader(seen) if api == ANTHROPIC else OpenAIReader(seen)


# -- errors ------------------------------------------------------------------------------------

RETRYABLE = frozenset({"rate_limit", "overloaded", "server_error", "timeout", "connection", "cut_stream",
                       "invalid_response"})
"""Failures another attempt may not meet; a 4xx that says the request itself is wrong is not one."""


def error_of(status: int | None, body: Any) -> tuple[str, str]:
    """The record's ``error_type`` and the message of an error reply (an HTTP status and its parsed
    body, or an error event inside a stream, ``status`` None)."""
    error = body.get("error", body) if isinstance(body, dict) else None
    message = ""
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    elif isinstance(error, str):
        message = error
    return error_type(status, body), message or (f"HTTP {status}" if status else "an error event in the stream")


def parse_error_body(status: int, body: bytes) -> tuple[str, str]:
    """:func:`error_of` for raw bytes that may not be JSON (an HTML error page, say)."""
    try:
        data = jsontext.loads(body)
    except (ValueError, RecursionError):
        data = None
    if data is None:
        kind, _ = error_of(status, None)
        return kind, f"HTTP {status}: {_excerpt(body.strip()) if body.strip() else 'empty body'}"
    return error_of(status, data)


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error",
                    529: "overloaded_error"}
_OPENAI_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                 403: ("invalid_request_error", None), 404: ("invalid_request_error", None),
                 413: ("invalid_request_error", None), 429: ("requests", "rate_limit_exceeded"),
                 500: ("server_error", "server_error"), 502: ("server_error", "bad_gateway"),
                 503: ("server_error", "service_unavailable"), 504: ("server_error", "gateway_timeout"),
                 529: ("server_error", "service_unavailable")}


def error_data(api: str, status: int, message: str) -> dict[str, Any]:
    """An error in ``api``'s own format for an HTTP ``status``."""
    if api == ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind, code = _OPENAI_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_body(api: str, status: int, message: str) -> bytes:
    return json.dumps(error_data(api, status, message)).encode()


def error_event(api: str, status: int, message: str) -> bytes:
    """An error inside a stream that has begun, as each API's SDK recognises one."""
    return sse(error_data(api, status, message), "error" if api == ANTHROPIC else None)
