"""Each importer on real output of its tool (tests/fixtures/<format>/, made against the lab's emulator;
the README beside each says how): the lab's summary of the records equals the tool's own summary of
the same run, counts and error rates exactly and percentiles to 1e-9 with the tool's own method."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lab.imports
from lab.core.records import FIELDS

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REL = 1e-9


def close(expected: float, actual: float) -> bool:
    return actual == pytest.approx(expected, rel=REL, abs=1e-9)


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"]


def gaps(frame: pd.DataFrame) -> np.ndarray:
    return np.concatenate([np.diff(offsets) for offsets in frame["chunk_offsets_ms"].dropna()])


# --- AIPerf 0.13 -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def aiperf() -> tuple[pd.DataFrame, dict]:
    folder = FIXTURES / "aiperf"
    return lab.imports.read(folder / "profile_export.jsonl"), json.loads((folder / "profile_export_aiperf.json").read_text())


def test_aiperf_counts_and_error_rate_equal_aiperfs(aiperf):
    frame, summary = aiperf
    assert lab.imports.detect(FIXTURES / "aiperf" / "profile_export.jsonl") == "aiperf"
    assert list(frame.columns) == list(FIELDS)
    assert len(ok_rows(frame)) == summary["request_count"]["avg"] == 35
    assert (frame["status"] == "error").sum() == summary["error_request_count"]["avg"] == 5
    assert len(frame) == summary["completed_request_count"]["avg"]
    assert (frame["status"] == "error").mean() * 100 == summary["request_error_rate"]["avg"]
    errors = frame[frame["status"] == "error"]
    assert set(errors["error_type"]) == {"server_error"} and set(errors["http_status"]) == {500}
    assert errors["latency_ms"].isna().all() and errors["error_message"].str.contains("emulated").all()
    assert set(frame["model"]) == {"emulator-model"} and set(frame["kind"]) == {"stream"}
    assert set(frame["window"]) == {"profiling"} and (frame["attempts"] == 1).all()


@pytest.mark.parametrize("metric, column", [
    ("request_latency", "latency_ms"), ("time_to_first_token", "ttft_ms"),
    ("time_to_first_output_token", "first_text_ms"), ("inter_token_latency", "tpot_ms"),
    ("usage_prompt_tokens", "input_tokens"), ("usage_completion_tokens", "output_tokens"),
])
def test_aiperf_percentiles_equal_aiperfs(aiperf, metric, column):
    frame, summary = aiperf
    values = ok_rows(frame)[column].astype(float).to_numpy()
    stats = summary[metric]
    assert stats["count"] == len(values)
    for q in (1, 5, 10, 25, 50, 75, 90, 95, 99):  # AIPerf interpolates linearly, as numpy's default
        assert close(stats[f"p{q}"], np.percentile(values, q)), q
    assert close(stats["avg"], values.mean()) and close(stats["std"], values.std())
    assert close(stats["min"], values.min()) and close(stats["max"], values.max())


def test_aiperf_chunk_offsets_give_its_inter_chunk_latencies(aiperf):
    frame, summary = aiperf
    stats, icl = summary["inter_chunk_latency"], gaps(ok_rows(frame))
    # AIPerf summarises these with a t-digest (approximate percentiles): compare the exact statistics.
    assert stats["count"] == len(icl) and close(stats["sum"], icl.sum())
    assert close(stats["min"], icl.min()) and close(stats["max"], icl.max())
    ok = ok_rows(frame)
    assert (ok["ttft_ms"] == ok["chunk_offsets_ms"].map(lambda o: o[0])).all()
    assert np.allclose(ok["chunk_offsets_ms"].map(lambda o: o[-1]), ok["latency_ms"], rtol=1e-12)
    assert np.allclose(ok["max_gap_ms"], ok["chunk_offsets_ms"].map(lambda o: np.diff(o).max()))


# --- GuideLLM 0.8 ----------------------------------------------------------------------------------

def guidellm_percentile(values: np.ndarray, weights: np.ndarray, probability: float) -> float:
    """GuideLLM's percentile (``Percentiles.from_pdf``): duplicates merged, weights normalised, the
    first value whose cumulative probability (a float sum) reaches ``probability``."""
    order = np.argsort(values)
    unique, inverse = np.unique(values[order], return_inverse=True)
    summed = np.zeros_like(unique)
    np.add.at(summed, inverse, weights[order])
    cdf = np.cumsum(summed / summed.sum())
    return float(unique[np.searchsorted(cdf, probability, side="left")])


@pytest.fixture(scope="module")
def guidellm() -> tuple[pd.DataFrame, dict]:
    path = FIXTURES / "guidellm" / "benchmarks.json.gz"
    return lab.imports.read(path), json.loads(gzip.decompress(path.read_bytes()))["benchmarks"][0]["metrics"]


def test_guidellm_counts_and_error_rate_equal_guidellms(guidellm):
    frame, metrics = guidellm
    totals = metrics["request_totals"]
    assert len(ok_rows(frame)) == totals["successful"] == 38
    assert (frame["status"] == "error").sum() == totals["errored"] + totals["incomplete"] == 2
    assert len(frame) == totals["total"]
    errors = frame[frame["status"] == "error"]
    assert set(errors["error_type"]) == {"server_error"} and set(errors["http_status"]) == {500}
    assert errors["latency_ms"].isna().all()  # GuideLLM measured no latency for them
    assert set(frame["window"]) == {"concurrent@4"} and set(frame["kind"]) == {"stream"}
    assert frame["chunk_offsets_ms"].isna().all()  # GuideLLM keeps no chunk times
    assert (ok_rows(frame)["text"] != "").all()


@pytest.mark.parametrize("metric, column, scale, weighted", [
    ("request_latency", "latency_ms", 1000.0, False),
    ("time_to_first_token_ms", "ttft_ms", 1.0, False),
    ("inter_token_latency_ms", "tpot_ms", 1.0, True),  # weighted by the tokens after the first
])
def test_guidellm_percentiles_equal_guidellms(guidellm, metric, column, scale, weighted):
    frame, metrics = guidellm
    ok = ok_rows(frame)
    values = ok[column].to_numpy(float) / scale
    weights = ok["output_tokens"].to_numpy(float) - 1 if weighted else np.ones(len(values))
    stats = metrics[metric]["successful"]
    probabilities = {"p001": 0.001, "p01": 0.01, "p05": 0.05, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75,
                     "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
    for name, probability in probabilities.items():
        assert close(stats["percentiles"][name], guidellm_percentile(values, weights, probability)), name
    assert stats["count"] == round(weights.sum()) and close(stats["mean"], np.average(values, weights=weights))


# --- vllm bench serve (vllm 0.33) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_bench() -> tuple[pd.DataFrame, dict]:
    path = FIXTURES / "vllm_bench" / "vllm_bench_serve.json"
    return lab.imports.read(path), json.loads(path.read_text())


def test_vllm_bench_counts_equal_vllms(vllm_bench):
    frame, result = vllm_bench
    ok = ok_rows(frame)
    assert len(ok) == result["completed"] == 34 and (frame["status"] == "error").sum() == result["failed"] == 6
    assert ok["input_tokens"].sum() == result["total_input_tokens"]
    assert ok["output_tokens"].sum() == result["total_output_tokens"]
    errors = frame[frame["status"] == "error"]
    assert set(errors["error_message"]) == {"Internal Server Error"}
    assert set(errors["error_type"]) == {"server_error"} and set(errors["http_status"]) == {500}
    # vLLM writes 0 for what a failure never measured: not a 0 ms call.
    assert errors[["latency_ms", "ttft_ms", "tpot_ms", "output_tokens"]].isna().all().all()
    assert frame["started_at"].isna().all()  # perf_counter readings, no calendar time


@pytest.mark.parametrize("metric", ["ttft", "tpot", "itl", "e2el"])
def test_vllm_bench_percentiles_equal_vllms(vllm_bench, metric):
    frame, result = vllm_bench
    ok = ok_rows(frame)
    values = {"ttft": ok["ttft_ms"], "tpot": ok["tpot_ms"].dropna(), "e2el": ok["latency_ms"],
              "itl": pd.Series(gaps(ok))}[metric].to_numpy(float)
    for p in ("50", "90", "99"):  # np.percentile, linear
        assert close(result[f"p{p}_{metric}_ms"], np.percentile(values, float(p))), p
    assert close(result[f"mean_{metric}_ms"], values.mean()) and close(result[f"std_{metric}_ms"], values.std())
    assert close(result[f"median_{metric}_ms"], np.median(values))


# --- genai-perf 0.0.16 -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def genai_perf() -> tuple[pd.DataFrame, dict]:
    folder = FIXTURES / "genai_perf"
    statistics = json.loads((folder / "genai_perf_statistics.json").read_text())
    return lab.imports.read(folder / "profile_export.json.gz"), statistics


@pytest.mark.parametrize("metric", ["request_latency", "time_to_first_token", "time_to_second_token"])
def test_genai_perf_statistics_equal_genai_perfs(genai_perf, metric):
    frame, stats = genai_perf
    assert len(frame) == stats["request_count"]["avg"] == 40 and (frame["status"] == "ok").all()
    values = {"request_latency": frame["latency_ms"], "time_to_first_token": frame["ttft_ms"],
              "time_to_second_token": frame["chunk_offsets_ms"].map(lambda o: o[1] - o[0])}[metric].to_numpy(float)
    for q in (1, 5, 10, 25, 50, 75, 90, 95, 99):  # np.percentile, linear, on nanoseconds
        assert close(stats[metric][f"p{q}"], np.percentile(values, q)), q
    assert close(stats[metric]["avg"], values.mean()) and close(stats[metric]["max"], values.max())


def test_genai_perf_text_and_lacking_tokens(genai_perf):
    frame, stats = genai_perf
    assert (frame["text"] != "").all() and set(frame["model"]) == {"emulator-model"}
    assert frame["output_tokens"].isna().all()  # genai-perf counts tokens with a tokenizer; the file has none
    source = lab.imports.inspect(FIXTURES / "genai_perf" / "profile_export.json.gz")
    assert {"output_tokens", "input_tokens", "tpot_ms"} <= set(source.missing_fields)
    assert "chunk_offsets_ms" not in source.missing_fields


# --- LiteLLM and OpenTelemetry: no summary of their own; the emulator's log of the same calls ------

def at_least_served(latencies: pd.Series, server_times: pd.Series) -> None:
    """Each call lasted about as long as the emulator spent on it, or longer (then so do the sorted
    values): a client may stop its clock at the last content chunk, up to a millisecond before the
    emulator has written the stream's end."""
    assert (np.sort(latencies.to_numpy(float)) >= np.sort(server_times.to_numpy(float)) - 1.0).all()


