"""Wire formats of the Anthropic Messages and OpenAI Chat Completions APIs.

Each :class:`Wire` parses a request body into an API-neutral :class:`~lab.emulator.content.ChatRequest`
and renders replies as bytes: a JSON body, SSE stream pieces (start, one delta per token, stop)
and errors (HTTP bodies and mid-stream events). It knows nothing about timing or faults.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.emulator.content import ChatRequest

ERROR_MESSAGES = {
    "rate_limit": "Rate limit exceeded (emulated).",
    "overloaded": "Overloaded (emulated).",
    "server_error": "Internal server error (emulated).",
}


class WireError(Exception):
    """A request the API would reject: ``kind`` is ``invalid_request`` or ``not_found``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Reply:
    """A finished answer, ready to render. ``truncated``: the answer hit ``max_tokens``."""

    id: str
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool
    created: int


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {_dumps(data)}\n\n".encode()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class Wire(ABC):
    """One API's formats. ``statuses`` maps error kinds to HTTP statuses."""

    api: str
    request_id_header: str
    statuses: Mapping[str, int]
    _error_event: str | None

    def parse(self, body: Any) -> ChatRequest:
        """Validate the fields the emulator needs; raises :class:`WireError`."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise WireError("invalid_request", "model: field required")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise WireError("invalid_request", "messages: a non-empty list is required")
        return self._parse(body)

    @abstractmethod
    def _parse(self, body: dict[str, Any]) -> ChatRequest: ...

    def request_id(self, token: str) -> str:
        return f"req_{token}"

    def error(self, kind: str, message: str, request_id: str) -> bytes:
        """The HTTP error body for ``kind`` (its status is ``statuses[kind]``)."""
        return _dumps(self._error_body(kind, message, request_id)).encode()

    def stream_error(self, kind: str, message: str, request_id: str) -> bytes:
        """An error delivered inside an already-started 200 stream."""
        return _sse(self._error_body(kind, message, request_id), self._error_event)

    @abstractmethod
    def _error_body(self, kind: str, message: str, request_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def completion(self, reply: Reply) -> bytes: ...

    @abstractmethod
    def stream_start(self, reply: Reply) -> bytes:
        """Events sent as soon as headers go out, before the first token."""

    def stream_deltas(self, reply: Reply, tokens: list[str]) -> list[bytes]:
        """One text-delta event per token (rendered once, then filled in per token)."""
        prefix, _, suffix = self._delta(reply, "\0").partition(b'"\\u0000"')
        return [prefix + json.dumps(token).encode() + suffix for token in tokens]

    @abstractmethod
    def _delta(self, reply: Reply, text: str) -> bytes: ...

    @abstractmethod
    def stream_stop(self, reply: Reply, request: ChatRequest) -> bytes:
        """Events after the last token, ending the stream."""


class AnthropicWire(Wire):
    api = "anthropic"
    request_id_header = "request-id"
    _error_event = "error"
    statuses = {"rate_limit": 429, "overloaded": 529, "server_error": 500, "invalid_request": 400, "not_found": 404}
    _types = {
        "rate_limit": "rate_limit_error",
        "overloaded": "overloaded_error",
        "server_error": "api_error",
        "invalid_request": "invalid_request_error",
        "not_found": "not_found_error",
    }

    def _parse(self, body: dict[str, Any]) -> ChatRequest:
        if not isinstance(body.get("max_tokens"), int):
            raise WireError("invalid_request", "max_tokens: field required")
        output_format = (body.get("output_config") or {}).get("format") or {}
        system = _text_of(body.get("system"))
        prompt = "\n".join([system, *(_text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict))])
        return ChatRequest(
            api=self.api,
            model=body["model"],
            prompt=prompt,
            max_tokens=body["max_tokens"],
            stream=body.get("stream") is True,
            schema=output_format.get("schema") if output_format.get("type") == "json_schema" else None,
            body=body,
        )

    def _error_body(self, kind: str, message: str, request_id: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self._types[kind], "message": message}, "request_id": request_id}

    def _usage(self, reply: Reply) -> dict[str, int]:
        return {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}

    def _stop_reason(self, reply: Reply) -> str:
        return "max_tokens" if reply.truncated else "end_turn"

    def completion(self, reply: Reply) -> bytes:
        message = {
            "id": f"msg_{reply.id}",
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": self._stop_reason(reply),
            "stop_sequence": None,
            "usage": self._usage(reply),
        }
        return _dumps(message).encode()

    def stream_start(self, reply: Reply) -> bytes:
        message = {
            "id": f"msg_{reply.id}",
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
        }
        return b"".join(
            [
                _sse({"type": "message_start", "message": message}, "message_start"),
                _sse(
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    "content_block_start",
                ),
                _sse({"type": "ping"}, "ping"),
            ]
        )

    def _delta(self, reply: Reply, text: str) -> bytes:
        delta = {"type": "text_delta", "text": text}
        return _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")

    def stream_stop(self, reply: Reply, request: ChatRequest) -> bytes:
        delta = {"stop_reason": self._stop_reason(reply), "stop_sequence": None}
        return b"".join(
            [
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse({"type": "message_delta", "delta": delta, "usage": self._usage(reply)}, "message_delta"),
                _sse({"type": "message_stop"}, "message_stop"),
            ]
        )


class OpenAIWire(Wire):
    api = "openai"
    request_id_header = "x-request-id"
    _error_event = None
    statuses = {"rate_limit": 429, "overloaded": 503, "server_error": 500, "invalid_request": 400, "not_found": 404}
    _types = {
        "rate_limit": ("requests", "rate_limit_exceeded"),
        "overloaded": ("server_error", "service_unavailable"),
        "server_error": ("server_error", "server_error"),
        "invalid_request": ("invalid_request_error", None),
        "not_found": ("invalid_request_error", "model_not_found"),
    }

    def _parse(self, body: dict[str, Any]) -> ChatRequest:
        response_format = body.get("response_format") or {}
        schema = None
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise WireError("invalid_request", "response_format.json_schema.schema: field required")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        return ChatRequest(
            api=self.api,
            model=body["model"],
            prompt="\n".join(_text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict)),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            stream=body.get("stream") is True,
            schema=schema,
            json_object=response_format.get("type") == "json_object",
            body=body,
        )

    def _error_body(self, kind: str, message: str, request_id: str) -> dict[str, Any]:
        error_type, code = self._types[kind]
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def _usage(self, reply: Reply) -> dict[str, int]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }

    def _envelope(self, reply: Reply, kind: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-{reply.id}", "object": kind, "created": reply.created, "model": reply.model}

    def _chunk(self, reply: Reply, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**self._envelope(reply, "chat.completion.chunk"), "choices": [choice]})

    def completion(self, reply: Reply) -> bytes:
        message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish_reason(reply)}
        body = {**self._envelope(reply, "chat.completion"), "choices": [choice], "usage": self._usage(reply)}
        return _dumps(body).encode()

    def _finish_reason(self, reply: Reply) -> str:
        return "length" if reply.truncated else "stop"

    def stream_start(self, reply: Reply) -> bytes:
        return self._chunk(reply, {"role": "assistant", "content": "", "refusal": None})

    def _delta(self, reply: Reply, text: str) -> bytes:
        return self._chunk(reply, {"content": text})

    def stream_stop(self, reply: Reply, request: ChatRequest) -> bytes:
        pieces = [self._chunk(reply, {}, self._finish_reason(reply))]
        if (request.body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = {**self._envelope(reply, "chat.completion.chunk"), "choices": [], "usage": self._usage(reply)}
            pieces.append(_sse(usage_chunk))
        pieces.append(b"data: [DONE]\n\n")
        return b"".join(pieces)


WIRES: dict[str, Wire] = {wire.api: wire for wire in (AnthropicWire(), OpenAIWire())}
