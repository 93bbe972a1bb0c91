"""The emulator under misuse: malformed bodies and headers, unknown paths, wrong methods, oversized
and slow bodies, broken HTTP, idle and slowloris connections, and 1,000 concurrent requests.
Every refusal is a 4xx in the format of the API the path belongs to, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket

import aiohttp
import pytest

from lab.emulator import Emulator, LatencyProfile

HAIKU, GPT = "claude-haiku-4-5", "gpt-5-mini"
HI = [{"role": "user", "content": "hi"}]
INSTANT = LatencyProfile.instant(output_tokens=5)
ANTHROPIC_OK = {"model": HAIKU, "max_tokens": 16, "messages": HI}
OPENAI_OK = {"model": GPT, "messages": HI}
DEEP = b"[" * 200_000 + b"]" * 200_000
TIMEOUT = aiohttp.ClientTimeout(total=30)  # a hang is a failure, not a stuck test run


def _with(base: dict, **changes) -> bytes:
    body = {**base, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def _schema(schema) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


RAW = [
    pytest.param(b"", id="empty"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[1, 2]", id="array"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"a string"', id="string"),
    pytest.param(b"12", id="number"),
    pytest.param(DEEP, id="deep-nesting"),
    pytest.param(b'{"model": "\xff\xfe", "messages": []}', id="invalid-utf8"),
    pytest.param(b'{"model": "m", "max_tokens": ' + b"9" * 5000 + b"}", id="int-too-long"),
]

ANTHROPIC_BAD = RAW + [
    pytest.param(_with(ANTHROPIC_OK)[:-1] + b', "metadata": ' + DEEP + b"}", id="deep-field"),
    pytest.param(_with(ANTHROPIC_OK, model=...), id="model-missing"),
    pytest.param(_with(ANTHROPIC_OK, model=5), id="model-int"),
    pytest.param(_with(ANTHROPIC_OK, model=""), id="model-empty"),
    pytest.param(_with(ANTHROPIC_OK, messages=...), id="messages-missing"),
    pytest.param(_with(ANTHROPIC_OK, messages="hi"), id="messages-string"),
    pytest.param(_with(ANTHROPIC_OK, messages=[]), id="messages-empty"),
    pytest.param(_with(ANTHROPIC_OK, messages=["hi"]), id="message-string"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": "user"}]), id="content-missing"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": "user", "content": 5}]), id="content-int"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": "user", "content": {"text": "hi"}}]), id="content-object"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": "user", "content": [5]}]), id="block-int"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": "user", "content": [{"text": "hi"}]}]), id="block-no-type"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
                 id="block-text-int"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": "system", "content": "hi"}]), id="role-system"),
    pytest.param(_with(ANTHROPIC_OK, messages=[{"role": 5, "content": "hi"}]), id="role-int"),
    pytest.param(_with(ANTHROPIC_OK, max_tokens=...), id="max-tokens-missing"),
    pytest.param(_with(ANTHROPIC_OK, max_tokens="16"), id="max-tokens-string"),
    pytest.param(_with(ANTHROPIC_OK, max_tokens=16.5), id="max-tokens-float"),
    pytest.param(_with(ANTHROPIC_OK, max_tokens=True), id="max-tokens-bool"),
    pytest.param(_with(ANTHROPIC_OK, max_tokens=0), id="max-tokens-zero"),
    pytest.param(_with(ANTHROPIC_OK, max_tokens=-1), id="max-tokens-negative"),
    pytest.param(_with(ANTHROPIC_OK).replace(b'"max_tokens": 16', b'"max_tokens": NaN'), id="max-tokens-nan"),
    pytest.param(_with(ANTHROPIC_OK, stream="yes"), id="stream-string"),
    pytest.param(_with(ANTHROPIC_OK, system=5), id="system-int"),
    pytest.param(_with(ANTHROPIC_OK, system=[{"type": "text", "text": 5}]), id="system-block-text-int"),
    pytest.param(_with(ANTHROPIC_OK, output_config="json"), id="output-config-string"),
    pytest.param(_with(ANTHROPIC_OK, output_config={"format": "json"}), id="output-format-string"),
    pytest.param(_with(ANTHROPIC_OK, output_config={"format": {"type": "xml"}}), id="output-format-type"),
    pytest.param(_with(ANTHROPIC_OK, output_config={"format": {"type": "json_schema", "schema": "x"}}),
                 id="schema-string"),
    pytest.param(_with(ANTHROPIC_OK, output_config={"format": {"type": "json_schema", "schema": {"$ref": "#"}}}),
                 id="schema-ref-cycle"),
    pytest.param(_with(ANTHROPIC_OK, output_config={"format": {"type": "json_schema", "schema": {"type": "nope"}}}),
                 id="schema-type-unknown"),
    pytest.param(_with(ANTHROPIC_OK, output_config={"format": {"type": "json_schema",
                                                               "schema": {"type": "array", "minItems": 10**9}}}),
                 id="schema-huge"),
    pytest.param(_with(ANTHROPIC_OK, thinking="on"), id="thinking-string"),
    pytest.param(_with(ANTHROPIC_OK, thinking={"type": "enabled"}), id="thinking-no-budget"),
    pytest.param(_with(ANTHROPIC_OK, thinking={"type": "enabled", "budget_tokens": "many"}),
                 id="thinking-budget-string"),
    pytest.param(_with(ANTHROPIC_OK, thinking={"type": "maybe"}), id="thinking-type"),
]

OPENAI_BAD = RAW + [
    pytest.param(_with(OPENAI_OK)[:-1] + b', "user": ' + DEEP + b"}", id="deep-field"),
    pytest.param(_with(OPENAI_OK, model=...), id="model-missing"),
    pytest.param(_with(OPENAI_OK, model=["gpt"]), id="model-list"),
    pytest.param(_with(OPENAI_OK, messages=...), id="messages-missing"),
    pytest.param(_with(OPENAI_OK, messages={"role": "user"}), id="messages-object"),
    pytest.param(_with(OPENAI_OK, messages=[]), id="messages-empty"),
    pytest.param(_with(OPENAI_OK, messages=[None]), id="message-null"),
    pytest.param(_with(OPENAI_OK, messages=[{"content": "hi"}]), id="role-missing"),
    pytest.param(_with(OPENAI_OK, messages=[{"role": "user", "content": 5}]), id="content-int"),
    pytest.param(_with(OPENAI_OK, messages=[{"role": "user", "content": {"a": 1}}]), id="content-object"),
    pytest.param(_with(OPENAI_OK, messages=[{"role": "user", "content": [5]}]), id="part-int"),
    pytest.param(_with(OPENAI_OK, messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
                 id="part-text-int"),
    pytest.param(_with(OPENAI_OK, messages=[{"role": "user", "content": [{"text": "hi"}]}]), id="part-no-type"),
    pytest.param(_with(OPENAI_OK, max_tokens="5"), id="max-tokens-string"),
    pytest.param(_with(OPENAI_OK, max_tokens=5.5), id="max-tokens-float"),
    pytest.param(_with(OPENAI_OK, max_tokens=False), id="max-tokens-bool"),
    pytest.param(_with(OPENAI_OK, max_tokens=0), id="max-tokens-zero"),
    pytest.param(_with(OPENAI_OK, max_completion_tokens=-3), id="max-completion-negative"),
    pytest.param(_with(OPENAI_OK, max_completion_tokens=[5]), id="max-completion-list"),
    pytest.param(_with(OPENAI_OK, stream="true"), id="stream-string"),
    pytest.param(_with(OPENAI_OK, stream=1), id="stream-int"),
    pytest.param(_with(OPENAI_OK, stream=True, stream_options="usage"), id="stream-options-string"),
    pytest.param(_with(OPENAI_OK, stream=True, stream_options={"include_usage": "yes"}), id="include-usage-string"),
    pytest.param(_with(OPENAI_OK, response_format="json"), id="response-format-string"),
    pytest.param(_with(OPENAI_OK, response_format={"type": "yaml"}), id="response-format-type"),
    pytest.param(_with(OPENAI_OK, response_format={"type": 5}), id="response-format-type-int"),
    pytest.param(_with(OPENAI_OK, response_format={"type": "json_schema"}), id="json-schema-missing"),
    pytest.param(_with(OPENAI_OK, response_format={"type": "json_schema", "json_schema": "x"}),
                 id="json-schema-string"),
    pytest.param(_with(OPENAI_OK, response_format=_schema("x")), id="schema-string"),
    pytest.param(_with(OPENAI_OK, response_format=_schema({"type": "nope"})), id="schema-type-unknown"),
    pytest.param(_with(OPENAI_OK, response_format=_schema({"enum": []})), id="schema-empty-enum"),
    pytest.param(_with(OPENAI_OK, response_format=_schema({"$ref": "#/$defs/missing"})), id="schema-bad-ref"),
    pytest.param(_with(OPENAI_OK, response_format=_schema({"type": "object", "properties": [1]})),
                 id="schema-properties-list"),
    pytest.param(_with(OPENAI_OK, response_format=_schema({"type": "string", "minLength": 10**12})),
                 id="schema-huge-string"),
]


@pytest.fixture(scope="module")
def emu():
    with Emulator(INSTANT) as emulator:
        yield emulator


async def _post_all(url: str, bodies: list[bytes], headers: dict[str, str] | None = None) -> list[tuple[int, bytes]]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        results = []
        for body in bodies:
            sent = {"content-type": "application/json", **(headers or {})}
            async with session.post(url, data=body, headers=sent) as r:
                results.append((r.status, await r.read()))
        return results


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    ((status, raw),) = asyncio.run(_post_all(url, [body], headers))
    return status, json.loads(raw)


def assert_anthropic_error(status: int, body: dict, expected_status: int = 400,
                           error_type: str = "invalid_request_error") -> None:
    assert status == expected_status, body
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_openai_error(status: int, body: dict, expected_status: int = 400) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"} and body["error"]["type"] == "invalid_request_error"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}


# --- malformed bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("body", ANTHROPIC_BAD)
def test_malformed_anthropic_bodies_get_400(emu, body):
    assert_anthropic_error(*post(emu.base_url + "/v1/messages", body))


@pytest.mark.parametrize("body", OPENAI_BAD)
def test_malformed_openai_bodies_get_400(emu, body):
    assert_openai_error(*post(emu.base_url + "/v1/chat/completions", body))


def test_the_tables_are_large_enough_and_every_refusal_was_logged():
    assert len(ANTHROPIC_BAD) >= 30 and len(OPENAI_BAD) >= 30
    with Emulator(INSTANT) as emulator:
        bodies = [p.values[0] for p in ANTHROPIC_BAD[:12]]
        results = asyncio.run(_post_all(emulator.base_url + "/v1/messages", bodies))
        entries = emulator.wait_for_requests(len(bodies))
    assert {status for status, _ in results} == {400}
    assert [(e.http_status, e.outcome) for e in entries] == [(400, "error")] * len(bodies)


@pytest.mark.parametrize(("header", "value"), [
    ("x-emulator-thinking", "-1"),
    ("x-emulator-thinking", "lots"),
    ("x-emulator-thinking", "99999999999"),
    ("x-emulator-fault", "timeout;ms=inf"),
    ("x-emulator-fault", "cut_stream;after=nan"),
    ("x-emulator-fault", "cut_stream;after=1e400"),
    ("x-emulator-fault", "rate_limit;bogus=1"),
    ("x-emulator-fault", "slow_stream;factor=-2"),
    ("x-emulator-fault", "no_such_fault"),
])
def test_malformed_emulator_headers_get_400(emu, header, value):
    status, body = post(emu.base_url + "/v1/chat/completions", _with(OPENAI_OK), {header: value})
    assert_openai_error(status, body)
    assert header in body["error"]["message"]


def test_odd_but_valid_requests_are_answered(emu):
    lone_surrogate = (b'{"model": "claude-\\ud800", "max_tokens": 4,'
                      b' "messages": [{"role": "user", "content": "\\udfff"}]}')
    assert post(emu.base_url + "/v1/messages", lone_surrogate)[0] == 200
    status, body = post(emu.base_url + "/v1/messages", _with(ANTHROPIC_OK), {"x-stainless-retry-count": "\u00b2"})
    assert status == 200 and body["type"] == "message"
    assert emu.requests[-1].retry_count is None
    recursive = {"type": "object", "properties": {"child": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}}
    status, body = post(emu.base_url + "/v1/chat/completions", _with(OPENAI_OK, response_format=_schema(recursive)))
    assert status == 200 and "child" in json.loads(body["choices"][0]["message"]["content"])


# --- paths, methods, sizes, broken HTTP --------------------------------------------------------


async def _request(method: str, url: str, **kwargs) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.request(method, url, **kwargs) as response:
        return response.status, dict(response.headers), json.loads(await response.read())


def request(method: str, url: str, **kwargs) -> tuple[int, dict, dict]:
    return asyncio.run(_request(method, url, **kwargs))


@pytest.mark.parametrize(("method", "path", "api", "status"), [
    ("GET", "/nope", "openai", 404),
    ("POST", "/v1/completions", "openai", 404),
    ("POST", "/v1/messages/count_tokens", "anthropic", 404),
    ("GET", "/v1/messages", "anthropic", 405),
    ("PUT", "/v1/chat/completions", "openai", 405),
    ("POST", "/health", "openai", 405),
    ("DELETE", "/v1/models", "openai", 405),
])
def test_unknown_paths_and_wrong_methods_in_the_api_format(emu, method, path, api, status):
    got, headers, body = request(method, emu.base_url + path, data=b"{}")
    if api == "anthropic":
        assert_anthropic_error(got, body, status, "not_found_error" if status == 404 else "invalid_request_error")
    else:
        assert_openai_error(got, body, status)
    assert path in body["error"]["message"]
    assert headers["x-lab-synthetic"] == "true"
    if status == 405:
        assert headers["Allow"] in ("POST", "GET, HEAD")


def test_oversized_bodies_get_413_in_the_api_format():
    with Emulator(INSTANT, max_body_bytes=1000) as emulator:
        big = _with(ANTHROPIC_OK, system="x" * 2000)
        status, _, body = request("POST", emulator.base_url + "/v1/messages", data=big)
        assert_anthropic_error(status, body, 413, "request_too_large")

        async def chunked():  # no Content-Length: the limit is found while reading
            yield _with(OPENAI_OK, user="y" * 2000)

        status, _, body = request("POST", emulator.base_url + "/v1/chat/completions", data=chunked())
        assert_openai_error(status, body, 413)
        assert request("POST", emulator.base_url + "/v1/messages", data=_with(ANTHROPIC_OK))[0] == 200


def _raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("data", [
    b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS client hello
])
def test_broken_http_gets_a_json_400(emu, data):
    response = _raw_exchange(emu.port, data)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), response[:200]
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("path", "head"), [
    ("/v1/messages", b"Content-Encoding: gzip\r\nContent-Length: 10"),
    ("/v1/chat/completions", b"Content-Encoding: deflate\r\nContent-Length: 10"),
])
def test_an_undecodable_body_gets_a_400_in_the_api_format(emu, path, head):
    response = _raw_exchange(emu.port, b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n\r\n0123456789"
                             % (path.encode(), head))
    status_line, _, rest = response.partition(b"\r\n")
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert status_line.endswith(b" 400 Bad Request") and "content-encoding" in json.dumps(body)
    assert ("type" in body) == (path == "/v1/messages")


def test_a_non_ascii_thinking_header_gets_400(emu):
    body = _with(ANTHROPIC_OK)
    response = _raw_exchange(emu.port, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"x-emulator-thinking: \xb2\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.endswith(b" 400 Bad Request")
    assert "x-emulator-thinking" in json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["message"]


def test_a_body_that_never_finishes_gets_408():
    with Emulator(INSTANT, request_timeout_s=0.3) as emulator:
        head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n"
        response = _raw_exchange(emulator.port, head + b'{"model": "claude', timeout=10)
        (entry,) = emulator.wait_for_requests(1)
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.endswith(b" 408 Request Timeout"), status_line
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert (entry.http_status, entry.outcome) == (408, "error")


# --- connection timeouts and load --------------------------------------------------------------


async def _closed_by_server(reader: asyncio.StreamReader, limit_s: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``limit_s``."""
    try:
        async with asyncio.timeout(limit_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


IDLE_KINDS = ("silent", "partial", "keep-alive", "trickle")


async def _idle_connections(port: int, kinds: list[str], limit_s: float) -> list[bool]:
    """One connection per kind: ``silent`` (sends nothing), ``partial`` (half a header block),
    ``keep-alive`` (one request, then nothing) or ``trickle`` (a header one byte every 0.1 s);
    whether the server closed each within ``limit_s``."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in kinds]
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(_with(OPENAI_OK)), _with(OPENAI_OK)))
    trickle = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000

    async def drip(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            for byte in trickle:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

    drips = []
    for kind, (_, writer) in zip(kinds, connections):
        if kind == "partial":
            writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Le")
        elif kind == "keep-alive":
            writer.write(request)
        elif kind == "trickle":
            drips.append(asyncio.create_task(drip(writer)))
    closed = await asyncio.gather(*(_closed_by_server(reader, limit_s) for reader, _ in connections))
    for task in drips:
        task.cancel()
    for _, writer in connections:
        writer.close()
    return list(closed)


@pytest.mark.slow
def test_idle_and_slowloris_connections_are_closed():
    kinds = [IDLE_KINDS[i % 4] for i in range(200)]
    # deadlines of 2 s, not less: on a busy machine a whole request can take half a second to be read
    with Emulator(INSTANT, keepalive_timeout_s=2.0, request_timeout_s=2.0) as emulator:
        closed = asyncio.run(_idle_connections(emulator.port, kinds, limit_s=20.0))  # a hang detector
        answered = emulator.wait_for_requests(50)
    still_open = sorted({kind for kind, done in zip(kinds, closed) if not done})
    assert still_open == [], f"{closed.count(False)} of 200 connections still open after 20 s: {still_open}"
    assert len(answered) == 50 and {e.outcome for e in answered} == {"ok"}  # the keep-alive ones got answers


@pytest.mark.slow
def test_the_header_deadline_runs_from_a_request_first_byte():
    kinds = ["silent", "trickle", "partial"] * 4
    with Emulator(INSTANT, keepalive_timeout_s=60, request_timeout_s=0.3) as emulator:
        closed = asyncio.run(_idle_connections(emulator.port, kinds, limit_s=6.0))  # well inside the 60 s
    # a slow request is cut off although the keep-alive timeout is long; a silent connection is not
    assert [kind for kind, done in zip(kinds, closed) if done] == ["trickle", "partial"] * 4


def test_defaults_keep_an_idle_connection_open_for_a_while():
    with Emulator(INSTANT) as emulator:
        assert (emulator.server.keepalive_timeout_s, emulator.server.request_timeout_s) == (15.0, 10.0)
        closed = asyncio.run(_idle_connections(emulator.port, list(IDLE_KINDS) * 2, limit_s=1.0))
    assert closed == [False] * 8  # 1 s is well inside the 15 s / 10 s defaults


@pytest.mark.parametrize("kwargs", [{"keepalive_timeout_s": 0}, {"request_timeout_s": -1},
                                    {"max_body_bytes": float("inf")}, {"keepalive_timeout_s": True}])
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Emulator(INSTANT, **kwargs)


@pytest.fixture
def file_descriptors():
    """Room for 1,000 client and 1,000 server sockets in this process (the soft limit is restored after)."""
    needed = 4096
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_concurrent_requests_succeed(file_descriptors):
    profile = LatencyProfile.fixed(ttft_ms=300, itl_ms=1, output_tokens=5)

    async def run(url: str) -> list[tuple[int, dict]]:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async def one(i: int) -> tuple[int, dict]:
                body = _with(ANTHROPIC_OK, messages=[{"role": "user", "content": f"request {i}"}])
                async with session.post(url, data=body, headers={"x-api-key": "x"}) as response:
                    return response.status, json.loads(await response.read())

            return await asyncio.gather(*(one(i) for i in range(1000)))

    with Emulator(profile) as emulator:
        results = asyncio.run(run(emulator.base_url + "/v1/messages"))
        entries = emulator.wait_for_requests(1000, timeout=30)
    assert [status for status, _ in results] == [200] * 1000
    assert all(body["usage"]["output_tokens"] == 5 for _, body in results)
    assert len(entries) == 1000 and {e.outcome for e in entries} == {"ok"}
