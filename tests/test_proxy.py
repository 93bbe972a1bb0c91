"""``lab proxy`` with the official SDKs, unmodified: answers identical to a direct call, one record per
call with its timing, credentials forwarded and never written anywhere.

The helpers here are shared by the other ``test_proxy_*`` files.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from lab.core.records import decode_offsets
from lab.emulator import Emulator
from lab.proxy import Proxy
from lab.store import Run

from stubs import Scripted, StubServer, anthropic_message

PROFILE = "fixed:ttft_ms=20,itl_ms=2,output_tokens=12"
# Shaped like real keys (split in the source so secret scanners do not flag this file).
KEYS = {"anthropic": "sk-ant-" "api03-FAKEKEYfakekeyFAKEKEY0123456789abcdefXYZ",
        "openai": "sk-proj-" "FAKEKEYfakekeyFAKEKEY0123456789abcdefXYZ"}
MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-5-mini"}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}
_RANDOM = re.compile(rb"[0-9a-f]{24}|\"created\":\d+")


def masked(body: bytes) -> bytes:
    """A reply without what the emulator draws at random per request: its ids and creation time."""
    return _RANDOM.sub(b"<random>", body)


def records(run_dir: Path) -> list[dict[str, Any]]:
    """The run's records, each exchange's attempts in the order they started (the attempt the caller got is
    written first, before its answer completes; the others after the exchange ends)."""
    path = run_dir / "calls.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    by_key = {line["key"]: line["record"] for line in lines}
    ordered = [by_key.pop(c["key"]) for e in exchanges(run_dir) for c in e["calls"] if c["key"] in by_key]
    return ordered + [line["record"] for line in lines if line["key"] in by_key]


def exchanges(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def clients(base: Any, api: str, key: str | None = None, **kwargs: Any) -> Any:
    """An SDK client (sync) for ``base`` (an Emulator or Proxy)."""
    if api == "anthropic":
        return anthropic.Anthropic(base_url=base.url_for(api), api_key=key or KEYS[api], max_retries=0, **kwargs)
    return openai.OpenAI(base_url=base.url_for(api), api_key=key or KEYS[api], max_retries=0, **kwargs)


def ask(client: Any, api: str, kind: str, prompt: str = "Why do tails matter?", **extra: Any) -> str:
    """One call of ``kind`` (complete, stream, json) with the SDK; returns the answer's text."""
    if api == "anthropic":
        params: dict[str, Any] = {"model": MODELS[api], "max_tokens": 64,
                                  "messages": [{"role": "user", "content": prompt}], **extra}
        if kind == "json":
            params["output_config"] = {"format": {"type": "json_schema", "schema": SCHEMA}}
        if kind == "stream":
            with client.messages.stream(**params) as stream:
                return "".join(stream.text_stream)
        return client.messages.create(**params).content[0].text
    params = {"model": MODELS[api], "messages": [{"role": "user", "content": prompt}], **extra}
    if kind == "json":
        params["response_format"] = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
    if kind == "stream":
        return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **params)
                       if c.choices)
    return client.chat.completions.create(**params).choices[0].message.content


async def ask_async(base: Any, api: str, kind: str, prompt: str = "Why do tails matter?") -> str:
    if api == "anthropic":
        async with anthropic.AsyncAnthropic(base_url=base.url_for(api), api_key=KEYS[api], max_retries=0) as client:
            params: dict[str, Any] = {"model": MODELS[api], "max_tokens": 64,
                                      "messages": [{"role": "user", "content": prompt}]}
            if kind == "json":
                params["output_config"] = {"format": {"type": "json_schema", "schema": SCHEMA}}
            if kind == "stream":
                async with client.messages.stream(**params) as stream:
                    return "".join([t async for t in stream.text_stream])
            return (await client.messages.create(**params)).content[0].text
    async with openai.AsyncOpenAI(base_url=base.url_for(api), api_key=KEYS[api], max_retries=0) as client:
        params = {"model": MODELS[api], "messages": [{"role": "user", "content": prompt}]}
        if kind == "json":
            params["response_format"] = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
        if kind == "stream":
            chunks = await client.chat.completions.create(stream=True, **params)
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        return (await client.chat.completions.create(**params)).choices[0].message.content


def raw_request(api: str, kind: str, prompt: str = "Why do tails matter?") -> tuple[str, dict[str, Any]]:
    """(path, body) of a request as the SDKs send it."""
    if api == "anthropic":
        body: dict[str, Any] = {"model": MODELS[api], "max_tokens": 64,
                                "messages": [{"role": "user", "content": prompt}]}
        if kind == "json":
            body["output_config"] = {"format": {"type": "json_schema", "schema": SCHEMA}}
        return "/v1/messages", {**body, "stream": kind == "stream"}
    body = {"model": MODELS[api], "messages": [{"role": "user", "content": prompt}]}
    if kind == "json":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
    return "/v1/chat/completions", {**body, "stream": kind == "stream"}


