"""Each importer on real output of its tool (tests/fixtures/<format>/, made against the lab's emulator;
the README beside each says how): the lab's summary of the records equals the tool's own summary of
the same run, counts and error rates exactly and percentiles to 1e-9 with the tool's own method (the
numpy ``method=`` the importer names in ``PERCENTILE_METHOD`` and a run's manifest records); where a
tool writes no summary, the emulator's log of the same calls. And on every fixture: each row has a
target, and no field the file holds is reported missing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lab.imports
from lab.core.records import FIELDS
from lab.imports import aiperf as aiperf_format
from lab.imports import genai_perf as genai_perf_format
from lab.imports import guidellm as guidellm_format
from lab.imports import vllm_bench as vllm_format

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
        assert close(stats[f"p{q}"], np.percentile(values, q, method=aiperf_format.PERCENTILE_METHOD)), q
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


def test_aiperf_scheduling_times(aiperf):
    frame, _ = aiperf
    lines = [json.loads(line)["metadata"] for line in (FIXTURES / "aiperf" / "profile_export.jsonl").read_text().splitlines()]
    issued = pd.to_datetime([m["credit_issued_ns"] for m in lines], unit="ns", utc=True)
    assert (frame["scheduled_at"] == pd.Series(issued.floor("us"))).all()
    lag = [(m["request_start_ns"] - m["credit_issued_ns"]) / 1e6 for m in lines]
    assert np.allclose(frame["send_lag_ms"], lag) and (frame["send_lag_ms"] >= 0).all()


# --- GuideLLM 0.8.1 and 0.4 ------------------------------------------------------------------------

GUIDELLM = {"0.8.1": "benchmarks.json.gz", "0.4": "benchmarks_0.4.json.gz"}
PROBABILITIES = {"p001": 0.001, "p01": 0.01, "p05": 0.05, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75,
                 "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def guidellm_percentile(values: np.ndarray, weights: np.ndarray, probability: float) -> float:
    """GuideLLM's percentile (``Percentiles.from_pdf``): duplicates merged, weights normalised, the
    first value whose cumulative probability (a float sum) reaches ``probability``."""
    order = np.argsort(values)
    unique, inverse = np.unique(values[order], return_inverse=True)
    summed = np.zeros_like(unique)
    np.add.at(summed, inverse, weights[order])
    cdf = np.cumsum(summed / summed.sum())
    return float(unique[np.searchsorted(cdf, probability, side="left")])


@pytest.fixture(scope="module", params=list(GUIDELLM))
def guidellm(request) -> tuple[str, pd.DataFrame, dict]:
    path = FIXTURES / "guidellm" / GUIDELLM[request.param]
    return request.param, lab.imports.read(path), json.loads(gzip.decompress(path.read_bytes()))["benchmarks"][0]


def test_guidellm_counts_and_error_rate_equal_guidellms(guidellm):
    version, frame, benchmark = guidellm
    totals = benchmark["metrics"]["request_totals"]
    assert len(ok_rows(frame)) == totals["successful"] == {"0.8.1": 38, "0.4": 33}[version]
    assert (frame["status"] == "error").sum() == totals["errored"] + totals["incomplete"] == {"0.8.1": 2, "0.4": 6}[
        version]
    assert len(frame) == totals["total"]
    errors = frame[frame["status"] == "error"]
    assert set(errors["error_type"]) == {"server_error"} and set(errors["http_status"]) == {500}
    assert errors["latency_ms"].isna().all()  # GuideLLM measured no latency for them
    assert set(frame["window"]) == {"concurrent@4"}
    assert set(frame["kind"]) == {"stream"}  # 0.8: the backend's flag; 0.4: each request's own arguments
    assert frame["chunk_offsets_ms"].isna().all()  # GuideLLM keeps no chunk times
    assert (ok_rows(frame)["text"] != "").all()
    assert set(frame["provider"]) == {"openai-compatible"} and set(frame["endpoint"]) == {"http://127.0.0.1:18801"}


def test_guidellm_scheduling_times_give_its_start_delay(guidellm):
    _, frame, benchmark = guidellm
    assert frame["scheduled_at"].notna().all() and (frame["scheduled_at"] <= frame["started_at"]).all()
    # GuideLLM's own mean delay from the targeted start to the request's start, over every request.
    assert close(benchmark["scheduler_metrics"]["request_targeted_start_delay_avg"], frame["send_lag_ms"].mean() / 1000)


@pytest.mark.parametrize("metric, column, scale, weighted", [
    ("request_latency", "latency_ms", 1000.0, False),
    ("time_to_first_token_ms", "ttft_ms", 1.0, False),
    ("inter_token_latency_ms", "tpot_ms", 1.0, True),  # weighted by the tokens after the first
])
def test_guidellm_percentiles_equal_guidellms(guidellm, metric, column, scale, weighted):
    _, frame, benchmark = guidellm
    ok = ok_rows(frame)
    values = ok[column].to_numpy(float) / scale
    weights = ok["output_tokens"].to_numpy(float) - 1 if weighted else np.ones(len(values))
    stats = benchmark["metrics"][metric]["successful"]
    assert guidellm_format.PERCENTILE_METHOD == "inverted_cdf"
    for name, probability in PROBABILITIES.items():
        expected = stats["percentiles"][name]
        assert close(expected, guidellm_percentile(values, weights, probability)), name
        # numpy's inverted_cdf is GuideLLM's order statistic; the two differ only where a share of the
        # requests is exactly p (19 of 38 at p50), which GuideLLM's floating-point cumulative sum may
        # leave a hair under p, taking the next value instead.
        numpy = np.percentile(values, probability * 100, method=guidellm_format.PERCENTILE_METHOD,
                              weights=weights if weighted else None)
        cumulative = np.cumsum(np.sort(values) if not weighted else np.ones(1))
        tie = not weighted and (probability * len(values)).is_integer()
        if tie:
            k = int(probability * len(values))
            assert expected in (np.sort(values)[k - 1], np.sort(values)[k]), name
        else:
            assert close(expected, numpy), name
        del cumulative
    assert stats["count"] == round(weights.sum()) and close(stats["mean"], np.average(values, weights=weights))


def test_guidellm_p90_to_p99_are_order_statistics_not_interpolated(guidellm):
    """What the manifest's percentile method is for: the lab's default (linear) differs from GuideLLM's."""
    _, frame, benchmark = guidellm
    values = ok_rows(frame)["latency_ms"].to_numpy(float) / 1000.0
    stats = benchmark["metrics"]["request_latency"]["successful"]["percentiles"]
    assert stats["p99"] in values and stats["p90"] in values
    assert any(not close(stats[p], np.percentile(values, PROBABILITIES[p] * 100)) for p in ("p90", "p95", "p99"))


