"""Experiment 2: n independent reviews of the sample per provider, all three call sites each.

Stored like experiment 1: a run in ``data/runs/<run-id>/`` with one session per
provider and model; sample ``i`` is the i-th review. :func:`load` replays a run
through the assistant itself, so analysis sees exactly what the app saw.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from lab.paths import DATA_DIR, ROOT
from lab.recorder import Recorder, Tagged
from lab.records import records_frame
from lab.review import app, scoring
from lab.store import RUNS_DIR, MissingRecord, Run

EXPERIMENT = "provider_switch_code_review"
SAMPLE = DATA_DIR / "review" / "sample_code.py"


@dataclass(frozen=True)
class Design:
    n: int = 20
    pause_s: float = 0.3
    sample: str = str(SAMPLE.relative_to(ROOT))  # the reviewed file, relative to the repository


@dataclass(frozen=True)
class Session:
    provider: str
    endpoint: str
    model: str


def collect_command(run: Run, design: Design, session: Session) -> str:
    return shlex.join(["lab", "collect", "review", "--run", run.id, "--provider", session.provider,
                       "--model", session.model, "--n", str(design.n)])


IDENTITY = ("provider", "model")  # what makes a second collection a resumption of a session


def _review(run: Run, design: Design, session: Session, sample: int, mode: str) -> app.Review:
    recorder = Recorder(run, mode=mode, collect_hint=collect_command(run, design, session))
    return app.review(ROOT / design.sample, client=Tagged(recorder, sample=sample),
                      provider=session.provider, model=session.model, base_url=session.endpoint)


def collect(run: Run, design: Design, session: Session, *, live: bool = False, progress: bool = True) -> int:
    """Collect the reviews the run lacks for one provider and model; returns how many were made."""
    run.begin_session(EXPERIMENT, asdict(design), asdict(session), IDENTITY)
    made = 0
    for sample in tqdm(range(design.n), desc=f"{session.provider}/{session.model}", unit="review",
                       disable=not progress):
        before = len(run.index)
        _review(run, design, session, sample, "live" if live else "local")
        if len(run.index) > before:
            made += 1
            time.sleep(design.pause_s)
    run.end_session(asdict(session), IDENTITY)
    return made


def load(run_id: str, root: Path | str = RUNS_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay a run: (call records, one row per review with its score and findings scored against the key)."""
    run = Run(run_id, root)
    manifest = run.manifest
    design = Design(**manifest["design"])
    key = scoring.load_key()
    records, reviews = [], []
    for entry in manifest["sessions"]:
        session = Session(entry["provider"], entry["endpoint"], entry["model"])
        for sample in range(design.n):
            try:
                result = _review(run, design, session, sample, "replay")
            except MissingRecord as exc:
                raise MissingRecord(f"review {sample} of {session.provider}/{session.model} is incomplete. "
                                    f"{exc}") from None
            records.extend(result.records)
            findings = result.findings.data.findings if result.findings.data is not None else None
            scored = scoring.score(findings, key) if findings is not None else None
            reviews.append({
                "provider": session.provider, "model": session.model, "sample": sample, "score": result.score,
                "findings_ok": findings is not None,
                "findings_error": result.findings.record.error_type,
                "issues_listed": len(findings) if findings is not None else None,
                "found": scored.found if scored else (), "recall": scored.recall if scored else None,
                "unmatched": scored.unmatched if scored else None,
                "severity_agreement": scored.severity_agreement if scored else None,
                "synthetic": all(r.synthetic for r in result.records),
            })
    return records_frame(records), pd.DataFrame(reviews)


def cost_bound(design: Design, provider: str, model: str) -> float | None:
    """Most the reviews can cost: every call at its max_tokens; None if the price is unknown."""
    from lab import prices

    input_tokens = len((ROOT / design.sample).read_text()) // 3 + 200  # numbered code plus instructions
    per_review = [prices.cost_usd(provider, model, input_tokens, limit)
                  for limit in (app.ASSESSMENT_MAX_TOKENS, app.FEEDBACK_MAX_TOKENS, app.FINDINGS_MAX_TOKENS)]
    return None if None in per_review else sum(per_review) * design.n
