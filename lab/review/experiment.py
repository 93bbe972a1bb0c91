"""Experiment 2: n independent reviews of the sample per provider, all three call sites each.

Stored like experiment 1: a run in ``data/runs/<run-id>/`` with one session per
provider and model; sample ``i`` is the i-th review. :func:`load` replays a run
through the assistant itself, so analysis sees exactly what the app saw.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from lab import collector
from lab.paths import PACKAGE_DIR, REVIEW_DIR
from lab.recorder import Recorder, Tagged
from lab.records import records_frame
from lab.review import app, scoring
from lab.store import MissingRecord, Run

EXPERIMENT = "provider_switch_code_review"
SAMPLE = REVIEW_DIR / "sample_code.py"


@dataclass(frozen=True)
class Design:
    n: int = 20
    pause_s: float = 0.3
    sample: str = SAMPLE.relative_to(PACKAGE_DIR).as_posix()  # the reviewed file, relative to the package


@dataclass(frozen=True)
class Session:
    """Who reviews: a provider and model at an endpoint (as the store keys it: ``"emulator"`` or a URL)."""

    provider: str
    endpoint: str
    model: str


def collect_command(run: Run, design: Design, session: Session) -> str:
    return shlex.join(["lab", "collect", "review", "--run", run.id, "--provider", session.provider,
                       "--model", session.model, "--n", str(design.n)])


IDENTITY = ("provider", "model")  # what makes a second collection a resumption of a session


def _review(run: Run, design: Design, session: Session, sample: int, mode: str, endpoint: str | None = None
            ) -> app.Review:
    recorder = Recorder(run, mode=mode, collect_hint=collect_command(run, design, session))
    return app.review(PACKAGE_DIR / design.sample, client=Tagged(recorder, sample=sample),
                      provider=session.provider, model=session.model, base_url=endpoint or session.endpoint)


@dataclass
class _Review:
    """One review (three calls through the assistant itself): done when the run replays it."""

    run: Run
    design: Design
    session: Session
    sample: int
    live: bool
    called: dict[str, str]  # the endpoint to call, while the session is collected

    def done(self, run: Run) -> bool:
        try:
            _review(run, self.design, self.session, self.sample, "replay")
        except MissingRecord:
            return False
        return True

    def collect(self) -> str:
        result = _review(self.run, self.design, self.session, self.sample, "live" if self.live else "local",
                         self.called["endpoint"])
        return f"review {self.sample}: score {result.score}"


def session(run: Run, design: Design, who: Session, *, live: bool = False) -> collector.Session:
    """The collector's session for one provider and model; set ``extra["called"]["endpoint"]`` to the URL
    to call while it is collected (it defaults to ``who.endpoint``)."""
    called = {"endpoint": who.endpoint}
    units = [_Review(run, design, who, sample, live, called) for sample in range(design.n)]
    return collector.Session(EXPERIMENT, asdict(design), asdict(who), IDENTITY, units, pause_s=design.pause_s,
                             label=f"{who.provider}/{who.model}", unit_name="review", extra={"called": called})


def load(run_id: str, root: Path | str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
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

    input_tokens = len((PACKAGE_DIR / design.sample).read_text()) // 3 + 200  # numbered code plus instructions
    per_review = [prices.cost_usd(provider, model, input_tokens, limit)
                  for limit in (app.ASSESSMENT_MAX_TOKENS, app.FEEDBACK_MAX_TOKENS, app.FINDINGS_MAX_TOKENS)]
    return None if None in per_review else sum(per_review) * design.n
