"""Every reply becomes a record: a proxy's or gateway's odd answers never raise, in any call kind."""

from __future__ import annotations

import asyncio

import pytest

from lab import llm
from lab.emulator import Emulator, LatencyProfile
from lab.hedge import Backend, hedge

from stubs import HTML_PAGE, Scripted, StubServer, anthropic_message, openai_completion, sse

ERROR_BODY = {"error": {"message": "upstream failed", "type": "server_error"}}
ODD = {
    "empty choices": ({"anthropic": {"id": "x", "type": "message", "content": []},
                       "openai": {"id": "x", "object": "chat.completion", "choices": []}}),
    "error body with 200": {"anthropic": ERROR_BODY, "openai": ERROR_BODY},
    "html page with 200": {"anthropic": HTML_PAGE, "openai": HTML_PAGE},
    "null content": {"anthropic": {**anthropic_message(), "content": None},
                     "openai": {**openai_completion(), "choices": None}},
    "wrong types": {"anthropic": {**anthropic_message(), "content": [{"type": "text", "text": 7}]},
                    "openai": {**openai_completion(), "choices": [{"index": 0, "message": {"content": ["x"]}}]}},
}


def call(kind: str, provider: str, url: str) -> llm.Completion:
    options = {"provider": provider, "base_url": url, "max_tokens": 16}
    if kind == "complete":
        return llm.complete("hi", **options)
    if kind == "json":
        return llm.complete_json("hi", {"type": "object", "properties": {"a": {"type": "string"}}}, **options)
    if kind == "acomplete":
        return asyncio.run(llm.acomplete("hi", **options))
    if kind == "stream":
        return llm.drain(llm.stream("hi", **options))

    async def astream() -> llm.Completion:
        chunks = llm.astream("hi", **options)
        async for _ in chunks:
            pass
        return llm.Completion(chunks.text, chunks.record)

    return asyncio.run(astream())


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("kind", ["complete", "json", "acomplete"])
@pytest.mark.parametrize("case", sorted(ODD))
def test_an_unreadable_reply_is_an_invalid_response_record(case, kind, provider):
    with StubServer([Scripted(200, ODD[case][provider])]) as stub:
        answer = call(kind, provider, stub.url_for(provider))
    record = answer.record
    assert record.status == "error" and record.error_type == "invalid_response", record.error_message
    assert answer.text == "" and record.error_message


STREAM_ODD = {
    "not json": Scripted(200, events=[b"event: content_block_delta\ndata: {not json\n\n"]),
    "html page instead of events": Scripted(200, HTML_PAGE),
    "json body instead of events": Scripted(200, {"choices": []}),
    "events of the wrong shape": Scripted(200, events=[
        sse({"type": "content_block_delta", "index": 0, "delta": None}, "content_block_delta"),
        sse({"choices": [{"index": 0, "delta": 5}]})]),
}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("kind", ["stream", "astream"])
@pytest.mark.parametrize("case", sorted(STREAM_ODD))
def test_an_unreadable_stream_is_a_record(case, kind, provider):
    with StubServer([STREAM_ODD[case]]) as stub:
        record = call(kind, provider, stub.url_for(provider)).record
    assert record.status == "error" and record.error_type == "invalid_response", record
    assert record.error_message


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_gateway_error_page_is_a_server_error(provider):
    with StubServer([Scripted(502, HTML_PAGE)]) as stub:
        record = llm.complete("hi", max_tokens=8, provider=provider, base_url=stub.url_for(provider)).record
    assert (record.status, record.error_type, record.http_status) == ("error", "server_error", 502)


def test_a_hedge_keeps_the_healthy_answer_when_the_primary_sends_garbage():
    with (StubServer([Scripted(200, {"choices": []})]) as broken,
          Emulator(profile=LatencyProfile.fixed(ttft_ms=30, itl_ms=1, output_tokens=5)) as healthy):
        outcome = asyncio.run(hedge("hi", Backend("openai", "gpt-5-mini", broken.url_for("openai")),
                                    Backend("openai", "gpt-5-mini", healthy.url_for("openai")), delay_s=5.0,
                                    max_tokens=16))
    assert outcome.ok and outcome.text and outcome.winner.endpoint == healthy.url_for("openai")
    assert outcome.attempts[0].error_type == "invalid_response"
