"""The shape every experiment has: what it plans, what it may cost, how it is collected and replayed.

An experiment is an object with a ``kind`` (the manifest says which, so a run is replayed by the right
code), a ``name`` (the manifest's ``experiment``), its design, and these methods:

* ``sessions(run, reach, command)``: the :class:`lab.collect.collector.Session` list a collection of it
  into ``run`` makes, planned from what the run holds (called again once the run's lock is held);
* ``spend(run, reach)``: its calls, the paid targets among them and a bound on their cost (:class:`Spend`);
* ``finish(run)``: what a collection that made something does at its end;
* ``load(run)`` (a class method): every call of a run of this kind, replayed, as a frame of records.

:class:`Reach` says where the calls go: each target's own endpoint, or in-process emulators. The field
report's experiment 1 and your own workloads are :mod:`lab.collect.workload`; the code review is
:mod:`lab.collect.review`; the routing scenarios are :mod:`lab.collect.hedging`. :func:`collect` collects any
of them, and the ``lab collect`` command only maps its arguments to one (:mod:`lab.cli.collect`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pandas as pd

from lab.collect import collector
from lab.core.errors import BadInput
from lab.store import Run


@dataclass(frozen=True)
class Reach:
    """Where a collection sends its calls: each target's own endpoint (``profile`` None: paid ones only with
    ``live``), or in-process emulators answering with latency ``profile`` (a target may name its own),
    seeded by ``seed``."""

    profile: str | None = None
    seed: int = 0
    live: bool = False

    @property
    def emulated(self) -> bool:
        return self.profile is not None

    @property
    def mode(self) -> str:
        """The :class:`lab.collect.recorder.Recorder` mode its calls are made in."""
        return "live" if self.live else "local"


@dataclass(frozen=True)
class Spend:
    """What a collection would call: how many calls, the targets on paid endpoints (name -> provider, model,
    endpoint), and the most they can cost (None when a price is unknown)."""

    calls: int
    paid: Mapping[str, tuple[str, str | None, str]] = field(default_factory=dict)
    bound: float | None = 0.0


class Experiment(Protocol):
    """What :func:`collect` and :func:`load` need of an experiment (see the module's notes)."""

    kind: ClassVar[str]
    name: str

    def sessions(self, run: Run, reach: Reach, command: str) -> list[collector.Session]:
        """The sessions a collection into ``run`` makes (``command``: the command that collects it again)."""

    def spend(self, run: Run, reach: Reach) -> Spend:
        """The calls a collection into ``run`` would make, and what the paid ones may cost."""

    def finish(self, run: Run) -> None:
        """Called when a collection that made something ends (to compact the run's files, say)."""

    @classmethod
    def load(cls, run: Run) -> pd.DataFrame:
        """Every call of a run of this kind, replayed from the store, as a frame of call records."""


def collect(run: Run, experiment: Experiment, reach: Reach, *, command: str, wait: bool = False,
            progress: bool = True) -> collector.Collected:
    """Collect what ``run`` lacks of ``experiment`` (resumable; one collector per run, see
    :func:`lab.collect.collector.collect`). Provider failures are recorded, never raised."""
    done = collector.collect(run, lambda: experiment.sessions(run, reach, command), command=command, wait=wait,
                             progress=progress)
    if done.made:
        experiment.finish(run)
    return done


def kinds() -> dict[str, Any]:
    """The experiment classes by ``kind`` (imported when asked: an experiment may load the provider SDKs)."""
    from lab.collect import hedging, review, workload

    return {cls.kind: cls for cls in (workload.Workload, review.CodeReview, hedging.Hedging)}


def load(run: Run | str) -> pd.DataFrame:
    """Every call of a collected run of any kind, replayed, as a frame of call records."""
    run = run if isinstance(run, Run) else Run(run)
    kind = run.about.kind
    found = kinds().get(kind)
    if found is None:
        raise BadInput(f"run {run.id} was not collected by an experiment (its kind: {kind}): "
                         "read it with lab.store.Run(...).frame()")
    return found.load(run)
