"""Live hedging scenarios: every policy against two loopback emulators, open loop, recorded.

A :class:`Scenario` is a primary and a backup provider (latency profiles and faults). An *arm*
is one scenario run under one policy: the same seeded request sequence, request ``i`` planned at
``i / rate`` seconds (open loop: a slow answer never delays the next send), latency counted from
the planned send time, so a stalled provider cannot hide its slowness by holding back the next
request. Each arm gets fresh emulators whose fault windows count from the schedule's start, and
the emulators key their draws by prompt, so request ``i`` meets the same latency and faults at
the primary in every arm, and the same backup draw in the ``backup`` arm and as a hedge. That
pairing is what lets :mod:`lab.analysis.hedging` predict a hedged arm from the two single arms.

Policies, in collection order: ``primary`` and ``backup`` (each alone), ``fallback`` (to the
backup on error, or on a timeout at the primary's p95, cancelling the primary), ``hedge`` (a
second request to the backup once the primary has not answered by its p95) and ``hedge_ttft``
(once it has sent no text by its time-to-first-token p95). The p95s come from a ``history`` arm:
the primary alone on other draws (another emulator seed, as if last week), so a delay is never
fitted to the requests it is judged on. A scenario whose tail is the primary's normal behaviour
has its own history arm; an incident's scenario takes the ``healthy`` one (a deployed policy
knows the primary's normal p95, not the incident's).

Storage: ``outcomes.jsonl`` in the run, one line per outcome with the call records of all its
attempts (texts dropped: this experiment measures time, and the answers are synthetic), written
durably as each completes, and compacted into ``outcomes.jsonl.gz`` when the arm ends. An arm is the
unit of collection: an open-loop schedule cannot resume halfway (its fault windows are tied to its start),
so an interrupted arm runs again in full as a new session; the partial session's lines stay in the file
and are not read.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from lab import llm
from lab.collect import collector, openloop
from lab.collect.experiment import Reach, Spend
from lab.collect.variance import PROMPT
from lab.core import progress
from lab.core.records import CallRecord, records_frame
from lab.emulator import Emulator, FaultRule, LatencyProfile, report_profiles
from lab.hedge import SCENARIOS, policies
from lab.hedge.policies import Backend, Outcome
from lab.llm.transport import PLANNED
from lab.store import MissingRecord, Run

EXPERIMENT = "hedging"
VERSION = 1
"""Bump when a scenario's definition changes: simulations of the scenarios are cached under it."""
OUTCOMES = "outcomes.jsonl"
POLICIES = ("primary", "backup", "fallback", "hedge", "hedge_ttft")
HISTORY = "history"
HISTORY_SEED = 1_000  # added to the design's seed: the history arm's primary draws differ from every other arm's
PRIMARY = ("anthropic", "claude-haiku-4-5")
BACKUP = ("openai", "gpt-5-mini")  # a scenario may name another backup model
REPORT_SLOWEST_MS = 11_579.0
"""The report's slowest call (Sonnet, 86 output tokens): where the heavy tail's stalls end."""


@dataclass(frozen=True)
class ScenarioDesign:
    """What every arm of a run shares."""

    n: int = 400
    rate_per_s: float = 10.0
    seed: int = 0
    max_tokens: int = 256
    prompt: str = PROMPT

    @property
    def duration_s(self) -> float:
        return self.n / self.rate_per_s

    def prompt_for(self, request: int) -> str:
        return f"Request {request}. {self.prompt}"


@dataclass(frozen=True)
class Trouble:
    """A fault rule with its time window in fractions of the schedule (None: open)."""

    kind: str
    probability: float = 1.0
    start: float | None = None
    end: float | None = None
    params: Mapping[str, float] = field(default_factory=dict)

    def rule(self, duration_s: float) -> FaultRule:
        def at(fraction: float | None) -> float | None:
            return None if fraction is None else fraction * duration_s
        return FaultRule(self.kind, self.probability, at(self.start), at(self.end), params=self.params)