def emulator_log(folder: str) -> pd.DataFrame:
    return pd.DataFrame(json.loads((FIXTURES / folder / "emulator_requests.json").read_text()))


@pytest.mark.parametrize("name", ["standard_logging_payload.jsonl.gz", "spend_logs.json.gz"])
def test_litellm_records_match_the_calls_the_emulator_answered(name):
    path = FIXTURES / "litellm" / name
    frame, served = lab.imports.read(path), emulator_log("litellm")
    assert lab.imports.detect(path) == "litellm"
    assert len(frame) == len(served) == 40
    assert (frame["status"] == "error").sum() == (served["outcome"] == "error").sum() == 6
    assert sorted(ok_rows(frame)["output_tokens"]) == sorted(served.loc[served["outcome"] == "ok", "output_tokens"])
    assert set(frame.loc[frame["status"] == "error", "http_status"]) == {500}
    ok, answered = ok_rows(frame), served[served["outcome"] == "ok"]
    streamed = ok[ok["kind"] == "stream"]
    assert len(streamed) == answered["stream"].sum()
    assert (streamed["ttft_ms"] < streamed["latency_ms"]).all()
    at_least_served(ok["latency_ms"], answered["server_time_ms"])
    assert frame.loc[frame["kind"] == "complete", "ttft_ms"].isna().all()
    assert frame["cost_usd"].isna().all()  # LiteLLM could not price the emulator's model


