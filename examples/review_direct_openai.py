"""The code-review assistant migrated to the OpenAI SDK (the field report's "after").

Run it with the file to review as its argument; the client reads its key and endpoint from the environment.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import openai

from lab.llm.schemas import json_schema
from lab.review import prompts
from lab.review.schema import Findings

MODEL = "gpt-5-mini"
MAX_TOKENS = 2048
SCORE = re.compile(r"Score:\s*(\d+)\s*/\s*10")


@dataclass
class Review:
    """What the three call sites returned."""

    score: int | None
    feedback: str
    findings: Findings


def assess(client: openai.OpenAI, prompt: str) -> int | None:
    """(1) Overall assessment; the score of its 'Score: N/10' line, None if there is none."""
    response = client.chat.completions.create(
        model=MODEL, max_completion_tokens=MAX_TOKENS,
        messages=[{"role": "system", "content": prompts.SYSTEM}, {"role": "user", "content": prompt}],
    )
    match = SCORE.search(response.choices[0].message.content)
    return int(match.group(1)) if match else None


def feedback(client: openai.OpenAI, prompt: str) -> str:
    """(2) Line-by-line feedback, printed as it streams in."""
    parts = []
    with client.chat.completions.create(
        model=MODEL, max_completion_tokens=MAX_TOKENS, stream=True,
        messages=[{"role": "system", "content": prompts.SYSTEM}, {"role": "user", "content": prompt}],
    ) as stream:
        for chunk in stream:
            text = chunk.choices[0].delta.content or ""
            print(text, end="", flush=True)
            parts.append(text)
    print()
    return "".join(parts)


def summarize(client: openai.OpenAI, prompt: str) -> Findings:
    """(3) Structured findings through the provider's native JSON-schema mode."""
    response = client.chat.completions.create(
        model=MODEL, max_completion_tokens=MAX_TOKENS,
        messages=[{"role": "system", "content": prompts.SYSTEM}, {"role": "user", "content": prompt}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "findings", "schema": json_schema(Findings), "strict": True}},
    )
    return Findings.model_validate_json(response.choices[0].message.content)


def review(path: str | Path) -> Review:
    """Review one file with the three call sites."""
    path = Path(path)
    code = path.read_text()
    with openai.OpenAI(max_retries=0) as client:
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