@dataclass(frozen=True)
class Scenario:
    """A primary and a backup provider: latency profiles and faults."""

    name: str
    description: str
    primary: LatencyProfile
    backup: LatencyProfile
    primary_trouble: tuple[Trouble, ...] = ()
    backup_trouble: tuple[Trouble, ...] = ()
    backup_model: str = BACKUP[1]
    delays_from: str | None = None
    """The scenario whose history arm sets the hedge delays (None: this one, which then has one)."""

    @property
    def arms(self) -> tuple[str, ...]:
        return POLICIES if self.delays_from else (HISTORY, *POLICIES)


@functools.cache
def scenarios() -> dict[str, Scenario]:
    """The scenarios, built on the profiles fitted to the report (see :mod:`lab.emulator.profiles`)."""
    fitted = report_profiles()
    body = replace(fitted["haiku"], name="haiku body", stall_prob=0.0)
    body_median = body.ttft_ms + body.output_tokens * body.itl_ms
    heavy = replace(fitted["haiku"], name="haiku with long stalls", stall_median_ms=REPORT_SLOWEST_MS - body_median,
                    stall_sigma=0.1)
    stall_share = f"{fitted['haiku'].stall_prob:.1%}"
    outage = Trouble("overloaded", start=0.4, end=0.6)
    quota = Trouble("rate_limit", 0.2, params={"retry_after": 1.0})
    shared_stall = Trouble("stall_first_token", start=0.5, end=0.6, params={"ms": 8_000})
    found = [
        Scenario("healthy", "both providers healthy and light-tailed (the report's Haiku fit without its stalls)",
                 body, body),
        Scenario("heavy_tail", f"the primary stalls before its first token on {stall_share} of calls (the share "
                 f"fitted to the report's Haiku), stalled calls ending near the report's {REPORT_SLOWEST_MS:,.0f} ms",
                 heavy, body),
        Scenario("haiku_tail", f"the primary stalls as fitted to the report's Haiku itself: on "
                 f"{fitted['haiku'].stall_prob:.1%} of calls, by {fitted['haiku'].stall_median_ms / 1000:.1f} s "
                 "at the median (the heavy tail's stalls end near a Sonnet call's length instead)",
                 fitted["haiku"], body),
        Scenario("outage", f"the primary answers 529 overloaded to every request from {outage.start:.0%} to "
                 f"{outage.end:.0%} of the schedule", body, body, (outage,), delays_from="healthy"),
        Scenario("rate_limited", f"the primary's quota rejects {quota.probability:.0%} of requests: 429 with "
                 f"retry-after {quota.params['retry_after']:g} s", body, body, (quota,), delays_from="healthy"),
        Scenario("correlated", f"both providers stall {shared_stall.params['ms'] / 1000:g} s before the first token "
                 f"from {shared_stall.start:.0%} to {shared_stall.end:.0%} of the schedule, as when a shared "
                 "network path or region degrades", body, body, (shared_stall,), (shared_stall,),
                 delays_from="healthy"),
        Scenario("slow_backup", "the heavy-tailed primary with a slower, larger backup model (gpt-5, timed as the "
                 "report's Sonnet fit, with its own tail)", heavy, fitted["sonnet"], backup_model="gpt-5"),
    ]
    assert tuple(s.name for s in found) == SCENARIOS
    return {s.name: s for s in found}


# -- collection -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delays:
    """The primary's p95 latency and p95 time to first token (ms), from a ``history`` arm."""

    latency_ms: float
    ttft_ms: float


def _policy(name: str, prompt: str, primary: Backend, backup: Backend, delays: Delays | None,
            max_tokens: int) -> Any:
    """The coroutine running ``prompt`` under policy ``name``."""
    if name in ("primary", HISTORY):
        return policies.single(prompt, primary, max_tokens=max_tokens)
    if name == "backup":
        return policies.single(prompt, backup, max_tokens=max_tokens)
    assert delays is not None, "hedged arms need the primary arm's delays"
    if name == "fallback":
        return policies.fallback(prompt, primary, backup, timeout_s=delays.latency_ms / 1e3, max_tokens=max_tokens)
    if name == "hedge":
        return policies.hedge(prompt, primary, backup, delay_s=delays.latency_ms / 1e3, max_tokens=max_tokens)
    if name == "hedge_ttft":
        return policies.hedge(prompt, primary, backup, delay_s=delays.ttft_ms / 1e3, on="ttft",
                              max_tokens=max_tokens)
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")