def test_the_manifest_names_the_tools_percentile_method(tmp_path):
    for folder, name, method in [("guidellm", "benchmarks_0.4.json.gz", "inverted_cdf"),
                                 ("aiperf", "profile_export.jsonl", "linear"),
                                 ("vllm_bench", "vllm_bench_serve_0.34.json", "linear"),
                                 ("genai_perf", "profile_export.json.gz", "linear")]:
        lab.imports.import_run(FIXTURES / folder / name, f"m-{folder}", root=tmp_path)
        manifest = json.loads((tmp_path / f"m-{folder}" / "manifest.json").read_text())
        assert manifest["source"]["percentile_method"] == method, folder
    lab.imports.import_run(FIXTURES / "otel" / "spans.jsonl", "m-otel", root=tmp_path)
    assert "percentile_method" not in json.loads((tmp_path / "m-otel" / "manifest.json").read_text())["source"]


# --- vllm bench serve (vllm 0.33 and 0.34) ---------------------------------------------------------

VLLM = {"0.33": "vllm_bench_serve.json", "0.34": "vllm_bench_serve_0.34.json"}


@pytest.fixture(scope="module", params=list(VLLM))
def vllm_bench(request) -> tuple[pd.DataFrame, dict]:
    path = FIXTURES / "vllm_bench" / VLLM[request.param]
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
    assert set(frame["provider"]) == {"openai-compatible"} and set(frame["target"]) == {
        "openai-compatible/emulator-model"}


def test_vllm_bench_queue_times_are_send_lags(vllm_bench):
    frame, result = vllm_bench
    assert np.allclose(frame["send_lag_ms"], np.array(result["queue_times"]) * 1000.0)
    assert (frame["send_lag_ms"] >= 0).all() and frame["scheduled_at"].isna().all()


