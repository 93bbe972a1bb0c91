"""How punctual and how exact is the lab's open-loop driver, next to AIPerf and GuideLLM? Run by hand
(``python -m benchmarks.openloop [--only lag|accuracy|peers]``); the numbers go in the issue note.

1. ``lag``: the driver's send lag (``send_lag_ms``: actual send at the HTTP transport minus the
   planned send) with Poisson arrivals, ``instant`` and truth profiles: median, p99 and the achieved
   send rate at 10, 50, 200 and 500/s, and steps (100 ... 1000/s) to the highest rate where the p99
   stays under 2 ms. Goal: p99 under 2 ms at 200/s.
2. ``accuracy``: measured minus configured truth (:data:`~benchmarks.common.TRUTH_PROFILE`) at 10,
   50 and 200/s for the lab, AIPerf (``--request-rate``, Poisson) and GuideLLM (``poisson``
   profile) side by side, the same rates and request counts against the same emulator: TTFT and end
   to end from the actual send (what each tool reports) and from the planned send (lateness
   included), with each tool's achieved send rate and send lateness. Goal: the lab at or below
   AIPerf's error, median and p99.
3. ``peers``: the highest rate each sustains against the ``instant`` profile at concurrency 32:
   AIPerf and GuideLLM closed loop (as the issue measured them) and the lab closed loop, then each
   open loop (Poisson, at most 32 in flight) stepped up until it falls behind.

Every call is a streamed OpenAI chat completion (the lab through ``llm.astream``, in an
``llm.session()`` with ``llm.prepare()`` before the schedule), because TTFT needs a stream and the
peers stream too; ``--calls complete`` times non-streamed lab calls instead (lag only). The emulator
runs in its own process; AIPerf and GuideLLM run in their own virtualenvs, offline (see
``tests/fixtures/aiperf/README.md`` and ``tests/fixtures/guidellm/README.md``).

End to end is each tool's own definition, against the matching truth: the lab and GuideLLM time to
the last byte (``planned_end_ms``), AIPerf to the last content chunk (``planned_ttft_ms +
(tokens - 1) * planned_itl_ms``). Send lateness needs each tool's plan: the lab records it;
GuideLLM keeps ``targeted_start`` per request; AIPerf keeps only when its timing loop issued a
credit, so its plan is rebuilt from its own seeded interval generator and its phase start (the
``credit - plan`` column checks the rebuild).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lab import imports as io
from lab import llm
from lab.collect import openloop
from lab.core.records import CallRecord

from benchmarks.common import PROMPT, TRUTH_PROFILE, emulator_process, server_log

MODEL = "gpt-5-mini"
MAX_TOKENS = 50
LAG_GOAL_MS = 2.0
LAG_RATES = (10, 50, 200, 500)
LAG_STEPS = (100, 200, 300, 400, 500, 700, 1000)
ACCURACY_RATES = (10, 50, 200)
PEER_CONCURRENCY = 32
PEER_STEPS = (200, 300, 400, 500, 700, 1000, 1400)
SUSTAINED = 0.95
"""A run keeps up when its achieved send rate is at least this share of its plan's rate."""
TOOLS = ("lab", "aiperf", "guidellm")
AIPERF = Path("/tmp/venv-aiperf/bin")
GUIDELLM = Path("/tmp/venv-guidellm/bin")
TOKENIZER_DIR = Path("/tmp/cl100k-tokenizer")
OFFLINE_ENV = {"TIKTOKEN_CACHE_DIR": "/tmp/tiktoken-cache", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1"}
SEED = 7

AIPERF_PLAN = """
import json, sys
from aiperf.common import random_generator as rng
seed, rate, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
rng.init(seed)
draw = rng.derive("timing.request.poisson_interval")  # aiperf/timing/intervals.py, PoissonIntervalGenerator
print(json.dumps([draw.expovariate(rate) for _ in range(n)]))
"""
"""AIPerf's planned gaps: its Poisson generator, seeded as ``--random-seed`` seeds it."""


@dataclass
class Run:
    """One tool's run: per request, planned and actual send (seconds, a common origin per run;
    planned NaN where the tool keeps no plan), TTFT and end to end (ms from the actual send), and
    success. ``end_truth`` names what its end to end runs to: ``last_byte`` or ``last_content``."""

    tool: str
    asked_per_s: float | None
    planned_s: np.ndarray
    actual_s: np.ndarray
    ttft_ms: np.ndarray
    end_ms: np.ndarray
    ok: np.ndarray
    end_truth: str = "last_byte"
    credit_lag_ms: np.ndarray | None = None  # AIPerf: credit issued minus the rebuilt plan
    done_s: float | None = None  # the last response's end, for closed-loop throughput

    @property
    def lag_ms(self) -> np.ndarray:
        return (self.actual_s - self.planned_s) * 1e3

    @property
    def planned_rate(self) -> float:
        return _rate(self.planned_s)

    @property
    def achieved_rate(self) -> float:
        return _rate(self.actual_s)

    def keeps_up(self) -> bool:
        return self.achieved_rate >= SUSTAINED * self.planned_rate and self.ok.mean() >= 0.99


def _rate(times_s: np.ndarray) -> float:
    times = times_s[np.isfinite(times_s)]
    span = times.max() - times.min() if times.size > 1 else 0.0
    return (times.size - 1) / span if span > 0 else math.nan


def _pct(values: Iterable[float], q: float) -> float:
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
    a = a[np.isfinite(a)]
    return float(np.percentile(a, q)) if a.size else math.nan


def requests_at(rate: float, max_requests: int, max_seconds: float) -> int:
    """2,000 requests, or what ``max_seconds`` holds at a low rate, whichever is fewer."""
    return max(20, min(max_requests, math.ceil(rate * max_seconds)))


# -- the lab ---------------------------------------------------------------------------------


async def _lab_call(url: str, calls: str) -> CallRecord:
    if calls == "complete":
        return (await llm.acomplete(PROMPT, max_tokens=MAX_TOKENS, provider="openai", model=MODEL,
                                    base_url=url)).record
    chunks = llm.astream(PROMPT, max_tokens=MAX_TOKENS, provider="openai", model=MODEL, base_url=url)
    async for _ in chunks:
        pass
    record = chunks.record
    assert record is not None
    return record


def lab_open_loop(url: str, rate: float, n: int, *, calls: str = "stream", max_concurrency: int | None = None,
                  seed: int = SEED) -> Run:
    """``n`` Poisson sends at ``rate`` through :func:`lab.collect.openloop.drive`, one session, client prepared."""
    offsets = openloop.schedule(rate, n=n, arrival="poisson", seed=seed)

    async def main() -> list[CallRecord]:
        async with llm.session():
            await llm.prepare(provider="openai", model=MODEL, base_url=url)
            return await openloop.drive(offsets, lambda i: _lab_call(url, calls), max_concurrency=max_concurrency,
                                        early_s=openloop.EARLY_S)

    records = openloop.run(main())
    lag_s = np.array([np.nan if r.send_lag_ms is None else r.send_lag_ms for r in records]) / 1e3
    return _lab_run(records, rate, offsets, offsets + lag_s)


def lab_closed_loop(url: str, concurrency: int, n: int) -> Run:
    """``concurrency`` workers, each sending its next request when its reply ends."""

    async def main() -> list[CallRecord]:
        records: list[CallRecord] = []

        async def worker(count: int) -> None:
            for _ in range(count):
                records.append(await _lab_call(url, "stream"))

        async with llm.session():
            await llm.prepare(provider="openai", model=MODEL, base_url=url)
            await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        return records

    records = openloop.run(main())
    starts = np.array([r.started_at.timestamp() for r in records])
    run = _lab_run(records, None, np.full(len(records), np.nan), starts)
    run.done_s = float(np.nanmax(starts + run.end_ms / 1e3))
    return run


def _lab_run(records: list[CallRecord], rate: float | None, planned_s: np.ndarray, actual_s: np.ndarray) -> Run:
    value = lambda v: np.nan if v is None else v  # noqa: E731
    return Run("lab", rate, planned_s, actual_s, np.array([value(r.ttft_ms) for r in records], float),
               np.array([value(r.latency_ms) for r in records], float), np.array([r.ok for r in records]))


# -- AIPerf and GuideLLM -----------------------------------------------------------------------


def _run_tool(command: list[str], log: Path) -> bool:
    """Run a peer tool offline; its output goes to ``log``. False (with one line said) if it failed."""
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE_ENV},
                              check=False)
    if done.returncode != 0:
        print(f"  {Path(command[0]).name} exited with {done.returncode}; its output is in {log}")
    return done.returncode == 0


