"""The provider layer, driven through the real SDKs over HTTP against the emulator."""

from __future__ import annotations

import asyncio
import json

import pydantic
import pytest

from lab import llm, records_frame
from lab.core.config import ConfigurationError
from lab.emulator import Emulator, FaultRule, LatencyProfile

PROVIDERS = ["anthropic", "openai", "openai-compatible"]
PROMPT = "Explain in 2-3 sentences why infrastructure reliability matters for software companies."
FAST = LatencyProfile.fixed(ttft_ms=20, itl_ms=1, output_tokens=12)


class Finding(pydantic.BaseModel):
    line: int
    severity: str
    description: str


@pytest.fixture(scope="module")
def emulator():
    with Emulator(profile=FAST, seed=1) as emu:
        yield emu


def on(emu: Emulator, provider: str) -> dict:
    return {"provider": provider, "base_url": emu.url_for(provider), "model": "claude-haiku-4-5"
            if provider == "anthropic" else "gpt-5-mini"}


def assert_ok(record, provider, kind, emu, output_tokens=12):
    assert record.status == "ok", record.error_message
    assert (record.provider, record.kind, record.endpoint) == (provider, kind, emu.url_for(provider))
    assert record.synthetic is True
    assert record.attempts == 1 and record.http_status == 200
    assert record.input_tokens > 0
    # A JSON answer's length follows the schema, not the profile's token count.
    assert record.output_tokens == output_tokens if kind != "json" else record.output_tokens > 0
    assert record.latency_ms > 0 and record.started_at.tzinfo is not None
    assert record.request_id


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_call_kind(emulator, provider):
    answer = llm.complete(PROMPT, max_tokens=256, **on(emulator, provider))
    assert_ok(answer.record, provider, "complete", emulator)
    assert answer.text and answer.text == answer.record.text
    assert answer.record.ttft_ms is None

    chunks = llm.stream(PROMPT, max_tokens=256, **on(emulator, provider))
    parts = list(chunks)
    assert len(parts) > 1 and "".join(parts) == chunks.text
    assert_ok(chunks.record, provider, "stream", emulator)
    # equal when the whole stream came in one read, as on a busy machine
    assert 0 < chunks.record.ttft_ms <= chunks.record.latency_ms

    summary = llm.complete_json("List one finding.", Finding, **on(emulator, provider))
    assert_ok(summary.record, provider, "json", emulator)
    assert isinstance(summary.data, Finding)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_async_twins(emulator, provider):
    schema = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}},
              "required": ["score"]}

    async def run():
        answer, summary = await asyncio.gather(
            llm.acomplete(PROMPT, **on(emulator, provider)),
            llm.acomplete_json("Score it.", schema, **on(emulator, provider)),
        )
        chunks = llm.astream(PROMPT, **on(emulator, provider))
        parts = [part async for part in chunks]
        return answer, summary, chunks, parts

    answer, summary, chunks, parts = asyncio.run(run())
    assert_ok(answer.record, provider, "complete", emulator)
    assert_ok(summary.record, provider, "json", emulator)
    assert 0 <= summary.data["score"] <= 10
    assert_ok(chunks.record, provider, "stream", emulator)
    assert "".join(parts) == chunks.text and chunks.record.ttft_ms is not None


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_ttft_is_first_text_not_headers(provider):
    profile = LatencyProfile.fixed(ttft_ms=150, itl_ms=10, output_tokens=20)
    with Emulator(profile=profile) as emu:
        chunks = llm.stream(PROMPT, **on(emu, provider))
        llm.drain(chunks)
    record = chunks.record
    assert record.ttft_ms >= 150
    # 19 more tokens at 10 ms each arrive after the first one.
    assert record.latency_ms - record.ttft_ms >= 150


def fault_record(provider, kind, fault, **call):
    with Emulator(profile=FAST, faults=[FaultRule(fault)]) as emu:
        call = {**on(emu, provider), **call}
        if kind == "stream":
            completion = llm.drain(llm.stream(PROMPT, **call))
        elif kind == "json":
            completion = llm.complete_json("List one finding.", Finding, **call)
        else:
            completion = llm.complete(PROMPT, **call)
        return completion, emu.wait_for_requests(1)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("kind", ["complete", "stream"])