@pytest.mark.parametrize("metric", ["ttft", "tpot", "itl", "e2el"])
def test_vllm_bench_percentiles_equal_vllms(vllm_bench, metric):
    frame, result = vllm_bench
    ok = ok_rows(frame)
    values = {"ttft": ok["ttft_ms"], "tpot": ok["tpot_ms"].dropna(), "e2el": ok["latency_ms"],
              "itl": pd.Series(gaps(ok))}[metric].to_numpy(float)
    for p in ("50", "90", "99"):  # np.percentile, linear
        assert close(result[f"p{p}_{metric}_ms"], np.percentile(values, float(p), method=vllm_format.PERCENTILE_METHOD)), p
    assert close(result[f"mean_{metric}_ms"], values.mean()) and close(result[f"std_{metric}_ms"], values.std())
    assert close(result[f"median_{metric}_ms"], np.median(values))


# --- genai-perf 0.0.16 with perf_analyzer (tritonclient 2.49.0), streamed and not -----------------------

@pytest.fixture(scope="module", params=["stream", "complete"])
def genai_perf(request) -> tuple[str, pd.DataFrame, dict]:
    folder = FIXTURES / "genai_perf" / ("" if request.param == "stream" else "complete")
    statistics = json.loads((folder / "profile_export_genai_perf.json").read_text())
    return request.param, lab.imports.read(folder / "profile_export.json.gz"), statistics