@pytest.fixture(scope="module")
def emulator():
    with Emulator(PROFILE, seed=11, key_by="prompt") as emu:
        yield emu


@pytest.fixture()
def proxy(emulator, tmp_path):
    with Proxy(Run("proxied", tmp_path), anthropic_upstream=emulator.url_for("anthropic"),
               openai_upstream=emulator.url_for("openai")) as running:
        yield running


@pytest.mark.parametrize("kind", ["complete", "stream", "json"])
@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_answers_are_byte_identical_to_a_direct_call(emulator, proxy, api, kind):
    path, body = raw_request(api, kind, prompt=f"identical {api} {kind}")
    headers = {"x-api-key": KEYS[api]} if api == "anthropic" else {"authorization": f"Bearer {KEYS[api]}"}
    with httpx.Client(timeout=30) as http:
        direct = http.post(emulator.base_url + path, json=body, headers=headers)
        proxied = http.post(proxy.base_url + path, json=body, headers=headers)
    assert proxied.status_code == direct.status_code == 200
    assert masked(proxied.content) == masked(direct.content)  # same seed, same prompt: same draw and answer
    for name in ("content-type", "x-lab-synthetic"):
        assert proxied.headers[name] == direct.headers[name]
    assert len(re.findall(rb"[0-9a-f]{24}", direct.content)) >= 1  # the ids masked are really there


@pytest.mark.parametrize("kind", ["complete", "stream", "json"])
@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_sdks_through_the_proxy_one_record_per_call(emulator, proxy, api, kind):
    prompt = f"sdk {api} {kind}"
    direct = ask(clients(emulator, api), api, kind, prompt)
    sync = ask(clients(proxy, api), api, kind, prompt)
    in_async = asyncio.run(ask_async(proxy, api, kind, prompt))
    assert sync == in_async == direct != ""
    if kind == "json":
        assert set(json.loads(sync)) == {"answer"}
    proxy.stop()
    found = records(proxy.run.dir)
    assert len(found) == 2
    for record in found:
        assert record["provider"] == api and record["model"] == MODELS[api] and record["status"] == "ok"
        assert record["kind"] == kind and record["experiment"] == "proxy" and record["target"] == api
        assert record["synthetic"] is True and record["request_id"].startswith("req_")
        assert record["text"] == ""  # not kept without --record-text
        assert 20 <= record["latency_ms"] < 20 * 5 * 20  # the emulator waits 20 ms; generous upper bound
        if kind == "stream":
            assert 20 <= record["ttft_ms"] <= record["latency_ms"]
            assert len(record["chunk_deltas"]) == 12 and record["max_gap_ms"] is not None
        else:
            assert "ttft_ms" not in record
        if api == "anthropic" or kind != "stream":  # an OpenAI stream has usage only if the caller asks for it
            assert record["output_tokens"] == (12 if kind != "json" else len(sync) and record["output_tokens"])
            assert record["output_tokens"] >= 1 and record["input_tokens"] >= 1
    assert [r["sample"] for r in found] == [0, 1]
    assert {e["delivered"] for e in exchanges(proxy.run.dir)} == {0}


def test_openai_stream_usage_recorded_when_the_caller_asks_for_it(proxy):
    chunks = clients(proxy, "openai").chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "usage please"}], stream=True,
        stream_options={"include_usage": True})
    usage = [c.usage for c in chunks if c.usage]
    proxy.stop()
    (record,) = records(proxy.run.dir)
    assert usage[0].completion_tokens == record["output_tokens"] == 12
    assert record["tpot_ms"] is not None


def test_request_ids_task_and_text(emulator, tmp_path):
    run = Run("labelled", tmp_path)
    with Proxy(run, anthropic_upstream=emulator.url_for("anthropic"), record_text=True, label="morning") as proxy:
        raw = clients(proxy, "anthropic").messages.with_raw_response.create(
            model=MODELS["anthropic"], max_tokens=64, messages=[{"role": "user", "content": "label me"}],
            extra_headers={"x-lab-task": "summarise"})
        text = raw.parse().content[0].text
    (record,) = records(run.dir)
    assert record["request_id"] == raw.headers["request-id"]
    assert record["task"] == "summarise" and record["window"] == "morning" and record["text"] == text
    (line,) = exchanges(run.dir)
    assert line["task"] == "summarise" and len(line["sha256"]) == 64 and "label me" not in json.dumps(line)
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert manifest["experiment"] == "proxy" and manifest["sessions"][0]["window"] == "morning"
    assert manifest["design"]["upstreams"]["anthropic"]["url"] == emulator.url_for("anthropic")


