"""What a run is: its manifest, typed.

Every run's ``manifest.json`` says what collected the run (``experiment``), when, and of which
:data:`Kind` it is, which tells where its call records live and how to read them:

- ``workload``, ``review``: a collection by an experiment (:mod:`lab.collect`); records in ``calls.jsonl``;
- ``hedging``: the hedging experiment; records are the attempts of each outcome in ``outcomes.jsonl``;
- ``proxy``: ``lab proxy``; records in ``calls.jsonl``, one line per exchange in ``requests.jsonl``;
- ``import``: ``lab import``; records in ``calls.parquet``;
- ``calls``: calls made with :mod:`lab.llm` and recorded in a run (the quickstart); records in ``calls.jsonl``;
- ``simulations``: the cache of :mod:`lab.analysis.simulations`; no call records.

A manifest written before manifests said their kind gets it from its experiment and design
(:func:`kind_of`). :func:`problem` says, in words, what makes a manifest unusable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import pydantic

Kind = Literal["workload", "review", "hedging", "proxy", "import", "calls", "simulations"]
KINDS: tuple[str, ...] = get_args(Kind)
_BY_EXPERIMENT = {"provider_switch_code_review": "review", "hedging": "hedging", "proxy": "proxy",
                  "import": "import", "simulations": "simulations"}


class Manifest(pydantic.BaseModel):
    """A run's manifest: the fields every run has, typed; an experiment's own fields kept as they are."""

    model_config = pydantic.ConfigDict(extra="allow", frozen=True)

    run_id: str
    experiment: str | None
    started_at: str
    kind: Kind
    design: dict[str, Any] | None = None
    sessions: list[dict[str, Any]] = []
    ended_at: str | None = None
    synthetic: bool | None = None
    missing_fields: list[str] = []
    """An import's fields no row of the source filled (a placeholder stands in for some)."""

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Manifest:
        """The typed manifest of a parsed ``manifest.json`` (its kind inferred when it does not say it)."""
        return cls.model_validate({**data, "kind": kind_of(data)})

    @property
    def collected(self) -> bool:
        """Whether an experiment of :mod:`lab.collect` collected the run (it then knows which records count)."""
        return self.kind in ("workload", "review", "hedging")


def kind_of(manifest: Mapping[str, Any]) -> str:
    """The kind of a run: what its manifest says, or for a run written before manifests said it, what its
    experiment and design show."""
    if manifest.get("kind") in KINDS:
        return str(manifest["kind"])
    design = manifest.get("design")
    if isinstance(design, Mapping) and "targets" in design:
        return "workload"
    return _BY_EXPERIMENT.get(str(manifest.get("experiment")), "calls")


def problem(manifest: Any) -> str | None:
    """What makes a parsed manifest unusable, in words, or None."""
    if not isinstance(manifest, dict):
        return f"holds {_kind(manifest)}, not an object"
    lacking = [f for f in ("run_id", "experiment", "started_at") if f not in manifest]
    if ("design" in manifest) != ("sessions" in manifest):
        lacking.append("sessions" if "design" in manifest else "design")
    if lacking:
        return f"is incomplete: it lacks {', '.join(lacking)}"
    if "design" in manifest and not isinstance(manifest["design"], dict):
        return f"is damaged: its design is {_kind(manifest['design'])}, not an object"
    sessions = manifest.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(e, dict) for e in sessions):
        return "is damaged: its sessions are not a list of objects"
    targets = manifest.get("design", {}).get("targets")
    if isinstance(targets, list):  # an experiment's run: each session says where it sent each target's calls
        names = {t.get("name") for t in targets if isinstance(t, dict)}
        for i, entry in enumerate(sessions, 1):
            where = entry.get("endpoints")
            if not isinstance(where, dict) or not names <= where.keys() or not all(
                    isinstance(where[n], str) for n in names):
                return f"is damaged: session {i} ({entry.get('window')!r}) does not say each target's endpoint"
    try:
        Manifest.of(manifest)
    except pydantic.ValidationError as exc:
        from lab.core.validation import one_line

        return f"is damaged: {one_line(exc)}"
    return None


def _kind(value: Any) -> str:
    from lab.store.lines import kind

    return kind(value)
