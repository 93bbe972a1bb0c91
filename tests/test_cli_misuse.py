"""Misuse of the ``lab`` command: every mistake is one line on stderr naming what to do, exit 2, no
traceback, and nothing written (no run folder, no emulator started, no cost printed first)."""

from __future__ import annotations

import json
import os

import pytest

from lab.cli import main

VARIANCE = ["collect", "variance", "--window", "w", "--emulator", "instant", "--n", "1"]

BAD_RUN_IDS = ["../x", "/tmp/x", "", "a" * 300, "a b", "a\nb", "~x", "a\\b", ".hidden", "-x", "x/y", "é"]

BAD = {
    **{f"run id {value!r}": [*VARIANCE, "--run", value] for value in BAD_RUN_IDS},
    "n zero": [*VARIANCE, "--run", "ok", "--n", "0"],
    "n negative": ["collect", "variance", "--run", "ok", "--window", "w", "--n", "-1"],
    "n not a number": ["collect", "variance", "--run", "ok", "--window", "w", "--n", "many"],
    "n fractional": ["collect", "variance", "--run", "ok", "--window", "w", "--n", "1.5"],
    "max tokens zero": [*VARIANCE, "--run", "ok", "--max-tokens", "0"],
    "max tokens negative": [*VARIANCE, "--run", "ok", "--max-tokens", "-5"],
    "pause negative": [*VARIANCE, "--run", "ok", "--pause", "-1"],
    "pause nan": [*VARIANCE, "--run", "ok", "--pause", "nan"],
    "pause inf": [*VARIANCE, "--run", "ok", "--pause", "inf"],
    "pause words": [*VARIANCE, "--run", "ok", "--pause", "soon"],
    "seed negative": [*VARIANCE, "--run", "ok", "--seed", "-1"],
    "max cost negative": [*VARIANCE, "--run", "ok", "--max-cost", "-1"],
    "max cost words": [*VARIANCE, "--run", "ok", "--max-cost", "cheap"],
    "unknown emulator profile": ["collect", "variance", "--run", "ok", "--window", "w", "--emulator", "nope"],
    "bad profile spec value": ["collect", "variance", "--run", "ok", "--window", "w", "--emulator", "fixed:ttft_ms=x"],
    "bad profile spec name": ["collect", "variance", "--run", "ok", "--window", "w", "--emulator", "fixed:bogus=1"],
    "unknown provider": [*VARIANCE, "--run", "ok", "--provider", "acme"],
    "missing window": ["collect", "variance", "--run", "ok", "--emulator", "instant"],
    "empty window": ["collect", "variance", "--run", "ok", "--window", "", "--emulator", "instant"],
    "window on two lines": ["collect", "variance", "--run", "ok", "--window", "a\nb", "--emulator", "instant"],
    "n too large": [*VARIANCE, "--run", "ok", "--n", "1000000000"],
    "hedging rate too large": ["collect", "hedging", "--run", "ok", "--rate", "1e9"],
    "max tokens words": [*VARIANCE, "--run", "ok", "--max-tokens", "lots"],
    "missing run": ["collect", "variance", "--window", "w", "--emulator", "instant"],
    "review n zero": ["collect", "review", "--run", "ok", "--n", "0", "--emulator", "instant"],
    "review bad run": ["collect", "review", "--run", "../r", "--emulator", "instant"],
    "hedging rate zero": ["collect", "hedging", "--run", "ok", "--rate", "0"],
    "hedging rate negative": ["collect", "hedging", "--run", "ok", "--rate", "-2"],
    "hedging rate nan": ["collect", "hedging", "--run", "ok", "--rate", "nan"],
    "hedging n zero": ["collect", "hedging", "--run", "ok", "--n", "0"],
    "hedging unknown scenario": ["collect", "hedging", "--run", "ok", "--scenario", "nope"],
    "hedging bad run": ["collect", "hedging", "--run", "a/b"],
    "experiment file absent": ["collect", "run", "/nonexistent/e.toml", "--run", "ok", "--emulator", "instant"],
    "experiment file is a folder": ["collect", "run", "/", "--run", "ok", "--emulator", "instant"],
    "emulator port negative": ["emulator", "--port", "-1"],
    "emulator port zero": ["emulator", "--port", "0"],
    "emulator port too large": ["emulator", "--port", "99999"],
    "emulator port words": ["emulator", "--port", "http"],
    "emulator unknown profile": ["emulator", "--profile", "nope"],
    "emulator seed words": ["emulator", "--seed", "x"],
    "report notebooks absent": ["report", "--notebooks", "/nonexistent"],
    "report notebooks empty folder": ["report", "--notebooks", "/var/empty-or-absent"],
    "doctor unknown provider": ["doctor", "--provider", "acme"],
    "unknown command": ["frobnicate"],
    "unknown option": ["collect", "variance", "--run", "ok", "--window", "w", "--colour", "red"],
    "no command": [],
    "runs check unknown run": ["runs", "check", "--run", "no-such-run"],
    "runs check bad id": ["runs", "check", "--run", "../x"],
    "import absent file": ["import", "/nonexistent.jsonl", "--run", "imp"],
    "import unknown format": ["import", "/etc/hostname", "--run", "imp", "--format", "nope"],
    "import bad run id": ["import", "/etc/hostname", "--run", "../imp"],
}


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def run_lab(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_mistake_is_one_line_and_exit_2(case, workdir, capsys):
    code, out, err = run_lab(BAD[case], capsys)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lab: "), err
    assert "Traceback" not in err + out
    assert "calls to" not in out and "emulator" not in out  # refused before anything started
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir())


