"""Wire formats of the Anthropic Messages and OpenAI Chat Completions APIs.

Each :class:`Wire` validates a request body and parses it into an API-neutral
:class:`~lab.emulator.content.ChatRequest` (anything malformed raises :class:`WireError`, which the
server answers with a 4xx in the API's own error format), and renders replies as bytes: a JSON
body, SSE stream pieces (start, one delta per thinking token, one per text token, stop), errors
(HTTP bodies and mid-stream events) and model listings. It knows nothing about timing or faults.
"""

from __future__ import annotations

import base64
import datetime
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.emulator.content import ChatRequest

ERROR_MESSAGES = {
    "rate_limit": "Rate limit exceeded (emulated).",
    "overloaded": "Overloaded (emulated).",
    "server_error": "Internal server error (emulated).",
}
ADAPTIVE_THINKING_BUDGET = 16
"""The thinking budget an Anthropic request with ``"thinking": {"type": "adaptive"}`` gets."""


class WireError(Exception):
    """A request the API would reject. ``kind``: ``invalid_request`` (400), ``not_found`` (404, an
    unknown model), ``no_route`` (404, an unknown path), ``method_not_allowed`` (405),
    ``request_timeout`` (408) or ``too_large`` (413)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Answer:
    """A finished answer, ready to render. ``truncated``: the answer hit ``max_tokens``;
    ``output_tokens`` counts thinking and text tokens."""

    id: str
    model: str
    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool
    created: int
    thinking: str = ""
    thinking_tokens: int = 0


_dumps = json.JSONEncoder(separators=(",", ":")).encode
_PLACEHOLDER = '"\\u0000"'.encode()


def _sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {_dumps(data)}\n\n".encode()


def _fill(template: bytes, tokens: Sequence[str]) -> list[bytes]:
    """One copy of ``template`` (rendered with the text ``"\\0"``) per token, the token in its place."""
    prefix, _, suffix = template.partition(_PLACEHOLDER)
    return [prefix + json.dumps(token).encode() + suffix for token in tokens]


# --- request validation ------------------------------------------------------------------------


def _invalid(message: str) -> WireError:
    return WireError("invalid_request", message)


def _object(parent: Mapping[str, Any], name: str, where: str | None = None) -> Mapping[str, Any]:
    """An optional object field: ``{}`` when absent or null."""
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{where or name}: expected an object, found {_type_name(value)}")
    return value


def _integer(value: Any, where: str, *, required: bool = False) -> int | None:
    """An integer of at least 1 (booleans are not integers here)."""
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid(f"{where}: expected an integer of at least 1, found {_shown(value)}")
    return value


def _flag(parent: Mapping[str, Any], name: str, where: str | None = None) -> bool:
    value = parent.get(name)
    if value is not None and not isinstance(value, bool):
        raise _invalid(f"{where or name}: expected true or false, found {_shown(value)}")
    return value is True


def _content_text(content: Any, where: str, *, nullable: bool = False) -> str:
    """The text of a string or a list of content blocks (objects with a string ``type``; ``text``
    blocks need a string ``text``); other block types add nothing."""
    if isinstance(content, str):
        return content
    if content is None and nullable:
        return ""
    if not isinstance(content, list):
        raise _invalid(f"{where}: expected a string or a list of content blocks, found {_type_name(content)}")
    texts = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"{where}.{i}: expected a content block object with a string type")
        if block["type"] == "text":
            if not isinstance(block.get("text"), str):
                raise _invalid(f"{where}.{i}.text: expected a string, found {_type_name(block.get('text'))}")
            texts.append(block["text"])
    return "\n".join(texts)


def _messages_text(messages: list[Any], roles: tuple[str, ...] | None, nullable: bool) -> list[str]:
    texts = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise _invalid(f"{where}: expected an object with role and content, found {_type_name(message)}")
        role = message.get("role")
        if not isinstance(role, str) or (roles is not None and role not in roles):
            expected = " or ".join(repr(r) for r in roles) if roles else "a string"
            raise _invalid(f"{where}.role: expected {expected}, found {_shown(role)}")
        texts.append(_content_text(message.get("content"), f"{where}.content", nullable=nullable))
    return texts


def _schema(format_: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    schema = format_.get("schema")
    if not isinstance(schema, dict):
        raise _invalid(f"{where}: a JSON schema object is required, found {_type_name(schema)}")
    return schema


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (int, float, bool, type(None))) else _type_name(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Wire(ABC):
    """One API's formats. ``statuses`` maps error kinds to HTTP statuses."""

    api: str
    request_id_header: str
    statuses: Mapping[str, int]
    _error_event: str | None

    def parse(self, body: Any) -> ChatRequest:
        """Validate the request (the fields the emulator reads, and their types); raises :class:`WireError`."""
        if not isinstance(body, dict):
            raise _invalid(f"the request body must be a JSON object, not {_type_name(body)}")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _invalid("model: field required (a non-empty string)")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise _invalid("messages: a non-empty list is required")
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
    def completion(self, reply: Answer) -> bytes: ...

    @abstractmethod
    def stream_start(self, reply: Answer) -> bytes:
        """Events sent as soon as headers go out, before the first token."""

    def thinking_deltas(self, reply: Answer, tokens: list[str]) -> list[bytes]:
        """One thinking-delta event per thinking token."""
        return _fill(self._thinking_delta(reply, "\0"), tokens)

    def thinking_end(self, reply: Answer) -> bytes:
        """Events between the last thinking token and the first text token."""
        return b""

    def stream_deltas(self, reply: Answer, tokens: list[str]) -> list[bytes]:
        """One text-delta event per token (rendered once, then filled in per token)."""
        return _fill(self._delta(reply, "\0"), tokens)

    @abstractmethod
    def _thinking_delta(self, reply: Answer, text: str) -> bytes: ...

    @abstractmethod
    def _delta(self, reply: Answer, text: str) -> bytes: ...

    @abstractmethod
    def stream_stop(self, reply: Answer, request: ChatRequest) -> bytes:
        """Events after the last token, ending the stream."""

    @abstractmethod
    def models(self, ids: Sequence[str], created: int) -> bytes:
        """The body of ``GET /v1/models``."""

    @abstractmethod
    def model(self, id_: str, created: int) -> bytes:
        """The body of ``GET /v1/models/{id}``."""


