"""Provider adapters: the only module that imports a provider SDK.

Each adapter turns a :class:`Request` into SDK arguments, makes the call with the SDK's
retries off through the lab's timed transport (:mod:`lab.llm.transport`), and reads replies
and stream events into plain values, so nothing outside this module sees an SDK type. A reply
or event in a shape the adapter cannot read raises :class:`InvalidResponse`, which becomes an
``invalid_response`` record, never a crash.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import openai

from lab.core.config import ProviderSettings
from lab.core.redact import redact
from lab.core.replies import NOTHING, SYNTHETIC_HEADER, Piece, count, error_type
from lab.llm.transport import TimedTransport

_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


@dataclass(frozen=True)
class Request:
    """What one call asks for, independent of the provider."""

    prompt: str
    max_tokens: int
    system: str | None = None
    schema: dict[str, Any] | None = None  # JSON schema for native structured output


@dataclass
class Reply:
    """A provider's answer read into plain values (also built up by streams)."""

    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    stop_reason: str | None = None
    request_id: str | None = None
    synthetic: bool = False
    finished: bool = False  # a stream saw its terminal event


@dataclass(frozen=True)
class Failure:
    """A failed attempt, classified for the record."""

    error_type: str
    http_status: int | None
    message: str
    retry_after_s: float | None = None
    request_id: str | None = None
    synthetic: bool = False  # the error response came from the lab's emulator


class CutStream(Exception):
    """A stream ended before its terminal event."""


class InvalidResponse(Exception):
    """A reply or stream event in a shape the adapter cannot read."""