def aiperf_run(base_url: str, out: Path, n: int, *, rate: float | None = None,
               concurrency: int | None = None) -> Run | None:
    """AIPerf 0.13 with ``--request-rate`` (Poisson) and/or ``--concurrency``; its records via ``lab.imports``."""
    folder = out / f"aiperf-{'r' + format(rate, 'g') if rate else ''}{'c' + str(concurrency) if concurrency else ''}"
    command = [str(AIPERF / "aiperf"), "profile", "--model", MODEL, "--url", base_url, "--endpoint-type", "chat",
               "--streaming", "--tokenizer", "cl100k_base", "--request-count", str(n), "--random-seed", str(SEED),
               "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", str(MAX_TOKENS),
               "--output-artifact-dir", str(folder), "--ui-type", "none"]
    if rate is not None:
        command += ["--request-rate", format(rate, "g"), "--arrival-pattern", "poisson"]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    if not _run_tool(command, out / f"{folder.name}.log"):
        return None
    frame = io.read(folder / "profile_export.jsonl", format="aiperf")
    frame = frame[frame["window"] == "profiling"]
    meta = {}
    with (folder / "profile_export.jsonl").open() as lines:
        for line in lines:
            m = json.loads(line)["metadata"]
            meta[m["x_request_id"]] = (m.get("credit_issued_ns"), m.get("request_start_ns"), m.get("request_end_ns"))
    credit, start, end = (np.array([meta[i][k] or np.nan for i in frame["request_id"]], float) / 1e9
                          for k in range(3))
    planned = np.full(len(frame), np.nan)
    if rate is not None:
        summary = json.loads((folder / "profile_export_aiperf.json").read_text())
        phase_start = dt.datetime.fromisoformat(summary["start_time"]).timestamp()
        gaps = json.loads(subprocess.run([str(AIPERF / "python"), "-c", AIPERF_PLAN, str(SEED), format(rate, "g"),
                                          str(len(frame))], capture_output=True, text=True, check=True).stdout)
        plan = phase_start + np.cumsum(gaps)
        planned[np.argsort(np.argsort(credit))] = plan  # the k-th credit issued is the k-th planned send
    run = Run("aiperf", rate, planned, start, frame["ttft_ms"].to_numpy(float), frame["latency_ms"].to_numpy(float),
              (frame["status"] == "ok").to_numpy(), end_truth="last_content",
              credit_lag_ms=(credit - planned) * 1e3, done_s=float(np.nanmax(end)))
    return run


