"""Upstreams that hang, stall, cut or send garbage, and callers that leave: each becomes a record and,
for the caller, an error in its own API (502/504 before the reply began, an error event after);
never a traceback."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from lab.emulator import Emulator, FaultRule
from lab.proxy import Proxy
from lab.store import Run

from stubs import HTML_PAGE, Scripted, StubServer, anthropic_events
from test_proxy import PROFILE, ask, clients, records


@pytest.fixture(autouse=True)
def no_traceback(capfd):
    yield
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


def proxy_to(tmp_path, url: str, **options) -> Proxy:
    return Proxy(Run("robust", tmp_path), anthropic_upstream=url, openai_upstream=f"{url}/v1", **options)


@pytest.mark.parametrize(("api", "kind", "reply", "problem"), [
    ("anthropic", "complete", Scripted(body=HTML_PAGE), "expected JSON, got content-type 'text/html'"),
    ("anthropic", "stream", Scripted(body=HTML_PAGE), "expected a stream of server-sent events"),
    ("openai", "complete", Scripted(body={"choices": []}), "the reply has no choices"),
    ("openai", "complete", Scripted(body="{not json", headers={"content-type": "application/json"}),
     "not valid JSON"),
    ("anthropic", "complete", Scripted(body={"type": "message"}), "not a message"),
])
def test_garbage_becomes_a_502_and_a_record(tmp_path, api, kind, reply, problem):
    with StubServer([reply]) as stub, proxy_to(tmp_path, stub.url) as proxy:
        error = anthropic.InternalServerError if api == "anthropic" else openai.InternalServerError
        with pytest.raises(error) as caught:
            ask(clients(proxy, api), api, kind)
    assert caught.value.status_code == 502
    error = caught.value.body.get("error", caught.value.body)  # the SDKs differ in what .body holds
    assert error["type"] == ("api_error" if api == "anthropic" else "server_error")
    assert error["message"].startswith("lab proxy: ")
    (record,) = records(proxy.run.dir)
    assert record["error_type"] == "invalid_response" and problem in record["error_message"]
    assert record["http_status"] == 200


def test_a_malformed_event_ends_the_stream_with_an_error_event(tmp_path):
    events = [*anthropic_events(["Hello", " there"])]
    events[2] = b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"delta\": {\n\n"
    with StubServer([Scripted(events=events)]) as stub, proxy_to(tmp_path, stub.url) as proxy:
        with pytest.raises(anthropic.APIStatusError, match="not JSON"):
            ask(clients(proxy, "anthropic"), "anthropic", "stream")
    (record,) = records(proxy.run.dir)
    assert record["error_type"] == "invalid_response"


def test_emulator_malformed_json_fault(tmp_path):
    with Emulator(PROFILE, faults=[FaultRule("malformed_json")]) as emu, proxy_to(tmp_path, emu.base_url) as proxy:
        with pytest.raises(openai.APIError):
            ask(clients(proxy, "openai"), "openai", "stream")
        with pytest.raises(openai.InternalServerError):
            ask(clients(proxy, "openai"), "openai", "complete")
    assert [r["error_type"] for r in records(proxy.run.dir)] == ["invalid_response"] * 2


def test_a_hanging_upstream_becomes_a_504(tmp_path):
    with Emulator(PROFILE, faults=[FaultRule("timeout", params={"ms": 30000})]) as emu:
        with proxy_to(tmp_path, emu.base_url, timeout_s=0.5) as proxy:
            began = time.perf_counter()
            with pytest.raises(anthropic.InternalServerError) as caught:
                ask(clients(proxy, "anthropic"), "anthropic", "complete")
            elapsed = time.perf_counter() - began
    assert caught.value.status_code == 504 and caught.value.body["error"]["type"] == "timeout_error"
    assert elapsed < 20  # the upstream would hang 30 s
    (record,) = records(proxy.run.dir)
    assert record["error_type"] == "timeout" and "http_status" not in record  # no reply at all
    assert 450 <= record["latency_ms"] < 20_000  # the deadline is 0.5 s from just before the request was sent


def test_a_stall_after_the_stream_began_ends_with_an_error_event(tmp_path):
    with Emulator(PROFILE, faults=[FaultRule("stall_first_token", params={"ms": 30000})]) as emu:
        with proxy_to(tmp_path, emu.base_url, timeout_s=0.5) as proxy:
            with pytest.raises(anthropic.APIStatusError, match="timeout"):
                ask(clients(proxy, "anthropic"), "anthropic", "stream")
    (record,) = records(proxy.run.dir)
    assert record["error_type"] == "timeout" and record["http_status"] == 200 and "ttft_ms" not in record


def test_a_cut_stream_is_cut_for_the_caller_too(tmp_path):
    with Emulator(PROFILE, faults=[FaultRule("cut_stream", params={"after": 3})]) as emu:
        with proxy_to(tmp_path, emu.base_url) as proxy:
            with httpx.stream("POST", proxy.base_url + "/v1/messages", timeout=10, json={
                    "model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
                    "messages": [{"role": "user", "content": "cut"}]}) as response:
                with pytest.raises(httpx.RemoteProtocolError):
                    body = b"".join(response.iter_bytes())
                    assert b"message_stop" not in body  # (reached only if the cut were hidden)
    (record,) = records(proxy.run.dir)
    assert record["error_type"] == "cut_stream" and len(record["chunk_deltas"]) == 3


def test_garbage_on_the_primary_falls_back(tmp_path):
    with StubServer([Scripted(body=HTML_PAGE)]) as stub, Emulator(PROFILE) as emu:
        (tmp_path / "p.toml").write_text(f"""
[upstreams.good]
url = "{emu.url_for('anthropic')}"
format = "anthropic"
[[routes]]
name = "r"
models = ["claude-*"]
upstream = "anthropic"
fallback = {{ upstream = "good" }}
""")
        with proxy_to(tmp_path, stub.url, policy=tmp_path / "p.toml") as proxy:
            assert ask(clients(proxy, "anthropic"), "anthropic", "stream")
    assert [r.get("error_type") for r in records(proxy.run.dir)] == ["invalid_response", None]


def test_a_caller_that_leaves_closes_the_upstream_and_is_recorded(tmp_path):
    with Emulator("fixed:ttft_ms=10,itl_ms=250,output_tokens=60") as emu, proxy_to(tmp_path, emu.base_url) as proxy:
        with clients(proxy, "anthropic").messages.stream(
                model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "leave"}]) as stream:
            next(iter(stream.text_stream))
        (logged,) = emu.wait_for_requests(1, timeout=10)
    assert logged.outcome == "disconnected"
    (record,) = records(proxy.run.dir)
    assert record["error_type"] == "cancelled" and "caller closed" in record["error_message"]
    assert record["latency_ms"] < 10_000  # the whole answer would take 15 s
