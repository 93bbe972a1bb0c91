"""Experiments: your targets, your prompts, serial or open-loop, from a file or from code.

An :class:`Experiment` asks one or more *targets* (a provider, model and endpoint, by name) each of
its *prompts* (text, system prompt, ``max_tokens``, a task label) under a :class:`Design`:

* ``serial``: ``repeats`` rounds, one call at a time with ``pause_s`` between calls. With
  ``order = "interleaved"`` every round is a block of all target x prompt x kind calls in a seeded
  random order, so targets are never confounded with time of day; ``"sequential"`` asks target by
  target, as the field report did. Resumable call by call.
* ``open-loop``: sends on a precomputed schedule (:mod:`lab.openloop`) at each ``rate_per_s``
  (one session per rate), constant or Poisson arrivals, never waiting for a reply before the next
  send; each call records its planned send and its lag. An open-loop session cannot resume
  halfway: an interrupted one is collected again in full, as a new *try* (the partial try's
  records stay in the run and are not loaded).

Experiment files are TOML (``experiments/*.toml``, read with :mod:`tomllib`)::

    name = "my-experiment"            # optional: the file's name
    [[targets]]                       # one or more
    name = "haiku"                    # optional: the model id
    provider = "anthropic"
    model = "claude-haiku-4-5"
    base_url = "http://..."           # optional
    emulator = "fixed:ttft_ms=300"    # optional: its latency profile when collected with --emulator
    [prompts]                         # file = "prompts.jsonl", or items = [{...}, ...]
    file = "prompts.jsonl"            # {"id", "task", "prompt", "system"?, "max_tokens"?} per line
    [design]
    mode = "serial"                   # or "open-loop"
    repeats = 50
    pause_s = 0.3
    order = "interleaved"             # or "sequential"
    stream = true                     # or kinds = ["complete", "stream"]
    # open-loop: rate_per_s = 5 (or [5, 20]), arrival = "poisson" | "constant",
    #            duration_s = 120 (or requests = 600), max_concurrency = 64
    seed = 0

Every call is a call record of the run, labelled with its ``target`` and ``task``; :func:`load`
replays them from the manifest alone, so any run of any experiment can be analysed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tomllib
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pydantic
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass
from tqdm import tqdm

from lab import collector, config, endpoints, jsontext, llm, openloop, prices, validation
from lab.recorder import Recorder
from lab.records import CallRecord, records_frame
from lab.store import CallKey, MissingRecord, Run

KINDS = ("complete", "stream")
MODES = ("serial", "open-loop")
ORDERS = ("interleaved", "sequential")
MAX_CALLS = 1_000_000
"""Calls one session may plan (serial: repeats x targets x prompts x kinds; open loop: per rate)."""
MAX_SCHEDULE_S = 7 * 24 * 3600.0
"""Longest open-loop schedule, and longest pause, in seconds."""
MAX_TOKENS = 1_000_000
MAX_TEXT = 1_000_000


class ExperimentError(ValueError):
    """An experiment file or definition that cannot run; the message says what to fix."""


_CONFIG = ConfigDict(extra="forbid", frozen=True)
Name = Annotated[str, Field(strict=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
Text = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_TEXT)]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_SCHEDULE_S)]
Count = Annotated[int, Field(strict=True, ge=1, le=MAX_CALLS)]


def _profile(spec: str) -> str:
    from lab.emulator.profiles import parse_spec

    parse_spec(spec)  # the latency profile this target is emulated with
    return spec


@pydantic_dataclass(config=_CONFIG)
class Target:
    """Who answers: a provider, a model and an endpoint, by name."""

    name: Name
    provider: Literal["anthropic", "openai", "openai-compatible"]
    model: Annotated[str, Field(strict=True, min_length=1, max_length=200)] | None = None
    base_url: Annotated[str, Field(strict=True, max_length=2000), AfterValidator(endpoints.http_url)] | None = None
    emulator: Annotated[str, Field(strict=True, max_length=200), AfterValidator(_profile)] | None = None


@pydantic_dataclass(config=_CONFIG)
class Prompt:
    """What a target is asked; ``task`` labels the kind of work (for per-task analysis)."""

    id: Name
    task: Name
    prompt: Text
    system: Annotated[str, Field(strict=True, max_length=MAX_TEXT)] | None = None
    max_tokens: Annotated[int, Field(strict=True, ge=1, le=MAX_TOKENS)] = 256


@pydantic_dataclass(config=_CONFIG)
class Design:
    """How the calls are made (see the module docstring)."""

    mode: Literal["serial", "open-loop"] = "serial"
    kinds: tuple[Literal["complete", "stream"], ...] = ("stream",)
    repeats: Count = 1
    pause_s: Seconds = 0.0
    order: Literal["interleaved", "sequential"] = "interleaved"
    rate_per_s: tuple[Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0.001, le=100_000)], ...] = ()
    arrival: Literal["constant", "poisson"] = "poisson"
    requests: Count | None = None
    duration_s: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=MAX_SCHEDULE_S)] | None = None
    max_concurrency: Annotated[int, Field(strict=True, ge=1, le=100_000)] | None = None
    timeout_s: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=3600)] = config.DEFAULT_TIMEOUT_S
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)] = 0

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Design:
        problems = []
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            problems.append(f"kinds must be one or both of {', '.join(KINDS)}, each once")
        if self.mode == "open-loop":
            if not self.rate_per_s:
                problems.append("an open-loop design needs rate_per_s above 0 (a number or a list)")
            if (self.requests is None) == (self.duration_s is None):
                problems.append("an open-loop design needs either requests or duration_s")
            if len(self.kinds) != 1:
                problems.append("an open-loop design sends one kind of call: set stream = true or false")
            for rate in self.rate_per_s:
                span = self.duration_s if self.duration_s is not None else (self.requests or 0) / rate
                if span > MAX_SCHEDULE_S or (self.duration_s is not None and rate * span > MAX_CALLS):
                    problems.append(f"at {rate:g}/s the schedule would last {span:,.0f} s or plan over "
                                    f"{MAX_CALLS:,} calls: the most is {MAX_SCHEDULE_S:,.0f} s and {MAX_CALLS:,} calls")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class Experiment:
    """Targets x prompts under a design."""

    name: str
    targets: tuple[Target, ...]
    prompts: tuple[Prompt, ...]
    design: Design = Design()

    def __post_init__(self) -> None:
        _check(self)

    def describe(self) -> dict[str, Any]:
        """The experiment as the run's manifest keeps it (a resumption must ask for the same)."""
        return {"targets": [_drop_none(asdict(t)) for t in self.targets],
                "prompts": [_drop_none(asdict(p)) for p in self.prompts],
                "design": _drop_none(asdict(self.design))}

    @classmethod
    def from_description(cls, name: str, description: Mapping[str, Any]) -> Experiment:
        design = dict(description["design"])
        for key in ("kinds", "rate_per_s"):
            design[key] = tuple(design.get(key, ()))
        return cls(name, tuple(Target(**t) for t in description["targets"]),
                   tuple(Prompt(**p) for p in description["prompts"]), Design(**design))


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}


