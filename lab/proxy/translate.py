"""Anthropic Messages <-> OpenAI Chat Completions, for plain text chat only.

A route may send a request to an upstream of the other API. Only what both APIs mean the same
way is translated: messages whose content is text, the system prompt, ``max_tokens``,
``temperature``, stop sequences and streaming. Anything else (tools, images, thinking,
structured output, sampling options one API lacks, ...) raises :class:`Untranslatable`, which the
proxy answers with a 400 in the caller's format naming the field: a silent approximation would
change the answer.

Replies come back in the caller's API: a JSON body (:func:`reply_body`), a stream event by event
(:class:`StreamTranslator`), or an error (:func:`error_body`). The upstream's own model id, token
counts and request id are kept.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lab.proxy import wire
from lab.proxy.wire import ANTHROPIC, DONE, OPENAI, sse

ANTHROPIC_VERSION = "2023-06-01"
_PLAIN = {
    ANTHROPIC: ("model", "messages", "system", "max_tokens", "temperature", "stop_sequences", "stream"),
    OPENAI: ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "stop", "stream",
             "stream_options"),
}
_STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "refusal": "content_filter"}
_FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}


class Untranslatable(ValueError):
    """A request that is not plain text chat; the message names what is not."""


def _fields(body: dict[str, Any], api: str) -> None:
    extra = [k for k in body if k not in _PLAIN[api]]
    if extra:
        raise Untranslatable(f"it has {', '.join(repr(k) for k in extra[:5])}, and only "
                             f"{', '.join(_PLAIN[api])} are translated")


def _text_content(content: Any, where: str) -> str | list[dict[str, str]]:
    """Text content as both APIs take it: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        blocks = []
        for i, block in enumerate(content):
            if not (isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
                    and set(block) == {"type", "text"}):
                kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                raise Untranslatable(f"{where}.{i} is a {kind!r} block; only plain text blocks are translated")
            blocks.append({"type": "text", "text": block["text"]})
        return blocks
    raise Untranslatable(f"{where} is not text")


def _message(message: Any, where: str, roles: tuple[str, ...]) -> tuple[str, Any]:
    if not isinstance(message, dict) or set(message) - {"role", "content"}:
        extra = sorted(set(message) - {"role", "content"}) if isinstance(message, dict) else []
        raise Untranslatable(f"{where} has {', '.join(map(repr, extra)) or 'no role and content'}; only "
                             "role and text content are translated")
    if message.get("role") not in roles:
        raise Untranslatable(f"{where}.role is {message.get('role')!r}; translated roles are {', '.join(roles)}")
    return message["role"], _text_content(message.get("content"), f"{where}.content")


