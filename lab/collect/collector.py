"""One collector for every experiment: a session of planned units, collected into a run.

A *session* is one collection of an experiment: a time window of the field report, one
provider's reviews, a rate of an open-loop experiment, a scenario's arm. Its *units* are what it
plans, in order: a call, a review, a whole open-loop schedule. :func:`collect` holds the run's
collector lock (one collector per run) while it collects, checks that the run was collected with
the same design, collects the units the run lacks, each appended durably as it completes (a kill
loses nothing done; the same command resumes), pauses between units, shows a progress bar, and
stamps each session's end. A run that already holds every unit is only read, never written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from lab.core import progress
from lab.core.timing import frozen_heap
from lab.store import Run


class Unit(Protocol):
    """One planned piece of a session."""

    def done(self, run: Run) -> bool:
        """Whether the run holds it."""

    def collect(self) -> str:
        """Make it (its records are appended as it goes); a few words for the progress bar."""


@dataclass
class Session:
    """What one collection plans. ``entry`` is its manifest entry; the ``identity`` fields of it tell a
    resumption of this session from another session of the run (see :meth:`lab.store.Run.begin_session`).
    ``setup``, if given, is entered around the session's collection (it starts the session's emulators, say)."""

    kind: str  # which experiment class collected it (the manifest keeps it, so a replay knows)
    experiment: str
    design: Mapping[str, Any]
    entry: Mapping[str, Any]
    identity: tuple[str, ...]
    units: Sequence[Unit]
    pause_s: float = 0.0
    label: str = ""
    unit_name: str = "call"
    report_units: bool = False  # print each unit's summary line (a whole schedule's), not only show it in the bar
    setup: Callable[[], AbstractContextManager[Any]] | None = None

    def missing(self, run: Run) -> list[Unit]:
        return [unit for unit in self.units if not unit.done(run)]


def complete(run: Run, session: Session) -> bool:
    """Whether the run holds every unit of the session and says the session ended."""
    if not run.exists or session.missing(run):
        return False
    for entry in run.manifest.get("sessions", []):
        if all(entry.get(f) == session.entry.get(f) for f in session.identity):
            return entry.get("ended_at") is not None
    return False


@dataclass(frozen=True)
class Collected:
    """What a collection did: units made, units planned, and what a unit is (call, review, schedule, arm)."""

    made: int
    planned: int
    unit: str

    def __str__(self) -> str:
        return f"{self.made} {self.unit}s made, {self.planned - self.made} already recorded"


def collect(run: Run, plan: Callable[[], Sequence[Session]], *, command: str, wait: bool = False,
            progress: bool = True) -> Collected:
    """Collect what ``run`` lacks of the sessions ``plan()`` returns, holding the run as its only collector
    throughout (``wait``: wait for another collector to finish instead of refusing). The sessions are
    planned again once the lock is held, from what the run holds then (a collector that waited never makes
    a call the other one made), and again after each session collected (a session may be planned only once
    another is complete, as a hedged arm once the arm its delay comes from). A run that holds everything is
    only read."""
    planned = plan()
    unit = planned[0].unit_name if planned else "call"
    if all(complete(run, session) for session in planned):
        return Collected(0, sum(len(s.units) for s in planned), unit)
    made, collected = 0, set()
    with run.collector(command, wait=wait), frozen_heap():
        run.reload()
        while True:  # planned again after each session: a later session may build on an earlier one
            planned = plan()
            todo = [s for s in planned if not complete(run, s) and _identity(s) not in collected]
            if not todo:
                break
            collected.add(_identity(todo[0]))
            with todo[0].setup() if todo[0].setup else contextlib.nullcontext():
                made += _collect_one(run, todo[0], progress)
    return Collected(made, sum(len(s.units) for s in planned), unit)


def _identity(session: Session) -> tuple[Any, ...]:
    return tuple(session.entry.get(f) for f in session.identity)


def _collect_one(run: Run, session: Session, shown: bool) -> int:
    run.begin_session(session.experiment, session.design, session.entry, session.identity, kind=session.kind)
    pending = session.missing(run)
    with progress.bar(len(session.units), initial=len(session.units) - len(pending), unit=session.unit_name,
                      desc=session.label or None, enabled=shown) as bar:
        for i, unit in enumerate(pending):
            summary = unit.collect()
            bar.set_postfix_str(summary, refresh=False)
            if session.report_units:
                progress.write(f"{session.label}: {summary}")
            bar.update(1)
            if session.pause_s and i < len(pending) - 1:
                time.sleep(session.pause_s)
    run.end_session(session.entry, session.identity)
    return len(pending)
