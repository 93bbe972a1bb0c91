"""Policies through the proxy under the emulator's faults: fallback, hedging (fixed and learned delay,
within its budget), shadow mode, translation across APIs, and errors passed through unchanged.

Wall-clock bounds keep at least a 5x margin: a stall is 8 s where the policy answers in well under 1 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from lab.emulator import Emulator, FaultRule
from lab.proxy import Proxy
from lab.store import Run

from test_proxy import KEYS, PROFILE, ask, clients, exchanges, masked, raw_request, records

STALL = FaultRule("stall_first_token", params={"ms": 60_000})


def policy(tmp_path: Path, backup: str, route: str, api: str = "anthropic") -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(f"""
[upstreams.backup]
url = "{backup}"
format = "{api}"

[[routes]]
name = "main"
models = ["claude-*", "gpt-*"]
upstream = "anthropic"
{route}
""")
    return path


def proxy_for(tmp_path: Path, primary: Emulator, backup: Emulator, route: str, **options) -> Proxy:
    return Proxy(Run("routed", tmp_path), anthropic_upstream=primary.url_for("anthropic"),
                 openai_upstream=primary.url_for("openai"),
                 policy=policy(tmp_path, backup.url_for("anthropic"), route), **options)


@pytest.fixture(scope="module")
def backup():
    with Emulator(PROFILE, seed=3, key_by="prompt") as emu:
        yield emu


@pytest.mark.parametrize("kind", ["complete", "stream"])
def test_fallback_on_overload(tmp_path, backup, kind):
    with Emulator(PROFILE, faults=[FaultRule("overloaded")]) as primary:
        with proxy_for(tmp_path, primary, backup, "[routes.fallback]\nupstream = 'backup'") as proxy:
            answer = ask(clients(proxy, "anthropic"), "anthropic", kind, "fall back")
    assert answer == ask(clients(backup, "anthropic"), "anthropic", kind, "fall back")
    first, second = records(proxy.run.dir)
    assert (first["status"], first["error_type"], first["http_status"]) == ("error", "overloaded", 529)
    assert second["status"] == "ok" and second["endpoint"] == backup.url_for("anthropic")
    assert first["target"] == second["target"] == "main" and first["sample"] == second["sample"] == 0
    (line,) = exchanges(proxy.run.dir)
    assert [c["role"] for c in line["calls"]] == ["primary", "fallback"]
    assert line["delivered"] == line["chosen"] == 1 and line["caller_status"] == 200


def test_fallback_when_the_primary_hangs(tmp_path, backup):
    route = "[routes.fallback]\nupstream = 'backup'\ntimeout_s = 0.3"
    with Emulator(PROFILE, faults=[FaultRule("timeout", params={"ms": 60_000})]) as primary:
        with proxy_for(tmp_path, primary, backup, route) as proxy:
            began = time.perf_counter()
            answer = ask(clients(proxy, "anthropic"), "anthropic", "stream", "hang")
            elapsed = time.perf_counter() - began
    assert answer and elapsed < 30  # the primary would hang 60 s
    first, second = records(proxy.run.dir)
    assert first["error_type"] == "timeout" and "fallback" in first["error_message"]
    assert second["status"] == "ok"


@pytest.mark.parametrize("kind", ["stream", "complete"])
def test_hedge_beats_a_stalled_primary(tmp_path, backup, kind):
    with Emulator(PROFILE, faults=[STALL]) as primary:
        route = "[routes.hedge]\nupstream = 'backup'\ndelay_s = 0.1\nbudget = {percent = 100, requests = 10}"
        with proxy_for(tmp_path, primary, backup, route) as proxy:
            began = time.perf_counter()
            answer = ask(clients(proxy, "anthropic"), "anthropic", kind, "hedge me")
            elapsed = time.perf_counter() - began
        (logged,) = primary.wait_for_requests(1, timeout=10)
    assert elapsed < 30  # the primary stalls 60 s
    assert answer == ask(clients(backup, "anthropic"), "anthropic", kind, "hedge me")
    first, second = records(proxy.run.dir)
    assert (first["status"], first["error_type"]) == ("error", "cancelled")
    assert "another attempt" in first["error_message"] and first["latency_ms"] >= 100
    assert second["status"] == "ok" and ("ttft_ms" in second) == (kind == "stream")
    assert logged.outcome == "disconnected"  # the loser's request was closed
    (line,) = exchanges(proxy.run.dir)
    assert [c["role"] for c in line["calls"]] == ["primary", "hedge"] and line["delivered"] == 1


@pytest.mark.parametrize("on", ["ttft", "latency"])
def test_hedge_on_latency_races_whole_answers(tmp_path, backup, on):
    # The primary starts in time (20 ms) but streams slowly: 12 tokens 200 ms apart.
    with Emulator(PROFILE, faults=[FaultRule("slow_stream", params={"factor": 100})]) as primary:
        route = (f"[routes.hedge]\nupstream = 'backup'\ndelay_s = 0.1\non = '{on}'\n"
                 "budget = {percent = 100, requests = 10}")
        with proxy_for(tmp_path, primary, backup, route) as proxy:
            began = time.perf_counter()
            answer = ask(clients(proxy, "anthropic"), "anthropic", "stream", "slow stream")
            elapsed = time.perf_counter() - began
    roles = [c["role"] for c in exchanges(proxy.run.dir)[0]["calls"]]
    if on == "ttft":  # the primary's first token came in time: it is the answer, however slow its end
        assert roles == ["primary"] and elapsed >= 2.4
    else:  # the first whole answer wins: the backup's, long before the primary's 2.4 s
        assert roles == ["primary", "hedge"] and exchanges(proxy.run.dir)[0]["delivered"] == 1
        assert answer == ask(clients(backup, "anthropic"), "anthropic", "stream", "slow stream")


def test_no_hedge_when_the_primary_is_in_time(tmp_path, backup):
    with Emulator(PROFILE) as primary:
        with proxy_for(tmp_path, primary, backup, "[routes.hedge]\nupstream = 'backup'\ndelay_s = 5") as proxy:
            for kind in ("complete", "stream"):
                ask(clients(proxy, "anthropic"), "anthropic", kind)
    assert [r["status"] for r in records(proxy.run.dir)] == ["ok", "ok"]
    assert [[c["role"] for c in line["calls"]] for line in exchanges(proxy.run.dir)] == [["primary"]] * 2


def test_learned_delay_hedges_sooner_than_its_initial_guess(tmp_path, backup):
    # One emulator: requests for a model with "stall" in its name stall 60 s; the hedge asks for another model.
    with Emulator(PROFILE, faults=[FaultRule("stall_first_token", models=["stall"], params={"ms": 60_000})]) as emu:
        route = ("[routes.hedge]\nupstream = 'anthropic'\nmodel = 'claude-haiku-4-5'\npercentile = 90\n"
                 "window = 20\ninitial_s = 40\nbudget = {percent = 100, requests = 10}")
        with proxy_for(tmp_path, emu, backup, route) as proxy:
            client = clients(proxy, "anthropic")
            for i in range(8):
                ask(client, "anthropic", "stream", f"learn {i}")
            began = time.perf_counter()
            with client.messages.stream(model="claude-haiku-stall", max_tokens=64,
                                        messages=[{"role": "user", "content": "stall"}]) as stream:
                assert "".join(stream.text_stream)
            elapsed = time.perf_counter() - began
    assert elapsed < 30  # the initial delay alone is 40 s; the learned one is about the 20 ms first token
    assert [c["role"] for c in exchanges(proxy.run.dir)[-1]["calls"]] == ["primary", "hedge"]


def test_the_hedge_budget_is_respected(tmp_path, backup):
    stall = FaultRule("stall_first_token", params={"ms": 100})
    with Emulator(PROFILE, faults=[stall]) as primary:
        route = "[routes.hedge]\nupstream = 'backup'\ndelay_s = 0.01\nbudget = {percent = 20, requests = 10}"
        with proxy_for(tmp_path, primary, backup, route) as proxy:
            client = clients(proxy, "anthropic")
            for i in range(25):
                ask(client, "anthropic", "stream", f"budget {i}")
    hedged = [len(line["calls"]) == 2 for line in sorted(exchanges(proxy.run.dir), key=lambda e: e["sample"])]
    assert len(hedged) == 25 and 3 <= sum(hedged) <= 5  # 20 % of 25, never more
    for end in range(1, 26):
        assert sum(hedged[max(0, end - 10):end]) * 100 <= 20 * min(end, 10)


def test_shadow_mode_changes_nothing_the_caller_sees(tmp_path, backup):
    slow = FaultRule("stall_first_token", params={"ms": 500})
    with Emulator(PROFILE, seed=5, key_by="prompt", faults=[slow]) as primary:
        route = ("shadow = true\n[routes.hedge]\nupstream = 'backup'\ndelay_s = 0.05\n"
                 "budget = {percent = 100, requests = 10}")
        with proxy_for(tmp_path, primary, backup, route) as proxy:
            path, body = raw_request("anthropic", "stream", "shadow me")
            headers = {"x-api-key": KEYS["anthropic"]}
            with httpx.Client(timeout=30) as http:
                began = time.perf_counter()
                proxied = http.post(proxy.base_url + path, json=body, headers=headers)
                elapsed = time.perf_counter() - began
                direct = http.post(primary.base_url + path, json=body, headers=headers)
            sdk = ask(clients(proxy, "anthropic"), "anthropic", "complete", "shadow sdk")
        assert sdk == ask(clients(primary, "anthropic"), "anthropic", "complete", "shadow sdk")
    assert masked(proxied.content) == masked(direct.content) and elapsed >= 0.5  # the primary's answer, stall and all
    lines = sorted(exchanges(proxy.run.dir), key=lambda e: e["sample"])
    assert all(line["delivered"] == 0 and line["chosen"] == 1 and line["shadow"] for line in lines)
    found = records(proxy.run.dir)
    assert len(found) == 4 and all(r["status"] == "ok" for r in found)  # the hedge won: kept to its end
    hedges = [r for r in found if r["endpoint"] == backup.url_for("anthropic")]
    assert len(hedges) == 2 and hedges[0]["ttft_ms"] is not None


def test_translated_across_apis(tmp_path, backup):
    with Emulator(PROFILE, seed=9, key_by="prompt") as emu:
        text = f"""