class AnthropicWire(Wire):
    api = "anthropic"
    request_id_header = "request-id"
    _error_event = "error"
    statuses = {
        "rate_limit": 429, "overloaded": 529, "server_error": 500, "invalid_request": 400, "not_found": 404,
        "no_route": 404, "method_not_allowed": 405, "request_timeout": 408, "too_large": 413,
    }
    _types = {
        "rate_limit": "rate_limit_error",
        "overloaded": "overloaded_error",
        "server_error": "api_error",
        "invalid_request": "invalid_request_error",
        "not_found": "not_found_error",
        "no_route": "not_found_error",
        "method_not_allowed": "invalid_request_error",
        "request_timeout": "invalid_request_error",
        "too_large": "request_too_large",
    }

    def _parse(self, body: dict[str, Any]) -> ChatRequest:
        max_tokens = _integer(body.get("max_tokens"), "max_tokens", required=True)
        stream = _flag(body, "stream")
        system = _content_text(body.get("system"), "system", nullable=True)
        texts = _messages_text(body["messages"], ("user", "assistant"), nullable=False)
        output_format = _object(_object(body, "output_config"), "format", "output_config.format")
        schema = None
        if output_format:
            if output_format.get("type") != "json_schema":
                found = _shown(output_format.get("type"))
                raise _invalid(f"output_config.format.type: expected 'json_schema', found {found}")
            schema = _schema(output_format, "output_config.format.schema")
        return ChatRequest(
            api=self.api,
            model=body["model"],
            prompt="\n".join([system, *texts]),
            max_tokens=max_tokens,
            stream=stream,
            schema=schema,
            thinking_budget=self._thinking_budget(_object(body, "thinking")),
            body=body,
        )

    @staticmethod
    def _thinking_budget(thinking: Mapping[str, Any]) -> int | None:
        kind = thinking.get("type") if thinking else "disabled"
        if kind == "enabled":
            return _integer(thinking.get("budget_tokens"), "thinking.budget_tokens", required=True)
        if kind == "adaptive":
            return ADAPTIVE_THINKING_BUDGET
        if kind not in ("disabled", "between_tools"):
            raise _invalid(f"thinking.type: expected 'enabled', 'adaptive' or 'disabled', found {_shown(kind)}")
        return None

    def _error_body(self, kind: str, message: str, request_id: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self._types[kind], "message": message}, "request_id": request_id}

    def _usage(self, reply: Answer) -> dict[str, int]:
        return {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}

    def _stop_reason(self, reply: Answer) -> str:
        return "max_tokens" if reply.truncated else "end_turn"

    @staticmethod
    def _signature(reply: Answer) -> str:
        return base64.b64encode(f"lab-emulator synthetic thinking {reply.id}".encode()).decode()

    @staticmethod
    def _text_index(reply: Answer) -> int:
        return 1 if reply.thinking_tokens else 0

    def completion(self, reply: Answer) -> bytes:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
        if reply.thinking_tokens:
            content.insert(0, {"type": "thinking", "thinking": reply.thinking, "signature": self._signature(reply)})
        message = {
            "id": f"msg_{reply.id}",
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": content,
            "stop_reason": self._stop_reason(reply),
            "stop_sequence": None,
            "usage": self._usage(reply),
        }
        return _dumps(message).encode()

    def stream_start(self, reply: Answer) -> bytes:
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
        thinking = {"type": "thinking", "thinking": "", "signature": ""}
        first = thinking if reply.thinking_tokens else {"type": "text", "text": ""}
        return b"".join(
            [
                _sse({"type": "message_start", "message": message}, "message_start"),
                _sse({"type": "content_block_start", "index": 0, "content_block": first}, "content_block_start"),
                _sse({"type": "ping"}, "ping"),
            ]
        )

    def _thinking_delta(self, reply: Answer, text: str) -> bytes:
        delta = {"type": "thinking_delta", "thinking": text}
        return _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")

    def thinking_end(self, reply: Answer) -> bytes:
        signature = {"type": "signature_delta", "signature": self._signature(reply)}
        text_block = {"type": "text", "text": ""}
        return b"".join(
            [
                _sse({"type": "content_block_delta", "index": 0, "delta": signature}, "content_block_delta"),
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse({"type": "content_block_start", "index": 1, "content_block": text_block}, "content_block_start"),
            ]
        )

    def _delta(self, reply: Answer, text: str) -> bytes:
        delta = {"type": "text_delta", "text": text}
        event = {"type": "content_block_delta", "index": self._text_index(reply), "delta": delta}
        return _sse(event, "content_block_delta")

    def stream_stop(self, reply: Answer, request: ChatRequest) -> bytes:
        delta = {"stop_reason": self._stop_reason(reply), "stop_sequence": None}
        return b"".join(
            [
                _sse({"type": "content_block_stop", "index": self._text_index(reply)}, "content_block_stop"),
                _sse({"type": "message_delta", "delta": delta, "usage": self._usage(reply)}, "message_delta"),
                _sse({"type": "message_stop"}, "message_stop"),
            ]
        )

    def _model_info(self, id_: str, created: int) -> dict[str, Any]:
        created_at = datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"type": "model", "id": id_, "display_name": id_, "created_at": created_at, "lifecycle": "active"}

    def models(self, ids: Sequence[str], created: int) -> bytes:
        data = [self._model_info(id_, created) for id_ in ids]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        page = {"data": data, "has_more": False, "first_id": first, "last_id": last}
        return _dumps(page).encode()

    def model(self, id_: str, created: int) -> bytes:
        return _dumps(self._model_info(id_, created)).encode()


