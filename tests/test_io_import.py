"""Storing a source as a run (``lab.imports.import_run``, ``lab import``), the csv/Parquet mapping, damaged
input (reported with file:line and salvaged) and mistakes that must end in one line, not a traceback."""

from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lab.cli
import lab.imports
from lab.cli import imports
from lab.core.records import FIELDS
from lab.store import Run, columnar
from lab.store.lines import DamagedLine

FIXTURES = Path(__file__).resolve().parent / "fixtures"
AIPERF = FIXTURES / "aiperf" / "profile_export.jsonl"


@pytest.fixture()
def lab_cli(monkeypatch):
    """``lab`` with the import command (registered here until it joins lab.cli.GROUPS)."""
    if imports not in lab.cli.GROUPS:
        monkeypatch.setattr(lab.cli, "GROUPS", (*lab.cli.GROUPS, imports))
    return lab.cli.main


# --- import_run --------------------------------------------------------------------------------------

def test_import_run_writes_records_and_a_manifest(tmp_path):
    source = lab.imports.import_run(AIPERF, "bench-a", root=tmp_path)
    run = Run("bench-a", tmp_path)
    manifest = run.manifest
    assert manifest["experiment"] == "import" and manifest["synthetic"] is False
    assert manifest["source"]["format"] == "aiperf" and manifest["source"]["file"] == "profile_export.jsonl"
    assert manifest["source"]["size"] == AIPERF.stat().st_size
    assert len(manifest["source"]["sha256"]) == 64 and manifest["imported_at"]
    assert manifest["rows"] == source.rows == 40 and manifest["errors"] == source.errors == 5
    assert manifest["missing_fields"] == list(source.missing_fields)
    assert "cost_usd" in manifest["missing_fields"] and "latency_ms" not in manifest["missing_fields"]
    table = pq.read_table(run.dir / "calls.parquet")
    assert table.schema.equals(columnar.SCHEMA) and table.num_rows == 40
    assert pa.types.is_list(table.schema.field("chunk_offsets_ms").type)
    assert set(table["run_id"].to_pylist()) == {"bench-a"} and set(table["experiment"].to_pylist()) == {"import"}
    assert table["sample"].to_pylist() == list(range(40))
    # The URL and the API the summary beside the file names; the target from them and the model.
    assert set(table["endpoint"].to_pylist()) == {"http://127.0.0.1:18801"}
    assert set(table["provider"].to_pylist()) == {"openai-compatible"}
    assert set(table["target"].to_pylist()) == {"openai-compatible/emulator-model"}
    assert manifest["source"]["percentile_method"] == "linear"
    assert manifest["error_types"] == {"server_error": 5}
    assert not any(table["synthetic"].to_pylist())
    assert not list(run.dir.glob("*.partial"))


def test_parquet_holds_what_read_gives(tmp_path):
    lab.imports.import_run(AIPERF, "bench-b", root=tmp_path)
    stored = columnar.to_frame(pq.read_table(tmp_path / "bench-b" / "calls.parquet"))
    read = lab.imports.read(AIPERF)
    for column in ("latency_ms", "ttft_ms", "tpot_ms", "output_tokens", "started_at", "http_status"):
        pd.testing.assert_series_equal(stored[column], read[column], check_names=False)
    assert stored["chunk_offsets_ms"].tolist() == read["chunk_offsets_ms"].tolist()


def test_an_existing_run_is_never_overwritten(tmp_path):
    lab.imports.import_run(AIPERF, "bench-c", root=tmp_path)
    before = (tmp_path / "bench-c" / "calls.parquet").read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        lab.imports.import_run(FIXTURES / "otel" / "spans.jsonl", "bench-c", root=tmp_path)
    assert (tmp_path / "bench-c" / "calls.parquet").read_bytes() == before


def test_a_failed_import_leaves_no_run(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"date": "x", "endpoint_type": "openai", "model_id": "m", "num_prompts": 3}')
    with pytest.raises(ValueError, match="--save-detailed"):
        lab.imports.import_run(bad, "broken", root=tmp_path / "runs")
    assert not (tmp_path / "runs" / "broken").exists()


