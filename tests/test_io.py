"""Importing LLMPerf per-request results: hand-made files, then the public leaderboard data; and the
same records through the generic importer, ``lab.imports.read(format="llmperf")``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lab.imports
import lab.imports.llmperf
from lab.core.records import FIELDS
from lab.imports import LLMPERF_STARTED_AT, llmperf_dir, read_llmperf

ROOT = Path(__file__).resolve().parent.parent


def result(e2e_s=1.5, ttft_s=0.25, out=150, code=None, msg="", **extra):
    """One LLMPerf per-request result, as LLMPerf writes it."""
    return {
        "error_code": code, "error_msg": msg, "inter_token_latency_s": 0.01, "ttft_s": ttft_s,
        "end_to_end_latency_s": e2e_s, "request_output_throughput_token_per_s": out / e2e_s if e2e_s else 0,
        "number_total_tokens": 550 + out, "number_output_tokens": out, "number_input_tokens": 550, **extra,
    }


def values(series: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in series]


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture()
def run_dir(tmp_path):
    folder = tmp_path / "run-a"
    write(folder / "acme_13b.json", [result(), result(e2e_s=2.0, ttft_s=0.5, out=120, GEN_TEXT="Hello")])
    write(folder / "nested" / "solo.json", [
        # What LLMPerf writes for a rate-limited request: zeros for everything not measured.
        result(e2e_s=0, ttft_s=0, out=1, code=429, msg='{"error": "rate limited"}'),
        result(e2e_s=0, ttft_s=0, out=1, code=503, msg="unavailable"),
        result(e2e_s=0, ttft_s=0, out=1, code=-1),
        result(e2e_s=1.7, ttft_s=0.8, out=39, code=-100, msg="Output too few tokens 39"),
        {"error_code": 400, "error_msg": "bad request"},  # latency fields missing altogether
    ])
    write(folder / "summary.json", {"results_ttft_s_mean": 0.5, "model": "acme"})  # a summary: skipped
    write(folder / "config.json", [{"name": "not llmperf"}])  # a list, but not of results: skipped
    (folder / "notes.json").write_text("not json at all", encoding="utf-8")
    return folder


def test_folder_is_read_recursively_into_the_record_schema(run_dir):
    frame = read_llmperf(run_dir)
    assert list(frame.columns) == list(FIELDS)
    assert len(frame) == 7
    assert frame["endpoint"].unique().tolist() == ["llmperf:acme_13b.json", "llmperf:solo.json"]
    acme = frame[frame["endpoint"] == "llmperf:acme_13b.json"]
    assert acme["provider"].unique().tolist() == ["acme"] and acme["model"].unique().tolist() == ["13b"]
    solo = frame[frame["endpoint"] == "llmperf:solo.json"]
    assert solo["provider"].unique().tolist() == ["solo"] and solo["model"].unique().tolist() == [""]
    assert acme["sample"].tolist() == [0, 1] and solo["sample"].tolist() == [0, 1, 2, 3, 4]
    assert acme["run_id"].unique().tolist() == ["run-a"] and solo["run_id"].unique().tolist() == ["nested"]
    assert set(frame["kind"]) == {"stream"} and set(frame["experiment"]) == {"llmperf"}
    assert (frame["started_at"] == pd.Timestamp(LLMPERF_STARTED_AT)).all()
    assert frame["cost_usd"].isna().all() and not frame["synthetic"].any() and (frame["attempts"] == 1).all()


def test_units_tokens_and_text(run_dir):
    ok = read_llmperf(run_dir / "acme_13b.json")
    assert ok["status"].tolist() == ["ok", "ok"]
    assert ok["latency_ms"].tolist() == pytest.approx([1500.0, 2000.0])
    assert ok["ttft_ms"].tolist() == pytest.approx([250.0, 500.0])
    assert ok["input_tokens"].tolist() == [550, 550] and ok["output_tokens"].tolist() == [150, 120]
    assert ok["text"].tolist() == ["", "Hello"]
    assert ok["tpot_ms"].tolist() == pytest.approx([(1500 - 250) / 149, (2000 - 500) / 119])
    assert ok["error_type"].isna().all() and ok["http_status"].isna().all() and ok["error_message"].isna().all()


def test_failures_keep_codes_and_messages_and_no_fake_latencies(run_dir):
    errors = read_llmperf(run_dir / "nested" / "solo.json")
    assert (errors["status"] == "error").all()
    assert errors["error_type"].tolist() == [
        "rate_limit", "server_error", "llmperf_error", "llmperf_error", "client_error"]
    assert errors["http_status"].tolist()[:2] == [429, 503] and errors["http_status"].tolist()[4] == 400
    assert errors["http_status"].iloc[2:4].isna().all()
    messages = errors["error_message"]
    assert messages.drop(index=2).tolist() == [
        '{"error": "rate limited"}', "unavailable", "Output too few tokens 39", "bad request"]
    assert pd.isna(messages[2])  # LLMPerf recorded no message
    unmeasured = errors.drop(index=3)
    # LLMPerf's zeros (and missing fields) are not measurements: no 0 ms latencies, no 1-token outputs.
    assert unmeasured["latency_ms"].isna().all() and unmeasured["ttft_ms"].isna().all()
    assert unmeasured["output_tokens"].isna().all()
    assert (errors["latency_ms"] != 0).all() and (errors["ttft_ms"] != 0).all()
    # A request LLMPerf failed after it completed (too few tokens) keeps what was measured.
    completed = errors.loc[3]
    assert completed["latency_ms"] == pytest.approx(1700.0) and completed["ttft_ms"] == pytest.approx(800.0)
    assert completed["output_tokens"] == 39


def test_other_json_is_skipped_in_a_folder_but_rejected_when_named(run_dir):
    assert len(read_llmperf(run_dir)) == 7  # summary.json, config.json, notes.json skipped
    for name in ("summary.json", "config.json", "notes.json"):
        with pytest.raises(ValueError, match="not an LLMPerf per-request results file"):
            read_llmperf(run_dir / name)
    with pytest.raises(FileNotFoundError):
        read_llmperf(run_dir / "missing.json")
    empty = run_dir.parent / "empty"
    write(empty / "summary.json", {"a": 1})
    with pytest.raises(ValueError, match="no LLMPerf"):
        read_llmperf(empty)


def test_the_generic_reader_gives_the_same_records_and_names_the_placeholder(run_dir):
    frame = lab.imports.read(run_dir, format="llmperf")
    expected = read_llmperf(run_dir)
    assert list(frame.columns) == list(FIELDS) and len(frame) == len(expected) == 7
    for column in ("endpoint", "provider", "model", "status", "error_type", "error_message", "run_id", "text"):
        assert values(frame[column]) == values(expected[column]), column
    for column in ("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "http_status", "sample"):
        pd.testing.assert_series_equal(frame[column], expected[column], check_dtype=False, check_names=False)
    assert (frame["started_at"] == pd.Timestamp(LLMPERF_STARTED_AT)).all()
    source = lab.imports.inspect(run_dir / "acme_13b.json")
    assert source.format == "llmperf" and source.rows == 2 and source.errors == 0
    assert "started_at" in source.missing_fields  # a placeholder is not a measurement
    assert "latency_ms" not in source.missing_fields and "chunk_offsets_ms" in source.missing_fields
    assert lab.imports.detect(run_dir / "acme_13b.json") == "llmperf"


def test_llmperf_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMPERF_DIR", raising=False)
    assert llmperf_dir() is None  # the library never guesses where a checkout keeps data
    monkeypatch.setenv("LLMPERF_DIR", str(tmp_path / "absent"))
    assert llmperf_dir() is None
    monkeypatch.setenv("LLMPERF_DIR", str(tmp_path))
    assert llmperf_dir() == tmp_path


# --- the public LLMPerf leaderboard data (real, December 2023) ---------------------------------

def leaderboard_path() -> Path:
    path = llmperf_dir()
    if path is None:
        pytest.skip("LLMPerf leaderboard data absent: set LLMPERF_DIR (see the README)")
    return path


@pytest.fixture(scope="module")
def leaderboard() -> pd.DataFrame:
    return read_llmperf(leaderboard_path())


def test_leaderboard_shape(leaderboard):
    files = leaderboard.groupby("endpoint").size()
    assert len(files) == 19
    # Eight provider names in the files (the dataset's README says nine).
    assert sorted(leaderboard["provider"].unique()) == [
        "anyscale", "bedrock", "fireworks", "groq", "lepton", "perplexity", "replicate", "together"]
    assert set(leaderboard["model"]) == {"7b", "13b", "70b"}
    # 150 requests per file, except replicate_70b with 145.
    assert files.drop("llmperf:replicate_70b.json").eq(150).all() and files["llmperf:replicate_70b.json"] == 145
    assert len(leaderboard) == 2845
    assert set(leaderboard["input_tokens"].dropna()) == {550}
    assert leaderboard["synthetic"].eq(False).all()


def test_leaderboard_failures(leaderboard):
    errors = leaderboard[leaderboard["status"] == "error"]
    by_file = errors.groupby(["endpoint", "error_type"]).size().to_dict()
    assert by_file == {
        ("llmperf:bedrock_13b.json", "llmperf_error"): 97,
        ("llmperf:bedrock_70b.json", "llmperf_error"): 49,
        ("llmperf:lepton_13b.json", "rate_limit"): 130,
        ("llmperf:lepton_70b.json", "rate_limit"): 130,
        ("llmperf:lepton_7b.json", "rate_limit"): 130,
        ("llmperf:perplexity_70b.json", "rate_limit"): 2,
        ("llmperf:together_13b.json", "llmperf_error"): 1,
    }
    # Lepton rate-limited most requests: 130 of 150 per size, all HTTP 429 with no latency.
    lepton = leaderboard[leaderboard["provider"] == "lepton"]
    assert (lepton["status"] == "error").mean() == pytest.approx(130 / 150)
    rate_limited = leaderboard[leaderboard["error_type"] == "rate_limit"]
    assert (rate_limited["http_status"] == 429).all() and rate_limited["latency_ms"].isna().all()
    assert "Token rate limit exceeded" in errors.loc[errors["provider"] == "perplexity", "error_message"].iloc[0]
    # Bedrock's failures are LLMPerf's output-length check on completed requests: measured, short.
    bedrock = errors[errors["provider"] == "bedrock"]
    assert bedrock["error_message"].str.startswith("Output too few tokens").all()
    assert bedrock["latency_ms"].notna().all() and bedrock["http_status"].isna().all()
    assert (bedrock["output_tokens"] < 150).all() and (bedrock["text"] != "").all()
    # No latency statistic can see a zero.
    assert not (leaderboard["latency_ms"] == 0).any() and not (leaderboard["ttft_ms"] == 0).any()
    assert leaderboard.loc[leaderboard["status"] == "ok", "latency_ms"].notna().all()


def test_leaderboard_ttft_outliers(leaderboard):
    ok = leaderboard[leaderboard["status"] == "ok"]
    together = ok[ok["endpoint"] == "llmperf:together_13b.json"]
    # The "53-second TTFT" of the 13B run is the p99 of together_13b (numpy's linear quantile over
    # 149 successful calls), which falls between two calls of about 100 s and the rest, under 2.3 s.
    slow = together[together["ttft_ms"] > 10_000]
    assert slow["sample"].tolist() == [59, 64]
    assert slow["ttft_ms"].tolist() == pytest.approx([100_352.9, 100_469.6], abs=0.1)
    assert together.loc[together["ttft_ms"] <= 10_000, "ttft_ms"].max() < 2_300
    assert np.percentile(together["ttft_ms"], 99) == pytest.approx(53_263, abs=1)
    assert not ((ok["ttft_ms"] > 50_000) & (ok["ttft_ms"] < 56_000) & (ok["model"] == "13b")).any()
    # The slowest first token of all is together_13b's; replicate_70b's slowest waited 71.6 s.
    slowest = ok.loc[ok["ttft_ms"].idxmax()]
    assert slowest["endpoint"] == "llmperf:together_13b.json"
    replicate = ok[ok["endpoint"] == "llmperf:replicate_70b.json"]
    assert replicate["ttft_ms"].max() == pytest.approx(71_565.0, abs=0.1)
    assert math.isclose(ok["latency_ms"].max(), 101_931.9, abs_tol=0.1)
