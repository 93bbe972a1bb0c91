"""Experiment 1 of the field report: identical requests, serial with a pause, per time window and model.

The report's design: one user message, ``max_tokens=256``, 50 calls per window and model, 0.3 s
between calls, the models asked one after the other, latency of the complete (non-streamed)
response. :func:`workload` builds it as a :class:`lab.collect.workload.Workload`, the same one
``experiments/field-report.toml`` describes; ``lab collect variance`` collects one window of it
(with ``--stream``, also a streamed call per sample, for time to first token), and
:func:`lab.collect.experiment.load` replays a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from lab.collect.workload import Design, Prompt, Target, Workload

PROMPT = "Explain in 2-3 sentences why infrastructure reliability matters for software companies."
REPORT_MODELS = {"Haiku": "claude-haiku-4-5", "Sonnet": "claude-sonnet-4-6"}
EXPERIMENT = "time_window_variance"
TASK = "explain"


def workload(models: Sequence[str] = tuple(REPORT_MODELS.values()), *, provider: str = "anthropic",
             base_url: str | None = None, n: int = 50, pause_s: float = 0.3, max_tokens: int = 256,
             stream: bool = False) -> Workload:
    """The report's experiment 1 for ``models`` of one provider (the report's design by default)."""
    return Workload(
        EXPERIMENT,
        tuple(Target(model, provider, model, base_url) for model in models),
        (Prompt("report", TASK, PROMPT, max_tokens=max_tokens),),
        Design(mode="serial", kinds=("complete", "stream") if stream else ("complete",), repeats=n,
               pause_s=pause_s, order="sequential"),
    )


def window_label(moment: datetime | None = None) -> str:
    """A window name from the local clock, e.g. ``2026-11-27 Friday peak 09:30``.

    Peak is 9:00 to 18:00 on a weekday; times are rounded down to the half hour.
    """
    moment = (moment or datetime.now().astimezone()).replace(second=0, microsecond=0)
    moment = moment.replace(minute=moment.minute - moment.minute % 30)
    peak = moment.weekday() < 5 and 9 <= moment.hour < 18
    return f"{moment:%Y-%m-%d %A} {'peak' if peak else 'off-peak'} {moment:%H:%M}"
