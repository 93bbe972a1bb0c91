"""What a workload's session calls, in which order, under which keys, and at most at what cost."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.collect import openloop
from lab.collect.recorder import Recorder
from lab.collect.workload.spec import Prompt, Target, Workload
from lab.core import config, endpoints, prices
from lab.store import CallKey, Run


@dataclass(frozen=True)
class Planned:
    """One planned call: ``sample`` is the round (serial) or the send's index (open loop)."""

    target: Target
    prompt: Prompt
    kind: str
    sample: int
    offset_s: float | None = None  # planned send, seconds from the schedule's start (open loop)


@dataclass(frozen=True)
class Slot:
    """One session of a workload in a run: a window label, and for open loop a rate and a try."""

    window: str | None
    rate_per_s: float | None = None
    attempt: str | None = None  # the open-loop try whose records count

    @property
    def label(self) -> str | None:
        if self.rate_per_s is None:
            return self.window
        rate = f"{self.rate_per_s:g}/s"
        return f"{self.window} {rate}" if self.window else rate

    @property
    def key_window(self) -> str | None:
        return self.label if self.attempt is None else f"{self.label}#{self.attempt}"


def slots(run: Run, workload: Workload) -> list[Slot]:
    """The sessions a collection of ``workload`` into ``run`` makes: one, or one per open-loop rate (with the
    try to collect: the complete one if the run has it, else a new one)."""
    if workload.design.mode == "serial":
        return [Slot(workload.window)]
    entries = run.manifest.get("sessions", []) if run.exists else []
    found = []
    for rate in workload.design.rate_per_s:
        old = next((e for e in entries if e.get("window") == workload.window and e.get("rate_per_s") == rate), None)
        keep = old is not None and old.get("ended_at") is not None
        found.append(Slot(workload.window, rate, old["attempt"] if keep else uuid.uuid4().hex[:8]))
    return found


def plan(workload: Workload, slot: Slot) -> list[Planned]:
    """The calls of one session, in the order they are made."""
    d = workload.design
    combos = [(t, p, k) for t in workload.targets for p in workload.prompts for k in d.kinds]
    if d.mode == "open-loop":
        offsets = openloop.schedule(slot.rate_per_s, n=d.requests, duration_s=d.duration_s, arrival=d.arrival,
                                    seed=d.seed)
        rng = np.random.default_rng([d.seed, 1])
        order: list[int] = []
        while len(order) < len(offsets):
            order += rng.permutation(len(combos)).tolist()
        return [Planned(*combos[order[i]], sample=i, offset_s=float(o)) for i, o in enumerate(offsets)]
    if d.order == "sequential":  # target by target, as the field report asked its models
        return [Planned(t, p, k, r) for t in workload.targets for r in range(d.repeats)
                for p in workload.prompts for k in d.kinds]
    rng = np.random.default_rng(d.seed)
    return [Planned(*combos[i], sample=r) for r in range(d.repeats) for i in rng.permutation(len(combos))]


def options(target: Target, endpoint: str | None) -> dict[str, Any]:
    """The :mod:`lab.llm` arguments that reach ``target`` at ``endpoint``."""
    return {"provider": target.provider, "model": target.model, "base_url": endpoint}


def key_of(recorder: Recorder, call: Planned, slot: Slot, endpoint: str) -> CallKey:
    """The store key of a planned call (``endpoint`` as keyed: ``"emulator"`` or a URL)."""
    asked = {**options(call.target, endpoint), "system": call.prompt.system}
    return recorder.key(call.kind, call.prompt.prompt, call.prompt.max_tokens, asked, window=slot.key_window,
                        sample=call.sample)


def own_endpoints(workload: Workload) -> dict[str, str]:
    """Each target's own endpoint (its ``base_url``, else its provider's)."""
    return {t.name: t.base_url or config.resolve(t.provider, t.model, require_key=False).endpoint
            for t in workload.targets}


def cost_bound(calls: Sequence[Planned], endpoints_by_target: Mapping[str, str]) -> float | None:
    """Most the calls to paid endpoints can cost (every call at max_tokens); None if a price is unknown."""
    total = 0.0
    for call in calls:
        if endpoints.is_local(endpoints_by_target[call.target.name]):
            continue
        settings = config.resolve(call.target.provider, call.target.model, require_key=False)
        text = (call.prompt.system or "") + call.prompt.prompt
        cost = prices.cost_usd(settings.provider, settings.model, math.ceil(len(text) / 4) + 10,
                               call.prompt.max_tokens)
        if cost is None:
            return None
        total += cost
    return total
