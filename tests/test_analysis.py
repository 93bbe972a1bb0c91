"""``lab analyze`` and ``lab compare``: a report for any run, a verdict between two, across formats."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

from lab import imports as io
from lab.analysis import analyze as analysis
from lab.analysis import compare
from lab.cli import main
from lab.collect.workload import Design, Prompt, Target, Workload
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
    assert "unbounded" in result.percentile_table().to_string()
    assert result.errors()["errors"].sum() == 0
    verdicts = [r.verdict for _, _, _, r in result.pairs() if r.metric == "ttft_ms"]
    assert verdicts and all("slower is slower than quick" in v for v in verdicts)
    assert "SYNTHETIC" in result.findings() and not result.open_loop


def test_an_open_loop_run_reports_its_schedule(in_runs):
    result = analysis.Analysis("open-loop")
    assert result.open_loop and "response_ms" in result.metrics
    schedule = result.schedule()
    assert schedule["design rate /s"].iloc[0] == 40
    sent, planned = (result.frame[c].sort_values() for c in ("started_at", "scheduled_at"))
    span = {name: (t.iloc[-1] - t.iloc[0]).total_seconds() for name, t in (("sent", sent), ("planned", planned))}
    # Rates from the recorded send and planned times (how close they come is the benchmarks' to measure).
    assert schedule["achieved rate /s"].iloc[0] == pytest.approx((len(sent) - 1) / span["sent"])
    assert schedule["planned rate /s"].iloc[0] == pytest.approx((len(planned) - 1) / span["planned"])
    assert "open loop 40/s" in result.findings()


def test_the_committed_notebook_is_the_generated_one():
    committed = nbformat.read(ROOT / "notebooks" / f"{analysis.NOTEBOOK}.ipynb", as_version=4)
    run_id = next(c for c in committed.cells if "parameters" in c.metadata.get("tags", [])).source.split('"')[1]
    generated = analysis.notebook(run_id)
    assert [c.source for c in committed.cells] == [c.source for c in generated.cells]


def test_lab_analyze_writes_a_page_with_findings_first(in_runs, tmp_path, capsys):
    page = tmp_path / "serial.html"
    assert main(["analyze", "--run", "serial", "--out", str(page)]) == 0
    text = page.read_text()
    assert text.index("Run serial") < text.index("Method") and "SYNTHETIC" in text
    assert "slower is slower than quick" in text


def test_lab_analyze_of_a_missing_run_is_one_line(in_runs, capsys):
    assert main(["analyze", "--run", "absent"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_compare_finds_a_real_difference_and_never_claims_none_without_equivalence():
    rng = np.random.default_rng(3)
    a = rng.lognormal(7, 0.3, 200)
    slower = compare.compare(a, rng.lognormal(7, 0.3, 200) * 1.25, n_power=100)
    assert "B is slower than A" in slower.verdict and slower.effects["median_ratio_low"] > 1
    same = compare.compare(a, rng.lognormal(7, 0.3, 200), n_power=100)
    assert "equivalent within ±10%" in same.verdict or "inconclusive" in same.verdict
    tiny = compare.compare(a[:8], rng.lognormal(7, 0.3, 8), n_power=100)
    assert "inconclusive" in tiny.verdict and "power" in tiny.verdict
    separated = compare.compare(np.full(30, 100.0) + np.arange(30) * 0.01, np.full(30, 200.0), n_power=50)
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
    assert "serial against aiperf-fixture" in printed and "errors:" in printed and out.exists()


def test_lab_compare_explains_what_it_cannot_do(in_runs, capsys):
    assert main(["compare", "--run", "serial", "--run", "open-loop", "--by", "colour"]) == 2
    assert "--by takes" in capsys.readouterr().err