def _entry(run: Run, scenario: str, policy: str, session: str, request: int, planned_s: float,
           lateness_ms: float, delay_ms: float | None, outcome: Outcome) -> dict[str, Any]:
    tags = {"run_id": run.id, "experiment": EXPERIMENT, "window": f"{scenario}/{policy}", "sample": request}
    attempts = [replace(record, text="", **tags).to_dict() for record in outcome.attempts]
    winner = outcome.attempts.index(outcome.winner) if outcome.winner is not None else None
    return {"scenario": scenario, "policy": policy, "session": session, "request": request,
            "planned_s": planned_s, "lateness_ms": lateness_ms, "latency_ms": lateness_ms + outcome.latency_ms,
            "ok": outcome.ok, "winner": winner, "delay_ms": delay_ms,
            "attempt_costs": list(outcome.attempt_costs), "attempts": attempts}


async def _run_arm(run: Run, design: ScenarioDesign, scenario: Scenario, policy: str, delays: Delays | None,
                   session: str) -> int:
    """Send the arm's schedule; returns how many requests failed."""
    duration = design.duration_s
    primary_seed = design.seed + (HISTORY_SEED if policy == HISTORY else 0)
    with (Emulator(scenario.primary, seed=primary_seed, key_by="prompt",
                   faults=[t.rule(duration) for t in scenario.primary_trouble]) as p,
          Emulator(scenario.backup, seed=design.seed + 1, key_by="prompt",
                   faults=[t.rule(duration) for t in scenario.backup_trouble]) as b):
        primary = Backend(*PRIMARY, p.url_for(PRIMARY[0]))
        backup = Backend(BACKUP[0], scenario.backup_model, b.url_for(BACKUP[0]))
        delay_ms = None if delays is None else (delays.ttft_ms if policy == "hedge_ttft" else delays.latency_ms)
        offsets = openloop.schedule(design.rate_per_s, n=design.n, arrival="constant")
        failed = 0

        async def one(request: int) -> None:
            nonlocal failed
            lateness_ms = (time.perf_counter_ns() - (PLANNED.get() or time.perf_counter_ns())) / 1e6
            outcome = await _policy(policy, design.prompt_for(request), primary, backup, delays, design.max_tokens)
            failed += not outcome.ok
            run.append_line(_entry(run, scenario.name, policy, session, request, float(offsets[request]),
                                   lateness_ms, delay_ms, outcome), OUTCOMES)
            bar.update(1)

        async with llm.session():
            for route in (primary, backup):
                await llm.prepare(provider=route.provider, model=route.model, base_url=route.base_url)
            start = time.perf_counter() + openloop.LEAD_S
            p.restart_clock(start)
            b.restart_clock(start)
            with progress.bar(design.n, desc=f"{scenario.name}/{policy}", unit="request", leave=False) as bar:
                await openloop.drive(offsets, one, start=start)
        return failed


def _session_entry(design: ScenarioDesign, scenario: Scenario, policy: str, session: str,
                   delays: Delays | None) -> dict[str, Any]:
    return {"scenario": scenario.name, "policy": policy, "session": session, "description": scenario.description,
            "delays_from": scenario.delays_from or scenario.name,
            "primary": {"route": list(PRIMARY), "profile": asdict(scenario.primary),
                        "faults": [asdict(t.rule(design.duration_s)) for t in scenario.primary_trouble]},
            "backup": {"route": [BACKUP[0], scenario.backup_model], "profile": asdict(scenario.backup),
                       "faults": [asdict(t.rule(design.duration_s)) for t in scenario.backup_trouble]},
            "delays_ms": None if delays is None else asdict(delays)}


@dataclass
class _Arm:
    """One scenario under one policy: the whole open-loop schedule, collected in one go."""

    run: Run
    design: ScenarioDesign
    scenario: Scenario
    policy: str
    entry: dict[str, Any]

    def done(self, run: Run) -> bool:
        return (self.scenario.name, self.policy) in _complete_sessions(run, self.design)

    def collect(self) -> str:
        delays = Delays(**self.entry["delays_ms"]) if self.entry["delays_ms"] else None
        failed = openloop.run(_run_arm(self.run, self.design, self.scenario, self.policy, delays,
                                       self.entry["session"]))
        return f"{failed} of {self.design.n} failed"


