"""Experiment 1: identical requests, serial with a pause, per time window and model.

The field report's design: one user message, ``max_tokens=256``, 50 calls per
window and model, 0.3 s between calls, latency of the complete (non-streamed)
response. :func:`collect` runs it through a :class:`~lab.recorder.Recorder`
(so a killed collection resumes), :func:`load` replays a run for analysis.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from lab import prices
from lab.recorder import Recorder
from lab.records import records_frame
from lab.store import RUNS_DIR, CallKey, MissingRecord, Run

PROMPT = "Explain in 2-3 sentences why infrastructure reliability matters for software companies."
REPORT_MODELS = {"Haiku": "claude-haiku-4-5", "Sonnet": "claude-sonnet-4-6"}
REPORT_WINDOWS = (
    "Thursday off-peak 10pm",
    "Friday peak morning 9:30am",
    "Friday peak afternoon 1pm",
    "Saturday off-peak morning 9:30am",
    "Saturday off-peak evening 6pm",
)
EXPERIMENT = "time_window_variance"


@dataclass(frozen=True)
class Design:
    """The parameters every window of a run shares."""

    n: int = 50
    pause_s: float = 0.3
    max_tokens: int = 256
    prompt: str = PROMPT
    stream: bool = False  # also make a streamed call per sample, for time to first token

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("complete", "stream") if self.stream else ("complete",)


@dataclass(frozen=True)
class Session:
    """One window of a run: which provider, endpoint and models were asked."""

    window: str
    provider: str
    endpoint: str
    models: tuple[str, ...]

    def keys(self, design: Design, recorder: Recorder) -> Iterator[CallKey]:
        """The planned calls, in collection order: per model, per sample, per kind."""
        for model in self.models:
            options = {"provider": self.provider, "model": model, "base_url": self.endpoint}
            for sample in range(design.n):
                for kind in design.kinds:
                    yield recorder.key(kind, design.prompt, design.max_tokens, options,
                                       window=self.window, sample=sample)


def window_label(moment: datetime | None = None) -> str:
    """A window name from the local clock, e.g. ``2026-11-27 Friday peak 09:30``.

    Peak is 9:00 to 18:00 on a weekday; times are rounded down to the half hour.
    """
    moment = (moment or datetime.now().astimezone()).replace(second=0, microsecond=0)
    moment = moment.replace(minute=moment.minute - moment.minute % 30)
    peak = moment.weekday() < 5 and 9 <= moment.hour < 18
    return f"{moment:%Y-%m-%d %A} {'peak' if peak else 'off-peak'} {moment:%H:%M}"


def cost_bound(design: Design, provider: str, models: Sequence[str]) -> float | None:
    """Most a window can cost: every call at ``max_tokens`` output; None if a price is unknown."""
    input_tokens = math.ceil(len(design.prompt) / 4) + 10
    total = 0.0
    for model in models:
        per_call = prices.cost_usd(provider, model, input_tokens, design.max_tokens)
        if per_call is None:
            return None
        total += per_call * design.n * len(design.kinds)
    return total


def collect_command(run: Run, design: Design, session: Session) -> str:
    """The ``lab collect variance`` command that collects (or resumes) one session."""
    words = ["lab", "collect", "variance", "--run", run.id, "--provider", session.provider]
    for model in session.models:
        words += ["--model", model]
    words += ["--window", session.window, "--n", str(design.n), "--pause", str(design.pause_s),
              "--max-tokens", str(design.max_tokens)]
    if design.stream:
        words.append("--stream")
    return shlex.join(words)


IDENTITY = ("window", "provider", "models")  # what makes a second collection a resumption of a session


def _entry(session: Session) -> dict:
    return {**asdict(session), "models": list(session.models)}


def collect(run: Run, design: Design, session: Session, *, live: bool = False, progress: bool = True) -> int:
    """Collect what the run lacks of one session, serially with the design's pause.

    Returns the number of calls made. Provider failures are recorded, never raised.
    """
    run.begin_session(EXPERIMENT, asdict(design), _entry(session), IDENTITY)
    recorder = Recorder(run, mode="live" if live else "local", collect_hint=collect_command(run, design, session))
    keys = list(session.keys(design, recorder))
    made = 0
    with tqdm(total=len(keys), desc=session.window, unit="call", disable=not progress) as bar:
        bar.update(sum(run.get(key) is not None for key in keys))
        for key in keys:
            if run.get(key) is not None:
                continue
            options = {"provider": key.provider, "model": key.model, "base_url": key.endpoint}
            if key.kind == "stream":
                chunks = recorder.stream(design.prompt, max_tokens=design.max_tokens, window=key.window,
                                         sample=key.sample, **options)
                for _ in chunks:
                    pass
                record = chunks.record
            else:
                record = recorder.complete(design.prompt, max_tokens=design.max_tokens, window=key.window,
                                           sample=key.sample, **options).record
            made += 1
            bar.update(1)
            bar.set_postfix_str(f"{key.model} {record.latency_ms:,.0f} ms {record.status}")
            time.sleep(design.pause_s)
    run.end_session(_entry(session), IDENTITY)
    return made


def load(run_id: str, root: Path | str = RUNS_DIR) -> pd.DataFrame:
    """Every planned call of a run as a frame, or :class:`MissingRecord` naming what is missing."""
    run = Run(run_id, root)
    manifest = run.manifest
    design = Design(**manifest["design"])
    recorder = Recorder(run, mode="replay")
    records = []
    for entry in manifest["sessions"]:
        session = Session(entry["window"], entry["provider"], entry["endpoint"], tuple(entry["models"]))
        keys = list(session.keys(design, recorder))
        found = [run.get(key) for key in keys]
        absent = [key for key, record in zip(keys, found) if record is None]
        if absent:
            raise MissingRecord(
                f"run {run.id!r} lacks {len(absent)} of {len(keys)} calls of window {session.window!r} "
                f"(first: {absent[0].describe()}). Collect them (it resumes) with:\n"
                f"  {collect_command(run, design, session)}"
            )
        records.extend(found)
    return records_frame(records)
