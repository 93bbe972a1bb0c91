"""``lab analyze`` and ``lab compare``: a report for any run, a verdict between two, across formats."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lab import imports as io
from lab.analysis import analyze as analysis
from lab.analysis import compare
from lab.cli import main
from lab.collect.workload import Design, Prompt, Target, Workload
from lab.imports import llmperf_dir
from lab.store import Run

from collecting import collect_offline

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
FAST = "fixed:ttft_ms=5,itl_ms=1,output_tokens=6"


def demo(mode: str = "serial") -> Workload:
    targets = (Target("quick", "openai", "gpt-5-mini", emulator="fixed:ttft_ms=5,itl_ms=1,output_tokens=8"),
               Target("slower", "anthropic", "claude-haiku-4-5", emulator="fixed:ttft_ms=40,itl_ms=2,output_tokens=8"))
    prompts = (Prompt("a", "short", "Say hi.", max_tokens=16), Prompt("b", "long", "Write more.", max_tokens=32))
    design = Design(repeats=20, kinds=("stream",)) if mode == "serial" else Design(
        mode="open-loop", rate_per_s=(40.0,), requests=60, kinds=("stream",))
    return Workload(f"demo-{mode}", targets, prompts, design)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for mode in ("serial", "open-loop"):
        collect_offline(Run(mode, root), demo(mode), emulator=FAST)
    return root


@pytest.fixture()
def in_runs(runs, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(runs))
    return runs


def test_a_serial_run_is_summarised_per_target_and_task(in_runs):
    result = analysis.Analysis("serial")
    table = result.percentiles()
    assert set(table["target"]) == {"quick", "slower"} and set(table["task"]) == {"short", "long"}
    assert set(table["metric"]) >= {"ttft_ms", "tpot_ms", "latency_ms", "max_gap_ms"}
    p99 = table[table["percentile"] == 99]
    assert np.isinf(p99["high"]).all()  # 20 calls cannot bound a p99: never printed as a number
    assert "unbounded" in result.summary_table().to_string()
    assert result.errors()["errors"].sum() == 0
    for where, ranked in result.rankings["latency_ms"]:  # per task: two targets that differ, in two groups
        letters = ranked.table.set_index("target")["letters"]
        assert set(letters["quick"]).isdisjoint(letters["slower"]), where
        assert ranked.table.sort_values("rank")["target"].tolist() == ["quick", "slower"]
    findings = "\n".join(result.findings())
    assert "SYNTHETIC" in findings and "fastest quick" in findings and not result.open_loop


def test_time_per_token_over_a_handful_of_tokens_is_not_ranked(in_runs):
    result = analysis.Analysis("serial")  # 8 output tokens a call
    assert "tpot_ms" in result.metrics and "tpot_ms" in result.withheld() and "tpot_ms" not in result.rankings
    assert any("not ranked" in line and "8 tokens" in line for line in result.findings())


def test_an_open_loop_run_reports_its_schedule(in_runs):
    result = analysis.Analysis("open-loop")
    assert result.open_loop and result.main == "response_ms"
    schedule = result.schedule()
    assert schedule["design"].iloc[0] == 40
    times = result.calls.frame(["started_at", "scheduled_at"])
    sent, planned = (times[c].sort_values() for c in ("started_at", "scheduled_at"))
    span = {name: (t.iloc[-1] - t.iloc[0]).total_seconds() for name, t in (("sent", sent), ("planned", planned))}
    # Rates from the recorded send and planned times (how close they come is the benchmarks' to measure).
    assert schedule["achieved"].iloc[0] == pytest.approx((len(sent) - 1) / span["sent"])
    assert schedule["planned"].iloc[0] == pytest.approx((len(planned) - 1) / span["planned"])
    assert any("Open loop 40/s" in line for line in result.findings())


def test_a_metric_no_call_recorded_is_said_so_never_unbounded(in_runs, capsys):
    collect_offline(Run("plain", in_runs), replace(demo(), name="plain", design=Design(repeats=5, kinds=("complete",))),
                    emulator=FAST)
    result = analysis.Analysis("plain")
    assert "ttft_ms" not in result.metrics  # no call streamed: no column of "not recorded" either, but a sentence
    assert "Time to first token not recorded (0 of 20 calls: not streamed)." in result.findings()
    assert main(["analyze", "--run", "plain", "--no-page"]) == 0
    printed = capsys.readouterr().out
    assert "nan" not in printed.lower().replace("nanos", "") and "unbounded [unbounded" not in printed


def test_a_target_that_recorded_no_first_token_reads_not_recorded(in_runs, tmp_path):
    frame = analysis.Analysis("serial").calls.frame(["target", "status", "latency_ms", "ttft_ms"])
    frame.loc[frame["target"] == "slower", "ttft_ms"] = np.nan
    csv = tmp_path / "calls.csv"
    frame.assign(started_at="2026-12-01T10:00:00Z").to_csv(csv, index=False)
    io.import_run(csv, "half", root=in_runs, mapping={"target": "target", "status": "status",
                                                      "latency_ms": "latency_ms", "ttft_ms": "ttft_ms",
                                                      "started_at": "started_at"})
    result = analysis.Analysis("half")
    text = result.summary_table().to_string()
    assert f"not recorded (0 of {(frame['target'] == 'slower').sum()} calls)" in text
    assert any(line.startswith("Time to first token not recorded for slower") for line in result.findings())


def test_lab_analyze_prints_the_verdict_then_writes_a_page(in_runs, tmp_path, capsys):
    page = tmp_path / "serial.html"
    assert main(["analyze", "--run", "serial", "--out", str(page)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("Run serial") < printed.index("group") < printed.index(f"wrote {page}")
    text = page.read_text()
    assert text.index("Run serial") < text.index("Method") and "SYNTHETIC" in text and "data:image/png" in text
    assert "nan" not in text.replace("nanos", "").lower().split("base64")[0]


def test_lab_analyze_json_is_plain_json(in_runs, capsys):
    assert main(["analyze", "--run", "serial", "--json", "--no-page"]) == 0
    found = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert found["run"] == "serial" and found["label"] == "SYNTHETIC" and found["percentiles"]
    assert set(found["rankings"]) == {"latency_ms", "ttft_ms"}


def test_lab_analyze_against_a_baseline_and_its_misuse(in_runs, capsys):
    assert main(["analyze", "--run", "serial", "--baseline", "quick", "--no-page"]) == 0
    assert "Against quick" in capsys.readouterr().out
    assert main(["analyze", "--run", "serial", "--baseline", "nobody", "--no-page"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "quick, slower" in err
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal: usage, then one line
        main(["analyze", "--run", "serial", "--slo", "speed=3"])
    assert refused.value.code == 2 and "name a metric" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["analyze", "--run", "serial", "--by", "hour", "--tz", "Mars/Olympus", "--no-page"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_goodput_counts_the_calls_that_met_every_objective(in_runs, capsys):
    result = analysis.Analysis("serial", analysis.Options(objectives={"ttft_ms": 20.0}))
    table = result.throughput()
    frame = result.calls.frame(["target", "status", "ttft_ms"])
    met = frame[frame["status"].eq("ok") & (frame["ttft_ms"] <= 20)].groupby("target").size()
    assert table.groupby("target")["good"].sum().to_dict() == met.reindex(table["target"].unique(), fill_value=0).to_dict()


def test_lab_analyze_of_a_missing_run_is_one_line(in_runs, capsys):
    assert main(["analyze", "--run", "absent"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_compare_finds_a_real_difference_and_never_claims_none_without_equivalence():
    rng = np.random.default_rng(3)
    a = rng.lognormal(7, 0.3, 200)
    slower = compare.compare(a, rng.lognormal(7, 0.3, 200) * 1.25)
    assert "B is slower than A" in slower.verdict and slower.effects["median_ratio_low"] > 1
    same = compare.compare(a, rng.lognormal(7, 0.3, 200))
    assert "equivalent within ±10%" in same.verdict or "inconclusive" in same.verdict
    tiny = compare.compare(a[:8], rng.lognormal(7, 0.3, 8))
    assert "inconclusive" in tiny.verdict and "power" in tiny.verdict
    separated = compare.compare(np.full(30, 100.0) + np.arange(30) * 0.01, np.full(30, 200.0))
    assert "slower" in separated.verdict  # no overlap at all is a difference, not "no evidence"


def test_compare_tests_are_calibrated_on_identical_distributions():
    rng = np.random.default_rng(0)
    rejections = []
    for _ in range(300):
        x, y = rng.lognormal(7, 0.4, 60), rng.lognormal(7, 0.4, 60)
        rejections.append(compare._body_test(x, y) <= 0.05)
    assert np.mean(rejections) < 0.10  # a calibrated 5% test; 300 draws leave room for chance


def test_lab_compare_works_across_formats(in_runs, capsys, tmp_path):
    io.import_run(FIXTURES / "aiperf" / "profile_export.jsonl", "aiperf-fixture", root=in_runs)
    out = tmp_path / "cmp.html"
    assert main(["compare", "--run", "aiperf-fixture", "--run", "serial", "--metric", "ttft", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "B = serial (SYNTHETIC) against A = aiperf-fixture" in printed and "errors:" in printed
    assert out.exists() and "Method" in out.read_text()


def test_lab_compare_explains_what_it_cannot_do(in_runs, capsys):
    assert main(["compare", "--run", "serial", "--run", "open-loop", "--by", "colour"]) == 2
    assert "--by takes" in capsys.readouterr().err


# --- every import analysable -----------------------------------------------------------------------------------------

IMPORTABLE = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*")
                    if p.is_file() and "emulator_requests" not in p.name and p.suffix not in (".py", ".md", ".pyc")
                    and "summary" not in p.name and not p.name.startswith("profile_export_"))


@pytest.mark.parametrize("name", IMPORTABLE)
def test_lab_analyze_and_compare_work_on_every_imported_fixture(name, in_runs, capsys, tmp_path):
    run_id = "fixture-" + name.replace("/", "-").replace(".", "-")
    io.import_run(FIXTURES / name, run_id, root=in_runs)
    capsys.readouterr()
    page = tmp_path / "page.html"
    assert main(["analyze", "--run", run_id, "--out", str(page)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "nan" not in printed.lower().replace("nanos", "") and "unbounded [unbounded" not in printed
    html = page.read_text()
    assert "Findings" in html and "(nan)" not in html and ">nan<" not in html.lower()
    assert main(["analyze", "--run", run_id, "--json"]) == 0
    json.loads(capsys.readouterr().out)  # strict JSON: no NaN
    assert main(["compare", "--run", "serial", "--run", run_id, "--json"]) == 0, capsys.readouterr().err
    json.loads(capsys.readouterr().out)


def test_every_fixture_is_tried():
    assert {n.split("/")[0] for n in IMPORTABLE} >= {"aiperf", "genai_perf", "guidellm", "litellm", "openllmetry", "otel",
                                                      "vllm_bench"}


def test_lab_analyze_ranks_the_real_llmperf_leaderboard(in_runs, capsys):
    folder = llmperf_dir()
    if folder is None:
        pytest.skip("LLMPerf leaderboard data absent: set LLMPERF_DIR (see the README)")
    io.import_run(folder / "individual", "leaderboard", format="llmperf", root=in_runs)
    capsys.readouterr()
    assert main(["analyze", "--run", "leaderboard", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found["targets"]) == 19 and all("/" in t for t in found["targets"])
    ranked = pd.DataFrame(found["rankings"]["latency_ms"][0]["table"])
    medians = ranked.set_index("target")["median"]
    assert ranked["rank"].tolist() == sorted(ranked["rank"]) and medians.is_monotonic_increasing
    assert ranked.loc[0, "target"] == "groq/70b" and ranked["letters"].str.len().gt(0).all()
    assert "no start times" not in found["findings"][0] and " to 2023" not in found["findings"][0]  # a placeholder
    assert main(["analyze", "--run", "leaderboard", "--by", "hour", "--no-page"]) == 2


def test_the_figure_of_a_large_run_uses_approximate_quantiles_close_to_the_exact_ones(in_runs, monkeypatch):
    exact = analysis.Analysis("serial").distributions()
    monkeypatch.setattr(analysis, "EXACT_FIGURE_UP_TO", 0)  # as for a run of more than a million calls
    approximate = analysis.Analysis("serial").distributions()
    assert len(approximate) == len(exact) > 0
    merged = exact.merge(approximate, on=["metric", "target", "share"], suffixes=("", "_approx"))
    within = merged.groupby(["metric", "target"]).apply(
        lambda g: np.abs(g["value_approx"] - g["value"]).max() <= g["value"].max() - g["value"].min(),
        include_groups=False)
    assert within.all()


def test_a_status_page_log_says_what_it_could_not_rank_or_test(in_runs, tmp_path, capsys):
    table = tmp_path / "status.csv"
    table.write_text("timestamp,provider,model,endpoint_status,response_time_ms\n"
                     '2025-01-01 10:00:00,acme,m1,Online,"1,234"\n2025-01-01 11:00:00,acme,m1,OFFLINE,\n'
                     "2025-01-01 12:00:00,acme,m1,API FAILURE,\n2025-01-02 10:00:00,beta,m2,Online,\"2,345\"\n"
                     "2025-01-02 11:00:00,beta,m2,online,987\n2025-01-03 11:00:00,beta,m2,Online,\"1,001\"\n")
    mapped = ["--map", "latency_ms=response_time_ms", "--map", "started_at=timestamp"]
    assert main(["import", str(table), "--run", "unsaid", *mapped]) == 0
    err = capsys.readouterr().err
    assert "no column says which calls failed" in err and "endpoint_status" in err  # every row counted ok, said
    assert main(["import", str(table), "--run", "said", *mapped, "--ok-when", "endpoint_status=Online"]) == 0
    assert "4 ok, 2 errors (API FAILURE 1, OFFLINE 1)" in capsys.readouterr().out
    assert main(["analyze", "--run", "said", "--by", "day", "--tz", "Europe/Paris", "--no-page"]) == 0
    printed = capsys.readouterr().out
    assert "too few successful calls to rank (acme/m1" in printed and "can be told apart" not in printed
    assert "not tested, no target has 2 or more windows" in printed and "nan" not in printed