def test_a_damaged_manifest_is_one_line(workdir, capsys):
    run = workdir / "runs" / "broken"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{not json")
    code, _, err = run_lab([*VARIANCE, "--run", "broken"], capsys)
    assert code == 2 and "manifest.json" in err and "restore it" in err and len(err.strip().splitlines()) == 1


def test_a_read_only_runs_folder_is_one_line(workdir, monkeypatch, capsys):
    monkeypatch.setenv("LAB_RUNS_DIR", "/proc/lab-runs")  # never writable, even for root
    code, _, err = run_lab([*VARIANCE, "--run", "ro"], capsys)
    assert code == 2 and "LAB_RUNS_DIR" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_complete_run_replays_on_a_read_only_disk(workdir, capsys):
    assert run_lab([*VARIANCE, "--run", "done", "--pause", "0"], capsys)[0] == 0
    run = workdir / "runs" / "done"
    for path in [run, *run.iterdir()]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        code, out, err = run_lab([*VARIANCE, "--run", "done", "--pause", "0"], capsys)
    finally:
        for path in [run, *run.iterdir()]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    assert code == 0 and "0 calls made, 1 already recorded" in out, err


def test_paid_calls_without_live_are_refused_before_any_call(workdir, monkeypatch, capsys):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k" * 24)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    code, out, err = run_lab(["collect", "variance", "--run", "paid", "--window", "w", "--n", "1"], capsys)
    assert code == 2 and "--live" in err and "estimated cost" in out
    assert not (workdir / "runs" / "paid").exists()


def test_debug_shows_the_traceback(workdir, capsys):
    (workdir / "runs" / "broken").mkdir(parents=True)
    (workdir / "runs" / "broken" / "manifest.json").write_text("")
    code, _, err = run_lab(["--debug", *VARIANCE, "--run", "broken"], capsys)
    assert code == 2 and "Traceback" in err


def test_the_table_covers_what_issue_11_lists():
    listed = json.dumps(BAD)
    for fragment in ('"../x"', '"/tmp/x"', '"--rate", "0"', '"--n", "0"', '"--port", "-1"', '"nope"'):
        assert fragment in listed
    assert len(BAD) >= 60
