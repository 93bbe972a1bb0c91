"""The code-review assistant: three structurally different call sites, through ``lab.llm`` only.

1. :func:`assess`: one completion, an overall assessment ending in ``Score: N/10``;
2. :func:`line_feedback`: a streamed line-by-line review, shown as it arrives;
3. :func:`summarize`: a structured JSON summary of findings, validated against
   :class:`~lab.review.schema.Findings`.

The provider is chosen by ``provider=`` or ``LLM_PROVIDER`` and nothing else
changes. ``client`` is ``lab.llm`` itself, or anything with the same three
methods (e.g. a :class:`lab.collect.recorder.Tagged` recorder, which stores the calls).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lab import llm
from lab.core.records import CallRecord
from lab.review import prompts
from lab.review.schema import Findings

ASSESSMENT_MAX_TOKENS = 512  # as in the report
FEEDBACK_MAX_TOKENS = 1024  # as in the report
FINDINGS_MAX_TOKENS = 4096
_SCORE = re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)\s*/\s*10", re.IGNORECASE)


def parse_score(text: str) -> float | None:
    """The last ``N/10`` score in an assessment, or None when it has none."""
    found = _SCORE.findall(text)
    return float(found[-1]) if found else None


@dataclass(frozen=True)
class Review:
    """One review of one file: the three answers and their call records."""

    score: float | None
    assessment: llm.Completion
    feedback: str
    feedback_record: CallRecord
    findings: llm.Completion  # .data is a Findings instance when the answer was valid

    @property
    def records(self) -> list[CallRecord]:
        return [self.assessment.record, self.feedback_record, self.findings.record]


def assess(code: str, filename: str, client: Any = llm, **options: Any) -> tuple[float | None, llm.Completion]:
    """Call site 1: overall assessment and its score out of 10."""
    answer = client.complete(prompts.assessment(code, filename), system=prompts.SYSTEM,
                             max_tokens=ASSESSMENT_MAX_TOKENS, **options)
    return parse_score(answer.text), answer


def line_feedback(code: str, filename: str, client: Any = llm, on_text: Callable[[str], Any] | None = None,
                  **options: Any) -> tuple[str, CallRecord]:
    """Call site 2: streamed line-by-line feedback; ``on_text`` sees each chunk as it arrives."""
    chunks = client.stream(prompts.line_feedback(code, filename), system=prompts.SYSTEM,
                           max_tokens=FEEDBACK_MAX_TOKENS, **options)
    for chunk in chunks:
        if on_text is not None:
            on_text(chunk)
    return chunks.text, chunks.record


def summarize(code: str, filename: str, client: Any = llm, **options: Any) -> llm.Completion:
    """Call site 3: structured findings, validated; ``.data`` is None when the JSON was not valid."""
    return client.complete_json(prompts.findings(code, filename), Findings, system=prompts.SYSTEM,
                                max_tokens=FINDINGS_MAX_TOKENS, **options)


def review(path: str | Path, client: Any | ModuleType = llm, on_text: Callable[[str], Any] | None = None,
           **options: Any) -> Review:
    """All three call sites on one file; ``options`` go to every call (provider, model, base_url, ...)."""
    path = Path(path)
    code = path.read_text()
    score, assessment = assess(code, path.name, client, **options)
    feedback, feedback_record = line_feedback(code, path.name, client, on_text, **options)
    findings = summarize(code, path.name, client, **options)
    return Review(score, assessment, feedback, feedback_record, findings)


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.review FILE``: review a file in the terminal with the configured provider."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.review FILE   (provider from LLM_PROVIDER, model from LLM_MODEL)",
              file=sys.stderr)
        return 2
    path = Path(args[0])
    code = path.read_text()
    score, assessment = assess(code, path.name)
    print("== Overall assessment ==")
    print(assessment.text if assessment.ok else f"(failed: {assessment.record.error_type})")
    print("\n== Line-by-line feedback ==")
    _, feedback_record = line_feedback(code, path.name, on_text=lambda text: print(text, end="", flush=True))
    print("" if feedback_record.ok else f"(failed: {feedback_record.error_type})")
    findings = summarize(code, path.name)
    print("\n== Findings ==")
    if findings.data is None:
        print(f"(no valid findings: {findings.record.error_type}: {findings.record.error_message})")
    else:
        for finding in sorted(findings.data.findings, key=lambda f: f.line):
            print(f"line {finding.line:>4}  {finding.severity:<8} {finding.category:<14} {finding.description}")
    records = [assessment.record, feedback_record, findings.record]
    cost = sum(r.cost_usd or 0 for r in records)
    print(f"\nscore: {score if score is not None else 'none given'}/10; provider {records[0].provider}, "
          f"model {records[0].model}; latency " + ", ".join(f"{r.kind} {r.latency_ms:,.0f} ms" for r in records)
          + f"; cost ${cost:.4f}" + (" (synthetic)" if records[0].synthetic else ""))
    return 0 if all(r.ok for r in records) else 1