def guidellm_run(base_url: str, out: Path, n: int, *, rate: float | None = None,
                 concurrency: int | None = None) -> Run | None:
    """GuideLLM 0.8.1 with its ``poisson`` profile (``max_concurrency`` when given) or ``concurrent``."""
    name = f"guidellm-{'r' + format(rate, 'g') if rate else ''}{'c' + str(concurrency) if concurrency else ''}"
    if rate is not None:
        profile = f"kind=poisson,rate={rate:g}" + (f",max_concurrency={concurrency}" if concurrency else "")
    else:
        profile = f"kind=concurrent,streams={concurrency}"
    path = out / name / "benchmarks.json"
    command = [str(GUIDELLM / "guidellm"), "run", "--backend", f"kind=openai_http,target={base_url},model={MODEL}",
               "--profile", profile, "--constraint", f"kind=max_requests,count={n}",
               "--data", f"kind=synthetic_text,prompt_tokens=16,output_tokens={MAX_TOKENS}",
               "--tokenizer", f"kind=huggingface_auto,model={TOKENIZER_DIR}", "--output", f"kind=json,path={path}",
               "--seed", f"kind=static,value={SEED}", "--disable-console-interactive"]
    if not _run_tool(command, out / f"{name}.log"):
        return None
    frame = io.read(path, format="guidellm")
    timings = {}
    for benchmark in json.loads(path.read_text())["benchmarks"]:
        for requests in (benchmark.get("requests") or {}).values():
            for request in requests or ():
                t = (request.get("info") or {}).get("timings") or {}
                timings[request.get("response_id")] = (t.get("targeted_start"), t.get("request_start"),
                                                       t.get("request_end"))
    planned, start, end = (np.array([(timings.get(i) or (None,) * 3)[k] or np.nan for i in frame["request_id"]], float)
                           for k in range(3))
    if rate is None:
        planned[:] = np.nan  # a closed loop has no plan, only a queue
    run = Run("guidellm", rate, planned, start, frame["ttft_ms"].to_numpy(float),
              frame["latency_ms"].to_numpy(float), (frame["status"] == "ok").to_numpy(),
              done_s=float(np.nanmax(end)))
    off_clock = run.planned_s < 1e9  # not epoch seconds
    if off_clock.any():
        # GuideLLM 0.8.1: AsyncPoissonStrategy.init_processes_start wakes the workers (the base class sets
        # their start event) before it sets the shared schedule offset to the start time, so requests
        # scheduled in between are timed from the offset's initial -1.0 s: long past, they go out at once.
        print(f"  GuideLLM at {rate:g}/s: {off_clock.sum()} of {off_clock.size} planned sends are not on its clock "
              "(targeted_start near 0 s, sent at once); they are left out of its lateness")
        run.planned_s[off_clock] = np.nan
    return run