def classify(exc: BaseException) -> Failure:
    """Map an SDK or transport exception to the record's error fields (messages scrubbed of secrets)."""
    if isinstance(exc, anthropic.APIStatusError | openai.APIStatusError):
        status = exc.status_code
        kind = error_type(status, exc.body)
        info = _headers_info(Reply(), exc.response.headers)
        return Failure(kind, status, _message(exc), _retry_after(exc.response), info.request_id, info.synthetic)
    if isinstance(exc, TimeoutError | anthropic.APITimeoutError | openai.APITimeoutError | httpx2.TimeoutException):
        return Failure("timeout", None, "no complete response within the timeout")
    if isinstance(exc, CutStream | httpx2.RemoteProtocolError | httpx2.ReadError):
        return Failure("cut_stream", None, _message(exc))
    if isinstance(exc, InvalidResponse | anthropic.APIResponseValidationError | openai.APIResponseValidationError
                  | json.JSONDecodeError | httpx2.DecodingError):
        return Failure("invalid_response", 200, _message(exc))
    if isinstance(exc, anthropic.APIConnectionError | openai.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__
        if isinstance(cause, httpx2.RemoteProtocolError):
            return Failure("cut_stream", None, _message(cause))
        return Failure("connection", None, _message(exc))
    if isinstance(exc, anthropic.APIError | openai.APIError):  # e.g. an error event inside an OpenAI stream
        return Failure(error_type(None, exc.body), None, _message(exc))
    raise exc


def _message(exc: BaseException) -> str:
    return redact((getattr(exc, "message", None) or str(exc) or type(exc).__name__)[:500]) or ""


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _headers_info(reply: Reply, headers: Any) -> Reply:
    reply.request_id = headers.get("request-id") or headers.get("x-request-id")
    reply.synthetic = headers.get(SYNTHETIC_HEADER) == "true"
    return reply


def _shape(what: str, exc: Exception) -> InvalidResponse:
    return InvalidResponse(f"the {what} is not in the expected shape ({type(exc).__name__}: {exc})"[:300])


async def _parsed(raw: Any) -> Any:
    """The SDK's model of a raw response (its ``parse`` is a coroutine in some SDK versions)."""
    parsed = raw.parse()
    return await parsed if inspect.isawaitable(parsed) else parsed


def _http_client(factory: type) -> Any:
    """The SDK's own default HTTP client, sending through the lab's timed transport."""
    return factory(transport=TimedTransport(httpx2.AsyncHTTPTransport(limits=_LIMITS)))


class AnthropicAdapter:
    """Anthropic Messages API."""

    @staticmethod
    def client(settings: ProviderSettings) -> Any:
        client = anthropic.AsyncAnthropic(api_key=settings.api_key, base_url=settings.endpoint, max_retries=0,
                                          http_client=_http_client(anthropic.DefaultAsyncHttpxClient))
        client.messages.with_raw_response  # noqa: B018  (imported lazily by the SDK: now, not in the first call)
        return client

    def params(self, model: str, request: Request, timeout_s: float) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
            "timeout": timeout_s,
        }
        if request.system is not None:
            params["system"] = request.system
        if request.schema is not None:
            params["output_config"] = {"format": {"type": "json_schema", "schema": request.schema}}
        return params

    @staticmethod
    def _input_usage(usage: Any, reply: Reply) -> None:
        """Anthropic's ``input_tokens`` exclude cache reads and writes; the record's input counts them all."""
        plain = count(getattr(usage, "input_tokens", None))
        reads = count(getattr(usage, "cache_read_input_tokens", None))
        writes = count(getattr(usage, "cache_creation_input_tokens", None))
        if plain is not None:
            reply.input_tokens = plain + (reads or 0) + (writes or 0)
            reply.cache_read_tokens, reply.cache_write_tokens = reads, writes

    async def create(self, client: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        """Send a request and read its body; returns what :meth:`reply` parses (outside the clock)."""
        raw = await client.messages.with_raw_response.create(**params)
        return raw, raw.headers

    async def reply(self, sent: tuple[Any, Any]) -> Reply:
        raw, headers = sent
        try:
            message = await _parsed(raw)
            texts = [block.text for block in message.content if block.type == "text"]
            if not all(isinstance(t, str) for t in texts):
                raise TypeError("a text block without text")
            reply = Reply("".join(texts), output_tokens=count(message.usage.output_tokens),
                          stop_reason=message.stop_reason, finished=True)
            self._input_usage(message.usage, reply)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise _shape("reply", exc) from None
        return _headers_info(reply, headers)

    async def open_stream(self, client: Any, params: dict[str, Any]) -> Any:
        return await client.messages.create(stream=True, **params)

    def read_event(self, event: Any, reply: Reply) -> Piece:
        """Fold one stream event into ``reply``; return what it carries."""
        try:
            kind = event.type
            if kind == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    return Piece(True, delta.text) if isinstance(delta.text, str) else NOTHING
                if delta.type in ("thinking_delta", "input_json_delta"):
                    return Piece(True)
            elif kind == "message_start":  # its output count is a placeholder: the final one comes last
                self._input_usage(event.message.usage, reply)
            elif kind == "message_delta":
                reply.stop_reason = event.delta.stop_reason
                reply.output_tokens = count(event.usage.output_tokens)
            elif kind == "message_stop":
                reply.finished = True
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise _shape("stream event", exc) from None
        return NOTHING


class OpenAIAdapter:
    """OpenAI Chat Completions, also for OpenAI-compatible servers."""

    def __init__(self, compatible: bool = False) -> None:
        # OpenAI's own models take max_completion_tokens; many compatible servers only max_tokens.
        self._max_tokens_param = "max_tokens" if compatible else "max_completion_tokens"

    @staticmethod
    def client(settings: ProviderSettings) -> Any:
        client = openai.AsyncOpenAI(api_key=settings.api_key, base_url=settings.endpoint, max_retries=0,
                                    http_client=_http_client(openai.DefaultAsyncHttpxClient))
        client.chat.completions.with_raw_response  # noqa: B018  (imported lazily by the SDK: now, not in the first call)
        return client

    def params(self, model: str, request: Request, timeout_s: float) -> dict[str, Any]:
        messages = [{"role": "user", "content": request.prompt}]
        if request.system is not None:
            messages.insert(0, {"role": "system", "content": request.system})
        params: dict[str, Any] = {
            "model": model,
            "messages": messages,
            self._max_tokens_param: request.max_tokens,
            "timeout": timeout_s,
        }
        if request.schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema, "strict": _is_strict(request.schema)},
            }
        return params

    @staticmethod
    def _usage(usage: Any, reply: Reply) -> None:
        if usage is None:
            return
        reply.input_tokens = count(usage.prompt_tokens)
        reply.output_tokens = count(usage.completion_tokens)
        details = getattr(usage, "prompt_tokens_details", None)
        reply.cache_read_tokens = count(getattr(details, "cached_tokens", None))

    async def create(self, client: Any, params: dict[str, Any]) -> tuple[Any, Any]:
        raw = await client.chat.completions.with_raw_response.create(**params)
        return raw, raw.headers

    async def reply(self, sent: tuple[Any, Any]) -> Reply:
        raw, headers = sent
        try:
            completion = await _parsed(raw)
            choice = completion.choices[0]
            text = choice.message.content
            if text is not None and not isinstance(text, str):
                raise TypeError("message content is not text")
            reply = Reply(text or "", stop_reason=choice.finish_reason, finished=True)
            self._usage(completion.usage, reply)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise _shape("reply", exc) from None
        return _headers_info(reply, headers)

    async def open_stream(self, client: Any, params: dict[str, Any]) -> Any:
        return await client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **params)

    def read_event(self, chunk: Any, reply: Reply) -> Piece:
        """Fold one chunk into ``reply``; return what it carries (reasoning counts as content)."""
        try:
            self._usage(chunk.usage, reply)
            if not chunk.choices:
                return NOTHING
            choice = chunk.choices[0]
            if choice.finish_reason is not None:
                reply.stop_reason = choice.finish_reason
                reply.finished = True
            delta = choice.delta
            if delta is None:
                return NOTHING
            text = delta.content or getattr(delta, "refusal", None) or ""
            if not isinstance(text, str):
                raise TypeError("delta content is not text")
            if text:
                return Piece(True, text)
            extra = delta.model_extra or {}
            if extra.get("reasoning_content") or extra.get("reasoning") or delta.tool_calls:
                return Piece(True)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise _shape("stream chunk", exc) from None
        return NOTHING


def _is_strict(node: Any) -> bool:
    """OpenAI's strict mode needs every object to require all of its properties."""
    if isinstance(node, list):
        return all(_is_strict(item) for item in node)
    if not isinstance(node, dict):
        return True
    if node.get("type") == "object" and set(node.get("required", ())) != set(node.get("properties", {})):
        return False
    return all(_is_strict(value) for value in node.values())


def stream_headers(stream: Any) -> Reply:
    """The request id and synthetic flag of an open SDK stream; a body that is not a stream of
    server-sent events (a JSON or HTML page) is an :class:`InvalidResponse`."""
    headers = stream.response.headers
    kind = headers.get("content-type", "")
    if not kind.startswith("text/event-stream"):
        raise InvalidResponse(f"expected a stream of server-sent events, got content-type {kind or 'none'!r}")
    return _headers_info(Reply(), headers)


async def events(stream: Any) -> AsyncIterator[Any]:
    """The events of an open SDK stream, closing its HTTP response when done or abandoned."""
    async with stream:
        async for event in stream:
            yield event


Adapter = AnthropicAdapter | OpenAIAdapter
ADAPTERS: dict[str, Adapter] = {
    "anthropic": AnthropicAdapter(),
    "openai": OpenAIAdapter(),
    "openai-compatible": OpenAIAdapter(compatible=True),
}
