"""``lab runs`` lists the runs and ``lab runs check --run RUN`` verifies one; both only read."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab import cli
from lab.core.records import CallRecord
from lab.store import Run

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "data" / "runs"


def lab(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse refusing an argument
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def a_record(**changes) -> dict:
    record = CallRecord(provider="openai", model="gpt-5-mini", endpoint="http://127.0.0.1:1", kind="complete",
                        started_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC), latency_ms=12.5, synthetic=True)
    return {**record.to_dict(), **changes}


def a_run(root: Path, run_id: str, records: list[dict], ended_at: str | None = "2026-11-27T10:00:00+00:00") -> Run:
    run = Run(run_id, root)
    run.write_manifest({"run_id": run_id, "experiment": "time_window_variance", "started_at": "2026-11-27T09:00:00",
                        "design": {"n": len(records)}, "sessions": [{"window": "w", "ended_at": ended_at}]})
    for i, record in enumerate(records):
        run.append_line({"key": f"k{i}", "record": record})
    return run


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", str(tmp_path))
    return tmp_path


# -- the committed runs -----------------------------------------------------------------------------


@pytest.fixture()
def committed(monkeypatch):
    if not COMMITTED.is_dir() or not any(COMMITTED.glob("*/manifest.json")):
        pytest.skip(f"no committed runs in {COMMITTED}")
    monkeypatch.setenv("LAB_RUNS_DIR", str(COMMITTED))
    before = snapshot(COMMITTED)
    yield sorted(p.parent.name for p in COMMITTED.glob("*/manifest.json"))
    assert snapshot(COMMITTED) == before  # nothing written, created or touched


def test_the_committed_runs_are_listed(committed, capsys):
    code, out, err = lab(capsys, "runs")
    assert code == 0 and err == ""
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert sorted(rows) == committed
    for run_id in committed:
        run = Run(run_id, COMMITTED)
        assert rows[run_id][1] == (run.manifest["experiment"] or "-")
        assert rows[run_id][-1] == "ok"
    if "emulator-demo" in rows:
        assert int(rows["emulator-demo"][2]) == len(Run("emulator-demo", COMMITTED).records())
        assert rows["emulator-demo"][4] == "synthetic"
    if "hedging-demo" in rows:  # a hedging run: every attempt of each outcome of outcomes.jsonl(.gz) is a call
        outcomes = gzip.decompress((COMMITTED / "hedging-demo" / "outcomes.jsonl.gz").read_bytes()).splitlines()
        attempts = [a for line in outcomes for a in json.loads(line)["attempts"]]
        assert len(attempts) > len(outcomes)  # hedges and fallbacks made more calls than requests
        assert int(rows["hedging-demo"][2]) == len(attempts)
        assert int(rows["hedging-demo"][3]) == sum(a["status"] != "ok" for a in attempts)


def test_every_committed_run_checks_clean(committed, capsys):
    for run_id in committed:
        code, out, err = lab(capsys, "runs", "check", "--run", run_id)
        assert code == 0, out + err
        assert out.splitlines()[-1].startswith("clean: ")
    if "hedging-demo" in committed:  # reads the compacted outcomes of a hedging run
        code, out, _ = lab(capsys, "runs", "check", "--run", "hedging-demo")
        outcomes = gzip.decompress((COMMITTED / "hedging-demo" / "outcomes.jsonl.gz").read_bytes()).splitlines()
        assert f"  outcomes.jsonl.gz: {len(outcomes)} lines read\n" in out


# -- the list ----------------------------------------------------------------------------------------


def test_the_list_says_synthetic_live_or_mixed_errors_and_the_last_session(runs, capsys):
    a_run(runs, "emulated", [a_record(), a_record(status="error", error_type="overloaded")])
    a_run(runs, "paid", [a_record(synthetic=False)])
    a_run(runs, "both", [a_record(), a_record(synthetic=False)], ended_at=None)
    code, out, _ = lab(capsys, "runs")
    assert code == 0 and out.splitlines()[0] == f"runs in {runs}:"
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["emulated"][2:] == ["2", "1", "synthetic", "2026-11-27", "10:00", "ok"]
    assert rows["paid"][2:5] == ["1", "0", "live"]
    assert rows["both"][2:] == ["2", "0", "mixed", "incomplete", "ok"]


def test_a_run_being_collected_is_listed_as_running(runs, capsys):
    a_run(runs, "busy", [a_record()], ended_at=None)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from lab.store import Run\n"
                               "with Run('busy', sys.argv[1]).collector('lab collect variance --run busy'):\n"
                               "    print('holding', flush=True); sys.stdin.readline()", str(runs)],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline() == "holding\n"
        assert "running" in lab(capsys, "runs")[1]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert "incomplete" in lab(capsys, "runs")[1]


def test_no_runs_is_said_plainly(runs, capsys):
    assert lab(capsys, "runs") == (0, f"no runs in {runs} (set LAB_RUNS_DIR, or work in a folder that has "
                                      "data/runs)\n", "")


# -- check ---------------------------------------------------------------------------------------------


def test_check_lists_each_damaged_line_and_exits_1(runs, capsys):
    run = a_run(runs, "hurt", [a_record(), a_record(latency_ms=2.0), a_record(latency_ms=3.0)])
    with open(run.calls_path, "a") as handle:
        handle.write(json.dumps({"key": ["k0"], "record": a_record()}) + "\n")  # line 4: a key that is a list
        handle.write(json.dumps({"key": "k1", "record": a_record(latency_ms=9.0)}) + "\n")  # line 5: a second copy
        handle.write('{"key": "k9", "rec')  # line 6: torn
    code, out, err = lab(capsys, "runs", "check", "--run", "hurt")
    assert code == 1 and err == ""
    assert "calls.jsonl: 5 lines read, 3 keys" in out
    assert f"{run.calls_path}:4: unreadable: its key is an array, not a string" in out
    assert f"{run.calls_path}:5: a second copy of a record already read ({run.calls_path}:2)" in out
    assert f"{run.calls_path}:6: incomplete" in out
    listed = [line.split(": ")[0].rsplit(":", 1)[-1] for line in out.splitlines() if str(run.calls_path) + ":" in line]
    assert listed == ["4", "5", "6"]  # in file order
    assert out.splitlines()[-1] == ("damage found in hurt: 2 damaged lines (what they held counts as not collected: "
                                    "the collect command collects it again); 1 second copy of records (ignored, "
                                    "the first kept: two collectors ran at once)")
    listed = lab(capsys, "runs")[1]
    assert "3 damaged lines; see `lab runs check --run hurt`" in listed


def test_check_reports_a_damaged_manifest_and_still_reads_the_lines(runs, capsys):
    run = a_run(runs, "broken", [a_record()])
    run.manifest_path.write_text('{"run_id": "broken",')
    code, out, _ = lab(capsys, "runs", "check", "--run", "broken")
    assert code == 1
    assert f"{run.manifest_path} is not valid JSON (Expecting property name enclosed in double quotes at line 1" in out
    assert "restore it from version control" in out and "calls.jsonl: 1 line read, 1 key" in out
    assert "manifest damaged; see `lab runs check --run broken`" in lab(capsys, "runs")[1]


def test_check_reads_a_hedging_runs_compacted_outcomes(runs, capsys):
    source = COMMITTED / "hedging-demo"
    if not (source / "outcomes.jsonl.gz").exists():
        pytest.skip("no committed hedging-demo run")
    target = runs / "hedged"
    shutil.copytree(source, target)
    data = (target / "outcomes.jsonl.gz").read_bytes()
    (target / "outcomes.jsonl.gz").write_bytes(data[:-100])
    code, out, _ = lab(capsys, "runs", "check", "--run", "hedged")
    assert code == 1
    assert f"{target / 'outcomes.jsonl.gz'}:" in out and ": truncated compressed data" in out
    assert "damage found in hedged: 1 damaged line (" in out


def test_check_validates_the_call_records_inside_outcomes(runs, capsys):
    run = Run("outcomes", runs)
    run.write_manifest({"run_id": "outcomes", "experiment": "hedging", "started_at": "t", "design": {},
                        "sessions": []})
    run.append_line({"request": 0, "ok": True, "attempts": [a_record()]}, "outcomes.jsonl")
    run.append_line({"request": 1, "ok": True, "attempts": [a_record(started_at="never")]}, "outcomes.jsonl")
    code, out, _ = lab(capsys, "runs", "check", "--run", "outcomes")
    assert code == 1 and "outcomes.jsonl: 2 lines read" in out
    assert f"{run.dir / 'outcomes.jsonl'}:2: unreadable: its attempt 0 cannot be read (ValueError" in out


def test_check_of_a_clean_run(runs, capsys):
    a_run(runs, "fine", [a_record(), a_record(latency_ms=2.0)])
    code, out, _ = lab(capsys, "runs", "check", "--run", "fine")
    assert code == 0 and out.splitlines()[-1] == "clean: 2 lines, 2 records, nothing damaged"


@pytest.mark.parametrize("argv, message", [
    (("runs", "check", "--run", "absent"), "lab: no run 'absent' in {runs}: `lab runs` lists the runs there"),
    (("runs", "check", "--run", "../x"), "lab: argument --run: invalid run id '../x'"),
    (("runs", "check"), "lab: the following arguments are required: --run"),
])
def test_check_mistakes_are_one_line_and_exit_2(runs, capsys, argv, message):
    code, out, err = lab(capsys, *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(message.format(runs=runs))


@pytest.mark.slow
def test_the_committed_runs_list_and_check_on_a_read_only_mount(committed):
    from tests.test_store_damage import in_namespace

    commands = " && ".join(f'"$2" -m lab.cli runs check --run {run_id} >/dev/null' for run_id in committed)
    out = in_namespace(f'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && ! touch "$1/probe" 2>/dev/null '
                       f'&& LAB_RUNS_DIR="$1" "$2" -m lab.cli runs && {commands}',
                       str(COMMITTED), sys.executable)
    assert [line.split()[0] for line in out.splitlines()[2:]] == committed
