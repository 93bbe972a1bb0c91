"""Provider adapters: the only module that imports a provider SDK.

Each adapter turns a :class:`Request` into SDK arguments, makes the call with
the SDK's retries off, and reads replies and stream events into plain values,
so nothing outside this module sees an SDK type.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import openai

from lab.config import ProviderSettings

SYNTHETIC_HEADER = "x-lab-synthetic"

# Error body types and HTTP statuses, mapped to the record's error_type.
_BODY_KINDS = {
    "overloaded_error": "overloaded",
    "service_unavailable": "overloaded",
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "api_error": "server_error",
    "server_error": "server_error",
}


@dataclass(frozen=True)
class Request:
    """What one call asks for, independent of the provider."""

    prompt: str
    max_tokens: int
    system: str | None = None
    schema: dict[str, Any] | None = None  # JSON schema for native structured output
    timeout: float = 120.0


@dataclass
class Reply:
    """A provider's answer read into plain values (also built up by streams)."""

    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
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


def classify(exc: BaseException) -> Failure:
    """Map an SDK or transport exception to the record's error fields."""
    if isinstance(exc, anthropic.APIStatusError | openai.APIStatusError):
        status = exc.status_code
        body_kind = _body_kind(exc.body)
        if status == 429:
            kind = "rate_limit"
        elif status in (503, 529):
            kind = "overloaded"
        elif body_kind is not None:  # e.g. an error event inside a stream that began with 200
            kind = body_kind
        elif status >= 500:
            kind = "server_error"
        elif status in (401, 403):
            kind = "auth"
        else:
            kind = "client_error"
        info = _headers_info(Reply(), exc.response.headers)
        return Failure(kind, status, _message(exc), _retry_after(exc.response), info.request_id, info.synthetic)
    if isinstance(exc, anthropic.APITimeoutError | openai.APITimeoutError | httpx2.TimeoutException):
        return Failure("timeout", None, "no response within the timeout")
    if isinstance(exc, CutStream | httpx2.RemoteProtocolError | httpx2.ReadError):
        return Failure("cut_stream", None, _message(exc))
    if isinstance(exc, anthropic.APIResponseValidationError | openai.APIResponseValidationError | json.JSONDecodeError):
        return Failure("invalid_response", None, _message(exc))
    if isinstance(exc, anthropic.APIConnectionError | openai.APIConnectionError | httpx2.TransportError):
        cause = exc.__cause__
        if isinstance(cause, httpx2.RemoteProtocolError):
            return Failure("cut_stream", None, _message(cause))
        return Failure("connection", None, _message(exc))
    if isinstance(exc, anthropic.APIError | openai.APIError):  # e.g. an error event inside an OpenAI stream
        return Failure(_body_kind(exc.body) or "server_error", None, _message(exc))
    raise exc


