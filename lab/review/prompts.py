"""The three prompts of the code-review assistant, one per call site.

Each starts with a ``TASK:`` line naming its call site (the emulator's reviewer
reads it) and carries the code with line numbers, so findings can cite lines.
"""

from __future__ import annotations

ASSESSMENT = "TASK: overall assessment"
LINE_FEEDBACK = "TASK: line-by-line feedback"
FINDINGS = "TASK: structured findings"
TASKS: tuple[str, ...] = (ASSESSMENT, LINE_FEEDBACK, FINDINGS)

SYSTEM = "You are a senior Python reviewer. Be specific and cite line numbers."


def numbered(code: str) -> str:
    """The code with 1-based line numbers, as the reviewer sees it."""
    return "\n".join(f"{number:>4} | {line}" for number, line in enumerate(code.splitlines(), start=1))


def _prompt(task: str, instructions: str, code: str, filename: str) -> str:
    return f"{task}\n{instructions}\n\nFile: {filename}\n```python\n{numbered(code)}\n```\n"


def assessment(code: str, filename: str) -> str:
    return _prompt(ASSESSMENT, "Give an overall assessment of this code's quality in a short paragraph, "
                   "then end with a final line of the form 'Score: N/10'.", code, filename)


def line_feedback(code: str, filename: str) -> str:
    return _prompt(LINE_FEEDBACK, "Go through the code and give feedback line by line, one issue per "
                   "output line, as 'Line N [severity]: feedback'.", code, filename)


def findings(code: str, filename: str) -> str:
    return _prompt(FINDINGS, "List every issue you find (security, error handling, Python best "
                   "practice) as JSON matching the schema: line, category, severity, description, "
                   "recommendation.", code, filename)
