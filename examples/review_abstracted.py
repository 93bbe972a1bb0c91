"""The code-review assistant behind the thin abstraction ``lab.llm``: the provider is ``LLM_PROVIDER``.

Run: ``LLM_PROVIDER=openai python examples/review_abstracted.py FILE``; migrating is that one variable.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lab import llm
from lab.review import prompts
from lab.review.schema import Findings

MAX_TOKENS = 2048
SCORE = re.compile(r"Score:\s*(\d+)\s*/\s*10")
T = TypeVar("T", llm.Completion, llm.TextStream)


@dataclass
class Review:
    """What the three call sites returned."""

    score: int | None
    feedback: str
    findings: Findings


def checked(call: T) -> T:
    """The finished call, or an error: ``lab.llm`` records failures instead of raising them."""
    record = call.record
    if record is None or not record.ok:
        detail = f"{record.error_type}: {record.error_message}" if record else "stream not read"
        raise RuntimeError(f"LLM call failed: {detail}")
    return call


def assess(prompt: str) -> int | None:
    """(1) Overall assessment; the score of its 'Score: N/10' line, None if there is none."""
    answer = checked(llm.complete(prompt, system=prompts.SYSTEM, max_tokens=MAX_TOKENS))
    match = SCORE.search(answer.text)
    return int(match.group(1)) if match else None


def feedback(prompt: str) -> str:
    """(2) Line-by-line feedback, printed as it streams in."""
    chunks = llm.stream(prompt, system=prompts.SYSTEM, max_tokens=MAX_TOKENS)
    for text in chunks:
        print(text, end="", flush=True)
    print()
    return checked(chunks).text


def summarize(prompt: str) -> Findings:
    """(3) Structured findings through the provider's native JSON-schema mode."""
    return checked(llm.complete_json(prompt, Findings, system=prompts.SYSTEM, max_tokens=MAX_TOKENS)).data


def review(path: str | Path) -> Review:
    """Review one file with the three call sites."""
    path = Path(path)
    code = path.read_text()
    return Review(
        score=assess(prompts.assessment(code, path.name)),
        feedback=feedback(prompts.line_feedback(code, path.name)),
        findings=summarize(prompts.findings(code, path.name)),
    )


def main(path: str) -> Review:
    """Review ``path`` and print the score and findings (the feedback prints as it streams)."""
    result = review(path)
    print(f"Score: {result.score}/10")
    for finding in result.findings.findings:
        print(f"Line {finding.line} [{finding.severity}] {finding.category}: {finding.description}")
    return result


if __name__ == "__main__":
    main(sys.argv[1])