def _check(experiment: Experiment) -> None:
    d = experiment.design
    problems = []
    if not experiment.targets:
        problems.append("no targets: add at least one [[targets]] table")
    if not experiment.prompts:
        problems.append("no prompts: add [prompts] with file = ... or items = [...]")
    for what, names in (("target", [t.name for t in experiment.targets]), ("prompt", [p.id for p in experiment.prompts])):
        if len(set(names)) != len(names):
            problems.append(f"two {what}s share a name: give each a distinct {'name' if what == 'target' else 'id'}")
    calls = d.repeats * len(experiment.targets) * len(experiment.prompts) * len(d.kinds)
    if d.mode == "serial" and calls > MAX_CALLS:
        problems.append(f"the design plans {calls:,} calls per session (repeats x targets x prompts x kinds): "
                        f"the most is {MAX_CALLS:,}")
    if problems:
        raise ExperimentError(f"experiment {experiment.name!r}: " + "; ".join(problems))


# -- experiment files ---------------------------------------------------------------------------

FILE_KEYS = {"name", "targets", "prompts", "design"}


def load_file(path: str | Path) -> Experiment:
    """Read an experiment file (see the module docstring); :class:`ExperimentError` says what is wrong, in one
    line naming the file, the key and what is allowed."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExperimentError(f"no experiment file {path}") from None
    except IsADirectoryError:
        raise ExperimentError(f"{path} is a folder, not an experiment file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"{path} is not valid TOML: {exc}") from None
    _only(path, "the file", data, FILE_KEYS)
    design = dict(_table(path, "[design]", data.get("design", {})))
    default_tokens = design.pop("max_tokens", 256)
    stream = design.pop("stream", None)
    if stream is not None and not isinstance(stream, bool):
        raise ExperimentError(f"{path}: design.stream must be true or false (not {stream!r})")
    if "kinds" not in design:
        design["kinds"] = ["stream"] if stream in (None, True) else ["complete"]
    rates = design.get("rate_per_s", [])
    design["rate_per_s"] = rates if isinstance(rates, list) else [rates]
    _only(path, "[design]", design, _keys(Design))
    raw_targets = data.get("targets", [])
    if not isinstance(raw_targets, list):
        raise ExperimentError(f"{path}: targets must be [[targets]] tables, one per target")
    for i, raw in enumerate(raw_targets, 1):
        _only(path, f"target {i}", raw, _keys(Target))
    try:
        items = _prompt_items(path, data.get("prompts"))
        named = [{"name": t.get("model") or t.get("provider"), **t} for t in raw_targets]
        return Experiment(_name(path, data.get("name")), tuple(_validated(Target, t, f"target {i}")
                                                              for i, t in enumerate(named, 1)),
                          tuple(_validated(Prompt, {"max_tokens": default_tokens, **p}, f"prompt {p['id']}")
                                for p in items), _validated(Design, design, "design"))
    except ExperimentError as exc:
        raise ExperimentError(f"{path}: {str(exc).removeprefix(f'experiment {path.stem!r}: ')}") from None


def _keys(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)}


def _validated(kind: type, values: Mapping[str, Any], where: str) -> Any:
    try:
        return TypeAdapter(kind).validate_python(dict(values))
    except pydantic.ValidationError as exc:
        raise ExperimentError(validation.one_line(exc, where)) from None


def _name(path: Path, name: Any) -> str:
    if name is None:
        return path.stem
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ExperimentError(f"{path}: name must be a text of 1 to 100 characters (not {name!r:.60})")
    return name


def _table(path: Path, where: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ExperimentError(f"{path}: {where} must be a table (not {table!r:.60})")
    return table


def _only(path: Path, where: str, table: Any, allowed: set[str]) -> None:
    unknown = set(_table(path, where, table)) - allowed
    if unknown:
        raise ExperimentError(f"{path}: {where} has unknown keys {', '.join(sorted(map(str, unknown)))}; "
                              f"expected some of {', '.join(sorted(allowed))}")


def _prompt_items(path: Path, spec: Any) -> list[dict[str, Any]]:
    if isinstance(spec, dict) and set(spec) == {"file"} and isinstance(spec["file"], str):
        source = path.parent / spec["file"]
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ExperimentError(f"{path}: cannot read prompts file {source}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None
        items = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    items.append(jsontext.loads(line, jsontext.MAX_DEPTH))
                except json.JSONDecodeError as exc:
                    raise ExperimentError(f"{source}:{number}: not a JSON object ({exc.msg})") from None
                if len(items) > MAX_CALLS:
                    raise ExperimentError(f"{source}: more than {MAX_CALLS:,} prompts")
    elif isinstance(spec, dict) and set(spec) == {"items"} and isinstance(spec["items"], list):
        items = spec["items"]
    else:
        raise ExperimentError(f"{path}: [prompts] needs file = \"prompts.jsonl\" or items = [...], one of them")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "prompt" not in item:
            raise ExperimentError(f"{path}: prompt {i + 1} must be an object with a prompt")
        item.setdefault("id", str(i + 1))
        item.setdefault("task", "default")
        if isinstance(item["id"], int) and not isinstance(item["id"], bool):
            item["id"] = str(item["id"])
        _only(path, f"prompt {item['id']!r:.40}", item, _keys(Prompt))
    return items


# -- planning -------------------------------------------------------------------------------------


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
    """One session of an experiment in a run: a window label, and for open loop a rate and a try."""

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


def plan(experiment: Experiment, slot: Slot) -> list[Planned]:
    """The calls of one session, in the order they are made."""
    d = experiment.design
    combos = [(t, p, k) for t in experiment.targets for p in experiment.prompts for k in d.kinds]
    if d.mode == "open-loop":
        offsets = openloop.schedule(slot.rate_per_s, n=d.requests, duration_s=d.duration_s, arrival=d.arrival,
                                    seed=d.seed)
        rng = np.random.default_rng([d.seed, 1])
        order: list[int] = []
        while len(order) < len(offsets):
            order += rng.permutation(len(combos)).tolist()
        return [Planned(*combos[order[i]], sample=i, offset_s=float(o)) for i, o in enumerate(offsets)]
    if d.order == "sequential":  # target by target, as the field report asked its models
        return [Planned(t, p, k, r) for t in experiment.targets for r in range(d.repeats)
                for p in experiment.prompts for k in d.kinds]
    rng = np.random.default_rng(d.seed)
    return [Planned(*combos[i], sample=r) for r in range(d.repeats) for i in rng.permutation(len(combos))]


def _options(target: Target, endpoint: str | None) -> dict[str, Any]:
    return {"provider": target.provider, "model": target.model, "base_url": endpoint}


def key_of(recorder: Recorder, call: Planned, slot: Slot, endpoint: str) -> CallKey:
    options = {**_options(call.target, endpoint), "system": call.prompt.system}
    return recorder.key(call.kind, call.prompt.prompt, call.prompt.max_tokens, options, window=slot.key_window,
                        sample=call.sample)


def cost_bound(calls: Sequence[Planned], endpoints_by_target: Mapping[str, str]) -> float | None:
    """Most the calls to paid endpoints can cost (every call at max_tokens); None if a price is unknown."""
    total = 0.0
    for call in calls:
        if endpoints.is_local(endpoints_by_target[call.target.name]):
            continue
        settings = config.resolve(call.target.provider, call.target.model, require_key=False)
        text = (call.prompt.system or "") + call.prompt.prompt
        cost = prices.cost_usd(settings.provider, settings.model, math.ceil(len(text) / 4) + 10, call.prompt.max_tokens)
        if cost is None:
            return None
        total += cost
    return total


# -- collecting -----------------------------------------------------------------------------------


@dataclass
class _Endpoints:
    """Each target's endpoint as keyed (``"emulator"`` or a URL) and, while its session runs, as called."""

    keyed: dict[str, str]
    called: dict[str, str] = field(default_factory=dict)

    def options(self, call: Planned) -> dict[str, Any]:
        return {**_options(call.target, self.called[call.target.name]), "system": call.prompt.system,
                "max_tokens": call.prompt.max_tokens}