def request(body: dict[str, Any], source: str, model: str, *, max_tokens_field: str = "max_completion_tokens",
            ) -> dict[str, Any]:
    """``body`` (in the ``source`` API) for an upstream of the other API, asking for ``model``.
    ``max_tokens_field``: what an OpenAI upstream calls the limit (compatible servers: ``max_tokens``)."""
    _fields(body, source)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise Untranslatable("messages is not a list")
    if source == ANTHROPIC:
        out: list[dict[str, Any]] = []
        if body.get("system") is not None:
            out.append({"role": "system", "content": _text_content(body["system"], "system")})
        for i, message in enumerate(messages):
            role, content = _message(message, f"messages.{i}", ("user", "assistant"))
            out.append({"role": role, "content": content})
        translated: dict[str, Any] = {"model": model, "messages": out}
        if body.get("max_tokens") is not None:
            translated[max_tokens_field] = body["max_tokens"]
        if body.get("temperature") is not None:
            translated["temperature"] = body["temperature"]
        if body.get("stop_sequences") is not None:
            translated["stop"] = body["stop_sequences"]
        if body.get("stream") is True:
            translated["stream"] = True
            translated["stream_options"] = {"include_usage": True}  # the caller never sees OpenAI's chunks
        return translated

    options = body.get("stream_options")
    if options is not None and not (isinstance(options, dict) and set(options) <= {"include_usage"}):
        raise Untranslatable("stream_options holds more than include_usage")
    system: list[Any] = []
    out = []
    for i, message in enumerate(messages):
        role, content = _message(message, f"messages.{i}", ("system", "developer", "user", "assistant"))
        if role in ("system", "developer"):
            if out:
                raise Untranslatable(f"messages.{i} is a {role} message after the conversation began; "
                                     "Anthropic takes the system prompt only before it")
            system.append(content)
        else:
            out.append({"role": role, "content": content})
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        raise Untranslatable("Anthropic requires max_tokens: set max_tokens or max_completion_tokens")
    translated = {"model": model, "max_tokens": limit, "messages": out}
    if system:
        translated["system"] = system[0] if len(system) == 1 and isinstance(system[0], str) else [
            block for content in system for block in _blocks(content)]
    if body.get("temperature") is not None:
        translated["temperature"] = body["temperature"]
    stop = body.get("stop")
    if stop is not None:
        translated["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if body.get("stream") is True:
        translated["stream"] = True
    return translated


def json_bytes(data: Any) -> bytes:
    """A request body for an upstream."""
    return json.dumps(data, ensure_ascii=False).encode()


def _blocks(content: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _usage_openai(seen: wire.Seen) -> dict[str, int]:
    prompt, completion = seen.input_tokens or 0, seen.output_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _usage_anthropic(seen: wire.Seen) -> dict[str, int]:
    return {"input_tokens": seen.input_tokens or 0, "output_tokens": seen.output_tokens or 0}


def reply_body(data: dict[str, Any], source: str, seen: wire.Seen, text: str) -> bytes:
    """A whole JSON reply of the ``source`` API (already read into ``seen`` and ``text``) in the other API."""
    if source == ANTHROPIC:
        finish = _STOP_TO_FINISH.get(seen.stop_reason or "", "stop")
        body: dict[str, Any] = {
            "id": f"chatcmpl-{data.get('id', '')}", "object": "chat.completion", "created": int(time.time()),
            "model": data.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": _usage_openai(seen),
        }
    else:
        body = {
            "id": f"msg_{data.get('id', '')}", "type": "message", "role": "assistant", "model": data.get("model", ""),
            "content": [{"type": "text", "text": text}],
            "stop_reason": _FINISH_TO_STOP.get(seen.stop_reason or "", "end_turn"), "stop_sequence": None,
            "usage": _usage_anthropic(seen),
        }
    return json.dumps(body).encode()


def error_body(status: int, body: bytes, caller: str) -> bytes:
    """An upstream's error reply in the caller's API, with the same status and message."""
    _, message = wire.parse_error_body(status, body)
    return wire.error_body(caller, status, message)


class StreamTranslator:
    """Rewrites the events of a stream of one API (already read into ``seen``) as the other API's."""

    def __init__(self, source: str, seen: wire.Seen, include_usage: bool) -> None:
        self.source, self.seen, self.include_usage = source, seen, include_usage
        self._started = False
        self._id, self._model = "", ""

    def event(self, data: Any, piece: wire.Piece) -> bytes:
        """The caller's bytes for one upstream event (often none)."""
        return self._to_openai(data, piece) if self.source == ANTHROPIC else self._to_anthropic(data, piece)

    # Anthropic upstream, OpenAI caller.
    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({"id": self._id, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": self._model, "choices": [choice]})

    def _to_openai(self, data: Any, piece: wire.Piece) -> bytes:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self._id, self._model = f"chatcmpl-{message.get('id', '')}", message.get("model", "")
            return self._chunk({"role": "assistant", "content": ""})
        if piece.text:
            return self._chunk({"content": piece.text})
        if kind == "message_stop":
            out = self._chunk({}, _STOP_TO_FINISH.get(self.seen.stop_reason or "", "stop"))
            if self.include_usage:
                out += sse({"id": self._id, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": self._model, "choices": [], "usage": _usage_openai(self.seen)})
            return out + b"data: [DONE]\n\n"
        if kind == "error":
            return wire.error_event(OPENAI, 500, (data.get("error") or {}).get("message", "error"))
        return b""

    # OpenAI upstream, Anthropic caller.
    def _to_anthropic(self, data: Any, piece: wire.Piece) -> bytes:
        out = b""
        if data != DONE and isinstance(data, dict) and data.get("error"):
            error = data["error"] if isinstance(data["error"], dict) else {}
            return wire.error_event(ANTHROPIC, 500, error.get("message", "error"))
        if not self._started and data != DONE:
            self._started = True
            message = {"id": f"msg_{data.get('id', '')}", "type": "message", "role": "assistant",
                       "model": data.get("model", ""), "content": [], "stop_reason": None, "stop_sequence": None,
                       "usage": {"input_tokens": 0, "output_tokens": 0}}
            out += sse({"type": "message_start", "message": message}, "message_start")
            out += sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                       "content_block_start")
        if piece.text:
            delta = {"type": "text_delta", "text": piece.text}
            out += sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        if data == DONE:
            stop = _FINISH_TO_STOP.get(self.seen.stop_reason or "", "end_turn")
            out += sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            out += sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": _usage_anthropic(self.seen)}, "message_delta")
            out += sse({"type": "message_stop"}, "message_stop")
        return out
