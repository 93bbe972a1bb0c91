"""The code-review assistant wired directly to the Anthropic SDK (the field report's "before").

Run it with the file to review as its argument; the client reads its key and endpoint from the environment.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import anthropic

from lab.llm.schemas import json_schema
from lab.review import prompts
from lab.review.schema import Findings

MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 2048
SCORE = re.compile(r"Score:\s*(\d+)\s*/\s*10")


@dataclass
class Review:
    """What the three call sites returned."""

    score: int | None
    feedback: str
    findings: Findings


def assess(client: anthropic.Anthropic, prompt: str) -> int | None:
    """(1) Overall assessment; the score of its 'Score: N/10' line, None if there is none."""
    response = client.messages.create(
        model=MODEL, max_tokens=MAX_TOKENS, system=prompts.SYSTEM, messages=[{"role": "user", "content": prompt}]
    )
    match = SCORE.search(response.content[0].text)
    return int(match.group(1)) if match else None


def feedback(client: anthropic.Anthropic, prompt: str) -> str:
    """(2) Line-by-line feedback, printed as it streams in."""
    parts = []
    with client.messages.stream(
        model=MODEL, max_tokens=MAX_TOKENS, system=prompts.SYSTEM, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        for text in stream.text_stream:
            print(text, end="", flush=True)
            parts.append(text)
    print()
    return "".join(parts)


def summarize(client: anthropic.Anthropic, prompt: str) -> Findings:
    """(3) Structured findings through the provider's native JSON-schema mode."""
    response = client.messages.create(
        model=MODEL, max_tokens=MAX_TOKENS, system=prompts.SYSTEM, messages=[{"role": "user", "content": prompt}],
        output_config={"format": {"type": "json_schema", "schema": json_schema(Findings)}},
    )
    return Findings.model_validate_json(response.content[0].text)


def review(path: str | Path) -> Review:
    """Review one file with the three call sites."""
    path = Path(path)
    code = path.read_text()
    with anthropic.Anthropic(max_retries=0) as client:
        return Review(
            score=assess(client, prompts.assessment(code, path.name)),
            feedback=feedback(client, prompts.line_feedback(code, path.name)),
            findings=summarize(client, prompts.findings(code, path.name)),
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