@dataclass
class _Call:
    """A serial call: done when the run holds its key."""

    recorder: Recorder
    call: Planned
    slot: Slot
    endpoints: _Endpoints
    timeout_s: float

    def __post_init__(self) -> None:
        self.key = key_of(self.recorder, self.call, self.slot, self.endpoints.keyed[self.call.target.name])

    def done(self, run: Run) -> bool:
        return run.get(self.key) is not None

    def collect(self) -> str:
        call, options = self.call, self.endpoints.options(self.call)
        tags = {"window": self.slot.key_window, "sample": call.sample, "labels": _labels(call, self.slot),
                "timeout": self.timeout_s}
        if call.kind == "stream":
            chunks = self.recorder.stream(call.prompt.prompt, **options, **tags)
            for _ in chunks:
                pass
            record = chunks.record
        else:
            record = self.recorder.complete(call.prompt.prompt, **options, **tags).record
        assert record is not None
        return f"{call.target.name} {record.latency_ms:,.0f} ms {record.status}"


def _labels(call: Planned, slot: Slot) -> dict[str, Any]:
    return {"target": call.target.name, "task": call.prompt.task, "window": slot.label}


@dataclass
class _Schedule:
    """A whole open-loop session: done when the run holds every call of its try."""

    experiment: Experiment
    recorder: Recorder
    calls: list[Planned]
    slot: Slot
    endpoints: _Endpoints
    progress: bool

    def done(self, run: Run) -> bool:
        return all(run.get(key_of(self.recorder, c, self.slot, self.endpoints.keyed[c.target.name])) is not None
                   for c in self.calls)

    def collect(self) -> str:
        d = self.experiment.design
        bar = tqdm(total=len(self.calls), desc=self.slot.label, unit="req", disable=not self.progress, leave=False)

        async def send(i: int) -> CallRecord:
            call = self.calls[i]
            options = {**self.endpoints.options(call), "window": self.slot.key_window, "sample": call.sample,
                       "labels": _labels(call, self.slot), "timeout": d.timeout_s}
            if call.kind == "stream":
                chunks = self.recorder.astream(call.prompt.prompt, **options)
                async for _ in chunks:
                    pass
                record = chunks.record
            else:
                record = (await self.recorder.acomplete(call.prompt.prompt, **options)).record
            bar.update(1)
            assert record is not None
            return record

        in_process = any(endpoints.is_emulator(url) for url in self.endpoints.keyed.values())
        limit, capped = openloop.concurrency(d.max_concurrency, per_call=2 if in_process else 1)

        async def main() -> list[CallRecord]:
            async with llm.session():
                for target in self.experiment.targets:
                    await llm.prepare(**_options(target, self.endpoints.called[target.name]))
                return await openloop.drive([c.offset_s for c in self.calls], send, max_concurrency=limit,
                                           early_s=openloop.EARLY_S)

        with self.recorder.run.batched(), bar:
            records = openloop.run(main())
        return (f"{len(records)} sent, {sum(not r.ok for r in records)} errors" + capped
                + openloop.lateness_warning(records, capped=bool(capped)))