def _body_kind(body: object) -> str | None:
    """The record's error_type named by an error body's ``code`` or ``type``, if any."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    for name in (error.get("code"), error.get("type")):
        if name in _BODY_KINDS:
            return _BODY_KINDS[name]
    return None


def _message(exc: BaseException) -> str:
    return (getattr(exc, "message", None) or str(exc) or type(exc).__name__)[:500]


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


class _Clients:
    """One SDK client per endpoint and key (async ones also per event loop), reused."""

    def __init__(self, sync_cls: type, async_cls: type) -> None:
        self._sync_cls, self._async_cls = sync_cls, async_cls
        self._sync: dict[tuple[str, str], Any] = {}
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Any]] = (
            weakref.WeakKeyDictionary()
        )

    def sync(self, settings: ProviderSettings) -> Any:
        key = (settings.endpoint, settings.api_key)
        if key not in self._sync:
            self._sync[key] = self._sync_cls(api_key=settings.api_key, base_url=settings.endpoint, max_retries=0)
        return self._sync[key]

    def for_loop(self, settings: ProviderSettings) -> Any:
        clients = self._async.setdefault(asyncio.get_running_loop(), {})
        key = (settings.endpoint, settings.api_key)
        if key not in clients:
            clients[key] = self._async_cls(api_key=settings.api_key, base_url=settings.endpoint, max_retries=0)
        return clients[key]


class AnthropicAdapter:
    """Anthropic Messages API."""

    clients = _Clients(anthropic.Anthropic, anthropic.AsyncAnthropic)

    def params(self, model: str, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
            "timeout": request.timeout,
        }
        if request.system is not None:
            params["system"] = request.system
        if request.schema is not None:
            params["output_config"] = {"format": {"type": "json_schema", "schema": request.schema}}
        return params

    @staticmethod
    def _reply(message: Any, headers: Any) -> Reply:
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = message.usage
        reply = Reply(text, usage.input_tokens, usage.output_tokens, message.stop_reason, finished=True)
        return _headers_info(reply, headers)

    def create(self, settings: ProviderSettings, params: dict[str, Any]) -> Reply:
        raw = self.clients.sync(settings).messages.with_raw_response.create(**params)
        return self._reply(raw.parse(), raw.headers)

    async def acreate(self, settings: ProviderSettings, params: dict[str, Any]) -> Reply:
        raw = await self.clients.for_loop(settings).messages.with_raw_response.create(**params)
        return self._reply(await raw.parse(), raw.headers)

    def open_stream(self, settings: ProviderSettings, params: dict[str, Any]) -> Any:
        return self.clients.sync(settings).messages.create(stream=True, **params)

    async def aopen_stream(self, settings: ProviderSettings, params: dict[str, Any]) -> Any:
        return await self.clients.for_loop(settings).messages.create(stream=True, **params)

    @staticmethod
    def read_event(event: Any, reply: Reply) -> str:
        """Fold one stream event into ``reply``; return the text it carries."""
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            return event.delta.text
        if event.type == "message_start":
            reply.input_tokens = event.message.usage.input_tokens
        elif event.type == "message_delta":
            reply.stop_reason = event.delta.stop_reason
            reply.output_tokens = event.usage.output_tokens
        elif event.type == "message_stop":
            reply.finished = True
        return ""


class OpenAIAdapter:
    """OpenAI Chat Completions, also for OpenAI-compatible servers."""

    clients = _Clients(openai.OpenAI, openai.AsyncOpenAI)

    def __init__(self, compatible: bool = False) -> None:
        # OpenAI's own models take max_completion_tokens; many compatible servers only max_tokens.
        self._max_tokens_param = "max_tokens" if compatible else "max_completion_tokens"

    def params(self, model: str, request: Request) -> dict[str, Any]:
        messages = [{"role": "user", "content": request.prompt}]
        if request.system is not None:
            messages.insert(0, {"role": "system", "content": request.system})
        params: dict[str, Any] = {
            "model": model,
            "messages": messages,
            self._max_tokens_param: request.max_tokens,
            "timeout": request.timeout,
        }
        if request.schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema, "strict": _is_strict(request.schema)},
            }
        return params

    @staticmethod
    def _reply(completion: Any, headers: Any) -> Reply:
        choice = completion.choices[0]
        usage = completion.usage
        reply = Reply(
            choice.message.content or "",
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            choice.finish_reason,
            finished=True,
        )
        return _headers_info(reply, headers)

    def create(self, settings: ProviderSettings, params: dict[str, Any]) -> Reply:
        raw = self.clients.sync(settings).chat.completions.with_raw_response.create(**params)
        return self._reply(raw.parse(), raw.headers)

    async def acreate(self, settings: ProviderSettings, params: dict[str, Any]) -> Reply:
        raw = await self.clients.for_loop(settings).chat.completions.with_raw_response.create(**params)
        return self._reply(raw.parse(), raw.headers)

    def open_stream(self, settings: ProviderSettings, params: dict[str, Any]) -> Any:
        return self.clients.sync(settings).chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **params
        )

    async def aopen_stream(self, settings: ProviderSettings, params: dict[str, Any]) -> Any:
        return await self.clients.for_loop(settings).chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **params
        )

    @staticmethod
    def read_event(chunk: Any, reply: Reply) -> str:
        """Fold one chunk into ``reply``; return the text it carries."""
        if chunk.usage is not None:
            reply.input_tokens = chunk.usage.prompt_tokens
            reply.output_tokens = chunk.usage.completion_tokens
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            reply.stop_reason = choice.finish_reason
            reply.finished = True
        return choice.delta.content or ""


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
    """The request id and synthetic flag of an open SDK stream."""
    return _headers_info(Reply(), stream.response.headers)


def iterate(stream: Any) -> Iterator[Any]:
    """The events of an open SDK stream, closing it when done or abandoned."""
    with stream:
        yield from stream


async def aiterate(stream: Any) -> AsyncIterator[Any]:
    """Async twin of :func:`iterate`."""
    async with stream:
        async for event in stream:
            yield event


ADAPTERS: dict[str, AnthropicAdapter | OpenAIAdapter] = {
    "anthropic": AnthropicAdapter(),
    "openai": OpenAIAdapter(),
    "openai-compatible": OpenAIAdapter(compatible=True),
}
