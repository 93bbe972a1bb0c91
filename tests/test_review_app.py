"""The code-review assistant's three call sites, against the emulator's reviewer, for both providers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab.collect import review
from lab.emulator import Emulator, FaultRule, LatencyProfile
from lab.review import app, emulated, scoring
from lab.review.schema import Findings
from lab.store import Run

FAST = LatencyProfile.fixed(ttft_ms=2, itl_ms=0, output_tokens=10)
MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5-mini"}


@pytest.fixture(scope="module")
def emulator():
    with Emulator(FAST, seed=3, responder=emulated.reviewer()) as emu:
        yield emu


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_three_call_sites(emulator, provider):
    chunks = []
    result = app.review(review.SAMPLE, on_text=chunks.append, provider=provider, model=MODELS[provider],
                        base_url=emulator.url_for(provider))
    assert all(r.ok for r in result.records), [r.error_message for r in result.records]
    assert [r.kind for r in result.records] == ["complete", "stream", "json"]
    assert 1 <= result.score <= 10
    assert len(chunks) > 1 and "".join(chunks) == result.feedback and "Line " in result.feedback
    assert isinstance(result.findings.data, Findings) and result.findings.data.findings
    found = scoring.score(result.findings.data.findings, scoring.load_key())
    assert found.recall > 0


def test_switching_provider_is_one_environment_variable(emulator, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.url_for("anthropic"))
    monkeypatch.setenv("OPENAI_BASE_URL", emulator.url_for("openai"))
    for provider in ("anthropic", "openai"):
        monkeypatch.setenv("LLM_PROVIDER", provider)
        monkeypatch.setenv("LLM_MODEL", MODELS[provider])
        result = app.review(review.SAMPLE)
        assert {r.provider for r in result.records} == {provider} and result.score is not None


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_malformed_or_partial_json_is_recorded_not_raised(provider):
    with Emulator(FAST, responder=emulated.reviewer(), faults=[FaultRule("malformed_json")]) as emu:
        findings = app.summarize(review.SAMPLE.read_text(), "sample_code.py", provider=provider,
                                 model=MODELS[provider], base_url=emu.url_for(provider))
    assert findings.data is None and not findings.ok
    assert findings.record.error_type == "invalid_json" and findings.record.text  # the partial answer is kept


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_cut_stream_and_overload_are_recorded_not_raised(provider):
    with Emulator(FAST, responder=emulated.reviewer(), faults=[FaultRule("cut_stream")]) as emu:
        result = app.review(review.SAMPLE, provider=provider, model=MODELS[provider],
                            base_url=emu.url_for(provider))
    assert {r.error_type for r in result.records} == {"cut_stream"}
    assert result.score is None and result.findings.data is None


def test_the_terminal_command_reviews_a_file(emulator):
    env = {**os.environ, "LLM_PROVIDER": "openai", "LLM_MODEL": "gpt-5-mini",
           "OPENAI_BASE_URL": emulator.url_for("openai"), "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    done = subprocess.run([sys.executable, "-m", "lab.review", str(review.SAMPLE)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for heading in ("Overall assessment", "Line-by-line feedback", "Findings", "score:"):
        assert heading in done.stdout
    assert "(synthetic)" in done.stdout and "sk-test" not in done.stdout


@pytest.mark.slow
def test_collection_resumes_and_replays(tmp_path):
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "lab.cli", "collect", "review", "--run", "rv", "--provider", "openai",
               "--model", "gpt-5-mini", "--n", "3", "--emulator", "instant", "--pause", "0"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "3 reviews made" in first.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert "0 reviews made, 3 already recorded" in again.stdout

    calls, reviews = review.reviews(Run("rv", tmp_path))
    assert len(calls) == 9 and len(reviews) == 3
    assert reviews["synthetic"].all() and reviews["score"].notna().all()
    assert Run("rv", tmp_path).manifest["experiment"] == review.EXPERIMENT
