"""The proxy's policy file (TOML): upstreams, and routes with fallback, hedging and shadow mode.

Two upstreams always exist, from the command line: ``anthropic`` and ``openai``. A policy file
adds others and routes requests among them::

    [upstreams.backup]              # another upstream
    url = "https://api.openai.com/v1"   # as an SDK's base URL takes it
    format = "openai"               # the API it speaks: anthropic or openai
    provider = "openai"             # for records and prices (default: the format;
                                    # an OpenAI-compatible server: "openai-compatible")
    api_key_env = "OPENAI_API_KEY"  # send this variable's key, not the caller's (across APIs the
                                    # caller's key is never sent: give one, unless it needs none)

    [[routes]]
    name = "haiku"                  # the records' target
    models = ["claude-haiku-*"]     # request models it takes (fnmatch patterns)
    upstream = "anthropic"          # the primary (model = "..." asks it for another model)
    timeout_s = 120                 # each attempt's deadline (default: --timeout)
    shadow = false                  # true: make and record the extra attempts, deliver the primary's

    [routes.hedge]                  # a second attempt when the primary is slow
    upstream = "anthropic"
    delay_s = 1.5                   # or: percentile = 95, window = 200, initial_s = 1.5
    on = "ttft"                     # "ttft" (first content) or "latency" (whole answer)
    budget = { percent = 10, requests = 100 }   # or seconds = 60 (this is the default)

    [routes.fallback]               # when the attempts fail (or the primary is too slow)
    upstream = "backup"
    model = "gpt-5-mini"
    timeout_s = 10                  # give the primary up if it has not answered by then

A request takes the route its ``x-lab-route`` header names, else the first route whose
``models`` match its model, else the plain route of its API (named ``anthropic`` or ``openai``).
Every mistake raises :class:`PolicyError`, one line naming the file, the field and what is valid.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lab.core import endpoints
from lab.core.config import DEFAULT_ENDPOINTS, PROVIDERS
from lab.core.errors import BadInput
from lab.core.redact import clean_url
from lab.proxy import DEFAULT_TIMEOUT_S
from lab.proxy.wire import ANTHROPIC, FORMATS, OPENAI

DEFAULT_URLS = {api: str(DEFAULT_ENDPOINTS[api]) for api in FORMATS}
DEFAULT_BUDGET = {"percent": 10.0, "requests": 100}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class PolicyError(BadInput):
    """A policy file that cannot be used; the message says where and what to write instead."""


@dataclass(frozen=True)
class Upstream:
    """A server the proxy forwards to. The key named by ``api_key_env`` is read when the proxy starts."""

    name: str
    url: str
    format: str
    provider: str
    api_key_env: str | None = None

    def describe(self) -> dict[str, Any]:
        """For the manifest: the URL without credentials or query, never a key."""
        return {"url": clean_url(self.url), "format": self.format, "provider": self.provider,
                "api_key_env": self.api_key_env}


@dataclass(frozen=True)
class RouteTarget:
    """One attempt's destination: an upstream, and the model to ask it for (None: the caller's)."""

    upstream: Upstream
    model: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"upstream": self.upstream.name, "model": self.model}


@dataclass(frozen=True)
class Budget:
    """At most ``percent`` % extra requests over the last ``requests`` requests or ``seconds`` seconds."""

    percent: float
    requests: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Hedge:
    """A second attempt started when the primary has not answered (``on``) after the delay: ``delay_s``,
    or the ``percentile`` of the primary's recent times (censoring-aware, over ``window`` requests,
    ``initial_s`` until one is seen)."""

    target: RouteTarget
    on: Literal["ttft", "latency"] = "ttft"
    delay_s: float | None = None
    percentile: float | None = None
    window: int = 200
    initial_s: float = 1.0
    budget: Budget = Budget(**DEFAULT_BUDGET)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Fallback:
    """An attempt made when every attempt so far failed, or when the primary has not answered after
    ``timeout_s`` (then given up)."""

    target: RouteTarget
    timeout_s: float | None = None


@dataclass(frozen=True)
class Route:
    name: str
    primary: RouteTarget
    models: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    hedge: Hedge | None = None
    fallback: Fallback | None = None
    shadow: bool = False

    def matches(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    @property
    def plain(self) -> bool:
        return self.hedge is None and self.fallback is None

    @property
    def policy(self) -> str:
        """``single``, ``hedge``, ``fallback`` or ``hedge+fallback``."""
        return "+".join(p for p, on in (("hedge", self.hedge), ("fallback", self.fallback)) if on) or "single"

    def targets(self) -> list[RouteTarget]:
        return [self.primary] + [s.target for s in (self.hedge, self.fallback) if s is not None]

    def describe(self) -> dict[str, Any]:
        def part(spec: Hedge | Fallback | None) -> dict[str, Any] | None:
            if spec is None:
                return None
            values = {k: v for k, v in vars(spec).items() if k not in ("target", "budget")}
            if isinstance(spec, Hedge) and spec.percentile is None:
                del values["window"], values["initial_s"]
            if isinstance(spec, Hedge):
                values["budget"] = {k: v for k, v in vars(spec.budget).items() if v is not None}
            return {**spec.target.describe(), **{k: v for k, v in values.items() if v is not None}}

        return {"name": self.name, "models": list(self.models), **self.primary.describe(),
                "timeout_s": self.timeout_s, "shadow": self.shadow, "hedge": part(self.hedge),
                "fallback": part(self.fallback)}


@dataclass(frozen=True)
class Policy:
    """Upstreams by name, the routes in order, and the plain route of each API."""

    upstreams: Mapping[str, Upstream]
    routes: tuple[Route, ...]
    defaults: Mapping[str, Route]

    def route_for(self, api: str, model: str, name: str | None = None) -> Route:
        """The route a request takes; raises ``LookupError`` for a route name that does not exist."""
        if name:
            for route in (*self.routes, *self.defaults.values()):
                if route.name == name:
                    return route
            known = ", ".join(r.name for r in (*self.routes, *self.defaults.values()))
            raise LookupError(f"no route named {name[:64]!r} (x-lab-route); routes: {known}")
        for route in self.routes:
            if route.matches(model):
                return route
        return self.defaults[api]

    def keys(self) -> dict[str, str | None]:
        """The keys of upstreams with ``api_key_env``, read from the environment now (never stored)."""
        return {u.name: os.environ.get(u.api_key_env) for u in self.upstreams.values() if u.api_key_env}

    def check_keys(self) -> None:
        """Refuse to start when an upstream's ``api_key_env`` names a variable that is not set: every request
        routed there would fail."""
        unset = [f"{u.api_key_env} (upstream {u.name})" for u in self.upstreams.values()
                 if u.api_key_env and not os.environ.get(u.api_key_env)]
        if unset:
            raise PolicyError(f"the policy names keys that are not set: {', '.join(unset)}; set them in the "
                              "environment, or drop api_key_env to pass the caller's own key")

    def describe(self) -> dict[str, Any]:
        """For the run's manifest (its design): upstreams without credentials, and the routes."""
        return {"upstreams": {n: u.describe() for n, u in sorted(self.upstreams.items())},
                "routes": [r.describe() for r in self.routes]}


