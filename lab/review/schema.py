"""What a review finds: the JSON schema of the structured call site, and the answer key's entries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Category = Literal["security", "error_handling", "best_practice"]
Severity = Literal["critical", "high", "medium", "low"]
CATEGORIES: tuple[str, ...] = ("security", "error_handling", "best_practice")
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")


class Finding(BaseModel):
    """One issue a reviewer reports."""

    line: int = Field(description="line number in the reviewed file where the issue is")
    category: Category
    severity: Severity
    description: str = Field(description="what is wrong")
    recommendation: str = Field(description="how to fix it")


class Findings(BaseModel):
    """The structured summary of a review."""

    findings: list[Finding]


class KeyIssue(BaseModel):
    """One deliberate issue of the sample, from ``lab/data/review/answer_key.json``."""

    id: str
    first_line: int
    last_line: int
    category: Category
    severity: Severity
    title: str