class OpenAIWire(Wire):
    api = "openai"
    request_id_header = "x-request-id"
    _error_event = None
    statuses = {
        "rate_limit": 429, "overloaded": 503, "server_error": 500, "invalid_request": 400, "not_found": 404,
        "no_route": 404, "method_not_allowed": 405, "request_timeout": 408, "too_large": 413,
    }
    _types = {
        "rate_limit": ("requests", "rate_limit_exceeded"),
        "overloaded": ("server_error", "service_unavailable"),
        "server_error": ("server_error", "server_error"),
        "invalid_request": ("invalid_request_error", None),
        "not_found": ("invalid_request_error", "model_not_found"),
        "no_route": ("invalid_request_error", None),
        "method_not_allowed": ("invalid_request_error", None),
        "request_timeout": ("invalid_request_error", None),
        "too_large": ("invalid_request_error", None),
    }
    _response_formats = ("text", "json_object", "json_schema")

    def _parse(self, body: dict[str, Any]) -> ChatRequest:
        texts = _messages_text(body["messages"], None, nullable=True)
        response_format = _object(body, "response_format")
        kind = response_format.get("type", "text") if response_format else "text"
        if kind not in self._response_formats:
            expected = ", ".join(self._response_formats)
            raise _invalid(f"response_format.type: expected one of {expected}, found {_shown(kind)}")
        schema = None
        if kind == "json_schema":
            schema = _schema(_object(response_format, "json_schema", "response_format.json_schema"),
                             "response_format.json_schema.schema")
        limits = [_integer(body.get(name), name) for name in ("max_completion_tokens", "max_tokens")]
        stream_options = _object(body, "stream_options")
        _flag(stream_options, "include_usage", "stream_options.include_usage")
        return ChatRequest(
            api=self.api,
            model=body["model"],
            prompt="\n".join(texts),
            max_tokens=limits[0] or limits[1],
            stream=_flag(body, "stream"),
            schema=schema,
            json_object=kind == "json_object",
            body=body,
        )

    def _error_body(self, kind: str, message: str, request_id: str) -> dict[str, Any]:
        error_type, code = self._types[kind]
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def _usage(self, reply: Answer) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        if reply.thinking_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": reply.thinking_tokens}
        return usage

    def _envelope(self, reply: Answer, kind: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-{reply.id}", "object": kind, "created": reply.created, "model": reply.model}

    def _chunk(self, reply: Answer, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**self._envelope(reply, "chat.completion.chunk"), "choices": [choice]})

    def completion(self, reply: Answer) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
        if reply.thinking_tokens:
            message["reasoning_content"] = reply.thinking
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish_reason(reply)}
        body = {**self._envelope(reply, "chat.completion"), "choices": [choice], "usage": self._usage(reply)}
        return _dumps(body).encode()

    def _finish_reason(self, reply: Answer) -> str:
        return "length" if reply.truncated else "stop"

    def stream_start(self, reply: Answer) -> bytes:
        return self._chunk(reply, {"role": "assistant", "content": "", "refusal": None})

    def _thinking_delta(self, reply: Answer, text: str) -> bytes:
        return self._chunk(reply, {"reasoning_content": text})

    def _delta(self, reply: Answer, text: str) -> bytes:
        return self._chunk(reply, {"content": text})

    def stream_stop(self, reply: Answer, request: ChatRequest) -> bytes:
        pieces = [self._chunk(reply, {}, self._finish_reason(reply))]
        if (request.body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = {**self._envelope(reply, "chat.completion.chunk"), "choices": [], "usage": self._usage(reply)}
            pieces.append(_sse(usage_chunk))
        pieces.append(b"data: [DONE]\n\n")
        return b"".join(pieces)

    def _model_object(self, id_: str, created: int) -> dict[str, Any]:
        return {"id": id_, "object": "model", "created": created, "owned_by": "lab-emulator"}

    def models(self, ids: Sequence[str], created: int) -> bytes:
        return _dumps({"object": "list", "data": [self._model_object(id_, created) for id_ in ids]}).encode()

    def model(self, id_: str, created: int) -> bytes:
        return _dumps(self._model_object(id_, created)).encode()


WIRES: dict[str, Wire] = {wire.api: wire for wire in (AnthropicWire(), OpenAIWire())}


def wire_for_path(path: str) -> Wire:
    """The API a path belongs to: Anthropic under ``/v1/messages``, OpenAI for everything else."""
    return WIRES["anthropic"] if path == "/v1/messages" or path.startswith("/v1/messages/") else WIRES["openai"]
