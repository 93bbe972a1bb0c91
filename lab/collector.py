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
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm import tqdm

from lab.store import Run
from lab.timing import frozen_heap


class Unit(Protocol):
    """One planned piece of a session."""

    def done(self, run: Run) -> bool:
        """Whether the run holds it."""

    def collect(self) -> str:
        """Make it (its records are appended as it goes); a few words for the progress bar."""


@dataclass
class Session:
    """What one collection plans. ``entry`` is its manifest entry; the ``identity`` fields of it tell a
    resumption of this session from another session of the run (see :meth:`lab.store.Run.begin_session`)."""

    experiment: str
    design: Mapping[str, Any]
    entry: Mapping[str, Any]
    identity: tuple[str, ...]
    units: Sequence[Unit]
    pause_s: float = 0.0
    label: str = ""
    unit_name: str = "call"
    report_units: bool = False  # print each unit's summary line (a whole schedule's), not only show it in the bar
    extra: dict[str, Any] = field(default_factory=dict)  # what its collection needs besides the units

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


def collect(run: Run, plan: Callable[[], Sequence[Session]], *, command: str, wait: bool = False,
            progress: bool = True, context: Callable[[Session], AbstractContextManager[Any]] | None = None) -> int:
    """Collect what ``run`` lacks of the sessions ``plan()`` returns, holding the run as its only collector
    throughout (``wait``: wait for another collector to finish instead of refusing). The sessions are
    planned again once the lock is held, from what the run holds then: a collector that waited never
    makes a call the other one made. ``context(session)`` is entered around each session collected (e.g. to
    start its emulators). Returns the units made. A run that holds everything is only read."""
    if all(complete(run, session) for session in plan()):
        return 0
    made = 0
    with run.collector(command, wait=wait), frozen_heap():
        run.reload()
        for session in [s for s in plan() if not complete(run, s)]:
            with context(session) if context else contextlib.nullcontext():
                made += _collect_one(run, session, progress)
    return made


def _collect_one(run: Run, session: Session, progress: bool) -> int:
    run.begin_session(session.experiment, session.design, session.entry, session.identity)
    pending = session.missing(run)
    with tqdm(total=len(session.units), initial=len(session.units) - len(pending), unit=session.unit_name,
              desc=session.label or None, disable=not progress) as bar:
        for i, unit in enumerate(pending):
            summary = unit.collect()
            bar.set_postfix_str(summary, refresh=False)
            if session.report_units:
                tqdm.write(f"{session.label}: {summary}")
            bar.update(1)
            if session.pause_s and i < len(pending) - 1:
                time.sleep(session.pause_s)
    run.end_session(session.entry, session.identity)
    return len(pending)
