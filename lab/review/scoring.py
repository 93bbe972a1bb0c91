"""Score a review's findings against the sample's answer key.

A finding *matches* a key issue when its line lies within ``tolerance`` lines of the issue's
range, i.e. in ``[first_line - tolerance, last_line + tolerance]``: reviewers often cite the
``def`` line, the ``try`` above an ``except`` or the call below an assignment. Matching is
one-to-one and greedy: among all candidate pairs, the closest (line distance to the range, 0
inside it) is taken first, then pairs whose category agrees, then key order, then finding order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.core import jsontext
from lab.core.paths import DATA_DIR
from lab.review.schema import Finding, KeyIssue

KEY_PATH = DATA_DIR / "review" / "answer_key.json"
DEFAULT_TOLERANCE = 2


@dataclass(frozen=True)
class ReviewScore:
    """How one review compares with the key. Agreements are shares of the matched pairs
    (None when nothing matched); ``unmatched`` counts findings that match no key issue."""

    found: tuple[str, ...]
    missed: tuple[str, ...]
    recall: float
    unmatched: int
    severity_agreement: float | None
    category_agreement: float | None


def load_key(path: Path | str = KEY_PATH) -> list[KeyIssue]:
    """The answer key's issues, in file order."""
    return [KeyIssue.model_validate(item) for item in jsontext.loads(Path(path).read_text(encoding="utf-8"))]


def distance(line: int, issue: KeyIssue) -> int:
    """Lines between ``line`` and the issue's range (0 inside it)."""
    return max(issue.first_line - line, line - issue.last_line, 0)


def match(findings: Sequence[Finding], key: Sequence[KeyIssue],
          tolerance: int = DEFAULT_TOLERANCE) -> list[tuple[int, int]]:
    """One-to-one (key index, finding index) pairs, in key order; see the module docstring."""
    candidates = sorted(
        (distance(f.line, issue), f.category != issue.category, k, i)
        for k, issue in enumerate(key)
        for i, f in enumerate(findings)
        if distance(f.line, issue) <= tolerance
    )
    used_keys: set[int] = set()
    used_findings: set[int] = set()
    pairs = []
    for _, _, k, i in candidates:
        if k not in used_keys and i not in used_findings:
            used_keys.add(k)
            used_findings.add(i)
            pairs.append((k, i))
    return sorted(pairs)


def score(findings: Sequence[Finding], key: Sequence[KeyIssue], tolerance: int = DEFAULT_TOLERANCE) -> ReviewScore:
    """Recall, misses, spurious findings and severity/category agreement of one review.

    ``tolerance``: how many lines outside a key issue's ``[first_line, last_line]`` a finding may
    cite and still count as that issue (0 = strictly inside the range)."""
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    pairs = match(findings, key, tolerance)
    matched = {k for k, _ in pairs}
    n = len(pairs)
    return ReviewScore(
        found=tuple(key[k].id for k, _ in pairs),
        missed=tuple(issue.id for k, issue in enumerate(key) if k not in matched),
        recall=n / len(key) if key else 0.0,
        unmatched=len(findings) - n,
        severity_agreement=sum(findings[i].severity == key[k].severity for k, i in pairs) / n if n else None,
        category_agreement=sum(findings[i].category == key[k].category for k, i in pairs) / n if n else None,
    )