def tool_run(tool: str, base_url: str, out: Path, n: int, *, rate: float | None = None,
             concurrency: int | None = None) -> Run | None:
    """One run of ``tool``: open loop at ``rate`` (at most ``concurrency`` in flight), or closed loop with
    ``concurrency`` workers when no rate is given."""
    if tool == "lab":
        if rate is None:
            return lab_closed_loop(f"{base_url}/v1", concurrency or 1, n)
        return lab_open_loop(f"{base_url}/v1", rate, n, max_concurrency=concurrency)
    runner = aiperf_run if tool == "aiperf" else guidellm_run
    return runner(base_url, out, n, rate=rate, concurrency=concurrency)


def peers_ready(tools: Iterable[str]) -> list[str]:
    """The tools that can run here; one line for each that cannot, saying how to set it up."""
    ready = []
    for tool in tools:
        if tool == "aiperf" and not (AIPERF / "aiperf").exists():
            print(f"  AIPerf skipped: no {AIPERF / 'aiperf'} (set it up as tests/fixtures/aiperf/README.md says)")
        elif tool == "guidellm" and not ((GUIDELLM / "guidellm").exists()
                                         and (TOKENIZER_DIR / "tokenizer.json").exists()):
            print(f"  GuideLLM skipped: no {GUIDELLM / 'guidellm'} or {TOKENIZER_DIR} "
                  "(set them up as tests/fixtures/guidellm/README.md says)")
        elif tool != "lab" and not Path(OFFLINE_ENV["TIKTOKEN_CACHE_DIR"]).is_dir():
            print(f"  {tool} skipped: no tokenizer cache in {OFFLINE_ENV['TIKTOKEN_CACHE_DIR']} "
                  "(see tests/fixtures/README.md)")
        else:
            ready.append(tool)
    return ready


# -- truth and tables --------------------------------------------------------------------------


def truth(log: list[dict]) -> dict[str, float]:
    """The configured truth of a fixed profile, from the emulator's log (one value for every request)."""
    served = [e for e in log if e["outcome"] == "ok" and e["planned_ttft_ms"] is not None]
    values = {(e["planned_ttft_ms"], e["planned_end_ms"], e["planned_itl_ms"], e["output_tokens"]) for e in served}
    if len(values) != 1:
        raise SystemExit(f"the emulator's log holds {len(values)} different plans; the accuracy part needs one "
                         f"fixed profile ({TRUTH_PROFILE})")
    ttft, end, itl, tokens = values.pop()
    return {"ttft": ttft, "last_byte": end, "last_content": ttft + (tokens - 1) * itl}