def test_litellm_payloads_and_spend_logs_agree():
    payload = lab.imports.read(FIXTURES / "litellm" / "standard_logging_payload.jsonl.gz").sort_values("started_at")
    spend = lab.imports.read(FIXTURES / "litellm" / "spend_logs.json.gz").sort_values("started_at")
    for column in ("status", "error_type", "http_status", "input_tokens", "output_tokens", "model", "provider"):
        assert payload[column].tolist() == spend[column].tolist(), column
    assert np.allclose(payload["latency_ms"], spend["latency_ms"], atol=0.001)


def test_otel_spans_match_the_calls_the_emulator_answered():
    path = FIXTURES / "otel" / "spans.jsonl"
    frame, served = lab.imports.read(path), emulator_log("otel")
    assert lab.imports.detect(path) == "otel"
    assert len(frame) == len(served) == 40
    assert (frame["status"] == "error").sum() == (served["outcome"] == "error").sum()
    assert sorted(ok_rows(frame)["output_tokens"]) == sorted(served.loc[served["outcome"] == "ok", "output_tokens"])
    assert set(frame["provider"]) == {"openai"} and set(frame["model"]) == {"emulator-model"}
    errors = frame[frame["status"] == "error"]
    assert set(errors["error_type"]) == {"server_error"} and set(errors["http_status"]) == {500}
    at_least_served(ok_rows(frame)["latency_ms"], served.loc[served["outcome"] == "ok", "server_time_ms"])