@pytest.mark.parametrize(
    ("fault", "error_type", "status"),
    [
        ("rate_limit", "rate_limit", 429),
        ("overloaded", "overloaded", None),
        ("server_error", "server_error", 500),
        ("cut_stream", "cut_stream", None),
    ],
)
def test_faults_become_records(provider, kind, fault, error_type, status):
    completion, seen = fault_record(provider, kind, fault)
    record = completion.record
    assert record.status == "error" and not completion.ok and completion.text == ""
    assert record.error_type == error_type
    if status is not None:
        assert record.http_status == status
    if fault == "overloaded":
        assert record.http_status == (529 if provider == "anthropic" else 503)
    assert record.error_message
    if not (fault == "cut_stream" and kind == "complete"):  # a body cut short leaves no response to read
        assert record.synthetic  # an emulator's error is labelled synthetic like its answers
    if fault != "cut_stream":
        assert record.request_id == seen[0].request_id
    # SDK retries are off: the emulator saw exactly one request, the SDK's first try.
    assert len(seen) == 1 and seen[0].retry_count == 0 and record.attempts == 1


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("kind", ["complete", "stream"])
def test_timeout_becomes_record(provider, kind):
    completion, seen = fault_record(provider, kind, "timeout", timeout=0.5)
    assert completion.record.error_type == "timeout"
    assert 500 <= completion.record.latency_ms < 20_000
    assert len(seen) == 1


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_malformed_json_becomes_record(provider):
    completion, _ = fault_record(provider, "json", "malformed_json")
    record = completion.record
    assert record.error_type == "invalid_json" and completion.data is None
    assert record.text  # the raw answer is kept for inspection
    with pytest.raises(json.JSONDecodeError):
        json.loads(record.text)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_stall_before_first_token_shows_in_ttft(provider):
    rule = FaultRule("stall_first_token", params={"ms": 300})
    with Emulator(profile=FAST, faults=[rule]) as emu:
        chunks = llm.stream(PROMPT, **on(emu, provider))
        llm.drain(chunks)
    assert chunks.record.ok and chunks.record.ttft_ms >= 300


def test_schema_mismatch_is_recorded(emulator):
    class Strict(pydantic.BaseModel):
        score: int

    # The emulator answers the schema it is sent; validating against another one must fail.
    wrong = {"type": "object", "properties": {"other": {"type": "string"}}, "required": ["other"]}
    completion = llm.complete_json("Score it.", wrong, **on(emulator, "anthropic"))
    assert completion.ok
    from lab.llm import schemas

    with pytest.raises(schemas.InvalidJSON) as caught:
        schemas.parse(completion.text, Strict)
    assert caught.value.error_type == "schema_mismatch"


def test_lab_retry_policy_counts_every_attempt():
    with Emulator(profile=FAST, faults=[FaultRule("rate_limit", params={"retry_after": 0})]) as emu:
        policy = llm.RetryPolicy(max_attempts=3, base_delay_s=0.01)
        completion = llm.complete(PROMPT, retry=policy, **on(emu, "anthropic"))
        seen = emu.wait_for_requests(3)
    assert completion.record.attempts == 3 and completion.record.error_type == "rate_limit"
    assert len(seen) == 3 and all(r.retry_count == 0 for r in seen)


def test_retry_policy_is_off_by_default():
    assert llm.NO_RETRY.max_attempts == 1
    assert not llm.NO_RETRY.should_retry(1, "overloaded")


def test_stopping_a_stream_early_records_cancelled_and_closes_the_request():
    profile = LatencyProfile.fixed(ttft_ms=10, itl_ms=50, output_tokens=40)
    with Emulator(profile=profile) as emu:
        chunks = llm.stream(PROMPT, **on(emu, "anthropic"))
        for _ in chunks:
            break  # the abandoned generator is closed here, which closes the HTTP request
        record = chunks.record
        seen = emu.wait_for_requests(1)
    assert record.error_type == "cancelled"
    assert seen[0].outcome == "disconnected"


def test_cost_comes_from_the_price_table(emulator):
    record = llm.complete(PROMPT, **on(emulator, "anthropic")).record
    expected = (record.input_tokens * 1.00 + record.output_tokens * 5.00) / 1e6
    assert record.cost_usd == pytest.approx(expected)
    unknown = llm.complete(PROMPT, provider="openai-compatible", model="my-local-model",
                           base_url=emulator.url_for("openai-compatible")).record
    assert unknown.cost_usd is None


def test_records_frame_has_the_schema_columns(emulator):
    recs = [llm.complete(PROMPT, **on(emulator, p)).record for p in PROVIDERS]
    frame = records_frame(recs)
    for column in ["run_id", "experiment", "window", "sample", "provider", "model", "endpoint", "kind",
                   "started_at", "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_usd",
                   "status", "error_type", "http_status", "attempts", "text"]:
        assert column in frame.columns
    assert len(frame) == 3 and str(frame["started_at"].dt.tz) == "UTC"
    assert frame["latency_ms"].dtype == "float64"


def test_provider_and_model_from_environment(emulator, monkeypatch):
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("LLM_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.url_for("openai"))
    record = llm.complete(PROMPT).record
    assert (record.provider, record.model, record.endpoint) == ("openai", "gpt-4.1-mini", emulator.url_for("openai"))


def test_missing_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "LLM_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        llm.complete(PROMPT)


def test_unknown_provider_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="unknown provider"):
        llm.complete(PROMPT, provider="bedrock")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_error_inside_a_stream_becomes_a_record(provider):
    rule = FaultRule("overloaded", params={"after": 3})
    with Emulator(profile=FAST, faults=[rule]) as emu:
        chunks = llm.stream(PROMPT, **on(emu, provider))
        parts = list(chunks)
    assert len(parts) == 3  # the text before the error reached the caller
    record = chunks.record
    assert record.status == "error" and record.error_type == "overloaded"
    assert record.ttft_ms is not None and record.text == "".join(parts)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("kind", ["complete", "stream"])
def test_malformed_response_body_becomes_a_record(provider, kind):
    completion, seen = fault_record(provider, kind, "malformed_json")
    assert completion.record.status == "error"
    assert completion.record.error_type == "invalid_response"
    assert len(seen) == 1