def _show(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (nothing ran)")
        return
    text = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-")
    print("\n".join("  " + line for line in text.splitlines()))


def send_row(run: Run, **first: object) -> dict:
    lag = run.lag_ms
    row = {**first, "tool": run.tool, "n": run.ok.size, "ok": int(run.ok.sum()),
           "asked/s": run.asked_per_s, "planned/s": run.planned_rate, "achieved/s": run.achieved_rate,
           "late p50 ms": _pct(lag, 50), "late p99 ms": _pct(lag, 99), "late max ms": _pct(lag, 100)}
    if run.credit_lag_ms is not None and run.asked_per_s is not None:
        row["credit-plan p50 ms"] = _pct(run.credit_lag_ms, 50)
    return row


def error_row(run: Run, known: dict[str, float], server_ms: list[float], **first: object) -> dict:
    ok, lag = run.ok, run.lag_ms
    ttft = run.ttft_ms[ok] - known["ttft"]
    end = run.end_ms[ok] - known[run.end_truth]
    return {**first, "tool": run.tool, "ok": int(ok.sum()),
            "TTFT p50": _pct(ttft, 50), "TTFT p99": _pct(ttft, 99),
            "E2E p50": _pct(end, 50), "E2E p99": _pct(end, 99),
            "TTFT plan p50": _pct(lag[ok] + ttft, 50), "TTFT plan p99": _pct(lag[ok] + ttft, 99),
            "E2E plan p50": _pct(lag[ok] + end, 50), "E2E plan p99": _pct(lag[ok] + end, 99),
            "E2E to": run.end_truth.replace("_", " "), "server p99": _pct(server_ms, 99)}


# -- the parts ---------------------------------------------------------------------------------


def lag(max_requests: int, max_seconds: float, calls: str) -> None:
    print(f"\n1. Send lag of lab.collect.openloop.drive (actual send at the HTTP transport minus planned), Poisson arrivals, "
          f"{'streamed' if calls == 'stream' else 'non-streamed'} OpenAI calls, up to {max_requests} requests or "
          f"{max_seconds:g} s per rate")
    for profile in ("instant", TRUTH_PROFILE):
        rows, failed_at = [], None
        with emulator_process(profile) as base_url:
            for rate in sorted(set(LAG_RATES) | set(LAG_STEPS)):
                if failed_at is not None and rate not in LAG_RATES:
                    continue  # past the first failing rate, only the required ones
                run = lab_open_loop(f"{base_url}/v1", rate, requests_at(rate, max_requests, max_seconds), calls=calls)
                met = _pct(run.lag_ms, 99) < LAG_GOAL_MS
                if not met and failed_at is None:
                    failed_at = rate
                row = send_row(run, rate=rate)
                del row["tool"]
                rows.append({**row, f"p99<{LAG_GOAL_MS:g}": "yes" if met else "no"})
                server_log(base_url, clear=True)
        _show(f"profile {profile}", rows)
        passed = [r["rate"] for r in rows if failed_at is None or r["rate"] < failed_at]
        at_200 = next((r for r in rows if r["rate"] == 200), None)
        if at_200 is not None:
            print(f"  goal, p99 under {LAG_GOAL_MS:g} ms at 200/s: {at_200['late p99 ms']:.2f} ms, "
                  f"{'met' if at_200['late p99 ms'] < LAG_GOAL_MS else 'NOT met'}")
        print(f"  highest rate with p99 under {LAG_GOAL_MS:g} ms (and at every lower rate): "
              f"{f'{max(passed)}/s' if passed else 'none'}")


def accuracy(max_requests: int, max_seconds: float, tools: list[str], out: Path) -> None:
    print(f"\n2. Measured minus configured truth ({TRUTH_PROFILE}), Poisson arrivals, streamed, up to "
          f"{max_requests} requests or {max_seconds:g} s per rate; ms")
    sends, errors = [], []
    with emulator_process(TRUTH_PROFILE) as base_url:
        for rate in ACCURACY_RATES:
            n = requests_at(rate, max_requests, max_seconds)
            for tool in tools:
                server_log(base_url, clear=True)
                run = tool_run(tool, base_url, out, n, rate=rate)
                if run is None:
                    continue
                log = server_log(base_url, clear=True)
                sends.append(send_row(run, rate=rate))
                errors.append(error_row(run, truth(log), [e["overhead_ms"] for e in log], rate=rate))
    _show("sending: asked, planned (the sample's own rate) and achieved send rate; lateness = actual minus planned "
          "send", sends)
    _show("error: TTFT and E2E from the actual send (what each tool reports), then from the planned send "
          "(lateness included); 'server p99' = the emulator's own lateness", errors)
    goals(errors)


def goals(errors: list[dict]) -> None:
    """The issue's accuracy goal: the lab at or below AIPerf's error at every rate, median and p99."""
    by = {(r["rate"], r["tool"]): r for r in errors}
    lines = []
    for rate in ACCURACY_RATES:
        lab, ref = by.get((rate, "lab")), by.get((rate, "aiperf"))
        if lab is None or ref is None:
            continue
        for column in ("TTFT p50", "TTFT p99", "E2E p50", "E2E p99"):
            diff = abs(lab[column]) - abs(ref[column])
            lines.append(f"  {rate:>4}/s {column:8s} lab {lab[column]:+8.2f}  AIPerf {ref[column]:+8.2f}  "
                         f"{'met' if diff <= 0 else 'NOT met'} ({diff:+.2f} ms in absolute error)")
    if lines:
        print("\n  goal: the lab's error at or below AIPerf's (from the actual send, as AIPerf measures)")
        print("\n".join(lines))


def peers(max_requests: int, tools: list[str], out: Path) -> None:
    n = max(max_requests * 2, 200)
    print(f"\n3. Highest rate sustained against the instant profile at concurrency {PEER_CONCURRENCY} "
          f"({n} streamed requests per run)")
    closed, stepped = [], []
    with emulator_process("instant") as base_url:
        for tool in tools:
            server_log(base_url, clear=True)
            run = tool_run(tool, base_url, out, n, concurrency=PEER_CONCURRENCY)
            if run is not None:
                span = run.done_s - np.nanmin(run.actual_s) if run.done_s is not None else math.nan
                closed.append({"tool": tool, "n": run.ok.size, "ok": int(run.ok.sum()),
                               "completed/s": run.ok.sum() / span, "sent/s": run.achieved_rate})
        for tool in tools:
            for rate in PEER_STEPS:
                server_log(base_url, clear=True)
                m = requests_at(rate, n, 10)
                run = tool_run(tool, base_url, out, m, rate=rate, concurrency=PEER_CONCURRENCY)
                if run is None:
                    break
                row = send_row(run, rate=rate)
                row["keeps up"] = "yes" if run.keeps_up() else "no"
                row[f"p99<{LAG_GOAL_MS:g}"] = "yes" if _pct(run.lag_ms, 99) < LAG_GOAL_MS else "no"
                stepped.append(row)
                if not run.keeps_up():
                    break
    _show("closed loop: completed responses per second (what the issue measured for AIPerf and GuideLLM)", closed)
    _show(f"open loop, Poisson, at most {PEER_CONCURRENCY} in flight: 'keeps up' = achieved at least "
          f"{SUSTAINED:.0%} of the planned rate and 99% ok", stepped)
    for tool in tools:
        mine = [r for r in stepped if r["tool"] == tool]
        kept = [r["rate"] for r in mine if r["keeps up"] == "yes"]
        on_time = [r["rate"] for r in mine if r["keeps up"] == "yes" and r[f"p99<{LAG_GOAL_MS:g}"] == "yes"]
        print(f"  {tool:8s} highest rate kept up: {f'{max(kept)}/s' if kept else 'none'}; "
              f"kept up with p99 lateness under {LAG_GOAL_MS:g} ms: {f'{max(on_time)}/s' if on_time else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("lag", "accuracy", "peers"), help="run one part only")
    parser.add_argument("--max-requests", type=int, default=2000, help="requests per rate at most")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="seconds of sending per rate at most")
    parser.add_argument("--tools", default=",".join(TOOLS), help="tools to compare (parts 2 and 3), comma-separated")
    parser.add_argument("--calls", choices=("stream", "complete"), default="stream", help="lab calls for part 1")
    parser.add_argument("--out", type=Path, help="keep the peers' exports and logs here (default: a temporary folder)")
    args = parser.parse_args()
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tool {', '.join(unknown)}: choose from {', '.join(TOOLS)}")
    with tempfile.TemporaryDirectory(prefix="openloop-bench-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        tools = peers_ready(wanted) if args.only != "lag" else []
        parts = {"lag": lambda: lag(args.max_requests, args.max_seconds, args.calls),
                 "accuracy": lambda: accuracy(args.max_requests, args.max_seconds, tools, out),
                 "peers": lambda: peers(args.max_requests, tools, out)}
        for name, part in parts.items():
            if args.only in (None, name):
                before = os.getloadavg()[0]
                part()
                print(f"\n  machine load (1-minute average) before and after this part: {before:.2f}, "
                      f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