def check_url(url: str, what: str = "upstream URL") -> str:
    """An http(s) URL with a host, without a trailing slash (:func:`lab.core.endpoints.http_url`); raises
    :class:`PolicyError`."""
    try:
        return endpoints.http_url(url)
    except ValueError as exc:
        raise PolicyError(f"{what} {exc}") from None


def default_policy(anthropic_url: str = DEFAULT_URLS[ANTHROPIC], openai_url: str = DEFAULT_URLS[OPENAI],
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> Policy:
    """No policy file: each API's requests go, unchanged, to its upstream."""
    return parse("", anthropic_url=anthropic_url, openai_url=openai_url, timeout_s=timeout_s)


def load(path: Path | str, *, anthropic_url: str = DEFAULT_URLS[ANTHROPIC],
         openai_url: str = DEFAULT_URLS[OPENAI], timeout_s: float = DEFAULT_TIMEOUT_S) -> Policy:
    """Read a policy file; raises :class:`PolicyError` (one line) when it cannot be used."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist: pass --policy with a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from None
    return parse(text, where=str(path), anthropic_url=anthropic_url, openai_url=openai_url, timeout_s=timeout_s)


def parse(text: str, *, where: str = "policy", anthropic_url: str = DEFAULT_URLS[ANTHROPIC],
          openai_url: str = DEFAULT_URLS[OPENAI], timeout_s: float = DEFAULT_TIMEOUT_S) -> Policy:
    """A policy from TOML text (``where`` names it in messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where} is not valid TOML: {exc}") from None
    return _Reader(where, timeout_s).policy(data, {ANTHROPIC: anthropic_url, OPENAI: openai_url})


class _Reader:
    """Checks a parsed policy field by field, naming each mistake's place."""

    def __init__(self, where: str, timeout_s: float) -> None:
        self.where, self.timeout_s = where, timeout_s

    def fail(self, place: str, problem: str) -> PolicyError:
        return PolicyError(f"{self.where}: {place}: {problem}")

    def table(self, value: Any, place: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
              ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(place, f"expected a table, found {type(value).__name__}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise self.fail(place, f"unknown key {unknown[0]!r} (expected some of: {', '.join(allowed)})")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(place, f"{missing[0]} is required")
        return value

    def string(self, value: Any, place: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(place, "expected a non-empty string")
        if choices is not None and value not in choices:
            raise self.fail(place, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def name(self, value: Any, place: str) -> str:
        value = self.string(value, place)
        if not NAME.fullmatch(value):
            raise self.fail(place, f"{value[:70]!r} is not a name: use 1 to 64 letters, digits, '.', '_' or '-'")
        return value

    def number(self, value: Any, place: str, *, above: float | None = None, minimum: float | None = None,
               maximum: float | None = None, integer: bool = False) -> float:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            raise self.fail(place, f"expected {'a whole number' if integer else 'a number'}, found {value!r}")
        if above is not None and value <= above:
            raise self.fail(place, f"{value} is too small: it must be above {above:g}")
        if minimum is not None and value < minimum:
            raise self.fail(place, f"{value} is too small: it must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise self.fail(place, f"{value} is too large: it must be at most {maximum:g}")
        return value

    def policy(self, data: dict[str, Any], urls: dict[str, str]) -> Policy:
        self.table(data, "the file", ("upstreams", "routes"))
        upstreams = {api: Upstream(api, check_url(urls[api], f"--{api}-upstream"), api, api) for api in FORMATS}
        declared = data.get("upstreams", {})
        if not isinstance(declared, dict):
            raise self.fail("upstreams", "expected tables such as [upstreams.backup]")
        for name, spec in declared.items():
            place = f"upstreams.{name}"
            self.name(name, place)
            if name in FORMATS:
                raise self.fail(place, f"{name!r} is the command line's upstream: set it with --{name}-upstream, "
                                       "or give this one another name")
            spec = self.table(spec, place, ("url", "format", "provider", "api_key_env"), ("url", "format"))
            try:
                url = check_url(self.string(spec["url"], f"{place}.url"))
            except PolicyError as exc:
                raise self.fail(f"{place}.url", str(exc)) from None
            api = self.string(spec["format"], f"{place}.format", FORMATS)
            provider = self.string(spec.get("provider", api), f"{place}.provider", PROVIDERS)
            if (provider == ANTHROPIC) != (api == ANTHROPIC):
                raise self.fail(f"{place}.provider", f"{provider!r} does not speak the {api} format")
            key_env = spec.get("api_key_env")
            if key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.string(key_env, place)):
                raise self.fail(f"{place}.api_key_env", f"{key_env!r} is not an environment variable name")
            upstreams[name] = Upstream(name, url, api, provider, key_env)
        routes = data.get("routes", [])
        if not isinstance(routes, list):
            raise self.fail("routes", "expected an array of tables ([[routes]])")
        parsed = tuple(self.route(spec, f"routes[{i}]", upstreams) for i, spec in enumerate(routes))
        names = [r.name for r in parsed]
        for i, name in enumerate(names):
            if name in names[:i] or name in FORMATS:
                raise self.fail(f"routes[{i}].name", f"{name!r} is taken (route names are unique, and "
                                                     f"{' and '.join(FORMATS)} name the plain routes)")
        defaults = {api: Route(api, RouteTarget(upstreams[api]), timeout_s=self.timeout_s) for api in FORMATS}
        return Policy(upstreams, parsed, defaults)

    def target(self, spec: dict[str, Any], place: str, upstreams: dict[str, Upstream]) -> RouteTarget:
        name = self.string(spec["upstream"], f"{place}.upstream")
        if name not in upstreams:
            raise self.fail(f"{place}.upstream", f"no upstream named {name!r} (known: {', '.join(upstreams)})")
        model = spec.get("model")
        return RouteTarget(upstreams[name], None if model is None else self.string(model, f"{place}.model"))

    def route(self, spec: Any, place: str, upstreams: dict[str, Upstream]) -> Route:
        spec = self.table(spec, place, ("name", "models", "upstream", "model", "timeout_s", "shadow", "hedge",
                                        "fallback"), ("name", "upstream"))
        name = self.name(spec["name"], f"{place}.name")
        models = spec.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise self.fail(f"{place}.models", "expected a list of model patterns (strings), e.g. [\"claude-*\"]")
        timeout = self.number(spec.get("timeout_s", self.timeout_s), f"{place}.timeout_s", above=0)
        shadow = spec.get("shadow", False)
        if not isinstance(shadow, bool):
            raise self.fail(f"{place}.shadow", "expected true or false")
        hedge = self.hedge(spec["hedge"], f"{place}.hedge", upstreams) if "hedge" in spec else None
        fallback = self.fallback(spec["fallback"], f"{place}.fallback", upstreams) if "fallback" in spec else None
        if shadow and hedge is None and fallback is None:
            raise self.fail(f"{place}.shadow", "shadow mode needs a hedge or a fallback to shadow")
        return Route(name, self.target(spec, place, upstreams), tuple(models), timeout, hedge, fallback, shadow)

    def hedge(self, spec: Any, place: str, upstreams: dict[str, Upstream]) -> Hedge:
        spec = self.table(spec, place, ("upstream", "model", "on", "delay_s", "percentile", "window", "initial_s",
                                        "budget"), ("upstream",))
        if ("delay_s" in spec) == ("percentile" in spec):
            raise self.fail(place, "give either delay_s (a fixed delay) or percentile (of recent primaries)")
        on = self.string(spec.get("on", "ttft"), f"{place}.on", ("ttft", "latency"))
        budget_spec = self.table(spec.get("budget", DEFAULT_BUDGET), f"{place}.budget",
                                 ("percent", "requests", "seconds"), ("percent",))
        if ("requests" in budget_spec) == ("seconds" in budget_spec):
            raise self.fail(f"{place}.budget", "give either requests (a window of N requests) or seconds")
        budget = Budget(
            self.number(budget_spec["percent"], f"{place}.budget.percent", above=0, maximum=100),
            int(self.number(budget_spec["requests"], f"{place}.budget.requests", minimum=1, integer=True))
            if "requests" in budget_spec else None,
            self.number(budget_spec["seconds"], f"{place}.budget.seconds", above=0)
            if "seconds" in budget_spec else None)
        return Hedge(
            self.target(spec, place, upstreams), on,  # type: ignore[arg-type]
            delay_s=self.number(spec["delay_s"], f"{place}.delay_s", minimum=0) if "delay_s" in spec else None,
            percentile=self.number(spec["percentile"], f"{place}.percentile", above=0, maximum=99.99)
            if "percentile" in spec else None,
            window=int(self.number(spec.get("window", 200), f"{place}.window", minimum=1, integer=True)),
            initial_s=self.number(spec.get("initial_s", 1.0), f"{place}.initial_s", minimum=0),
            budget=budget)

    def fallback(self, spec: Any, place: str, upstreams: dict[str, Upstream]) -> Fallback:
        spec = self.table(spec, place, ("upstream", "model", "timeout_s"), ("upstream",))
        timeout = spec.get("timeout_s")
        return Fallback(self.target(spec, place, upstreams),
                        None if timeout is None else self.number(timeout, f"{place}.timeout_s", above=0))
