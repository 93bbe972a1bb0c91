"""A tiny scripted HTTP server for the replies the emulator never sends: what a proxy, a gateway
or a broken deployment may answer. Each request gets the next scripted reply (the last one repeats).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Scripted:
    """One reply: a status, headers and a body, or SSE ``events`` (bytes to send, or seconds to pause)."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    events: Sequence[bytes | float] = ()


class StubServer:
    """``with StubServer([Scripted(...), ...]) as stub: stub.url``; ``stub.requests`` holds the bodies seen."""

    def __init__(self, replies: Sequence[Scripted]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self._ready = threading.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"path": request.path, "headers": dict(request.headers),
                              "body": json.loads(body) if body else None})
        reply = self.replies[min(len(self.requests) - 1, len(self.replies) - 1)]
        if reply.events:
            response = web.StreamResponse(status=reply.status, headers={"content-type": "text/event-stream",
                                                                         **reply.headers})
            await response.prepare(request)
            for event in reply.events:
                if isinstance(event, bytes):
                    await response.write(event)
                else:
                    await asyncio.sleep(event)
            await response.write_eof()
            return response
        payload = reply.body
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
            headers = {"content-type": "application/json", **reply.headers}
        else:
            headers = {"content-type": "text/html", **reply.headers}
        return web.Response(status=reply.status, body=payload, headers=headers)

    def __enter__(self) -> StubServer:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            self._ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, provider: str) -> str:
        return self.url if provider == "anthropic" else f"{self.url}/v1"


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def anthropic_message(text: str = "hello", usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": usage or {"input_tokens": 10, "output_tokens": 2}}


def openai_completion(text: str = "hello", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-5-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}


def anthropic_events(tokens: Sequence[str | float], usage: dict[str, int] | None = None) -> list[bytes | float]:
    """An Anthropic Messages stream of text deltas (a float in ``tokens`` pauses that many seconds)."""
    start = {"type": "message_start", "message": {**anthropic_message(""), "content": [], "stop_reason": None,
                                                  "usage": {"input_tokens": 10, "output_tokens": 1}}}
    events: list[bytes | float] = [sse(start, "message_start"), sse({"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}, "content_block_start")]
    for token in tokens:
        events.append(token if isinstance(token, float) else sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}},
            "content_block_delta"))
    events += [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
               sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": usage or {"output_tokens": len([t for t in tokens if isinstance(t, str)])}},
                   "message_delta"),
               sse({"type": "message_stop"}, "message_stop")]
    return events


HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