def _arms(chosen: Sequence[Scenario]) -> list[tuple[Scenario, str]]:
    """Every arm to collect, each history arm before the arms that take their delays from it."""
    order: list[tuple[Scenario, str]] = []
    for scenario in chosen:
        source = scenarios()[scenario.delays_from] if scenario.delays_from else scenario
        for arm in [(source, HISTORY), *((scenario, policy) for policy in scenario.arms)]:
            if arm not in order:
                order.append(arm)
    return order


@dataclass(frozen=True)
class Hedging:
    """The routing scenarios as an experiment (:class:`lab.collect.experiment.Experiment`): every arm of the
    ``chosen`` scenarios (default: all of :func:`scenarios`) that the run does not hold complete, always
    against in-process emulators. An interrupted arm runs again in full, as a new session; a hedged arm is
    planned once the history arm its delays come from is complete (delays are never fitted to the requests
    they are judged on)."""

    kind: ClassVar[str] = "hedging"
    name: ClassVar[str] = EXPERIMENT
    design: ScenarioDesign = ScenarioDesign()
    chosen: tuple[Scenario, ...] = ()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.chosen or scenarios().values()]

    def sessions(self, run: Run, reach: Reach, command: str) -> list[collector.Session]:
        planned, done = [], _complete_sessions(run, self.design) if run.exists else {}
        for scenario, policy in _arms(list(self.chosen or scenarios().values())):
            delays = None
            if policy not in ("primary", "backup", HISTORY) and (scenario.name, policy) not in done:
                source = scenario.delays_from or scenario.name
                if (source, HISTORY) not in done:
                    continue  # planned once its history arm is complete
                delays = primary_delays(load(run, [source], complete=False), source)
            entry = _session_entry(self.design, scenario, policy, uuid.uuid4().hex[:12], delays)
            unit = _Arm(run, self.design, scenario, policy, entry)
            planned.append(collector.Session(self.kind, EXPERIMENT, asdict(self.design), entry, ("scenario", "policy"),
                                             [unit], label=f"{scenario.name}/{policy}", unit_name="arm",
                                             report_units=True))
        return planned

    def spend(self, run: Run, reach: Reach) -> Spend:
        return Spend(len(_arms(list(self.chosen or scenarios().values()))) * self.design.n)

    def finish(self, run: Run) -> None:
        run.compact(OUTCOMES)  # about ten times smaller, so a run can be committed

    @classmethod
    def load(cls, run: Run) -> pd.DataFrame:
        """Every attempt of every outcome of the run's complete arms, as call records."""
        sessions = _complete_sessions(run, ScenarioDesign(**run.manifest["design"]))
        records = [CallRecord.from_dict(a) for _, entry in run.read_lines(OUTCOMES)
                   if sessions.get((entry["scenario"], entry["policy"])) == entry["session"]
                   for a in entry["attempts"]]
        return records_frame(records)

    def command(self, run: Run) -> str:
        return collect_command(run, self.design, self.names)


# -- loading --------------------------------------------------------------------------------------


def _complete_sessions(run: Run, design: ScenarioDesign) -> dict[tuple[str, str], str]:
    """(scenario, policy) -> the session recorded last that holds every request of its arm. Read again
    only when the run's outcomes or manifest changed (a collection asks once per arm)."""
    state = []
    for path in (run.dir / f"{OUTCOMES}.gz", run.dir / OUTCOMES, run.manifest_path):
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            state.append((path.name, stat.st_mtime_ns, stat.st_size))
    return _read_complete_sessions(run, design.n, tuple(state))


@functools.lru_cache(maxsize=8)
def _read_complete_sessions(run: Run, n: int, state: tuple) -> dict[tuple[str, str], str]:
    requests: dict[tuple[str, str, str], set[int]] = {}
    for _, entry in run.read_lines(OUTCOMES):
        requests.setdefault((entry["scenario"], entry["policy"], entry["session"]), set()).add(entry["request"])
    sessions = run.manifest["sessions"] if run.exists else []
    order = {e["session"]: i for i, e in enumerate(sessions)}
    complete = sorted((order.get(s, -1), sc, po, s) for (sc, po, s), got in requests.items() if len(got) == n)
    return {(sc, po): s for _, sc, po, s in complete}


