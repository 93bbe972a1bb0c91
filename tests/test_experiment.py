"""Experiment files, their plans, and their collection: serial interleaved, open loop, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lab.collect import experiment, openloop, variance, workload
from lab.collect.workload import Design, ExperimentError, Prompt, Target, Workload
from lab.collect.workload import plan as planning
from lab.collect.workload.plan import Slot
from lab.store import Run

from collecting import collect_offline

ROOT = Path(__file__).resolve().parents[1]
FAST = "fixed:ttft_ms=5,itl_ms=1,output_tokens=6"


def two_targets(**design) -> Workload:
    return Workload("demo", (Target("a", "anthropic", "claude-haiku-4-5"), Target("b", "openai", "gpt-5-mini")),
                      (Prompt("p1", "short", "Say hi.", max_tokens=16), Prompt("p2", "long", "Write more.", max_tokens=32)),
                      Design(**design))


def test_the_field_report_file_is_the_variance_experiment():
    assert workload.load_file(ROOT / "experiments" / "field-report.toml") == variance.workload()


def test_every_committed_experiment_file_reads():
    for path in (ROOT / "experiments").glob("*.toml"):
        assert workload.load_file(path).targets


@pytest.mark.parametrize("text, problem", [
    ("[[targets]]\nprovider = 'anthropic'\n", r"\[prompts\] needs file"),
    ("[prompts]\nitems = [{prompt = 'x'}]\n", "no targets"),
    ("[[targets]]\nmodel = 'x'\n[prompts]\nitems = [{prompt = 'x'}]\n", "needs a provider"),
    ("[[targets]]\nprovider = 'nope'\n[prompts]\nitems = [{prompt = 'x'}]\n", "provider must be one of"),
    ("[[targets]]\nprovider = 'anthropic'\ncolour = 1\n[prompts]\nitems = [{prompt = 'x'}]\n", "unknown keys colour"),
    ("[[targets]]\nprovider = 'anthropic'\n[prompts]\nitems = [{prompt = 'x'}]\n[design]\nmode = 'burst'\n",
     "design.mode"),
    ("[[targets]]\nprovider = 'anthropic'\n[prompts]\nitems = [{prompt = 'x'}]\n[design]\nmode = 'open-loop'\n",
     "rate_per_s"),
    ("[[targets]]\nprovider = 'anthropic'\n[prompts]\nitems = [{prompt = 'x', max_tokens = 0}]\n", "max_tokens"),
    ("[[targets]]\nprovider = 'anthropic'\n[prompts]\nfile = 'absent.jsonl'\n", "cannot read prompts file"),
    ("not toml [", "not valid TOML"),
])
def test_a_bad_experiment_file_says_what_to_fix(tmp_path, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ExperimentError, match=problem):
        workload.load_file(path)


def test_prompts_from_a_jsonl_file(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "a", "task": "t", "prompt": "x", "system": "s"}\n\n{"prompt": "y"}\n')
    (tmp_path / "e.toml").write_text("[[targets]]\nprovider = 'anthropic'\n[prompts]\nfile = 'p.jsonl'\n"
                                     "[design]\nmax_tokens = 99\n")
    found = workload.load_file(tmp_path / "e.toml")
    assert found.prompts == (Prompt("a", "t", "x", "s", 99), Prompt("2", "default", "y", None, 99))


def test_interleaved_rounds_hold_every_combination_in_a_seeded_random_order():
    plan = planning.plan(two_targets(repeats=6, seed=3), Slot("w"))
    rounds = [plan[i:i + 4] for i in range(0, len(plan), 4)]
    assert all(Counter((c.target.name, c.prompt.id) for c in r) == Counter({("a", "p1"): 1, ("a", "p2"): 1,
                                                                             ("b", "p1"): 1, ("b", "p2"): 1})
               for r in rounds)
    orders = {tuple((c.target.name, c.prompt.id) for c in r) for r in rounds}
    assert len(orders) > 1  # not the same order every round: target is not confounded with time
    assert planning.plan(two_targets(repeats=6, seed=3), Slot("w")) == plan
    assert planning.plan(two_targets(repeats=6, seed=4), Slot("w")) != plan


def test_an_open_loop_plan_follows_its_schedule():
    design = two_targets(mode="open-loop", rate_per_s=(20.0,), duration_s=10, arrival="poisson", seed=1).design
    plan = planning.plan(two_targets(**{**design.__dict__}), Slot(None, 20.0, "t1"))
    offsets = np.array([c.offset_s for c in plan])
    assert np.all(np.diff(offsets) >= 0) and offsets[-1] < 10 and 120 < len(plan) < 280
    assert Counter(c.target.name for c in plan)["a"] == pytest.approx(len(plan) / 2, abs=2)
    constant = openloop.schedule(4, n=5, arrival="constant")
    assert constant.tolist() == [0, 0.25, 0.5, 0.75, 1.0]


def test_a_serial_experiment_is_collected_labelled_and_resumed(tmp_path):
    run = Run("serial", tmp_path)
    demo = two_targets(repeats=3, pause_s=0, kinds=("stream",))
    made = collect_offline(run, demo, window="w", emulator=FAST)
    frame = experiment.load(run)
    assert made == 12 and len(frame) == 12 and frame["status"].eq("ok").all()
    assert set(frame["target"]) == {"a", "b"} and set(frame["task"]) == {"short", "long"}
    assert frame["window"].eq("w").all() and frame["synthetic"].all() and frame["ttft_ms"].notna().all()
    assert collect_offline(run, demo, window="w", emulator=FAST) == 0


def test_a_complete_run_is_not_written_again(tmp_path):
    run = Run("done", tmp_path)
    demo = two_targets(repeats=1, kinds=("complete",))
    collect_offline(run, demo, emulator=FAST)
    before = {p.name: p.stat().st_mtime_ns for p in run.dir.iterdir()}
    assert collect_offline(run, demo, emulator=FAST) == 0
    assert {p.name: p.stat().st_mtime_ns for p in run.dir.iterdir()} == before


def test_an_open_loop_session_records_its_schedule(tmp_path):
    run = Run("open", tmp_path)
    demo = two_targets(mode="open-loop", rate_per_s=(40.0,), requests=40, arrival="constant", kinds=("stream",))
    assert collect_offline(run, demo, emulator=FAST) == 1
    frame = experiment.load(run)
    assert len(frame) == 40 and frame["status"].eq("ok").all()
    assert frame["send_lag_ms"].notna().all() and frame["scheduled_at"].notna().all()
    planned = (frame["scheduled_at"] - frame["scheduled_at"].min()).dt.total_seconds().sort_values()
    assert np.allclose(np.diff(planned), 1 / 40, atol=0.002)  # the schedule, not when replies came back
    assert frame["window"].eq("40/s").all()


def test_an_interrupted_open_loop_session_runs_again_in_full(tmp_path):
    run = Run("retry", tmp_path)
    demo = two_targets(mode="open-loop", rate_per_s=(50.0,), requests=20, kinds=("complete",))
    collect_offline(run, demo, emulator=FAST)
    manifest = run.manifest
    first = manifest["sessions"][0]["attempt"]
    manifest["sessions"][0]["ended_at"] = None  # as if killed before it ended
    run.write_manifest(manifest)
    assert collect_offline(Run("retry", tmp_path), demo, emulator=FAST) == 1
    again = Run("retry", tmp_path)
    assert again.manifest["sessions"][0]["attempt"] != first
    assert len(experiment.load(again)) == 20 and len(again.records()) == 40  # the old try is kept, not loaded


def lab(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "LAB_RUNS_DIR": str(cwd), **(env or {})})


def test_the_command_collects_an_experiment_file(tmp_path):
    (tmp_path / "e.toml").write_text(
        "[[targets]]\nname = 'x'\nprovider = 'openai'\nmodel = 'gpt-5-mini'\n"
        "[prompts]\nitems = [{id = 'a', task = 't', prompt = 'hi', max_tokens = 8}]\n"
        "[design]\nrepeats = 3\nstream = false\n")
    done = lab("collect", "run", "e.toml", "--run", "cli", "--emulator", FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 calls made, 0 already recorded" in done.stdout and "local endpoints: no charge" in done.stdout
    frame = experiment.load(Run("cli", tmp_path))
    assert len(frame) == 3 and frame["kind"].eq("complete").all()


def test_paid_targets_need_live_and_a_key(tmp_path):
    (tmp_path / "e.toml").write_text("[[targets]]\nprovider = 'anthropic'\n[prompts]\nitems = [{prompt = 'hi'}]\n")
    env = {"ANTHROPIC_API_KEY": "", "ANTHROPIC_BASE_URL": ""}
    no_key = lab("collect", "run", "e.toml", "--run", "paid", cwd=tmp_path, env=env)
    assert no_key.returncode == 2 and "ANTHROPIC_API_KEY" in no_key.stderr and "Traceback" not in no_key.stderr
    no_live = lab("collect", "run", "e.toml", "--run", "paid", cwd=tmp_path, env={"ANTHROPIC_API_KEY": "k" * 20})
    assert no_live.returncode == 2 and "--live" in no_live.stderr
    assert not (tmp_path / "paid").exists()


@pytest.mark.slow
def test_two_collectors_of_one_run_never_both_collect(tmp_path):
    args = ["collect", "variance", "--run", "twice", "--window", "w", "--n", "80", "--pause", "0.2",
            "--emulator", "fixed:ttft_ms=20,itl_ms=1,output_tokens=4"]
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path)}
    first = subprocess.Popen([sys.executable, "-m", "lab.cli", *args], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "twice" / "calls.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = lab(*args, cwd=tmp_path)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "is being collected by pid" in second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    lines = (tmp_path / "twice" / "calls.jsonl").read_text().splitlines()
    assert len(lines) == 80 and len({json.loads(line)["key"] for line in lines}) == 80