# --- damaged input -----------------------------------------------------------------------------------

def test_damaged_json_lines_are_reported_and_the_rest_imported(tmp_path):
    lines = AIPERF.read_bytes().splitlines(keepends=True)
    damaged = tmp_path / "profile_export.jsonl"
    damaged.write_bytes(b"".join(lines[:3] + [b'{"metadata": {"request_start_ns": \n'] + lines[3:]
                                 + [lines[4][: len(lines[4]) // 2]]))  # a torn last line
    with pytest.warns(DamagedLine) as caught:
        frame = lab.imports.read(damaged, format="aiperf")
    assert len(frame) == 40
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"{damaged}:4:") for m in messages)
    assert any(m.startswith(f"{damaged}:{len(lines) + 2}:") for m in messages)


def test_damaged_gzip_and_otel_lines(tmp_path):
    spans = (FIXTURES / "otel" / "spans.jsonl").read_bytes()
    packed = tmp_path / "spans.jsonl.gz"
    packed.write_bytes(gzip.compress(spans + b"{not json\n"))
    with pytest.warns(DamagedLine, match=r"spans\.jsonl\.gz:4: unreadable"):
        assert len(lab.imports.read(packed)) == 40
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(AIPERF.read_bytes())[:-200])
    with pytest.warns(DamagedLine):
        frame = lab.imports.read(cut, format="aiperf")
    assert 0 < len(frame) < 40


def test_the_wrong_format_is_one_clear_error_and_no_run(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("latency_ms,status\n1,ok\n")
    with pytest.raises(ValueError, match=r"t\.csv:1: not a JSON line of this format .* check --format"):
        lab.imports.import_run(table, "wrong", format="aiperf", root=tmp_path)
    with pytest.raises(ValueError, match=r"t\.csv:1: not OTLP JSON"):
        lab.imports.read(table, format="otel")
    no_genai = tmp_path / "http.jsonl"
    no_genai.write_text(json.dumps({"resourceSpans": []}) + "\n")
    with pytest.raises(ValueError, match="holds no calls as otel reads them"):
        lab.imports.import_run(no_genai, "empty", root=tmp_path)
    assert not (tmp_path / "wrong").exists() and not (tmp_path / "empty").exists()


def test_a_damaged_single_document_is_one_clear_error(tmp_path):
    cut = tmp_path / "vllm.json"
    cut.write_bytes((FIXTURES / "vllm_bench" / "vllm_bench_serve.json").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"vllm\.json:1: not valid JSON .* cut short"):
        lab.imports.read(cut)


# --- csv and Parquet -----------------------------------------------------------------------------------

def test_csv_with_a_mapping_and_units(tmp_path):
    table = tmp_path / "gateway.csv"
    table.write_text(
        "ts,e2e_s,first_ms,out,code,who\n"
        "1796012894.5,1.25,250,30,200,gpt-x\n"
        "1796012895.0,0.5,,0,503,gpt-x\n"
        "1796012896.0,2.0,400,60,429,gpt-y\n"
        "1796012896.5,2.0,400,60\n"  # torn: skipped
        "1796012897.0,not-a-number,100,10,200,gpt-y\n")
    mapping = {"started_at": "ts:s", "latency_ms": "e2e_s:s", "ttft_ms": "first_ms", "output_tokens": "out",
               "http_status": "code", "model": "who"}
    with pytest.warns(DamagedLine) as caught:
        frame = lab.imports.read(table, mapping=mapping)
    assert [str(w.message).split(": ")[0] for w in caught] == [f"{table}:5", f"{table}:6"]
    assert "4 fields where the header has 6" in str(caught[0].message)
    assert "column 'e2e_s' holds 1 value(s) that are not numbers" in str(caught[1].message)
    assert frame["latency_ms"].tolist()[:3] == [1250.0, 500.0, 2000.0] and pd.isna(frame["latency_ms"][3])
    assert frame["status"].tolist() == ["ok", "error", "error", "ok"]
    assert frame["error_type"].tolist()[1:3] == ["overloaded", "rate_limit"]
    assert frame["started_at"][0] == pd.Timestamp(1796012894.5, unit="s", tz="UTC")
    assert pd.isna(frame["ttft_ms"][1]) and frame["model"].tolist() == ["gpt-x", "gpt-x", "gpt-y", "gpt-y"]
    assert set(frame["endpoint"]) == {"csv:gateway.csv"}
    with pytest.warns(DamagedLine):
        missing = lab.imports.inspect(table, mapping=mapping).missing_fields
    assert "tpot_ms" in missing and "latency_ms" not in missing


def test_a_frame_of_records_round_trips_through_parquet_without_a_mapping(tmp_path):
    frame = lab.imports.read(AIPERF)
    path = tmp_path / "calls.parquet"
    columnar.conform(pa.Table.from_pandas(frame.drop(columns=["attempt_errors"]), preserve_index=False)) \
        .to_pandas().to_parquet(path)
    assert lab.imports.detect(path) == "csv"
    again = lab.imports.read(path)
    for column in ("latency_ms", "status", "error_type", "started_at", "output_tokens"):
        pd.testing.assert_series_equal(again[column], frame[column], check_names=False, check_dtype=False)
    assert again["chunk_offsets_ms"].tolist() == frame["chunk_offsets_ms"].tolist()


def test_mapping_mistakes_say_what_to_do(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="'latency' is not a record field"):
        lab.imports.read(table, mapping={"latency": "a"})
    with pytest.raises(ValueError, match="unknown unit 'h'"):
        lab.imports.read(table, mapping={"latency_ms": "a:h"})
    with pytest.raises(ValueError, match="has no column 'c'"):
        lab.imports.read(table, mapping={"latency_ms": "c"})
    with pytest.raises(ValueError, match="no column of .* is a record field: map them"):
        lab.imports.read(table, format="csv")
    with pytest.raises(ValueError, match="--map applies to the csv format only"):
        lab.imports.read(AIPERF, format="aiperf", mapping={"latency_ms": "a"})


# --- detection -----------------------------------------------------------------------------------

def test_detection_names_the_formats_when_it_cannot_tell(tmp_path):
    unknown = tmp_path / "notes.json"
    unknown.write_text('{"hello": "world"}')
    with pytest.raises(ValueError, match="cannot tell the format .* one of aiperf, genai-perf, guidellm"):
        lab.imports.read(unknown)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        lab.imports.read(empty)
    with pytest.raises(ValueError, match="unknown format 'jmeter': use one of aiperf"):
        lab.imports.read(AIPERF, format="jmeter")
    assert lab.imports.read(AIPERF, format="AIPERF").shape[0] == 40
    assert lab.imports.read(FIXTURES / "vllm_bench" / "vllm_bench_serve.json", format="vllm_bench").shape[0] == 40


def test_every_fixture_is_detected_by_content(tmp_path):
    expected = {"aiperf/profile_export.jsonl": "aiperf", "guidellm/benchmarks.json.gz": "guidellm",
                "vllm_bench/vllm_bench_serve.json": "vllm-bench", "genai_perf/profile_export.json.gz": "genai-perf",
                "litellm/standard_logging_payload.jsonl.gz": "litellm", "litellm/spend_logs.json.gz": "litellm",
                "otel/spans.jsonl": "otel"}
    for name, format in expected.items():
        renamed = tmp_path / f"source-{format}"  # detection reads content, not names
        shutil.copy(FIXTURES / name, renamed)
        assert lab.imports.detect(renamed) == format, name
        frame = lab.imports.read(renamed)
        assert list(frame.columns) == list(FIELDS) and len(frame) == 40


# --- the command -------------------------------------------------------------------------------------

def test_lab_import_prints_one_line_and_stores_the_run(lab_cli, tmp_path, capsys):
    assert lab_cli(["import", str(AIPERF), "--run", "ai-1", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"imported 40 calls: 35 ok, 5 errors (server_error 5) from aiperf file profile_export.jsonl "
                   f"into run ai-1 at {tmp_path / 'ai-1'}; no row has cost_usd, text, stop_reason, cache_read_tokens, "
                   "cache_write_tokens, attempt_errors"]
    assert json.loads((tmp_path / "ai-1" / "manifest.json").read_text())["source"]["format"] == "aiperf"


def test_lab_import_with_a_mapping(lab_cli, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("e2e,code\n0.5,200\n0.7,500\n")
    assert lab_cli(["import", str(table), "--run", "csv-1", "--runs-dir", str(tmp_path),
                    "--map", "latency_ms=e2e:s", "--map", "http_status=code"]) == 0
    assert "imported 2 calls: 1 ok, 1 error (server_error 1) from csv file t.csv" in capsys.readouterr().out
    assert json.loads((tmp_path / "csv-1" / "manifest.json").read_text())["source"]["mapping"] == {
        "latency_ms": "e2e:s", "http_status": "code"}


@pytest.mark.parametrize("arguments, message", [
    (["missing.jsonl", "--run", "x"], "no such file or folder: missing.jsonl"),
    ([str(FIXTURES / "aiperf" / "profile_export_aiperf.json"), "--run", "x"], "cannot tell the format"),
    ([str(AIPERF), "--run", "x", "--format", "guidellm"], "more than one JSON document (JSON lines?)"),
    ([str(AIPERF), "--run", "x", "--map", "latency"], "is not field=column"),
    ([str(AIPERF), "--run", "../escape"], "invalid run id"),
    ([str(AIPERF), "--run", "x", "--format", "nope"], "invalid choice"),
])
def test_lab_import_mistakes_are_one_line(lab_cli, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) if "invalid" in message else _no_exit():
        code = lab_cli(["import", *arguments, "--runs-dir", str(tmp_path)])
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lab: ") and message in err[0]
    assert not (tmp_path / "x").exists()


def test_lab_import_reports_damaged_lines_as_warnings(lab_cli, tmp_path, capsys):
    damaged = tmp_path / "spans.jsonl"
    damaged.write_bytes((FIXTURES / "otel" / "spans.jsonl").read_bytes() + b"{torn\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes as a Python warning
        assert lab_cli(["import", str(damaged), "--run", "o-1", "--runs-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"lab: warning: {damaged}:4: unreadable")
    assert "imported 40 calls: 33 ok, 7 errors (server_error 7); 1 damaged lines skipped from otel" in captured.out


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- OpenTelemetry conventions the fixture's instrumentation does not write ---------------------------

def otlp_line(*spans: dict) -> str:
    scope = {"scope": {"name": "t"}, "spans": list(spans)}
    return json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [scope]}]})


def attribute(key: str, value) -> dict:
    kind = {str: "stringValue", int: "intValue", float: "doubleValue", bool: "boolValue"}[type(value)]
    return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}


def test_otel_first_chunk_attribute_chunk_events_and_other_spans(tmp_path):
    start = 1_796_000_000_000_000_000
    chat = {"name": "chat m", "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 900_000_000),
            "attributes": [attribute("gen_ai.operation.name", "chat"), attribute("gen_ai.request.model", "m"),
                           attribute("gen_ai.provider.name", "acme"), attribute("gen_ai.usage.output_tokens", 9),
                           attribute("gen_ai.response.time_to_first_chunk", 0.25)],
            "status": {}}
    events = [{"name": "llm.content.completion.chunk", "timeUnixNano": str(start + ms * 1_000_000)}
              for ms in (300, 310, 500)]
    chunked = {**chat, "attributes": chat["attributes"][:4], "events": events}
    failed = {**chat, "attributes": [*chat["attributes"][:3], attribute("error.type", "429")],
              "status": {"code": 2, "message": "rate limited"}}
    http = {"name": "POST", "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 1),
            "attributes": [attribute("http.request.method", "POST")]}
    path = tmp_path / "traces.jsonl"
    path.write_text(otlp_line(chat, http) + "\n" + otlp_line(chunked, failed) + "\n")
    frame = lab.imports.read(path)
    assert len(frame) == 3  # the HTTP span is not an inference
    assert frame["ttft_ms"].tolist()[:2] == [250.0, 300.0] and pd.isna(frame["ttft_ms"][2])
    assert frame["latency_ms"].tolist()[:2] == [900.0, 900.0]
    assert frame["chunk_offsets_ms"][1] == (300.0, 310.0, 500.0) and frame["max_gap_ms"][1] == 190.0
    assert frame["kind"].tolist()[:2] == ["stream", "stream"]
    assert frame["status"].tolist() == ["ok", "ok", "error"]
    assert frame["error_type"][2] == "rate_limit" and frame["http_status"][2] == 429
    assert frame["started_at"][0] == pd.Timestamp(start, unit="ns", tz="UTC")


def test_litellm_spend_logs_as_json_lines_with_metadata_objects(tmp_path):
    rows = json.loads(gzip.decompress((FIXTURES / "litellm" / "spend_logs.json.gz").read_bytes()))
    for row in rows[::2]:
        row["metadata"] = json.loads(row["metadata"])  # a database export keeps it as an object
    path = tmp_path / "spend.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert lab.imports.detect(path) == "litellm"
    frame = lab.imports.read(path)
    listed = lab.imports.read(FIXTURES / "litellm" / "spend_logs.json.gz")
    for column in ("status", "error_type", "http_status", "error_message", "output_tokens", "latency_ms"):
        assert frame[column].tolist() == listed[column].tolist(), column


# --- tables of other vocabularies: --ok-when, --tz, thousands, units (issue 22) ----------------------

MONITOR = ("checked,endpoint_status,response_time,model\n"
           "2025-03-30 01:30:00,Online,\"1,234\",gpt-4o\n"
           "2025-03-30 01:31:00,OFFLINE,250 ms,gpt-4o\n"
           "2025-03-30 01:32:00,API FAILURE,,gpt-4o\n"
           "2025-03-30T03:33:00+02:00,online,1.5 s,gpt-4o\n"
           "2025-03-30 03:34:00,API FAILURE,\"12,000.5\",gpt-4o\n")
MONITOR_MAP = {"latency_ms": "response_time", "started_at": "checked"}


def test_ok_when_reads_a_status_vocabulary_of_its_own(tmp_path):
    table = tmp_path / "monitor.csv"
    table.write_text(MONITOR)
    frame = lab.imports.read(table, mapping=MONITOR_MAP, ok_when="endpoint_status=Online")
    assert frame["status"].tolist() == ["ok", "error", "error", "ok", "error"]
    # a failure's type is the value the file wrote, not an invented class
    assert frame["error_type"].fillna("").tolist() == ["", "OFFLINE", "API FAILURE", "", "API FAILURE"]
    source = lab.imports.inspect(table, mapping=MONITOR_MAP, ok_when="endpoint_status=online,offline")
    assert (source.rows, source.ok, source.errors) == (5, 3, 2) and source.error_kinds == (("API FAILURE", 2),)
    # numbers grouping thousands, and durations that say their unit
    assert frame["latency_ms"].tolist()[:2] == [1234.0, 250.0] and pd.isna(frame["latency_ms"][2])
    assert frame["latency_ms"].tolist()[3:] == [1500.0, 12000.5]
    # no provider: the target is what the file says, the tool (csv) and the model
    assert set(frame["target"]) == {"csv/gpt-4o"} and set(frame["endpoint"]) == {"csv:monitor.csv"}


def test_ok_when_on_http_codes_keeps_the_status_class(tmp_path):
    table = tmp_path / "codes.csv"
    table.write_text("ms,code\n120,200\n130,201\n90,503\n80,429\n")
    frame = lab.imports.read(table, mapping={"latency_ms": "ms", "http_status": "code"}, ok_when="code=200,201")
    assert frame["status"].tolist() == ["ok", "ok", "error", "error"]
    assert frame["error_type"].tolist()[2:] == ["overloaded", "rate_limit"]  # http_status says more than "503"
    assert set(frame["target"]) == {"csv:codes.csv"}  # nothing else names who served the calls


def test_naive_times_are_read_in_the_zone_given(tmp_path):
    table = tmp_path / "monitor.csv"
    table.write_text(MONITOR)
    utc = lab.imports.read(table, mapping=MONITOR_MAP, ok_when="endpoint_status=online")
    assert utc["started_at"][0] == pd.Timestamp("2025-03-30 01:30:00", tz="UTC")
    paris = lab.imports.read(table, mapping=MONITOR_MAP, ok_when="endpoint_status=online", tz="Europe/Paris")
    assert paris["started_at"][0] == pd.Timestamp("2025-03-30 00:30:00", tz="UTC")  # CET, UTC+1
    assert paris["started_at"][4] == pd.Timestamp("2025-03-30 01:34:00", tz="UTC")  # CEST after the change
    assert paris["started_at"][3] == utc["started_at"][3] == pd.Timestamp("2025-03-30 01:33:00", tz="UTC")  # zoned
    fixed = lab.imports.read(table, mapping=MONITOR_MAP, ok_when="endpoint_status=online", tz="-05:00")
    assert fixed["started_at"][0] == pd.Timestamp("2025-03-30 06:30:00", tz="UTC")
    skipped = tmp_path / "gap.csv"  # 02:30 does not exist in Paris that night: reported, left empty
    skipped.write_text("t,latency_ms\n2025-03-30 02:30:00,5\n2025-03-30 04:00:00,6\n")
    with pytest.warns(DamagedLine, match="skips or repeats"):
        gap = lab.imports.read(skipped, mapping={"started_at": "t"}, tz="Europe/Paris")
    assert pd.isna(gap["started_at"][0]) and gap["started_at"][1] == pd.Timestamp("2025-03-30 02:00", tz="UTC")


def test_options_mistakes_say_what_to_do(tmp_path):
    table = tmp_path / "monitor.csv"
    table.write_text(MONITOR)
    with pytest.raises(ValueError, match=r"holds 'API FAILURE', 'OFFLINE', 'Online'.* --ok-when endpoint_status=Online"):
        lab.imports.read(table, mapping={**MONITOR_MAP, "status": "endpoint_status"})
    with pytest.raises(ValueError, match="is not COLUMN=VALUE"):
        lab.imports.read(table, mapping=MONITOR_MAP, ok_when="endpoint_status")
    with pytest.raises(ValueError, match="has no column 'state'"):
        lab.imports.read(table, mapping=MONITOR_MAP, ok_when="state=up")
    with pytest.raises(ValueError, match="both say which rows are ok"):
        lab.imports.read(table, mapping={**MONITOR_MAP, "status": "endpoint_status"}, ok_when="endpoint_status=up")
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a time zone"):
        lab.imports.read(table, mapping=MONITOR_MAP, tz="Mars/Olympus")
    with pytest.raises(ValueError, match="--ok-when applies to the csv format only"):
        lab.imports.read(AIPERF, format="aiperf", ok_when="status=ok")


def test_a_table_without_latency_is_refused_with_the_map_it_needs(lab_cli, tmp_path, capsys):
    table = tmp_path / "monitor.csv"
    table.write_text("model,status,Response Time (s)\ngpt-4o,ok,1.2\ngpt-4o,error,\n")
    with pytest.raises(ValueError, match=r"no latency column .* --map 'latency_ms=Response Time \(s\):s'"):
        lab.imports.read(table)
    assert lab_cli(["import", str(table), "--run", "m-1", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lab: ") and "--map 'latency_ms=Response Time (s):s'" in err[0]
    assert not (tmp_path / "m-1").exists()
    assert lab_cli(["import", str(table), "--run", "m-1", "--runs-dir", str(tmp_path),
                    "--map", "latency_ms=Response Time (s):s"]) == 0
    assert "imported 2 calls: 1 ok, 1 error (unclassified 1)" in capsys.readouterr().out


def test_lab_import_with_ok_when_and_tz(lab_cli, tmp_path, capsys):
    table = tmp_path / "monitor.csv"
    table.write_text(MONITOR)
    assert lab_cli(["import", str(table), "--run", "m-2", "--runs-dir", str(tmp_path), "--map",
                    "latency_ms=response_time", "--map", "started_at=checked", "--ok-when", "endpoint_status=Online",
                    "--tz", "Europe/Paris"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(
        "imported 5 calls: 2 ok, 3 errors (API FAILURE 2, OFFLINE 1) from csv file monitor.csv into run m-2")
    assert "no row has provider, kind, ttft_ms" in out[0] and "latency_ms" not in out[0].partition("no row has")[2]
    source = json.loads((tmp_path / "m-2" / "manifest.json").read_text())["source"]
    assert source["ok_when"] == "endpoint_status=Online" and source["timezone"] == "Europe/Paris"
    assert lab_cli(["import", str(table), "--run", "m-3", "--runs-dir", str(tmp_path), "--map",
                    "latency_ms=response_time", "--tz", "Nowhere/City"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tz 'Nowhere/City' is not a time zone" in err[0]


# --- what a reader must know: the tool's percentile method, TTFT not recorded -------------------------

def test_the_import_says_when_percentiles_or_ttft_are_not_the_labs(lab_cli, tmp_path, capsys):
    guidellm = FIXTURES / "guidellm" / "benchmarks.json.gz"
    assert lab_cli(["import", str(guidellm), "--run", "g-1", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "guidellm's own percentiles are order statistics (numpy method='inverted_cdf')" in out[0]
    manifest = json.loads((tmp_path / "g-1" / "manifest.json").read_text())
    assert manifest["source"]["percentile_method"] == "inverted_cdf" and len(manifest["notes"]) == 1
    litellm = FIXTURES / "litellm" / "standard_logging_payload.jsonl.gz"
    assert lab_cli(["import", str(litellm), "--run", "l-1", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "TTFT not recorded for 25 of the streamed calls: LiteLLM's completionStartTime" in out
    assert "percentile" not in out  # LiteLLM writes no percentiles of its own
    assert lab.imports.import_run(AIPERF, "ai-0", root=tmp_path).notes == ()  # linear, and every stream timed
    assert "notes" not in json.loads((tmp_path / "ai-0" / "manifest.json").read_text())


# --- LLMPerf's own file names --------------------------------------------------------------------------

def test_llmperf_tool_file_names_give_the_model_not_a_provider(tmp_path):
    result = {"error_code": None, "error_msg": "", "ttft_s": 0.2, "end_to_end_latency_s": 1.1,
              "inter_token_latency_s": 0.02, "number_input_tokens": 32, "number_output_tokens": 50,
              "request_output_throughput_token_per_s": 45.0}
    run = tmp_path / "result_outputs"
    run.mkdir()
    (run / "emu-model_32_50_individual_responses.json").write_text(json.dumps([result, result]))
    frame = lab.imports.read(run / "emu-model_32_50_individual_responses.json")
    assert frame["provider"].isna().all() and set(frame["model"]) == {"emu-model"}
    assert set(frame["target"]) == {"llmperf/emu-model"}
    # LLMPerf's summary beside it names the model as it was asked for (the file name replaces "/")
    (run / "meta-llama-Llama-2-7b-chat-hf_550_150_individual_responses.json").write_text(json.dumps([result]))
    (run / "meta-llama-Llama-2-7b-chat-hf_550_150_summary.json").write_text(json.dumps(
        {"model": "meta-llama/Llama-2-7b-chat-hf", "results_ttft_s_mean": 0.2}))
    named = lab.imports.read(run / "meta-llama-Llama-2-7b-chat-hf_550_150_individual_responses.json")
    assert set(named["model"]) == {"meta-llama/Llama-2-7b-chat-hf"} and named["provider"].isna().all()
    assert set(lab.imports.read(run, format="llmperf")["target"]) == {
        "llmperf/emu-model", "llmperf/meta-llama/Llama-2-7b-chat-hf"}


LEADERBOARD = Path("/work/shared/datasets/llmperf-leaderboard/individual")


@pytest.mark.skipif(not LEADERBOARD.is_dir(), reason="the shared LLMPerf leaderboard data is absent")
def test_llmperf_leaderboard_files_keep_provider_and_size():
    frame = lab.imports.read(LEADERBOARD / "together_13b.json")
    assert set(frame["provider"]) == {"together"} and set(frame["model"]) == {"13b"}
    assert set(frame["target"]) == {"together/13b"} and len(frame) == 150
