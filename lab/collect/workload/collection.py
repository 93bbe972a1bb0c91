"""Collecting a workload into a run, and replaying it: the units of its sessions (a serial call, a whole
open-loop schedule), the emulators that answer it offline, and :func:`load`."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lab import llm
from lab.collect import collector, openloop
from lab.collect.experiment import Reach, Spend
from lab.collect.recorder import Recorder
from lab.collect.workload.plan import Planned, Slot, cost_bound, key_of, options, own_endpoints, plan, slots
from lab.collect.workload.spec import Workload
from lab.core import endpoints, progress
from lab.core.records import CallRecord, records_frame
from lab.store import MissingRecord, Run


@dataclass
class Reached:
    """Each target's endpoint as the store keys it (``"emulator"`` or a URL) and, while its session runs, the
    URL its calls go to."""

    keyed: dict[str, str]
    called: dict[str, str] = field(default_factory=dict)

    def options(self, call: Planned) -> dict[str, Any]:
        return {**options(call.target, self.called[call.target.name]), "system": call.prompt.system,
                "max_tokens": call.prompt.max_tokens}


def _labels(call: Planned, slot: Slot) -> dict[str, Any]:
    return {"target": call.target.name, "task": call.prompt.task, "window": slot.label}


@dataclass
class _SerialCall:
    """A serial call: done when the run holds its key."""

    recorder: Recorder
    call: Planned
    slot: Slot
    where: Reached
    timeout_s: float

    def __post_init__(self) -> None:
        self.key = key_of(self.recorder, self.call, self.slot, self.where.keyed[self.call.target.name])

    def done(self, run: Run) -> bool:
        return run.get(self.key) is not None

    def collect(self) -> str:
        call, asked = self.call, self.where.options(self.call)
        tags = {"window": self.slot.key_window, "sample": call.sample, "labels": _labels(call, self.slot),
                "timeout": self.timeout_s}
        if call.kind == "stream":
            chunks = self.recorder.stream(call.prompt.prompt, **asked, **tags)
            for _ in chunks:
                pass
            record = chunks.record
        else:
            record = self.recorder.complete(call.prompt.prompt, **asked, **tags).record
        assert record is not None
        return f"{call.target.name} {record.latency_ms:,.0f} ms {record.status}"


@dataclass
class _Schedule:
    """A whole open-loop session: done when the run holds every call of its try."""

    workload: Workload
    recorder: Recorder
    calls: list[Planned]
    slot: Slot
    where: Reached

    def done(self, run: Run) -> bool:
        return all(run.get(key_of(self.recorder, c, self.slot, self.where.keyed[c.target.name])) is not None
                   for c in self.calls)

    def collect(self) -> str:
        d = self.workload.design
        bar = progress.bar(len(self.calls), desc=self.slot.label, unit="request", leave=False)

        async def send(i: int) -> CallRecord:
            call = self.calls[i]
            asked = {**self.where.options(call), "window": self.slot.key_window, "sample": call.sample,
                     "labels": _labels(call, self.slot), "timeout": d.timeout_s}
            if call.kind == "stream":
                chunks = self.recorder.astream(call.prompt.prompt, **asked)
                async for _ in chunks:
                    pass
                record = chunks.record
            else:
                record = (await self.recorder.acomplete(call.prompt.prompt, **asked)).record
            bar.update(1)
            assert record is not None
            return record

        in_process = any(endpoints.is_emulator(url) for url in self.where.keyed.values())
        limit, capped = openloop.concurrency(d.max_concurrency, per_call=2 if in_process else 1)

        async def main() -> list[CallRecord]:
            async with llm.session():
                for target in self.workload.targets:
                    await llm.prepare(**options(target, self.where.called[target.name]))
                return await openloop.drive([c.offset_s for c in self.calls], send, max_concurrency=limit,
                                           early_s=openloop.EARLY_S)

        with self.recorder.run.batched(), bar:
            records = openloop.run(main())
        return (f"{len(records)} sent, {sum(not r.ok for r in records)} errors" + capped
                + openloop.lateness_warning(records, capped=bool(capped)))


@contextlib.contextmanager
def emulators(workload: Workload, profile: str, seed: int, session_name: str) -> Iterator[dict[str, str]]:
    """In-process emulators for the targets, one per latency profile (a target's own ``emulator`` profile, else
    ``profile``), seeded by ``seed`` and the session's name; yields each target's URL."""
    from lab.emulator import Emulator

    with contextlib.ExitStack() as stack:
        running: dict[str, Any] = {}
        urls = {}
        for target in workload.targets:
            chosen = target.emulator or profile
            if chosen not in running:
                running[chosen] = stack.enter_context(Emulator(chosen, seed=seed ^ zlib.crc32(session_name.encode())))
            urls[target.name] = running[chosen].url_for(target.provider)
        yield urls


def sessions(run: Run, workload: Workload, reach: Reach, command: str) -> list[collector.Session]:
    """The collector's sessions for a collection of ``workload`` into ``run`` (see
    :class:`lab.collect.experiment.Experiment`)."""
    recorder = Recorder(run, mode=reach.mode, collect_hint=command, experiment=workload.name)
    found = []
    for slot in slots(run, workload):
        where = Reached({t.name: endpoints.EMULATOR for t in workload.targets} if reach.emulated else
                      {name: endpoints.identity(url) for name, url in own_endpoints(workload).items()})
        calls = plan(workload, slot)
        serial = workload.design.mode == "serial"
        units: list[Any] = ([_SerialCall(recorder, c, slot, where, workload.design.timeout_s) for c in calls] if serial
                            else [_Schedule(workload, recorder, calls, slot, where)])

        @contextlib.contextmanager
        def reached(where: Reached = where, slot: Slot = slot) -> Iterator[None]:
            if not reach.emulated:
                where.called.update(own_endpoints(workload))
                yield
                return
            with emulators(workload, reach.profile or "", reach.seed, slot.label or "") as urls:
                where.called.update(urls)
                yield

        entry = {"window": slot.window, "rate_per_s": slot.rate_per_s, "attempt": slot.attempt,
                 "endpoints": where.keyed, "command": command}
        found.append(collector.Session(
            Workload.kind, workload.name, workload.describe(), entry, ("window", "rate_per_s"), units,
            pause_s=workload.design.pause_s, label=slot.label or workload.name,
            unit_name="call" if serial else "schedule", report_units=not serial, setup=reached))
    return found


def spend(run: Run, workload: Workload, reach: Reach) -> Spend:
    """The calls a collection of ``workload`` into ``run`` makes, its paid targets and their cost bound."""
    urls = {t.name: endpoints.EMULATOR for t in workload.targets} if reach.emulated else own_endpoints(workload)
    calls = [c for slot in slots(run, workload) for c in plan(workload, slot)]
    paid = {t.name: (t.provider, t.model, urls[t.name]) for t in workload.targets
            if not endpoints.is_local(urls[t.name])}
    return Spend(len(calls), paid, cost_bound(calls, urls))


def load(run: Run) -> pd.DataFrame:
    """Every planned call of every session of a run, as a frame of call records, in plan order;
    :class:`MissingRecord` naming the first missing call and the command that collects it."""
    manifest = run.manifest
    workload = Workload.from_description(manifest["experiment"], manifest["design"])
    recorder = Recorder(run, mode="replay")
    records = []
    for entry in manifest.get("sessions", []):
        slot = Slot(entry.get("window"), entry.get("rate_per_s"), entry.get("attempt"))
        calls = plan(workload, slot)
        keys = [key_of(recorder, c, slot, entry["endpoints"][c.target.name]) for c in calls]
        found = [run.get(k) for k in keys]
        absent = [k for k, r in zip(keys, found) if r is None]
        if absent:
            raise MissingRecord(f"run {run.id!r} lacks {len(absent)} of {len(keys)} calls of session "
                                f"{slot.label or workload.name!r} (first: {absent[0].describe()}); collect them "
                                f"(it resumes) with: {entry.get('command') or 'the command that collected the run'}")
        records += found
    return records_frame(records)
