"""A workload: your targets, your prompts, serial or open-loop, from a file or from code.

A :class:`Workload` asks one or more *targets* (a provider, model and endpoint, by name) each of
its *prompts* (text, system prompt, ``max_tokens``, a task label) under a :class:`Design`:

* ``serial``: ``repeats`` rounds, one call at a time with ``pause_s`` between calls. With
  ``order = "interleaved"`` every round is a block of all target x prompt x kind calls in a seeded
  random order, so targets are never confounded with time of day; ``"sequential"`` asks target by
  target, as the field report did. Resumable call by call.
* ``open-loop``: sends on a precomputed schedule (:mod:`lab.collect.openloop`) at each ``rate_per_s``
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

Every call is a call record of the run, labelled with its ``target`` and ``task``; it is collected and replayed
by :mod:`lab.collect.workload.collection` (see :class:`lab.collect.experiment.Experiment`), so any run of any
workload can be analysed from its manifest alone.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

from lab.core import config, endpoints, jsontext, validation
from lab.core.errors import BadInput

if TYPE_CHECKING:
    import pandas as pd

    from lab.collect import collector
    from lab.collect.experiment import Reach, Spend
    from lab.store import Run

KINDS = ("complete", "stream")
MODES = ("serial", "open-loop")
ORDERS = ("interleaved", "sequential")
MAX_CALLS = 1_000_000
"""Calls one session may plan (serial: repeats x targets x prompts x kinds; open loop: per rate)."""
MAX_SCHEDULE_S = 7 * 24 * 3600.0
"""Longest open-loop schedule, and longest pause, in seconds."""
MAX_TOKENS = 1_000_000
MAX_TEXT = 1_000_000


class ExperimentError(BadInput):
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
class Workload:
    """Targets x prompts under a design: an experiment (:class:`lab.collect.experiment.Experiment`) collected
    in ``window`` (a label of the time or the occasion; one session per window, or per window and rate)."""

    kind: ClassVar[str] = "workload"
    name: str
    targets: tuple[Target, ...]
    prompts: tuple[Prompt, ...]
    design: Design = Design()
    window: str | None = None

    def __post_init__(self) -> None:
        _check(self)

    def at(self, window: str | None) -> Workload:
        """The same workload, collected in ``window``."""
        return replace(self, window=window)

    def describe(self) -> dict[str, Any]:
        """The workload as the run's manifest keeps it (a resumption must ask for the same)."""
        return {"targets": [_drop_none(asdict(t)) for t in self.targets],
                "prompts": [_drop_none(asdict(p)) for p in self.prompts],
                "design": _drop_none(asdict(self.design))}

    @classmethod
    def from_description(cls, name: str, description: Mapping[str, Any]) -> Workload:
        design = dict(description["design"])
        for key in ("kinds", "rate_per_s"):
            design[key] = tuple(design.get(key, ()))
        return cls(name, tuple(Target(**t) for t in description["targets"]),
                   tuple(Prompt(**p) for p in description["prompts"]), Design(**design))

    # The experiment's methods: collecting needs the store and the provider layer, reading a file does not.

    def sessions(self, run: Run, reach: Reach, command: str) -> list[collector.Session]:
        from lab.collect.workload import collection

        return collection.sessions(run, self, reach, command)

    def spend(self, run: Run, reach: Reach) -> Spend:
        from lab.collect.workload import collection

        return collection.spend(run, self, reach)

    def finish(self, run: Run) -> None:
        """Nothing to do when a collection ends: every call was appended as it completed."""

    @classmethod
    def load(cls, run: Run) -> pd.DataFrame:
        from lab.collect.workload import collection

        return collection.load(run)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}


def _check(experiment: Workload) -> None:
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


def load_file(path: str | Path) -> Workload:
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
        return Workload(_name(path, data.get("name")), tuple(_validated(Target, t, f"target {i}")
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
