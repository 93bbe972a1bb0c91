"""The ``lab`` command: doctor, emulator, report; and no key ever reaches what the lab writes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lab import cli, llm, report
from lab.emulator import Emulator, LatencyProfile

# Shaped like real keys (split in the source so secret scanners do not flag this file).
FAKE_KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-" "api03-FAKEKEYfakekeyFAKEKEY0123456789abcdefXYZ",
    "OPENAI_API_KEY": "sk-proj-" "FAKEKEYfakekeyFAKEKEY0123456789abcdefXYZ",
}


@pytest.fixture()
def emulated_env(monkeypatch, tmp_path):
    """Fake keys in the environment, both providers pointed at an emulator, cwd without .env."""
    monkeypatch.chdir(tmp_path)
    for name in ("LLM_PROVIDER", "LLM_MODEL", "OPENAI_COMPATIBLE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with Emulator(profile=LatencyProfile.fixed(ttft_ms=5, itl_ms=1, output_tokens=8)) as emu:
        for name, value in FAKE_KEYS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url_for("anthropic"))
        monkeypatch.setenv("OPENAI_BASE_URL", emu.url_for("openai"))
        yield emu


def test_doctor_reports_settings_without_calling(emulated_env, capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY set" in out and "OPENAI_API_KEY set" in out
    assert "OPENAI_COMPATIBLE_BASE_URL" in out  # says what to set for the unconfigured one
    assert "no call made" in out
    assert emulated_env.requests == []


def test_doctor_call_measures_latency_and_ttft(emulated_env, capsys):
    assert cli.main(["doctor", "--call", "--provider", "anthropic"]) == 0
    out = capsys.readouterr().out
    assert "call:     ok" in out and "time to first token" in out
    assert len(emulated_env.wait_for_requests(1)) == 1


def test_doctor_names_the_missing_key(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "LLM_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["doctor", "--provider", "anthropic"]) == 1
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY not set" in out and "lab emulator" in out


def test_key_from_dotenv_file(monkeypatch, tmp_path):
    from lab.core import config

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={FAKE_KEYS['ANTHROPIC_API_KEY']}\n")
    settings = config.resolve("anthropic")
    assert settings.key_configured and settings.api_key == FAKE_KEYS["ANTHROPIC_API_KEY"]
    assert FAKE_KEYS["ANTHROPIC_API_KEY"] not in repr(settings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_emulator_command_serves_the_sdks(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "emulator", "--port", str(port), "--profile", "fixed"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        answer = llm.complete("hello", provider="openai", base_url=f"{base}/v1", max_tokens=32)
        assert answer.ok and answer.record.synthetic
        with urllib.request.urlopen(f"{base}/_emulator/requests") as response:
            assert len(json.load(response)) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


NOTEBOOK_SOURCE = """
import matplotlib.pyplot as plt
import os
from lab import llm, records_frame
from lab.core import config
record = llm.complete("hello", max_tokens=16).record
print(record)
print(config.resolve("anthropic"))
print(dict(os.environ).get("ANTHROPIC_BASE_URL"))
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([1, 2, 3], [1, 4, 9])
ax.set_title("synthetic example")
records_frame([record])
"""


def test_report_is_self_contained_and_keys_never_reach_a_file(emulated_env, tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = new_notebook(cells=[new_markdown_cell("# A tiny report"), new_code_cell(NOTEBOOK_SOURCE)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, notebooks / "01_tiny.ipynb")
    records_file = tmp_path / "records.jsonl"
    records = [llm.complete("hi", provider=p, max_tokens=8).record for p in ("anthropic", "openai")]
    records_file.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    (tmp_path / "requests.json").write_text(json.dumps([vars(e) for e in emulated_env.requests]))
    cli.main(["doctor", "--call"])

    written, failures = report.build(notebooks, tmp_path / "reports")

    html = (tmp_path / "reports" / "01_tiny.html").read_text()
    assert "data:image/png;base64," in html and "<table" in html
    # Nothing is loaded from the network: no external scripts, stylesheets or images.
    assert not re.search(r'<(script|img)[^>]+src="https?:', html)
    assert not re.search(r'<link[^>]+href="https?:', html)
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'href="01_tiny.html"' in index and "A tiny report" in index
    assert len(written) == 2 and failures == []

    output = capsys.readouterr()
    for key in FAKE_KEYS.values():
        assert key not in output.out and key not in output.err
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), f"{key[:8]}... leaked into {path}"


def test_report_names_a_failed_notebook_and_cell_and_still_writes_the_index(tmp_path, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Fine"), new_code_cell("1 + 1")], metadata=kernel),
                   notebooks / "01_fine.ipynb")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Broken"), new_code_cell("x = 1"),
                                       new_code_cell("from lab.analysis import simulations\n"
                                                     "simulations.cached('never simulated', {'n': 1}, lambda n: n)")],
                                metadata=kernel), notebooks / "02_broken.ipynb")

    assert cli.main(["report", "--notebooks", str(notebooks), "--out", str(tmp_path / "reports")]) == 1

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "02_broken.ipynb, cell 3: MissingSimulation" in err[0] and "make notebooks" in err[0]
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'href="01_fine.html"' in index and "02_broken" not in index
