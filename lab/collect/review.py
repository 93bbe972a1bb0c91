"""Experiment 2: n independent reviews of the sample per provider, all three call sites each.

Stored like experiment 1: a run in ``data/runs/<run-id>/`` with one session per provider and model;
sample ``i`` is the i-th review. :meth:`CodeReview.load` replays a run's calls, :func:`reviews` replays it
through the assistant itself, so analysis sees exactly what the app saw.
"""

from __future__ import annotations

import contextlib
import shlex
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import ClassVar

import pandas as pd
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

from lab.collect import collector
from lab.collect.experiment import Reach, Spend
from lab.collect.recorder import Recorder, Tagged
from lab.core import config, endpoints
from lab.core.paths import PACKAGE_DIR, REVIEW_DIR
from lab.core.records import records_frame
from lab.review import app, scoring
from lab.store import MissingRecord, Run

EXPERIMENT = "provider_switch_code_review"
SAMPLE = REVIEW_DIR / "sample_code.py"
IDENTITY = ("provider", "model")  # what makes a second collection a resumption of a session


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ReviewDesign:
    n: int = 20
    pause_s: float = 0.3
    sample: str = SAMPLE.relative_to(PACKAGE_DIR).as_posix()  # the reviewed file, relative to the package


@dataclass(frozen=True)
class Reviewer:
    """Who reviews: a provider and model at an endpoint (as the store keys it: ``"emulator"`` or a URL)."""

    provider: str
    endpoint: str
    model: str


def _review(run: Run, design: ReviewDesign, who: Reviewer, sample: int, mode: str, command: str,
            endpoint: str | None = None) -> app.Review:
    recorder = Recorder(run, mode=mode, collect_hint=command)
    return app.review(PACKAGE_DIR / design.sample, client=Tagged(recorder, sample=sample),
                      provider=who.provider, model=who.model, base_url=endpoint or who.endpoint)


@dataclass
class _Review:
    """One review (three calls through the assistant itself): done when the run replays it."""

    run: Run
    design: ReviewDesign
    who: Reviewer
    sample: int
    mode: str
    command: str
    called: dict[str, str]  # the endpoint to call, while the session is collected

    def done(self, run: Run) -> bool:
        try:
            _review(run, self.design, self.who, self.sample, "replay", self.command)
        except MissingRecord:
            return False
        return True

    def collect(self) -> str:
        result = _review(self.run, self.design, self.who, self.sample, self.mode, self.command,
                         self.called["endpoint"])
        return f"review {self.sample}: score {result.score}"


@dataclass(frozen=True)
class CodeReview:
    """The review experiment (:class:`lab.collect.experiment.Experiment`) for one provider and model."""

    kind: ClassVar[str] = "review"
    name: ClassVar[str] = EXPERIMENT
    provider: str
    model: str
    design: ReviewDesign = ReviewDesign()
    base_url: str | None = None

    def reviewer(self, reach: Reach) -> Reviewer:
        settings = config.resolve(self.provider, self.model, self.base_url, require_key=False)
        keyed = endpoints.EMULATOR if reach.emulated else endpoints.identity(settings.endpoint)
        return Reviewer(settings.provider, keyed, settings.model)

    def sessions(self, run: Run, reach: Reach, command: str) -> list[collector.Session]:
        who = self.reviewer(reach)
        called = {"endpoint": config.resolve(self.provider, self.model, self.base_url, require_key=False).endpoint}
        units = [_Review(run, self.design, who, sample, reach.mode, command, called) for sample in range(self.design.n)]

        @contextlib.contextmanager
        def reached() -> Iterator[None]:
            if not reach.emulated:
                yield
                return
            from lab.emulator import Emulator
            from lab.review import emulated

            seed = reach.seed ^ zlib.crc32(f"review {who.provider} {who.model}".encode())
            with Emulator(reach.profile, seed=seed, responder=emulated.reviewer()) as emu:
                called["endpoint"] = emu.url_for(who.provider)
                yield

        return [collector.Session(self.kind, EXPERIMENT, asdict(self.design), asdict(who), IDENTITY, units,
                                  pause_s=self.design.pause_s, label=f"{who.provider}/{who.model}",
                                  unit_name="review", setup=reached)]

    def spend(self, run: Run, reach: Reach) -> Spend:
        who, calls = self.reviewer(reach), 3 * self.design.n
        if endpoints.is_local(who.endpoint):
            return Spend(calls)
        return Spend(calls, {f"{who.provider}/{who.model}": (who.provider, who.model, who.endpoint)},
                     cost_bound(self.design, who.provider, who.model))

    def finish(self, run: Run) -> None:
        """Nothing to do when a collection ends: every call was appended as it completed."""

    @classmethod
    def load(cls, run: Run) -> pd.DataFrame:
        return reviews(run)[0]


def command(run: Run, provider: str, model: str, n: int) -> str:
    return shlex.join(["lab", "collect", "review", "--run", run.id, "--provider", provider, "--model", model,
                       "--n", str(n)])


def reviews(run: Run | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay a run: (call records, one row per review with its score and findings scored against the key)."""
    run = run if isinstance(run, Run) else Run(run)
    manifest = run.manifest
    design = ReviewDesign(**manifest["design"])
    key = scoring.load_key()
    records, found_reviews = [], []
    for entry in manifest["sessions"]:
        who = Reviewer(entry["provider"], entry["endpoint"], entry["model"])
        for sample in range(design.n):
            try:
                result = _review(run, design, who, sample, "replay", command(run, who.provider, who.model, design.n))
            except MissingRecord as exc:
                raise MissingRecord(f"review {sample} of {who.provider}/{who.model} is incomplete. {exc}") from None
            records.extend(result.records)
            findings = result.findings.data.findings if result.findings.data is not None else None
            scored = scoring.score(findings, key) if findings is not None else None
            found_reviews.append({
                "provider": who.provider, "model": who.model, "sample": sample, "score": result.score,
                "findings_ok": findings is not None,
                "findings_error": result.findings.record.error_type,
                "issues_listed": len(findings) if findings is not None else None,
                "found": scored.found if scored else (), "recall": scored.recall if scored else None,
                "unmatched": scored.unmatched if scored else None,
                "severity_agreement": scored.severity_agreement if scored else None,
                "synthetic": all(r.synthetic for r in result.records),
            })
    return records_frame(records), pd.DataFrame(found_reviews)


def cost_bound(design: ReviewDesign, provider: str, model: str) -> float | None:
    """Most the reviews can cost: every call at its max_tokens; None if the price is unknown."""
    from lab.core import prices

    input_tokens = len((PACKAGE_DIR / design.sample).read_text()) // 3 + 200  # numbered code plus instructions
    per_review = [prices.cost_usd(provider, model, input_tokens, limit)
                  for limit in (app.ASSESSMENT_MAX_TOKENS, app.FEEDBACK_MAX_TOKENS, app.FINDINGS_MAX_TOKENS)]
    return None if None in per_review else sum(per_review) * design.n
