"""The proxy's policy file, route choice, hedge budget and the plain-text translation, in isolation."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from lab.proxy import engine, load, parse, translate
from lab.proxy.policy import Budget, PolicyError
from lab.proxy.wire import ANTHROPIC, OPENAI

EXAMPLE = Path(__file__).parent.parent / "examples" / "proxy-policy.toml"
ROUTE = """
[upstreams.backup]
url = "http://127.0.0.1:9/v1"
format = "openai"
[[routes]]
name = "r"
models = ["claude-*"]
upstream = "anthropic"
"""


def test_the_example_policy_file_is_valid():
    policy = load(EXAMPLE)
    haiku = policy.route_for(ANTHROPIC, "claude-haiku-4-5")
    assert haiku.name == "haiku" and haiku.policy == "hedge+fallback" and haiku.hedge.percentile == 95
    assert haiku.fallback.target.upstream.name == "openai-backup" and haiku.fallback.target.model == "gpt-5-mini"
    assert policy.route_for(ANTHROPIC, "claude-sonnet-4-6").shadow
    assert policy.route_for(OPENAI, "gpt-5").name == "openai"  # no route takes it: its API's plain route
    described = json.dumps(policy.describe())
    assert "openai-backup" in described and "OPENAI_API_KEY" in described  # the variable's name, never its value


def test_route_by_header_by_model_and_unknown_name():
    policy = parse(ROUTE)
    assert policy.route_for(OPENAI, "claude-x").name == "r"  # a route takes either API's requests
    assert policy.route_for(ANTHROPIC, "claude-x", "anthropic").name == "anthropic"
    assert policy.route_for(ANTHROPIC, "other", "r").name == "r"
    with pytest.raises(LookupError, match="no route named 'nope'.*routes: r, anthropic, openai"):
        policy.route_for(ANTHROPIC, "x", "nope")


@pytest.mark.parametrize(("text", "message"), [
    ("routes = 1", "routes: expected an array of tables"),
    ("[[routes]]\nname = 'a'\nupstream = 'nowhere'", r"routes\[0\]\.upstream: no upstream named 'nowhere'"),
    ("[[routes]]\nname = 'a'\nupstream = 'anthropic'\ndealy = 1", "unknown key 'dealy'"),
    ("[[routes]]\nname = 'a'\nupstream = 'anthropic'\n[routes.hedge]\nupstream = 'anthropic'",
     "give either delay_s .* or percentile"),
    ("[[routes]]\nname = 'a'\nupstream = 'anthropic'\n[routes.hedge]\nupstream = 'anthropic'\ndelay_s = -1",
     "delay_s: -1 is too small"),
    ("[[routes]]\nname = 'a'\nupstream = 'anthropic'\n[routes.hedge]\nupstream = 'anthropic'\ndelay_s = 1\n"
     "budget = {percent = 150, requests = 10}", "budget.percent: 150 is too large"),
    ("[[routes]]\nname = 'a'\nupstream = 'anthropic'\n[routes.hedge]\nupstream = 'anthropic'\ndelay_s = 1\n"
     "budget = {percent = 5}", "give either requests .* or seconds"),
    ("[[routes]]\nname = 'a'\nupstream = 'anthropic'\nshadow = true", "shadow mode needs a hedge or a fallback"),
    ("[[routes]]\nname = 'openai'\nupstream = 'anthropic'", "'openai' is taken"),
    ("[upstreams.anthropic]\nurl = 'http://x'\nformat = 'anthropic'", "set it with --anthropic-upstream"),
    ("[upstreams.b]\nurl = 'ftp://x'\nformat = 'openai'", "not an http:// or https:// URL"),
    ("[upstreams.b]\nurl = 'http://x'\nformat = 'openai'\nprovider = 'anthropic'", "does not speak the openai format"),
    ("[[routes]]\nname = 'a'\nupstream = 'anthropic'\nfallback = {upstream = 'openai', timeout_s = 0}",
     "timeout_s: 0 is too small"),
    ("[[routes]\nname = 'a'", "is not valid TOML"),
])
def test_policy_mistakes_are_one_line_naming_the_place(text, message):
    with pytest.raises(PolicyError, match=message) as caught:
        parse(text, where="my.toml")
    assert str(caught.value).startswith("my.toml") and "\n" not in str(caught.value)


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        load(tmp_path / "absent.toml")


@pytest.mark.parametrize("window", [{"requests": 20}, {"seconds": 60.0}])
def test_the_budget_never_exceeds_its_share_of_the_window(window, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(engine.time, "monotonic", lambda: clock[0])
    budget = engine.HedgeBudget(Budget(10, **window))
    history = []  # (time, hedged) of every request, each of which wants a hedge
    for i in range(400):
        clock[0] += 1.0  # one request a second: the 60 s window holds 60 requests
        request = budget.arrive()
        hedged = budget.allows()
        if hedged:
            budget.spend(request)
        history.append(hedged)
    size = 20 if "requests" in window else 60
    for end in range(1, len(history) + 1):
        recent = history[max(0, end - size):end]
        assert sum(recent) * 100 <= 10 * len(recent)
    assert sum(history) >= 400 // size * (size // 10) - 2  # and it does spend what it may


def test_translate_plain_chat_both_ways():
    anthropic_body = {"model": "claude-haiku-4-5", "system": "be brief", "max_tokens": 50, "temperature": 0.2,
                      "stop_sequences": ["END"], "stream": True,
                      "messages": [{"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
                                   {"role": "user", "content": "again"}]}
    to_openai = translate.request(anthropic_body, ANTHROPIC, "gpt-5-mini")
    assert to_openai == {"model": "gpt-5-mini", "max_completion_tokens": 50, "temperature": 0.2, "stop": ["END"],
                         "stream": True, "stream_options": {"include_usage": True},
                         "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                                      {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
                                      {"role": "user", "content": "again"}]}
    back = translate.request({"model": "gpt-5-mini", "max_tokens": 50, "stop": "END", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}, OPENAI, "claude-haiku-4-5")
    assert back == {"model": "claude-haiku-4-5", "max_tokens": 50, "system": "be brief", "stop_sequences": ["END"],
                    "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("api", "body", "named"), [
    (ANTHROPIC, {"model": "m", "max_tokens": 5, "messages": [], "tools": []}, "'tools'"),
    (ANTHROPIC, {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {}}]}]}, "'image' block"),
    (ANTHROPIC, {"model": "m", "max_tokens": 5, "thinking": {"type": "enabled"}, "messages": []}, "'thinking'"),
    (OPENAI, {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "requires max_tokens"),
    (OPENAI, {"model": "m", "max_tokens": 5, "response_format": {"type": "json_object"}, "messages": []},
     "'response_format'"),
    (OPENAI, {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "a"}, {"role": "system", "content": "late"}]}, "after the conversation"),
    (OPENAI, {"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
     "'tool_call_id'"),
])
def test_anything_but_plain_text_chat_is_refused(api, body, named):
    with pytest.raises(translate.Untranslatable, match=named):
        translate.request(body, api, "other-model")


def test_an_attempt_stopped_before_it_ran_still_ends_and_says_why():
    """An attempt cancelled in the same loop step that started it (a hedge whose primary answered just then)."""
    import aiohttp
    from multidict import CIMultiDict

    from lab.proxy.forward import Attempt
    from lab.proxy.policy import RouteTarget, Upstream
    from lab.proxy.wire import Ask

    async def scenario() -> Attempt:
        changes = []
        async with aiohttp.ClientSession() as session:
            target = RouteTarget(Upstream("u", "http://127.0.0.1:9", ANTHROPIC, ANTHROPIC))
            attempt = Attempt(session, target, "hedge", url="http://127.0.0.1:9/v1/messages", headers=CIMultiDict(),
                              body=b"{}", ask=Ask("m", True, "stream"), caller_api=ANTHROPIC, timeout_s=5,
                              keep_text=False, on_change=changes.append)
            attempt.cancel("cancelled", "another attempt answered first")
            assert await asyncio.wait_for(attempt.out.get(), 5) is None
            await asyncio.wait_for(attempt.finished.wait(), 5)
            assert changes == [attempt]
            return attempt

    attempt = asyncio.run(scenario())
    assert attempt.done and attempt.failure.error_type == "cancelled"
    assert attempt.failure.message == "another attempt answered first" and attempt.end_ns >= attempt.sent_ns


def test_events_are_cut_whole_whatever_the_reads():
    from lab.proxy.wire import EventSplitter, parse_event

    raw = (b"event: a\ndata: 1\n\n" + b"data: 2\r\n\r\n" + b"event: b\r\ndata: 3\r\n\r\n" + b": keep-alive\n\n"
           + b"data: {\"x\":\n" + b"data: 4}\n\n" + b"data: 5\r\n\r\n")
    whole = [b"event: a\ndata: 1\n\n", b"data: 2\r\n\r\n", b"event: b\r\ndata: 3\r\n\r\n", b": keep-alive\n\n",
             b"data: {\"x\":\ndata: 4}\n\n", b"data: 5\r\n\r\n"]
    rng = random.Random(1)
    for _ in range(500):
        splitter, events, i = EventSplitter(), [], 0
        while i < len(raw):
            step = rng.randint(1, 9)
            events += splitter.feed(raw[i:i + step])
            i += step
        assert events == whole and splitter.rest == b""
    assert [parse_event(e) for e in whole] == [("a", b"1"), (None, b"2"), ("b", b"3"), (None, None),
                                                (None, b'{"x":\n4}'), (None, b"5")]
