"""Collecting an experiment in a test: offline, quietly, and the count of units made."""

from __future__ import annotations

from typing import Any

from lab.collect.experiment import Reach, collect
from lab.store import Run


def collect_offline(run: Run, experiment: Any, *, emulator: str | None = None, seed: int = 0, window: str | None = None,
              command: str = "lab collect (a test)") -> int:
    """Collect ``experiment`` (a workload ``at(window)`` when given) into ``run``; the units made."""
    if window is not None:
        experiment = experiment.at(window)
    return collect(run, experiment, Reach(emulator, seed), command=command, progress=False).made
