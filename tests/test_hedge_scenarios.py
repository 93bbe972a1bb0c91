"""Live hedging scenarios (lab.collect.hedging): open-loop arms on loopback emulators, recorded and resumed."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from lab.collect import hedging as sc
from lab.emulator import LatencyProfile
from lab.store import MissingRecord, Run
from lab.store.lines import DamagedLine

from collecting import collect_offline

FAST = LatencyProfile.fixed(ttft_ms=30, itl_ms=1, output_tokens=10)
STALLS = sc.Trouble("stall_first_token", 0.05, params={"ms": 1_500})
SCENARIO = sc.Scenario("test_stalls", "synthetic: a fast primary stalling 1.5 s on 5% of requests", FAST, FAST,
                       (STALLS,))
DESIGN = sc.ScenarioDesign(n=60, rate_per_s=60.0)


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Run, object]:
    run = Run("hedging", tmp_path_factory.mktemp("runs"))
    made = collect_offline(run, sc.Hedging(DESIGN, (SCENARIO,)))
    return run, made


def test_every_arm_holds_each_request_once(collected):
    run, made = collected
    assert made == len(SCENARIO.arms) == len(sc.POLICIES) + 1  # + the history arm the delays come from
    outcomes = sc.load(run, [SCENARIO.name])
    assert outcomes.groupby("policy")["request"].apply(sorted).map(lambda r: r == list(range(DESIGN.n))).all()
    assert set(outcomes["policy"]) == set(SCENARIO.arms)
    assert outcomes["synthetic"].all()
    assert (outcomes["planned_s"] == outcomes["request"] / DESIGN.rate_per_s).all()


def test_collect_again_runs_nothing(collected):
    run, _ = collected
    assert collect_offline(run, sc.Hedging(DESIGN, (SCENARIO,))) == 0


def test_open_loop_sends_on_schedule_while_the_primary_stalls(collected):
    run, _ = collected
    primary = sc.arm(sc.load(run, [SCENARIO.name]), SCENARIO.name, "primary")
    stalled = primary["latency_ms"] > 1_000
    assert stalled.sum() >= 2  # some requests did stall for 1.5 s ...
    # ... and none held back the next send: it went out before the stalled answer came (a closed loop waits)
    answered_s = primary["planned_s"] + primary["latency_ms"] / 1e3
    sent_next_s = (primary["planned_s"] + primary["lateness_ms"] / 1e3).shift(-1)
    assert (sent_next_s[stalled].dropna() < answered_s[stalled].dropna()).all()


def test_the_same_request_meets_the_same_primary_in_every_arm(collected):
    run, _ = collected
    outcomes = sc.load(run, [SCENARIO.name])
    stalled = {p: set(sc.arm(outcomes, SCENARIO.name, p).query("latency_ms > 1000")["request"])
               for p in ("primary", "fallback")}
    hedged = set(sc.arm(outcomes, SCENARIO.name, "hedge").query("extra_requests > 0")["request"])
    # Every request that stalled in the primary arm stalled in the hedged arm too, and was hedged (on a busy
    # machine an unstalled request may also pass the delay and be hedged: that is the policy working).
    assert stalled["primary"] and stalled["primary"] <= hedged
    assert stalled["fallback"] == set()  # fallback cancelled every stall at the delay


def test_hedged_arms_use_the_primary_arms_p95(collected):
    run, _ = collected
    outcomes = sc.load(run, [SCENARIO.name])
    delays = sc.primary_delays(outcomes, SCENARIO.name)
    assert set(sc.arm(outcomes, SCENARIO.name, "hedge")["delay_ms"]) == {delays.latency_ms}
    assert set(sc.arm(outcomes, SCENARIO.name, "hedge_ttft")["delay_ms"]) == {delays.ttft_ms}
    session = [e for e in run.manifest["sessions"] if e["policy"] == "hedge"][0]
    assert session["delays_ms"]["latency_ms"] == delays.latency_ms and session["primary"]["faults"]


def test_hedging_wins_every_stall(collected):
    run, _ = collected
    outcomes = sc.load(run, [SCENARIO.name])
    hedge = sc.arm(outcomes, SCENARIO.name, "hedge")
    primary = sc.arm(outcomes, SCENARIO.name, "primary")
    stalled = primary.loc[primary["latency_ms"] > 1_000, "request"]
    won = hedge.set_index("request").loc[stalled]
    assert hedge["ok"].all() and (won["winner"] == "backup").all()
    # Each stalled request ended sooner hedged than alone (the stall is 1.5 s; the hedge fires at the p95).
    assert (won["latency_ms"] < primary.set_index("request").loc[stalled, "latency_ms"]).all()
    # A backup's first token counts from the request's planned send, so after the hedge delay.
    won = hedge[hedge["winner"] == "backup"]
    assert (won["ttft_ms"] > won["delay_ms"]).all() and (won["ttft_ms"] < won["latency_ms"]).all()


def test_a_missing_arm_says_how_to_collect_it(tmp_path):
    run = Run("partial", tmp_path)
    collect_offline(run, sc.Hedging(sc.ScenarioDesign(n=5, rate_per_s=50.0), (SCENARIO,)))
    packed = run.dir / f"{sc.OUTCOMES}.gz"  # a collection ends by compacting its outcomes
    lines = gzip.decompress(packed.read_bytes()).decode().splitlines()
    packed.write_bytes(gzip.compress("".join(f"{e}\n" for e in lines if '"policy": "hedge"' not in e).encode()))
    with pytest.raises(MissingRecord, match=r"test_stalls/hedge\b.*lab collect hedging --run partial --n 5"):
        sc.load(run, [SCENARIO.name])


KILLED_COLLECTION = """
import sys
from lab.collect import hedging as sc
from lab.collect.experiment import Reach, collect
from lab.store import Run
from tests.test_hedge_scenarios import SCENARIO
collect(Run("killed", sys.argv[1]), sc.Hedging(sc.ScenarioDesign(n=30, rate_per_s=15.0), (SCENARIO,)), Reach(),
        command="test", progress=False)
