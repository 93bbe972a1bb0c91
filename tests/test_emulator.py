"""The emulator, driven over HTTP by the real anthropic and openai SDKs (sync and async)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Literal, Optional

import anthropic
import httpx2
import jsonschema
import numpy as np
import openai
import pydantic
import pytest
from anthropic.lib._parse._transform import transform_schema

from lab.emulator import PROFILE_NAMES, Emulator, FaultRule, LatencyProfile, json_from_schema, report_profiles
from lab.emulator.content import ChatRequest, UnsupportedSchema, split_tokens, synthetic_text, synthetic_thinking
from lab.emulator.profiles import READING, READINGS, REFERENCE_DIR, _read_targets, profile_set, request_rng

HAIKU, SONNET, GPT = "claude-haiku-4-5", "claude-sonnet-4-6", "gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Explain in 2-3 sentences why infrastructure reliability matters."}]
FAST = LatencyProfile.fixed(ttft_ms=5, itl_ms=0.2, output_tokens=20)
FAULT = "x-emulator-fault"


@pytest.fixture
def emu():
    """A fresh emulator per test (startup takes milliseconds), so no request outlives its test."""
    with Emulator(FAST, seed=1) as emulator:
        yield emulator


def claude(emu, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.url_for("anthropic"), api_key="x", max_retries=0, **kwargs)


def gpt(emu, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.url_for("openai"), api_key="x", max_retries=0, **kwargs)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers, json.loads(response.read())


class Issue(pydantic.BaseModel):
    line: int = pydantic.Field(ge=1, le=500)
    severity: Literal["low", "medium", "high"]
    message: str = pydantic.Field(min_length=12)
    fix: Optional[str] = None


class Review(pydantic.BaseModel):
    summary: str
    score: float = pydantic.Field(ge=0, le=1)
    approved: bool
    issues: list[Issue] = pydantic.Field(min_length=2, max_length=5)
    parent: Optional[Review] = None


# --- anthropic -------------------------------------------------------------------------------


def test_anthropic_json_response(emu):
    raw = claude(emu).messages.with_raw_response.create(model=HAIKU, max_tokens=256, messages=PROMPT)
    message = raw.parse()
    assert raw.headers["x-lab-synthetic"] == "true"
    assert raw.headers["request-id"].startswith("req_")
    assert message.model == HAIKU and message.role == "assistant" and message.stop_reason == "end_turn"
    assert len(split_tokens(message.content[0].text)) == message.usage.output_tokens == 20
    assert message.usage.input_tokens > 0
    (entry,) = emu.wait_for_requests(1)
    assert (entry.api, entry.path, entry.model, entry.stream, entry.http_status, entry.outcome) == (
        "anthropic", "/v1/messages", HAIKU, False, 200, "ok",
    )
    assert entry.request_id == raw.headers["request-id"]


def test_anthropic_stream_event_sequence(emu):
    with claude(emu).messages.create(model=SONNET, max_tokens=256, messages=PROMPT, stream=True) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds == ["message_start", "content_block_start", *["content_block_delta"] * 20,
                     "content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.model == SONNET and events[0].message.usage.input_tokens > 0
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 20


def test_anthropic_stream_on_the_wire_has_event_lines_and_ping(emu):
    body = json.dumps({"model": HAIKU, "max_tokens": 3, "messages": PROMPT, "stream": True}).encode()
    request = urllib.request.Request(emu.url_for("anthropic") + "/v1/messages", body, {"x-api-key": "x"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    names = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * 3,
                     "content_block_stop", "message_delta", "message_stop"]
    assert '"stop_reason":"max_tokens"' in text


def test_anthropic_max_tokens_stop_reason_and_helper_stream(emu):
    with claude(emu).messages.stream(model=HAIKU, max_tokens=7, messages=PROMPT) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 7
    assert len(split_tokens(final.content[0].text)) == 7


def test_async_anthropic_stream_and_create(emu):
    async def run():
        async with anthropic.AsyncAnthropic(base_url=emu.url_for("anthropic"), api_key="x", max_retries=0) as client:
            async with client.messages.stream(model=HAIKU, max_tokens=256, messages=PROMPT) as stream:
                text = "".join([chunk async for chunk in stream.text_stream])
            message = await client.messages.create(model=HAIKU, max_tokens=256, messages=PROMPT)
        return text, message

    text, message = asyncio.run(run())
    assert len(split_tokens(text)) == 20 and message.stop_reason == "end_turn"


# --- openai ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_openai_json_response(emu, limit):
    raw = gpt(emu).chat.completions.with_raw_response.create(model=GPT, messages=PROMPT, **{limit: 5})
    completion = raw.parse()
    assert raw.headers["x-lab-synthetic"] == "true" and raw.headers["x-request-id"].startswith("req_")
    assert completion.object == "chat.completion" and completion.model == GPT
    assert completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert (usage.completion_tokens, usage.total_tokens) == (5, usage.prompt_tokens + 5)
    full = gpt(emu).chat.completions.create(model=GPT, messages=PROMPT)
    assert full.choices[0].finish_reason == "stop" and full.usage.completion_tokens == 20


def test_openai_stream_chunks_with_usage(emu):
    chunks = list(gpt(emu).chat.completions.create(
        model=GPT, messages=PROMPT, stream=True, stream_options={"include_usage": True}
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert len(content) == 20 and all(content)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    without_usage = list(gpt(emu).chat.completions.create(model=GPT, messages=PROMPT, stream=True))
    assert without_usage[-1].choices[0].finish_reason == "stop"


def test_async_openai(emu):
    async def run():
        async with openai.AsyncOpenAI(base_url=emu.url_for("openai"), api_key="x", max_retries=0) as client:
            completion = await client.chat.completions.create(model=GPT, messages=PROMPT)
            stream = await client.chat.completions.create(model=GPT, messages=PROMPT, stream=True)
            pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        return completion, pieces

    completion, pieces = asyncio.run(run())
    assert completion.usage.completion_tokens == len(pieces) == 20


# --- structured output -----------------------------------------------------------------------


def test_json_from_pydantic_schema_validates():
    schema = Review.model_json_schema()
    assert "$defs" in schema and "anyOf" in json.dumps(schema)
    value = json_from_schema(schema)
    jsonschema.validate(value, schema)
    Review.model_validate(value)
    # the Anthropic SDK moves constraints into descriptions; the generator reads them back
    Review.model_validate(json_from_schema(transform_schema(Review)))


def test_json_from_schema_shapes():
    schema = {
        "type": "object",
        "required": ["when", "kind", "n", "x", "tags", "both", "maybe"],
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "kind": {"const": "review"},
            "n": {"type": "integer", "exclusiveMinimum": 10, "maximum": 12},
            "x": {"type": "number", "minimum": -2, "maximum": -1},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "minItems": 3, "uniqueItems": True},
            "both": {"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                               {"properties": {"b": {"type": "null"}}, "required": ["b"]}]},
            "maybe": {"type": ["integer", "null"]},
        },
    }
    value = json_from_schema(schema)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert 10 < value["n"] <= 12 and len(value["tags"]) == 3


def test_anthropic_structured_output(emu):
    client = claude(emu)
    parsed = client.messages.parse(model=SONNET, max_tokens=2048, messages=PROMPT, output_format=Review)
    assert isinstance(parsed.parsed_output, Review)
    schema = Review.model_json_schema()
    message = client.messages.create(
        model=SONNET, max_tokens=2048, messages=PROMPT,
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert len(message.content) == 1
    jsonschema.validate(json.loads(message.content[0].text), schema)
    with client.messages.stream(model=SONNET, max_tokens=2048, messages=PROMPT, output_format=Review) as stream:
        assert isinstance(stream.get_final_message().parsed_output, Review)


def test_openai_structured_output(emu):
    client = gpt(emu)
    parsed = client.chat.completions.parse(model=GPT, messages=PROMPT, response_format=Review)
    assert isinstance(parsed.choices[0].message.parsed, Review)
    json_mode = client.chat.completions.create(model=GPT, messages=PROMPT, response_format={"type": "json_object"})
    assert isinstance(json.loads(json_mode.choices[0].message.content), dict)


def test_custom_responder():
    def echo(request: ChatRequest) -> str:
        return f"{request.api}:{request.model}:{request.prompt.upper()}"

    with Emulator(LatencyProfile.instant(), responder=echo) as emulator:
        message = claude(emulator).messages.create(
            model=HAIKU, max_tokens=100, system="be brief", messages=[{"role": "user", "content": "hi"}]
        )
    assert message.content[0].text == f"anthropic:{HAIKU}:BE BRIEF\nHI"


# --- faults ----------------------------------------------------------------------------------


def call(emu, api: str, stream: bool, fault: str, **client_kwargs):
    """One call; a stream is read to the end."""
    headers = {FAULT: fault}
    if api == "anthropic":
        result = claude(emu, **client_kwargs).messages.create(
            model=HAIKU, max_tokens=256, messages=PROMPT, stream=stream, extra_headers=headers
        )
    else:
        result = gpt(emu, **client_kwargs).chat.completions.create(
            model=GPT, messages=PROMPT, stream=stream, extra_headers=headers
        )
    return list(result) if stream else result


STATUS_FAULTS = [
    ("rate_limit", "anthropic", anthropic.RateLimitError, 429),
    ("overloaded", "anthropic", anthropic.OverloadedError, 529),
    ("server_error", "anthropic", anthropic.InternalServerError, 500),
    ("rate_limit", "openai", openai.RateLimitError, 429),
    ("overloaded", "openai", openai.InternalServerError, 503),
    ("server_error", "openai", openai.InternalServerError, 500),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("kind", "api", "error", "status"), STATUS_FAULTS)
def test_status_faults(emu, kind, api, error, status, stream):
    with pytest.raises(error) as caught:
        call(emu, api, stream, kind)
    response = caught.value.response
    assert response.status_code == status and response.headers["x-lab-synthetic"] == "true"
    assert ("retry-after" in response.headers) == (kind == "rate_limit")
    if api == "anthropic":
        assert caught.value.body["type"] == "error" and caught.value.request_id == response.headers["request-id"]
    else:
        assert set(caught.value.body) >= {"message", "type", "code"}
    (entry,) = emu.wait_for_requests(1)
    assert (entry.fault, entry.http_status, entry.outcome, entry.retry_count) == (kind, status, "error", 0)


def test_mid_stream_errors(emu):
    with pytest.raises(anthropic.APIStatusError) as caught:
        call(emu, "anthropic", True, "overloaded;after=3")
    assert caught.value.type == "overloaded_error"
    with pytest.raises(openai.APIError, match="Overloaded"):
        call(emu, "openai", True, "overloaded;after=3")
    assert [e.outcome for e in emu.wait_for_requests(2)] == ["error", "error"]


@pytest.mark.parametrize("api", ["anthropic", "openai"])
@pytest.mark.parametrize("stream", [False, True])
def test_timeout_fault_trips_the_client_timeout(emu, api, stream):
    started = time.perf_counter()
    with pytest.raises((anthropic.APITimeoutError, openai.APITimeoutError)):
        call(emu, api, stream, "timeout;ms=60000", timeout=0.3)
    assert time.perf_counter() - started < 30  # the client gave up long before the 60 s stall ended
    (entry,) = emu.wait_for_requests(1, timeout=30)
    assert entry.outcome == "disconnected" and entry.server_time_ms < 50_000  # and the server noticed


@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_cut_stream(emu, api):
    # the Anthropic SDK lets httpx2's transport error through while iterating; OpenAI wraps it
    stream_error = httpx2.RemoteProtocolError if api == "anthropic" else openai.APIConnectionError
    with pytest.raises(stream_error):
        call(emu, api, True, "cut_stream;after=4")
    connection_error = anthropic.APIConnectionError if api == "anthropic" else openai.APIConnectionError
    with pytest.raises(connection_error):
        call(emu, api, False, "cut_stream")
    assert [e.outcome for e in emu.wait_for_requests(2)] == ["cut", "cut"]


def test_cut_stream_delivers_deltas_then_breaks(emu):
    seen = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for event in claude(emu).messages.create(
            model=HAIKU, max_tokens=256, messages=PROMPT, stream=True, extra_headers={FAULT: "cut_stream;after=4"}
        ):
            seen.append(event.type)
    assert seen.count("content_block_delta") == 4 and "message_stop" not in seen


@pytest.mark.parametrize("api", ["anthropic", "openai"])
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_json_plain_body(emu, api, stream):
    with pytest.raises(json.JSONDecodeError):
        call(emu, api, stream, "malformed_json")


def test_malformed_json_structured_text(emu):
    schema = Review.model_json_schema()
    message = claude(emu).messages.create(
        model=SONNET, max_tokens=2048, messages=PROMPT, extra_headers={FAULT: "malformed_json"},
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(message.content[0].text)
    completion = gpt(emu).chat.completions.create(
        model=GPT, messages=PROMPT, extra_headers={FAULT: "malformed_json"},
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}},
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(completion.choices[0].message.content)


def test_stall_first_token(emu):
    stamps = {}
    with claude(emu).messages.create(
        model=HAIKU, max_tokens=256, messages=PROMPT, stream=True, extra_headers={FAULT: "stall_first_token;ms=150"}
    ) as stream:
        for event in stream:
            stamps.setdefault(event.type, time.perf_counter())
    assert stamps["content_block_delta"] - stamps["message_start"] >= 0.14
    (entry,) = emu.wait_for_requests(1)
    assert entry.outcome == "ok" and entry.planned_delay_ms == pytest.approx(5 + 150 + 20 * 0.2)


def test_slow_stream(emu):
    started = time.perf_counter()
    chunks = call(emu, "openai", True, "slow_stream;factor=50")
    assert time.perf_counter() - started >= 0.2 and len(chunks) == 22
    (entry,) = emu.wait_for_requests(1)
    assert entry.planned_delay_ms == pytest.approx(5 + 20 * 0.2 * 50)


def test_fault_rules_windows_models_and_probability():
    rules = [
        FaultRule("overloaded", models=["sonnet"]),
        FaultRule("rate_limit", start_s=1000),  # not yet
        FaultRule("server_error", probability=0.5, end_s=1000, models=["gpt"]),
    ]
    outcomes = []
    for _ in range(2):
        with Emulator(LatencyProfile.instant(), seed=7, faults=rules) as emulator:
            claude(emulator).messages.create(model=HAIKU, max_tokens=5, messages=PROMPT)
            with pytest.raises(anthropic.OverloadedError):
                claude(emulator).messages.create(model=SONNET, max_tokens=5, messages=PROMPT)
            for _ in range(12):
                try:
                    gpt(emulator).chat.completions.create(model=GPT, messages=PROMPT)
                except openai.InternalServerError:
                    pass
            outcomes.append([e.fault for e in emulator.wait_for_requests(14)])
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:2] == [None, "overloaded"] and 0 < outcomes[0][2:].count("server_error") < 12


def test_bad_requests(emu):
    with pytest.raises(anthropic.BadRequestError):
        call(emu, "anthropic", False, "no_such_fault")
    with pytest.raises(openai.BadRequestError):
        gpt(emu).chat.completions.create(model=GPT, messages=[])
    with Emulator({"haiku": FAST}) as emulator, pytest.raises(anthropic.NotFoundError):
        claude(emulator).messages.create(model=SONNET, max_tokens=5, messages=PROMPT)


# --- the request log -------------------------------------------------------------------------


def test_max_retries_zero_sends_once(emu):
    with pytest.raises(anthropic.OverloadedError):
        call(emu, "anthropic", False, "overloaded")
    assert [(e.retry_count, e.fault) for e in emu.wait_for_requests(1)] == [(0, "overloaded")]


def test_sdk_retries_are_visible(emu):
    client = openai.OpenAI(base_url=emu.url_for("openai"), api_key="x", max_retries=2)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=GPT, messages=PROMPT, extra_headers={FAULT: "rate_limit;retry_after=0.01"})
    assert [e.retry_count for e in emu.wait_for_requests(3)] == [0, 1, 2]


def test_api_key_is_never_logged(emu):
    secret = "sk-lab-fake-0123456789-SECRET"
    anthropic.Anthropic(base_url=emu.url_for("anthropic"), api_key=secret, max_retries=0).messages.create(
        model=HAIKU, max_tokens=5, messages=PROMPT
    )
    openai.OpenAI(base_url=emu.url_for("openai"), api_key=secret, max_retries=0).chat.completions.create(
        model=GPT, messages=PROMPT
    )
    entries = emu.wait_for_requests(2)
    _, served = get_json(emu.base_url + "/_emulator/requests")
    assert all(entry.auth_present for entry in entries)
    assert secret not in repr(entries) and secret not in json.dumps(served)


def test_control_endpoints(emu):
    gpt(emu).chat.completions.create(model=GPT, messages=PROMPT, extra_headers={"x-emulator-key": "k1"})
    emu.wait_for_requests(1)
    headers, served = get_json(emu.base_url + "/_emulator/requests")
    assert headers["x-lab-synthetic"] == "true"
    assert served[0]["key"] == "k1" and served[0]["output_tokens"] == 20
    assert set(served[0]) >= {"request_id", "api", "path", "model", "stream", "retry_count", "fault", "http_status",
                              "outcome", "received_at", "planned_delay_ms", "server_time_ms", "overhead_ms"}
    assert get_json(emu.base_url + "/_emulator/health")[1] == {"status": "ok"}
    urllib.request.urlopen(urllib.request.Request(emu.base_url + "/_emulator/requests", method="DELETE"), timeout=5)
    assert emu.requests == []
    gpt(emu).chat.completions.create(model=GPT, messages=PROMPT)
    emu.wait_for_requests(1)
    emu.reset_log()
    assert emu.requests == []


def test_server_notices_a_cancelled_request(emu):
    async def run():
        async with anthropic.AsyncAnthropic(base_url=emu.url_for("anthropic"), api_key="x", max_retries=0) as client:
            task = asyncio.create_task(client.messages.create(
                model=HAIKU, max_tokens=5, messages=PROMPT, extra_headers={FAULT: "timeout;ms=60000"}
            ))
            assert await asyncio.to_thread(emu.wait_in_flight, 1)  # the server is answering it
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    (entry,) = emu.wait_for_requests(1, timeout=30)
    assert entry.outcome == "disconnected" and entry.server_time_ms < 50_000  # noticed before the 60 s stall ended


def test_never_early():
    with Emulator(LatencyProfile.fixed(ttft_ms=30, itl_ms=1, output_tokens=10)) as emulator:
        client = claude(emulator)
        for stream in (False, True) * 5:
            started = time.perf_counter()
            result = client.messages.create(model=HAIKU, max_tokens=50, messages=PROMPT, stream=stream)
            if stream:
                list(result)
            assert time.perf_counter() - started >= 0.040
        entries = emulator.wait_for_requests(10)
    # How small the server's own overhead is, is measured by benchmarks/overhead.py, not asserted here.
    assert all(e.planned_delay_ms == pytest.approx(40) and e.overhead_ms >= 0 for e in entries)


# --- lifecycle -------------------------------------------------------------------------------


def test_stop_does_not_hang_on_a_stalled_request():
    emulator = Emulator("fixed").start()
    assert emulator.start() is emulator and emulator.url_for("openai-compatible") == emulator.base_url + "/v1"
    errors = []

    def stalled():
        try:
            call(emulator, "anthropic", True, "timeout;ms=30000")
        except anthropic.APIConnectionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=stalled)
    thread.start()
    assert emulator.wait_in_flight(1)
    stopping = time.perf_counter()
    emulator.stop()
    emulator.stop()
    assert time.perf_counter() - stopping < 10  # a hang detector, not a timing test
    thread.join(30)
    assert errors and emulator.requests[-1].outcome == "disconnected"


def test_serve_prints_its_url():
    code = "from lab.emulator import serve; serve(port=0, profile='fixed', seed=3)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = next(word for word in line.split() if word.startswith("http://"))
        assert get_json(url + "/_emulator/health")[1] == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(5)


# --- latency profiles ------------------------------------------------------------------------


def test_seed_determinism():
    noisy = LatencyProfile("noisy", ttft_ms=4, itl_ms=0.1, output_tokens=12, tokens_sd=4, sigma=0.5,
                           stall_prob=0.3, stall_median_ms=8, stall_sigma=0.5)

    def delays(seed: int, keys: tuple[str | None, ...] = (None,) * 8) -> list[float]:
        with Emulator(noisy, seed=seed) as emulator:
            client = gpt(emulator)
            for key in keys:
                client.chat.completions.create(
                    model=GPT, messages=PROMPT, extra_headers={"x-emulator-key": key} if key else None
                )
            return [e.planned_delay_ms for e in emulator.wait_for_requests(len(keys))]

    first = delays(3)
    assert first == delays(3) and first != delays(4) and len(set(first)) > 1
    assert delays(3, ("a", "b")) == delays(3, ("b", "a"))[::-1]


def test_named_profile_sets():
    fitted = report_profiles()
    report = profile_set("report")
    assert report.for_model("claude-3-5-haiku-latest") is fitted["haiku"]
    assert report.for_model("claude-sonnet-4-6") is report.for_model("gpt-4o") is fitted["sonnet"]
    fixed = profile_set("fixed").for_model("anything").draw(request_rng(0, "m", "0"), 256)
    assert (fixed.total_ms, fixed.output_tokens) == (200, 20)
    assert profile_set("instant").for_model("m").draw(request_rng(0, "m", "0")).total_ms == 0


def test_report_fit_acceptance():
    targets = _read_targets(REFERENCE_DIR / "experiment1_windows.csv", REFERENCE_DIR / "experiment1_aggregates.csv",
                            READING)
    over = 0
    for model, profile in report_profiles().items():
        draws = [profile.draw(request_rng(0, model, str(i)), 256) for i in range(1000)]
        totals = np.array([d.total_ms for d in draws])
        (median, _), (p95, _), *_ = targets.quantiles[model]
        first = totals[:250]
        assert abs(np.median(first) / median - 1) < 0.05
        assert abs(np.percentile(first, 95) / p95 - 1) < 0.15
        over += int((first > 3000).sum())
        assert totals.max() > 4500
        tokens = np.array([d.output_tokens for d in draws])
        stalled = np.array([d.stall_ms > 0 for d in draws])
        assert abs(tokens[stalled].mean() - tokens[~stalled].mean()) < 3  # slow calls carry no more tokens
    expected = targets.over_share * 500  # 59 of 500 under the design reading
    assert abs(over - expected) < 4 * np.sqrt(expected)


def test_the_two_readings_of_the_slow_share():
    windows, aggregates = REFERENCE_DIR / "experiment1_windows.csv", REFERENCE_DIR / "experiment1_aggregates.csv"
    shares = {reading: _read_targets(windows, aggregates, reading).over_share for reading in READINGS}
    assert shares == {"design": 59 / 500, "stated": 59 / 1000}
    assert report_profiles("stated")["sonnet"].sigma < report_profiles("design")["sonnet"].sigma / 2
    with pytest.raises(ValueError, match="reading must be one of"):
        _read_targets(windows, aggregates, "guess")


def test_synthetic_text_tokens():
    for make in (synthetic_text, synthetic_thinking):
        for n in (1, 7, 150):
            text = make(n, variant=3)
            assert len(split_tokens(text)) == n and "".join(split_tokens(text)) == text


@pytest.mark.parametrize("schema", [{"$ref": "#"}, {"type": "nope"}, {"enum": []}, {"$ref": "#/$defs/gone"},
                                    {"type": "array", "minItems": 10**9}, {"properties": {"a": 5}, "required": ["a"]},
                                    {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}])
def test_json_from_schema_refuses_what_it_cannot_build(schema):
    with pytest.raises(UnsupportedSchema):
        json_from_schema(schema)


def test_key_by_prompt_draws_the_same_whatever_came_before():
    prompts = [f"Request {i}. Explain reliability." for i in range(6)]
    profile = LatencyProfile("varied", ttft_ms=5, itl_ms=0.1, output_tokens=10, sigma=0.5)
    plans = []
    for order in (prompts, prompts[::-1][:3]):
        with Emulator(profile, seed=3, key_by="prompt", faults=[FaultRule("rate_limit", 0.5)]) as emu:
            for prompt in order:
                with contextlib.suppress(anthropic.RateLimitError):
                    claude(emu).messages.create(model=HAIKU, max_tokens=64,
                                                messages=[{"role": "user", "content": prompt}])
            entries = emu.wait_for_requests(len(order))
            plans.append({e.key.strip(): (e.planned_delay_ms, e.fault) for e in entries})
    first, second = plans
    assert set(second) == set(prompts[3:]) and all(second[k] == first[k] for k in second)
    answered = [delay for delay, fault in first.values() if fault is None]
    assert len(set(answered)) == len(answered) > 1  # a draw of its own per prompt
    assert {fault for _, fault in first.values()} == {None, "rate_limit"}


def test_restart_clock_moves_fault_windows():
    with Emulator(FAST, faults=[FaultRule("overloaded", start_s=0.0, end_s=60.0)]) as emu:
        emu.restart_clock(time.perf_counter() + 60)  # elapsed time is now -60 s: before the window
        reply = claude(emu).messages.with_raw_response.create(model=HAIKU, max_tokens=8, messages=PROMPT)
        assert reply.http_response.status_code == 200
        emu.restart_clock()
        with pytest.raises(anthropic.APIStatusError) as error:
            claude(emu).messages.create(model=HAIKU, max_tokens=8, messages=PROMPT)
        assert error.value.status_code == 529


# --- thinking ----------------------------------------------------------------------------------

THINK = "x-emulator-thinking"
THINKING = LatencyProfile.fixed(ttft_ms=5, itl_ms=1, output_tokens=5, thinking_tokens=3)


def test_anthropic_thinking_stream_events_and_sdk_final_message():
    with Emulator(THINKING) as emu:
        with claude(emu).messages.stream(model=HAIKU, max_tokens=256, messages=PROMPT) as stream:
            events = [(e.type, getattr(e, "index", None), getattr(getattr(e, "delta", None), "type", None))
                      for e in stream if e.type not in ("text", "thinking", "signature")]
            final = stream.get_final_message()
        (entry,) = emu.wait_for_requests(1)
    assert events == [
        ("message_start", None, None),
        ("content_block_start", 0, None),
        *[("content_block_delta", 0, "thinking_delta")] * 3,
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
        *[("content_block_delta", 1, "text_delta")] * 5,
        ("content_block_stop", 1, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    thinking, text = final.content
    assert thinking.type == "thinking" and len(split_tokens(thinking.thinking)) == 3 and thinking.signature
    assert text.type == "text" and len(split_tokens(text.text)) == 5
    assert final.usage.output_tokens == 8 == entry.output_tokens and entry.thinking_tokens == 3


def test_anthropic_thinking_non_streamed_and_the_thinking_parameter(emu):
    client = claude(emu)
    message = client.messages.create(model=SONNET, max_tokens=2048, messages=PROMPT,
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert len(split_tokens(message.content[0].thinking)) == 16  # min(budget, 16)
    assert message.usage.output_tokens == 16 + 20
    small = client.messages.create(model=SONNET, max_tokens=2048, messages=PROMPT,
                                   thinking={"type": "enabled", "budget_tokens": 4})
    plain = client.messages.create(model=SONNET, max_tokens=2048, messages=PROMPT, thinking={"type": "disabled"})
    assert len(split_tokens(small.content[0].thinking)) == 4 and [b.type for b in plain.content] == ["text"]
    assert [e.thinking_tokens for e in emu.wait_for_requests(3)] == [16, 4, 0]


def test_thinking_header_overrides_profile_and_parameter():
    with Emulator(THINKING) as emu:
        client = claude(emu)
        kwargs = dict(model=HAIKU, max_tokens=256, messages=PROMPT, thinking={"type": "enabled", "budget_tokens": 9})
        assert len(client.messages.create(**kwargs).content) == 2  # the profile's 3, not the budget's 9
        assert len(client.messages.create(**kwargs, extra_headers={THINK: "0"}).content) == 1
        assert len(split_tokens(client.messages.create(**kwargs, extra_headers={THINK: "7"}).content[0].thinking)) == 7
        assert [e.thinking_tokens for e in emu.wait_for_requests(3)] == [3, 0, 7]
        with pytest.raises(anthropic.BadRequestError, match=THINK):
            client.messages.create(model=HAIKU, max_tokens=8, messages=PROMPT, extra_headers={THINK: "x"})


def test_openai_reasoning_content_streamed_and_not(emu):
    client = gpt(emu)
    completion = client.chat.completions.create(model=GPT, messages=PROMPT, extra_headers={THINK: "4"})
    message = completion.choices[0].message
    assert len(split_tokens(message.model_extra["reasoning_content"])) == 4 and message.content
    assert completion.usage.completion_tokens == 24 and completion.usage.completion_tokens_details.reasoning_tokens == 4
    chunks = list(client.chat.completions.create(model=GPT, messages=PROMPT, stream=True, extra_headers={THINK: "4"},
                                                 stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].finish_reason is None][1:]
    kinds = ["reasoning" if getattr(d, "reasoning_content", None) else "content" for d in deltas]
    assert kinds == ["reasoning"] * 4 + ["content"] * 20
    assert chunks[-1].usage.completion_tokens == 24


def test_thinking_and_text_share_max_tokens(emu):
    message = claude(emu).messages.create(model=HAIKU, max_tokens=4, messages=PROMPT, extra_headers={THINK: "10"})
    thinking, text = message.content
    assert (len(split_tokens(thinking.thinking)), len(split_tokens(text.text))) == (3, 1)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 4


@pytest.mark.parametrize("stream", [False, True])
def test_the_log_records_the_planned_truth(stream):
    profile = LatencyProfile.fixed(ttft_ms=30, itl_ms=10, output_tokens=4, thinking_tokens=5)
    with Emulator(profile) as emu:
        stamps = {}
        started = time.perf_counter()
        if stream:
            with claude(emu).messages.stream(model=HAIKU, max_tokens=256, messages=PROMPT) as events:
                for event in events:
                    stamps.setdefault(event.type, time.perf_counter() - started)
        else:
            claude(emu).messages.create(model=HAIKU, max_tokens=256, messages=PROMPT)
        (entry,) = emu.wait_for_requests(1)
    ttft, first_text, end = (30, 80, 120) if stream else (120, 120, 120)
    assert entry.planned_ttft_ms == pytest.approx(ttft) and entry.planned_first_text_ms == pytest.approx(first_text)
    assert entry.planned_itl_ms == pytest.approx(10) and entry.thinking_tokens == 5
    assert entry.planned_end_ms == pytest.approx(end) == entry.planned_delay_ms
    if stream:  # never early: each phase reaches the client no sooner than planned
        assert stamps["thinking"] >= 0.030 and stamps["text"] >= 0.080


def test_planned_first_text_is_none_when_a_stream_is_cut_during_thinking():
    with Emulator(THINKING) as emu:
        with pytest.raises(httpx2.RemoteProtocolError):
            call(emu, "anthropic", True, "cut_stream;after=2")
        (entry,) = emu.wait_for_requests(1)
    assert entry.planned_ttft_ms == pytest.approx(5) and entry.planned_first_text_ms is None


# --- profiles by spec --------------------------------------------------------------------------


def test_profile_specs():
    fixed = profile_set("fixed:ttft_ms=200,itl_ms=20,output_tokens=50").for_model("any")
    assert (fixed.ttft_ms, fixed.itl_ms, fixed.output_tokens, fixed.thinking_tokens) == (200, 20, 50, 0)
    assert profile_set("instant:output_tokens=50").for_model("m").draw(request_rng(0, "m", "0")).total_ms == 0
    thinking = profile_set("fixed:itl_ms=2,thinking_tokens=8").for_model("m").draw(request_rng(0, "m", "0"))
    assert (thinking.thinking_tokens, thinking.total_ms) == (8, 200 + 28 * 2)
    assert profile_set("report:thinking_tokens=4").for_model("claude-haiku-4-5").thinking_tokens == 4
    assert PROFILE_NAMES == ("report", "fixed", "instant", "haiku", "sonnet")


@pytest.mark.parametrize("spec", ["nope", "fixed:foo=1", "fixed:ttft_ms", "fixed:ttft_ms=-1", "fixed:ttft_ms=nan",
                                  "instant:ttft_ms=5", "fixed:output_tokens=0", "fixed:output_tokens=1.5",
                                  "fixed:itl_ms=1,itl_ms=2", "fixed:thinking_tokens=1000000", ""])
def test_bad_profile_specs_name_the_valid_ones(spec):
    with pytest.raises(ValueError) as caught:
        profile_set(spec)
    message = str(caught.value)
    assert repr(spec) in message and all(name in message for name in PROFILE_NAMES)
    assert all(parameter in message for parameter in ("ttft_ms", "itl_ms", "output_tokens", "thinking_tokens"))


def test_emulator_and_serve_refuse_an_unknown_profile_with_value_error():
    with pytest.raises(ValueError, match="fixed"):
        Emulator("nope")
    code = "from lab.emulator import serve; serve(port=0, profile='nope')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "BadInput: unknown latency profile 'nope'" in result.stderr  # a ValueError
    assert "lab emulator serving" not in result.stdout


def test_serve_takes_a_spec():
    code = "from lab.emulator import serve; serve(port=0, profile='fixed:ttft_ms=1,output_tokens=3')"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        url = next(word for word in process.stdout.readline().split() if word.startswith("http://"))
        message = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0).messages.create(
            model=HAIKU, max_tokens=50, messages=PROMPT)
        assert message.usage.output_tokens == 3
    finally:
        process.terminate()
        process.wait(5)


# --- endpoints for other tools -----------------------------------------------------------------


def test_health_and_model_listing(emu):
    assert get_json(emu.base_url + "/health")[1] == {"status": "ok"}
    gpt(emu).chat.completions.create(model="llama-3.1-8b-instruct", messages=PROMPT)
    listing = get_json(emu.base_url + "/v1/models")[1]
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == [HAIKU, SONNET, "gpt-5-mini", "gpt-5", "llama-3.1-8b-instruct"]
    assert all(m["object"] == "model" and m["owned_by"] == "lab-emulator" and isinstance(m["created"], int)
               for m in listing["data"])
    assert [m.id for m in gpt(emu).models.list()][-1] == "llama-3.1-8b-instruct"
    assert [m.id for m in claude(emu).models.list()][:2] == [HAIKU, SONNET]  # Anthropic's format for its SDK
    assert gpt(emu).models.retrieve("meta-llama/Llama-3.1-8B").id == "meta-llama/Llama-3.1-8B"
    assert claude(emu).models.retrieve(SONNET).display_name == SONNET


def test_model_listing_follows_the_profile_set():
    with Emulator({"haiku": FAST}) as emu:
        assert [m.id for m in gpt(emu).models.list()] == [HAIKU]
        with pytest.raises(openai.NotFoundError):
            gpt(emu).models.retrieve("gpt-5")


def test_metrics_in_prometheus_text_format(emu):
    from prometheus_client.parser import text_string_to_metric_families

    with pytest.raises(anthropic.RateLimitError):
        call(emu, "anthropic", False, "rate_limit")
    claude(emu).messages.create(model=HAIKU, max_tokens=7, messages=PROMPT, extra_headers={THINK: "2"})
    list(gpt(emu).chat.completions.create(model=GPT, messages=PROMPT, stream=True))
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(emu.base_url + "/nope", timeout=5)
    emu.wait_for_requests(3)
    with urllib.request.urlopen(emu.base_url + "/metrics", timeout=5) as response:
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("lab_emulator_requests_total", (("api", "anthropic"), ("status", "429")))] == 1
    assert samples[("lab_emulator_requests_total", (("api", "anthropic"), ("status", "200")))] == 1
    assert samples[("lab_emulator_requests_total", (("api", "openai"), ("status", "200")))] == 1
    assert samples[("lab_emulator_requests_total", (("api", "openai"), ("status", "404")))] == 1
    assert samples[("lab_emulator_requests_in_flight", ())] == 0
    assert samples[("lab_emulator_output_tokens_total", ())] == 7 + 20


def test_metrics_count_requests_in_flight(emu):
    thread = threading.Thread(target=lambda: call(emu, "openai", False, "timeout;ms=1000"))
    thread.start()
    assert emu.wait_in_flight(1)
    assert "lab_emulator_requests_in_flight 1" in urllib.request.urlopen(emu.base_url + "/metrics").read().decode()
    thread.join(30)