[upstreams.gpt]
url = "{emu.url_for('openai')}"
format = "openai"

[upstreams.claude]
url = "{emu.url_for('anthropic')}"
format = "anthropic"

[[routes]]
name = "to-openai"
models = ["claude-*"]
upstream = "gpt"
model = "gpt-5-mini"

[[routes]]
name = "to-anthropic"
upstream = "claude"
model = "claude-haiku-4-5"
"""
        (tmp_path / "cross.toml").write_text(text)
        with Proxy(Run("cross", tmp_path), policy=tmp_path / "cross.toml") as proxy:
            for kind in ("complete", "stream"):
                assert ask(clients(proxy, "anthropic"), "anthropic", kind, "cross") == \
                    ask(clients(emu, "openai"), "openai", kind, "cross")
                assert ask(clients(proxy, "openai"), "openai", kind, "back", max_tokens=64,
                           extra_headers={"x-lab-route": "to-anthropic"}) == \
                    ask(clients(emu, "anthropic"), "anthropic", kind, "back")
            with pytest.raises(anthropic.BadRequestError, match="tools.*plain text chat|plain text chat.*tools"):
                clients(proxy, "anthropic").messages.create(
                    model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}],
                    tools=[{"name": "t", "description": "d", "input_schema": {"type": "object"}}])
            with pytest.raises(openai.BadRequestError, match="max_tokens"):
                clients(proxy, "openai").chat.completions.create(
                    model="gpt-5-mini", messages=[{"role": "user", "content": "x"}],
                    extra_headers={"x-lab-route": "to-anthropic"})
    found = records(proxy.run.dir)
    assert [r["provider"] for r in found] == ["openai", "anthropic"] * 2
    assert all(r["status"] == "ok" and r["output_tokens"] == 12 for r in found)
    assert found[2]["ttft_ms"] is not None and found[2]["target"] == "to-openai"
    refused = [line for line in exchanges(proxy.run.dir) if "refused" in line]
    assert len(refused) == 2 and refused[0]["calls"] == [] and refused[0]["caller_status"] == 400


def test_upstream_errors_pass_through_unchanged(tmp_path):
    with Emulator(PROFILE, faults=[FaultRule("rate_limit", params={"retry_after": 7})]) as emu:
        with Proxy(Run("limited", tmp_path), anthropic_upstream=emu.url_for("anthropic"),
                   openai_upstream=emu.url_for("openai")) as proxy:
            with pytest.raises(anthropic.RateLimitError) as caught:
                ask(clients(proxy, "anthropic"), "anthropic", "stream")
            with pytest.raises(openai.RateLimitError):
                ask(clients(proxy, "openai"), "openai", "complete")
    assert caught.value.response.headers["retry-after"] == "7"
    assert [(r["error_type"], r["http_status"]) for r in records(proxy.run.dir)] == [("rate_limit", 429)] * 2