def collect_command(run: Run, design: ScenarioDesign, names: Sequence[str]) -> str:
    words = ["lab", "collect", "hedging", "--run", run.id, "--n", str(design.n), "--rate", f"{design.rate_per_s:g}",
             "--seed", str(design.seed)]
    for name in names:
        words += ["--scenario", name]
    return " ".join(words)


def load(run: Run, names: Sequence[str] | None = None, *, complete: bool = True) -> pd.DataFrame:
    """One row per outcome of every complete arm: ``latency_ms`` from the planned send time
    (the last failure's end when ``ok`` is False), the winner's first token ``ttft_ms`` on the same
    clock (its start offset taken from the attempts' wall-clock start times),
    ``extra_requests``, ``cost_usd`` (cancelled losers estimated, see :mod:`lab.hedge.policies`).

    Raises :class:`~lab.store.MissingRecord` with the collect command when an arm is missing,
    unless ``complete`` is False.
    """
    design = ScenarioDesign(**run.manifest["design"])
    sessions = _complete_sessions(run, design)
    wanted = list(names or sorted({s for s, _ in sessions}))
    rows = []
    for _, entry in run.read_lines(OUTCOMES):
        if sessions.get((entry["scenario"], entry["policy"])) != entry["session"] or entry["scenario"] not in wanted:
            continue
        attempts = [CallRecord.from_dict(a) for a in entry["attempts"]]
        winner = attempts[entry["winner"]] if entry["winner"] is not None else None
        costs = [c for c in entry["attempt_costs"] if c is not None]
        ttft = math.nan
        if winner is not None and winner.ttft_ms is not None:  # on the outcome's clock: after the winner's start
            started_ms = (winner.started_at - attempts[0].started_at).total_seconds() * 1e3
            ttft = entry["lateness_ms"] + started_ms + winner.ttft_ms
        rows.append({
            "scenario": entry["scenario"], "policy": entry["policy"], "request": entry["request"],
            "planned_s": entry["planned_s"], "lateness_ms": entry["lateness_ms"], "latency_ms": entry["latency_ms"],
            "ttft_ms": ttft,
            "ok": entry["ok"], "status": "ok" if entry["ok"] else "error",
            "winner": None if winner is None else (
                "backup" if entry["policy"] == "backup" or entry["winner"] > 0 else "primary"),
            "error_type": attempts[-1].error_type if winner is None else None,
            "extra_requests": len(attempts) - 1, "cost_usd": sum(costs) if costs else math.nan,
            "delay_ms": entry["delay_ms"], "synthetic": any(a.synthetic for a in attempts),
        })
    arms = {name: s.arms for name, s in scenarios().items()}
    lacking = [f"{s}/{p}" for s in wanted for p in arms.get(s, POLICIES) if (s, p) not in sessions]
    if lacking and complete:
        raise MissingRecord(f"run {run.id!r} lacks the arms {', '.join(lacking)}; collect them with: "
                            f"{collect_command(run, design, wanted)}")
    columns = ["scenario", "policy", "request"]
    return pd.DataFrame(rows, columns=None if rows else columns).sort_values(columns, ignore_index=True)


def primary_delays(outcomes: pd.DataFrame, scenario: str) -> Delays:
    """The history arm's p95 latency and p95 TTFT (numpy linear) over its successful requests."""
    arm = outcomes[(outcomes["scenario"] == scenario) & (outcomes["policy"] == HISTORY) & outcomes["ok"]]
    if arm.empty:
        raise MissingRecord(f"scenario {scenario!r} has no successful history request to take a delay from")
    return Delays(float(np.percentile(arm["latency_ms"], 95)), float(np.percentile(arm["ttft_ms"].dropna(), 95)))


def arm(outcomes: pd.DataFrame, scenario: str, policy: str) -> pd.DataFrame:
    """One arm's outcomes in request order, as a call-record-shaped frame for :mod:`lab.analysis.hedging`."""
    picked = outcomes[(outcomes["scenario"] == scenario) & (outcomes["policy"] == policy)]
    return picked.sort_values("request", ignore_index=True)