def sessions(run: Run, experiment: Experiment, window: str | None) -> list[Slot]:
    """The sessions a collection of ``experiment`` into ``run`` makes: one, or one per open-loop rate
    (with the try to collect: the complete one if the run has it, else a new one)."""
    if experiment.design.mode == "serial":
        return [Slot(window)]
    entries = run.manifest.get("sessions", []) if run.exists else []
    slots = []
    for rate in experiment.design.rate_per_s:
        old = next((e for e in entries if e.get("window") == window and e.get("rate_per_s") == rate), None)
        keep = old is not None and old.get("ended_at") is not None
        slots.append(Slot(window, rate, old["attempt"] if keep else uuid.uuid4().hex[:8]))
    return slots


def endpoints_of(experiment: Experiment) -> dict[str, str]:
    """Each target's own endpoint (its ``base_url``, else its provider's)."""
    return {t.name: t.base_url or config.resolve(t.provider, t.model, require_key=False).endpoint
            for t in experiment.targets}


def plan_sessions(run: Run, experiment: Experiment, *, window: str | None = None, emulated: bool = False,
                  live: bool = False, command: str = "", progress: bool = True) -> list[collector.Session]:
    """The collector's sessions for a collection of ``experiment`` into ``run``; while a session is
    collected, ``session.extra["endpoints"].called`` must hold each target's URL (see :func:`collect`)."""
    recorder = Recorder(run, mode="live" if live else "local", collect_hint=command, experiment=experiment.name)
    found = []
    for slot in sessions(run, experiment, window):
        where = _Endpoints({t.name: endpoints.EMULATOR for t in experiment.targets} if emulated else
                           {name: endpoints.identity(url) for name, url in endpoints_of(experiment).items()})
        calls = plan(experiment, slot)
        if experiment.design.mode == "serial":
            units: list[Any] = [_Call(recorder, c, slot, where, experiment.design.timeout_s) for c in calls]
        else:
            units = [_Schedule(experiment, recorder, calls, slot, where, progress)]
        entry = {"window": slot.window, "rate_per_s": slot.rate_per_s, "attempt": slot.attempt,
                 "endpoints": where.keyed, "command": command}
        found.append(collector.Session(
            experiment.name, experiment.describe(), entry, ("window", "rate_per_s"), units,
            pause_s=experiment.design.pause_s, label=slot.label or experiment.name,
            unit_name="call" if experiment.design.mode == "serial" else "schedule",
            report_units=experiment.design.mode != "serial",
            extra={"endpoints": where, "slot": slot}))
    return found


