"""Planted secrets of every shape reach no file the lab writes and no line it prints: collect, import,
analyze, compare and the proxy, with keys in the environment, a password and a query key in a URL, a
Basic credential built from it, and keys an upstream echoes back."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from aiohttp import web

from lab.emulator import Emulator

from stubs import StubServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ENV_SK = "sk-ant-" "api03-PLANTEDa1b2c3d4e5f6g7h8"  # split, so no key-shaped string is tracked
ENV_PLAIN = "zQ8PLANTEDplainKey4417"  # a key not shaped like sk-...
CLIENT = "cl13ntPLANTEDkey8812"  # a proxied caller's own key, never configured here
FIRST_SEEN = "f1rstSEENplantedKey553"  # a caller's key the proxy sees only in a malformed header line
USER, PASSWORD = "labuser", "Pl4ntedPassw0rd"
QUERY = "PlantedQueryKey9931"
PLANTED = {
    "environment sk- key": ENV_SK, "environment plain key": ENV_PLAIN, "caller's key": CLIENT,
    "malformed header's key": FIRST_SEEN, "URL password": PASSWORD, "URL query key": QUERY, "user:password": f"{USER}:{PASSWORD}",
    "Basic credential": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode().rstrip("="),
    "Basic credential of the caller's key": base64.b64encode(CLIENT.encode()).decode().rstrip("="),
}


class Echo(StubServer):
    """An upstream that refuses every request and echoes its credentials back in the error message."""

    def __init__(self) -> None:
        super().__init__([])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        seen = "; ".join(f"{k}: {v}" for k, v in request.headers.items()
                         if k.lower() in ("x-api-key", "authorization"))
        body = {"type": "error", "error": {"type": "authentication_error",
                                           "message": f"Incorrect API key provided ({seen}) for {request.url}"}}
        return web.json_response(body, status=401)


def lab(*args: str, env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert not check or done.returncode == 0, done.stderr
    return done


def written_text(folder: Path) -> dict[Path, str]:
    """Every file below ``folder`` as text: gzip parts unpacked, Parquet files as their values."""
    found = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            found[path] = json.dumps(pq.read_table(path).to_pylist(), default=str)
        elif path.suffix == ".gz":
            found[path] = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        else:
            found[path] = path.read_bytes().decode("utf-8", "replace")
    return found


def test_no_planted_secret_reaches_a_file_or_a_stream(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_RUNS_DIR": str(work / "runs"), "ANTHROPIC_API_KEY": ENV_SK,
           "OPENAI_API_KEY": ENV_PLAIN}
    printed: list[str] = []

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = lab(*args, env=env, cwd=work, check=check)
        printed.extend([done.stdout, done.stderr])
        return done

    with Emulator("instant") as emu, Echo() as echo:
        secret_url = emu.url_for("openai").replace("http://", f"http://{USER}:{PASSWORD}@")
        base = ["collect", "variance", "--provider", "openai", "--model", "gpt-5-mini", "--window", "w", "--pause", "0"]
        run(*base, "--run", "planted", "--n", "2", "--base-url", secret_url)
        refused = run(*base, "--run", "planted", "--n", "3", "--base-url", secret_url, check=False)
        assert refused.returncode == 2 and "use a new --run" in refused.stderr  # the design it prints is masked
        run(*base, "--run", "echoed", "--n", "1", "--base-url", echo.url_for("openai") + f"?key={QUERY}")
        run("collect", "variance", "--provider", "anthropic", "--window", "w", "--pause", "0", "--run", "echoed-sk",
            "--n", "1", "--base-url", echo.url_for("anthropic"))

        table = work / "traces.csv"
        table.write_text("latency_ms,status,error_message,endpoint,provider,model\n"
                         f"120,ok,,http://{USER}:{PASSWORD}@api.example.com/v1?key={QUERY},openai,gpt-5-mini\n"
                         f"80,error,Invalid key {ENV_PLAIN} (Bearer {CLIENT}),http://api.example.com/v1,openai,"
                         "gpt-5-mini\n")
        run("import", str(table), "--run", "imported", *(f"--map={c}={c}" for c in (
            "latency_ms", "status", "error_message", "endpoint", "provider", "model")))
        for run_id in ("planted", "echoed", "imported"):
            run("analyze", "--run", run_id, "--out", str(work / "reports" / f"{run_id}.html"))
        run("compare", "--run", "planted", "--run", "imported", "--out", str(work / "reports" / "compare.html"))
        run("runs")

        policy = work / "policy.toml"
        policy.write_text(f'[upstreams.backup]\nurl = "{echo.url_for("openai")}?key={QUERY}"\nformat = "openai"\n'
                          '[[routes]]\nname = "all"\nmodels = ["*"]\nupstream = "anthropic"\n'
                          'fallback = { upstream = "backup", model = "gpt-5-mini" }\n')
        proxied = proxy_session(work, env, echo.url, policy)
        printed.extend(proxied)

    leaks = [f"{what} in {path.relative_to(tmp_path)}" for path, text in written_text(tmp_path).items()
             for what, secret in PLANTED.items() if secret in text and path not in (table, policy)]
    leaks += [f"{what} printed" for text in printed for what, secret in PLANTED.items() if secret in text]
    assert not leaks, leaks
    records = [json.loads(line)["record"] for line in (work / "runs" / "echoed" / "calls.jsonl").read_text().splitlines()]
    assert records and all("[redacted]" in r["error_message"] for r in records)


def proxy_session(work: Path, env: dict[str, str], upstream: str, policy: Path) -> list[str]:
    """A proxy run in front of the echoing upstream: a caller's call with its own key, and a malformed header
    line that carries the key; returns what the proxy printed."""
    import anthropic

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "lab.cli", "proxy", "--run", "proxied", "--port", str(port),
                                "--anthropic-upstream", upstream, "--policy", str(policy)], cwd=work, env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    guard = threading.Timer(120, process.kill)
    guard.start()
    try:
        assert "lab proxy serving" in process.stdout.readline()
    finally:
        guard.cancel()
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=CLIENT, max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    for line in (f"x-api-key {FIRST_SEEN}", f"Broken header line {CLIENT}"):  # a key never seen, and one seen
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            raw.sendall(f"POST /v1/messages HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n".encode())
            raw.recv(4096)
    process.terminate()
    out, err = process.communicate(timeout=120)
    return [out, err]