def test_credentials_and_headers_forwarded_hop_by_hop_dropped(tmp_path):
    reply = Scripted(body=anthropic_message("hi"), headers={"request-id": "req_stub", "x-custom": "kept"})
    with StubServer([reply]) as stub, Proxy(Run("headers", tmp_path), anthropic_upstream=stub.url) as proxy:
        raw = clients(proxy, "anthropic").messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}],
            extra_headers={"anthropic-beta": "some-beta", "x-lab-task": "t", "x-lab-route": "anthropic",
                           "proxy-authorization": "Basic c2VjcmV0"})
        seen = {k.lower(): v for k, v in stub.requests[0]["headers"].items()}
    assert KEYS["anthropic"] in (seen.get("x-api-key"), seen.get("authorization", "").removeprefix("Bearer "))
    assert seen["anthropic-version"] and seen["anthropic-beta"] == "some-beta"
    assert seen["accept-encoding"] == "identity"
    assert not {"x-lab-task", "x-lab-route", "proxy-authorization"} & set(seen)
    assert seen["host"] == f"127.0.0.1:{stub.port}"
    assert raw.headers["x-custom"] == "kept" and raw.headers["request-id"] == "req_stub"


def test_no_key_reaches_any_file(emulator, tmp_path):
    """Keys shaped like real ones, sent by the SDKs and echoed back in an upstream's error message."""
    run = Run("secrets", tmp_path)
    error = {"type": "authentication_error", "message": f"invalid x-api-key {KEYS['anthropic']}"}
    echo = Scripted(status=401, body={"type": "error", "error": error})
    with StubServer([echo]) as stub:
        with Proxy(run, anthropic_upstream=stub.url, openai_upstream=emulator.url_for("openai"),
                   record_text=True) as proxy:
            with pytest.raises(anthropic.AuthenticationError):
                ask(clients(proxy, "anthropic"), "anthropic", "complete")
            for kind in ("complete", "stream"):
                ask(clients(proxy, "openai"), "openai", kind, "secret test")
    assert emulator.requests[-1].auth_present  # the caller's key did reach the upstream
    written = list(tmp_path.rglob("*"))
    assert any(p.name == "calls.jsonl" for p in written) and any(p.name == "manifest.json" for p in written)
    for path in written:
        if path.is_file():
            content = path.read_bytes()
            for key in KEYS.values():
                assert key.encode() not in content and key[8:30].encode() not in content, path
    failed = [r for r in records(run.dir) if r["status"] == "error"]
    assert failed[0]["error_type"] == "auth" and "[redacted]" in failed[0]["error_message"]


def test_other_paths_pass_through_unrecorded(proxy):
    models = clients(proxy, "openai").models.list()
    assert "gpt-5-mini" in [m.id for m in models.data]
    listed = clients(proxy, "anthropic").models.list()
    assert "claude-haiku-4-5" in [m.id for m in listed.data]
    proxy.stop()
    assert records(proxy.run.dir) == []


def test_a_new_connection_is_timed_and_a_pooled_one_is_not(emulator, tmp_path):
    with Proxy(Run("connections", tmp_path), anthropic_upstream=emulator.url_for("anthropic")) as proxy:
        client = clients(proxy, "anthropic")
        for _ in range(2):
            ask(client, "anthropic", "complete", "connect")
    first, second = records(tmp_path / "connections")
    assert first["connect_ms"] > 0 and second["connect_ms"] == 0
    assert first["latency_ms"] > first["connect_ms"]  # opening the connection is inside the clock


def test_sessions_of_one_run_keep_apart(emulator, tmp_path):
    run = Run("twice", tmp_path)
    for label in ("monday", "tuesday"):
        with Proxy(run, anthropic_upstream=emulator.url_for("anthropic"), label=label) as proxy:
            ask(clients(proxy, "anthropic"), "anthropic", "complete", "same prompt")
    with pytest.raises(ValueError, match="already has a proxy session labelled 'monday'"):
        Proxy(run, anthropic_upstream=emulator.url_for("anthropic"), label="monday").start()
    found = Run("twice", tmp_path).records()  # read back through the store: two records, two keys
    assert [(r.window, r.sample) for r in found] == [("monday", 0), ("tuesday", 0)]
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert [s["window"] for s in manifest["sessions"]] == ["monday", "tuesday"]
    assert all(s["ended_at"] for s in manifest["sessions"])


@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_thinking_counts_as_the_first_token_and_text_has_its_own_time(proxy, api):
    """Thinking (Anthropic thinking_delta, OpenAI reasoning_content) is generated content: the first
    token; the first visible text comes later."""
    ask(clients(proxy, api), api, "stream", "think first", extra_headers={"x-emulator-thinking": "4"})
    proxy.stop()
    (record,) = records(proxy.run.dir)
    offsets = decode_offsets(record["chunk_deltas"])
    assert len(offsets) == 4 + 12 and record["ttft_ms"] == offsets[0]
    assert record["first_text_ms"] == offsets[4] >= record["ttft_ms"]  # the first text: after four thinking tokens