@contextlib.contextmanager
def emulators(experiment: Experiment, profile: str, seed: int, session_name: str,
              responder: Any = None) -> Iterator[dict[str, str]]:
    """In-process emulators for the targets, one per latency profile (a target's own ``emulator``
    profile, else ``profile``), seeded by ``seed`` and the session's name; yields each target's URL."""
    from lab.emulator import Emulator
    from lab.emulator.content import default_responder

    with contextlib.ExitStack() as stack:
        running: dict[str, Any] = {}
        urls = {}
        for target in experiment.targets:
            chosen = target.emulator or profile
            if chosen not in running:
                running[chosen] = stack.enter_context(Emulator(chosen, seed=seed ^ zlib.crc32(session_name.encode()),
                                                               responder=responder or default_responder))
            urls[target.name] = running[chosen].url_for(target.provider)
        yield urls


def collect(run: Run, experiment: Experiment, *, window: str | None = None, emulator: str | None = None,
            seed: int = 0, live: bool = False, command: str = "", progress: bool = True, wait: bool = False,
            responder: Any = None) -> int:
    """Collect what ``run`` lacks of ``experiment``; with ``emulator`` (a latency profile) against
    in-process emulators. Returns the calls made (serial) or the schedules run (open loop).
    Provider failures are recorded, never raised."""
    def planned() -> list[collector.Session]:
        return plan_sessions(run, experiment, window=window, emulated=emulator is not None, live=live,
                             command=command, progress=progress)

    @contextlib.contextmanager
    def endpoints_for(session: collector.Session) -> Iterator[None]:
        where: _Endpoints = session.extra["endpoints"]
        if emulator is None:
            where.called.update(endpoints_of(experiment))
            yield
            return
        with emulators(experiment, emulator, seed, session.extra["slot"].label or "", responder) as urls:
            where.called.update(urls)
            yield

    return collector.collect(run, planned, command=command, wait=wait, progress=progress, context=endpoints_for)


# -- loading --------------------------------------------------------------------------------------


def load(run: Run | str, *, root: Path | str | None = None) -> pd.DataFrame:
    """Every planned call of every session of a run, as a frame of call records, in plan order;
    :class:`MissingRecord` naming the first missing call and the command that collects it."""
    run = run if isinstance(run, Run) else Run(run, root)
    manifest = run.manifest
    experiment = Experiment.from_description(manifest["experiment"], manifest["design"])
    recorder = Recorder(run, mode="replay")
    records = []
    for entry in manifest.get("sessions", []):
        slot = Slot(entry.get("window"), entry.get("rate_per_s"), entry.get("attempt"))
        calls = plan(experiment, slot)
        keys = [key_of(recorder, c, slot, entry["endpoints"][c.target.name]) for c in calls]
        found = [run.get(k) for k in keys]
        absent = [k for k, r in zip(keys, found) if r is None]
        if absent:
            raise MissingRecord(f"run {run.id!r} lacks {len(absent)} of {len(keys)} calls of session "
                                f"{slot.label or experiment.name!r} (first: {absent[0].describe()}); collect them "
                                f"(it resumes) with: {entry.get('command') or 'the command that collected the run'}")
        records += found
    return records_frame(records)