def genai_values(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "time_to_second_token":
        return frame["chunk_offsets_ms"].map(lambda o: o[1] - o[0]).to_numpy(float)
    return frame[{"request_latency": "latency_ms", "time_to_first_token": "ttft_ms"}[metric]].to_numpy(float)


@pytest.mark.parametrize("metric", ["request_latency", "time_to_first_token", "time_to_second_token"])
def test_genai_perf_statistics_equal_genai_perfs(genai_perf, metric):
    kind, frame, stats = genai_perf
    assert len(frame) == stats["request_count"]["avg"] == 40 and (frame["status"] == "ok").all()
    if kind == "complete" and metric != "request_latency":
        # genai-perf calls the arrival of a whole unstreamed answer its "time to first token": the
        # same numbers as its request latency. The lab records no TTFT for a call that did not stream.
        assert stats.get(metric) in (None, stats["request_latency"])
        assert frame["ttft_ms"].isna().all()
        return
    values = genai_values(frame, metric)
    for q in (1, 5, 10, 25, 50, 75, 90, 95, 99):  # np.percentile, linear, on nanoseconds
        assert close(stats[metric][f"p{q}"], np.percentile(values, q, method=genai_perf_format.PERCENTILE_METHOD)), q
    assert close(stats[metric]["avg"], values.mean()) and close(stats[metric]["max"], values.max())


def test_genai_perf_streaming_flag(genai_perf):
    kind, frame, stats = genai_perf
    assert stats["input_config"]["endpoint"]["streaming"] is (kind == "stream")
    assert set(frame["kind"]) == {kind}
    if kind == "complete":  # no stream: no TTFT, chunk times or TPOT (they were recorded as 0.0 once)
        assert frame[["ttft_ms", "tpot_ms", "max_gap_ms"]].isna().all().all()
        assert frame["chunk_offsets_ms"].isna().all()
        assert frame["output_tokens"].notna().all()  # the unstreamed answer reports its usage
    else:
        assert frame["output_tokens"].isna().all()  # genai-perf's stream asks no usage; it counts with a tokenizer
        assert frame["chunk_offsets_ms"].notna().all() and frame["tpot_ms"].isna().all()
    assert (frame["text"] != "").all() and set(frame["model"]) == {"emulator-model"}
    assert set(frame["endpoint"]) == {"http://127.0.0.1:18802/v1/chat/completions"}
    assert set(frame["target"]) == {"openai-compatible/emulator-model"}


# --- LiteLLM and OpenTelemetry: no summary of their own; the emulator's log of the same calls ------

def at_least_served(latencies: pd.Series, server_times: pd.Series) -> None:
    """Each call lasted about as long as the emulator spent on it, or longer (then so do the sorted
    values): a client may stop its clock at the last content chunk, up to a millisecond before the
    emulator has written the stream's end."""
    assert (np.sort(latencies.to_numpy(float)) >= np.sort(server_times.to_numpy(float)) - 1.0).all()


def emulator_log(folder: str, name: str = "emulator_requests.json") -> pd.DataFrame:
    return pd.DataFrame(json.loads((FIXTURES / folder / name).read_text()))


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
    at_least_served(ok["latency_ms"], answered["server_time_ms"])
    # OpenAI streams: LiteLLM's completionStartTime is the role-only first chunk, not a first token.
    assert frame["ttft_ms"].isna().all() and frame["tpot_ms"].isna().all()
    assert frame["cost_usd"].isna().all()  # LiteLLM could not price the emulator's model
    assert set(frame["target"]) == {"openai/emulator-model"}


def test_litellm_text_and_stop_reason_are_read():
    payload = lab.imports.read(FIXTURES / "litellm" / "standard_logging_payload.jsonl.gz")
    ok = ok_rows(payload)
    assert (ok["text"].str.len() > 0).all() and set(ok["stop_reason"]) <= {"stop", "length"}
    missing = lab.imports.inspect(FIXTURES / "litellm" / "standard_logging_payload.jsonl.gz").missing_fields
    assert "text" not in missing and "stop_reason" not in missing
    # The proxy's spend logs keep no response unless told to store it: truly missing there.
    spend = lab.imports.inspect(FIXTURES / "litellm" / "spend_logs.json.gz").missing_fields
    assert {"text", "stop_reason"} <= set(spend)


def test_litellm_payloads_and_spend_logs_agree():
    payload = lab.imports.read(FIXTURES / "litellm" / "standard_logging_payload.jsonl.gz").sort_values("started_at")
    spend = lab.imports.read(FIXTURES / "litellm" / "spend_logs.json.gz").sort_values("started_at")
    for column in ("status", "error_type", "http_status", "input_tokens", "output_tokens", "model", "provider"):
        assert payload[column].tolist() == spend[column].tolist(), column
    assert np.allclose(payload["latency_ms"], spend["latency_ms"], atol=0.001)


def test_litellm_sdk_stream_ttft_is_the_first_text_or_not_held():
    """litellm.completion(stream=True) to the emulator's OpenAI and Anthropic APIs: LiteLLM's first
    chunk is OpenAI's role-only chunk (before the emulator even planned a token) but Anthropic's first
    text; the importer keeps the latter as TTFT and leaves the former empty."""
    path = FIXTURES / "litellm" / "sdk_stream_payload.jsonl.gz"
    raw = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    frame, served = lab.imports.read(path), emulator_log("litellm", "sdk_stream_emulator_requests.json")
    assert len(frame) == len(raw) == len(served) == 24
    served = served.set_index("request_id")
    first_chunk = {"openai": [], "anthropic": []}
    for n, (row, payload) in enumerate(zip(frame.itertuples(), raw, strict=True)):
        if row.status != "ok":
            continue
        request = payload["hidden_params"]["additional_headers"]["request-id"]
        logged = (payload["completionStartTime"] - payload["startTime"]) * 1000.0
        # the emulator's first token, on the client's clock: its arrival there plus its planned TTFT
        planned = (served.loc[request, "received_at"] - payload["startTime"]) * 1000.0 + served.loc[
            request, "planned_ttft_ms"]
        if n >= 4:  # the first call of each of the 4 workers paid LiteLLM's one-time set-up of a stream
            first_chunk[row.provider].append(logged - planned)
        if row.provider == "anthropic":
            # to the microsecond: the store's clock (epoch seconds as floats hold about 0.2 us)
            assert row.ttft_ms == pytest.approx(logged, abs=1e-3) and row.ttft_ms < row.latency_ms
            assert row.tpot_ms > 0
        else:
            assert pd.isna(row.ttft_ms) and pd.isna(row.tpot_ms)
    assert min(first_chunk["anthropic"]) > 0  # never before the emulator's first token
    assert max(first_chunk["openai"]) < 0  # always before it: the role-only chunk
    assert (ok_rows(frame)["text"] != "").all() and ok_rows(frame)["stop_reason"].notna().all()
    assert set(frame["target"]) == {"openai/emulator-model", "anthropic/emulator-model"}


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


# --- OpenLLMetry (Traceloop's instrumentations) and the SDK's ConsoleSpanExporter -------------------

OPENLLMETRY = FIXTURES / "openllmetry"


@pytest.fixture(scope="module")
def openllmetry() -> tuple[pd.DataFrame, pd.DataFrame]:
    return lab.imports.read(OPENLLMETRY / "spans.jsonl.gz"), emulator_log("openllmetry")


def call_of(request_id: str) -> str:
    """The emulator's request id of a response id (``msg_<hex>``, ``chatcmpl-<hex>`` -> ``req_<hex>``)."""
    return "req_" + request_id.rpartition("_")[2].rpartition("-")[2]


def test_openllmetry_gives_one_record_per_call(openllmetry):
    frame, served = openllmetry
    spans = [json.loads(line) for line in gzip.decompress((OPENLLMETRY / "spans.jsonl.gz").read_bytes()).splitlines()]
    count = sum(len(s["spans"]) for line in spans for r in line["resourceSpans"] for s in r["scopeSpans"])
    assert count == 54 and len(frame) == len(served) == 40  # 14 Anthropic calls were traced twice
    ids = frame["request_id"].dropna()
    assert ids.is_unique and set(ids.map(call_of)) <= set(served["request_id"])
    # Each field from the span closest to the wire: the Anthropic SDK's, whose output tokens are the
    # server's (OpenLLMetry's own span counts one more, from message_start's placeholder).
    tokens = served.set_index("request_id")["output_tokens"]
    ok = ok_rows(frame).dropna(subset=["request_id", "output_tokens"])  # one broken stream logged no usage
    assert len(ok) >= 25
    assert (ok["output_tokens"].to_numpy() == ok["request_id"].map(call_of).map(tokens).to_numpy()).all()
    anthropic = ok[ok["provider"] == "anthropic"]
    assert set(anthropic["stop_reason"]) <= {"end_turn", "max_tokens"}
    assert set(anthropic["endpoint"]) == {"http://127.0.0.1:18801/v1/messages"}


def test_openllmetry_first_chunk_and_chunk_times(openllmetry):
    frame, served = openllmetry
    planned = served.set_index("request_id")["planned_ttft_ms"]
    ok = ok_rows(frame)
    streams = ok[ok["kind"] == "stream"].dropna(subset=["request_id"])
    late = streams["ttft_ms"].to_numpy() - streams["request_id"].map(call_of).map(planned).to_numpy()
    assert (late > 0).all()  # the first text, never OpenAI's role-only chunk (sent at once)
    openai = streams[streams["provider"] == "openai"]
    assert openai["chunk_offsets_ms"].notna().all()
    assert (openai["ttft_ms"] == openai["chunk_offsets_ms"].map(lambda o: o[0])).all()
    assert np.allclose(openai["max_gap_ms"], openai["chunk_offsets_ms"].map(lambda o: np.diff(o).max()))
    anthropic = streams[streams["provider"] == "anthropic"]  # the SDK's gen_ai.response.time_to_first_chunk
    assert anthropic["ttft_ms"].notna().all() and anthropic["chunk_offsets_ms"].isna().all()
    assert (streams["tpot_ms"].dropna() > 0).all()
    assert set(ok.loc[ok["kind"] == "complete", "provider"]) == {"openai"}
    assert ok.loc[ok["kind"] == "complete", ["ttft_ms", "chunk_offsets_ms"]].isna().all().all()


def test_openllmetry_error_types(openllmetry):
    frame, served = openllmetry
    errors = frame[frame["status"] == "error"]
    assert errors["error_type"].value_counts().to_dict() == {"server_error": 6, "overloaded": 1, "cut_stream": 1}
    assert set(errors.loc[errors["error_type"] == "server_error", "http_status"]) == {500}
    # Failed after HTTP 200 (an SSE error event, a dropped connection): no HTTP status, no client_error 200.
    assert errors.loc[errors["error_type"] != "server_error", "http_status"].isna().all()
    assert "client_error" not in set(errors["error_type"])
    # The emulator failed 9 calls; OpenLLMetry's OpenAI instrumentation closed the span of the one
    # whose stream broke with an error event as OK, without finish reason or usage: imported as it says.
    assert (served["outcome"] != "ok").sum() == 9
    broken = ok_rows(frame)[ok_rows(frame)["stop_reason"].isna()]
    assert len(broken) == 1 and broken["output_tokens"].isna().all() and set(broken["provider"]) == {"openai"}


def test_console_span_exporter_output_imports_as_the_otlp_file_does(openllmetry):
    frame, _ = openllmetry
    path = OPENLLMETRY / "console_spans.txt.gz"
    assert gzip.decompress(path.read_bytes()).startswith(b'{\n    "name": ')  # pretty-printed objects, not lines
    assert lab.imports.detect(path) == "otel"
    console = lab.imports.read(path)
    assert len(console) == len(frame) == 40
    left, right = (f.sort_values(["started_at", "provider"]).reset_index(drop=True) for f in (frame, console))
    for column in ("provider", "model", "status", "error_type", "http_status", "request_id", "output_tokens", "kind",
                   "stop_reason", "text"):
        assert left[column].tolist() == right[column].tolist(), column
    assert np.allclose(left["latency_ms"], right["latency_ms"], atol=0.002)  # the console writes microseconds
    assert np.allclose(left["ttft_ms"], right["ttft_ms"], atol=0.002, equal_nan=True)


def test_damaged_console_objects_are_skipped(tmp_path):
    text = gzip.decompress((OPENLLMETRY / "console_spans.txt.gz").read_bytes()).decode()
    objects = text.split("\n}\n")
    damaged = tmp_path / "console.txt"
    damaged.write_text("\n}\n".join(objects[:3]) + "\n}\n" + objects[3][: len(objects[3]) // 2] + "\n"
                       + "\n}\n".join(objects[4:]))
    with pytest.warns(lab.store.lines.DamagedLine, match=r"console\.txt:\d+: not JSON"):
        frame = lab.imports.read(damaged, format="otel")
    assert 35 <= len(frame) < 40


# --- every fixture ------------------------------------------------------------------------------------

HELD = {  # fields each real file holds, which must never be reported missing
    "aiperf/profile_export.jsonl": {"provider", "model", "ttft_ms", "first_text_ms", "chunk_offsets_ms", "tpot_ms",
                                    "scheduled_at", "send_lag_ms", "connect_ms"},
    "guidellm/benchmarks.json.gz": {"kind", "text", "scheduled_at", "send_lag_ms", "first_text_ms", "request_id"},
    "guidellm/benchmarks_0.4.json.gz": {"kind", "text", "scheduled_at", "send_lag_ms"},
    "vllm_bench/vllm_bench_serve.json": {"text", "chunk_offsets_ms", "tpot_ms", "send_lag_ms"},
    "vllm_bench/vllm_bench_serve_0.34.json": {"text", "chunk_offsets_ms", "tpot_ms", "send_lag_ms"},
    "genai_perf/profile_export.json.gz": {"started_at", "chunk_offsets_ms", "text", "stop_reason", "request_id"},
    "genai_perf/complete/profile_export.json.gz": {"output_tokens", "input_tokens", "text", "stop_reason"},
    "litellm/standard_logging_payload.jsonl.gz": {"text", "stop_reason", "endpoint"},
    "litellm/sdk_stream_payload.jsonl.gz": {"ttft_ms", "tpot_ms", "text", "stop_reason"},
    "litellm/spend_logs.json.gz": {"request_id"},
    "otel/spans.jsonl": {"provider", "request_id"},
    "openllmetry/spans.jsonl.gz": {"ttft_ms", "chunk_offsets_ms", "max_gap_ms", "tpot_ms", "text", "stop_reason",
                                   "cache_read_tokens", "kind"},
    "openllmetry/console_spans.txt.gz": {"ttft_ms", "chunk_offsets_ms", "tpot_ms", "text", "stop_reason", "kind"},
}


@pytest.mark.parametrize("name", sorted(HELD))
def test_every_row_has_a_target_and_held_fields_are_not_missing(name):
    path = FIXTURES / name
    frame = lab.imports.read(path)
    assert frame["target"].notna().all() and (frame["target"].str.len() > 0).all()
    assert frame["target"].nunique() <= 2 and not frame["target"].str.contains("nan").any()
    source = lab.imports.inspect(path)
    assert not HELD[name] & set(source.missing_fields), HELD[name] & set(source.missing_fields)
    if not source.errors:
        assert not {"error_type", "http_status", "error_message"} & set(source.missing_fields)