"""


@pytest.mark.slow
def test_an_arm_killed_midway_runs_again_in_full(tmp_path):
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", KILLED_COLLECTION, str(tmp_path)], cwd=root,
                               env={**os.environ, "PYTHONPATH": f"{root}:{root / 'tests'}"})
    outcomes = tmp_path / "killed" / sc.OUTCOMES
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not outcomes.exists() or len(outcomes.read_bytes().splitlines()) < 40):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = [json.loads(line) for line in outcomes.read_bytes().splitlines() if line.endswith(b"}")]
    assert 30 < len(partial) < 30 * len(SCENARIO.arms)  # killed inside an arm after the first

    run = Run("killed", tmp_path)
    design = sc.ScenarioDesign(n=30, rate_per_s=15.0)
    torn = not outcomes.read_bytes().endswith(b"\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collect_offline(run, sc.Hedging(design, (SCENARIO,)))
    assert any(issubclass(w.category, DamagedLine) for w in caught) == torn
    loaded = sc.load(run, [SCENARIO.name])
    assert len(loaded) == 30 * len(SCENARIO.arms)
    assert not loaded.duplicated(["policy", "request"]).any()
    first = partial[0]
    kept = loaded[(loaded["policy"] == first["policy"]) & (loaded["request"] == first["request"])]
    assert kept["latency_ms"].item() == first["latency_ms"]  # the completed first arm was not run again



@pytest.mark.slow
def test_the_command_collects_and_resumes(tmp_path):
    env = {**os.environ, "LAB_RUNS_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "lab.cli", "collect", "hedging", "--run", "cli", "--scenario", "outage",
               "--n", "4", "--rate", "40"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"{len(sc.POLICIES) + 1} arms made" in first.stdout  # + the healthy primary arm the delays come from
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "0 arms made" in again.stdout
    outcomes = sc.load(Run("cli", tmp_path), ["outage"])
    assert len(outcomes) == 4 * len(sc.POLICIES)
    unknown = subprocess.run([*command[:7], "--scenario", "nope"], env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "invalid choice: 'nope'" in unknown.stderr


def test_roles_and_the_history_arms_own_draws(collected):
    run, _ = collected
    outcomes = sc.load(run, [SCENARIO.name])
    assert (sc.arm(outcomes, SCENARIO.name, "backup")["winner"] == "backup").all()
    history, primary = (sc.arm(outcomes, SCENARIO.name, p)["latency_ms"] for p in (sc.HISTORY, "primary"))
    stalled = lambda latency: set(latency.index[latency > 1_000])  # noqa: E731
    assert stalled(history) != stalled(primary)  # other draws: the delay is not fitted to the judged requests
