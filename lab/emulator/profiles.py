"""Latency profiles: what one emulated call costs in time, drawn per request from a seeded RNG.

A :class:`LatencyProfile` draws time to first token, output token count, inter-token time and a
rare stall. Total latency = TTFT + stall + (thinking tokens + output tokens) x inter-token time;
the stall is added before the first token and the token count is drawn independently of it.
``thinking_tokens`` (default 0) are streamed first, from the TTFT on; the text follows them.

Profiles by name or spec string (:func:`profile_set`): ``report``, ``fixed``, ``instant``,
``haiku``, ``sonnet``, optionally with parameters after a colon, e.g.
``fixed:ttft_ms=200,itl_ms=20,output_tokens=50``, ``instant:output_tokens=50`` or
``haiku:thinking_tokens=8`` (see :data:`SPEC_PARAMETERS`).

The ``haiku`` and ``sonnet`` profiles are fitted in code (:func:`fit_report_profiles`) to the
report's published figures in ``data/reference/experiment1_*.csv``:

* Model, per model. Body ``B = F * (ttft + n * itl)`` with one lognormal factor
  ``F ~ LogNormal(0, sigma_F)`` per call, so ``B`` is close to ``LogNormal(ln m, sigma)``;
  ``n ~ Normal(mean tokens, TOKENS_CV * mean)``; with probability ``p`` a stall
  ``S ~ LogNormal(ln s, sigma_s)`` is added.
* Targets, per model: mixture quantiles at 0.5 (mean of the window medians), 0.95 (mean of the
  window p95s) and the five per-window maxima at Hazen positions for a maximum of 50 calls
  (the i-th smallest of k maxima sits at ``((i + 0.5) / k) ** (1 / 50)``); pooled over both
  models, the share of calls over 3,000 ms (59 of 1,000).
* Fit. ``scipy.optimize.least_squares`` over the 10 parameters (``m, sigma, p, s, sigma_s`` per
  model) on the 15 residuals ``logit(F(x)) - logit(q)`` (log ratio for the pooled share).
  ``F`` is the mixture CDF, with ``E_B[P(S <= x - B)]`` by Gauss-Hermite quadrature over the
  body. Runs once per process (cached); the scipy import dominates its cost (about a second).
* Precision. Every fitted parameter is rounded to :data:`FIT_DIGITS` significant digits where it is
  fitted, so another machine's last-digit noise in the optimiser gives the same profiles and the same
  printed numbers; :func:`fit_id` names the fit (its code version and a hash of the reference data)
  where a cache key needs it, instead of the fitted floats.
* Split. A non-streamed report cannot separate TTFT from generation time: TTFT is assumed to be
  ``TTFT_SHARE`` of the body median, the rest spread over the mean output tokens (90, the
  report's typical output). ``sigma_F`` is ``sigma`` minus the token-count spread in quadrature.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from lab.core.errors import BadInput
from lab.core.paths import REFERENCE_DIR

TTFT_SHARE = 0.3
"""Assumed share of the body median spent before the first token (not identifiable from the report)."""
TOKENS_CV = 0.04
"""Assumed coefficient of variation of the output token count (identical prompts; the report gives means only)."""
OVER_MS = 3000.0
"""Threshold of the report's ``calls_over_3000ms`` aggregate."""
FIT_DIGITS = 4
"""Significant digits a fitted parameter keeps (the report's figures have four)."""
FIT_VERSION = 2
"""Bump when the fit's code changes what it returns: :func:`fit_id` changes with it."""


@dataclass(frozen=True)
class Draw:
    """One request's latency plan, in milliseconds."""

    ttft_ms: float
    itl_ms: float
    output_tokens: int
    stall_ms: float
    thinking_tokens: int = 0

    @property
    def total_ms(self) -> float:
        return self.ttft_ms + self.stall_ms + (self.thinking_tokens + self.output_tokens) * self.itl_ms


@dataclass(frozen=True)
class LatencyProfile:
    """Latency distribution of one model; ``ttft_ms``/``itl_ms`` are medians scaled by one lognormal factor.
    ``thinking_tokens`` are streamed before the text (a request can override the count)."""

    name: str
    ttft_ms: float
    itl_ms: float
    output_tokens: float
    tokens_sd: float = 0.0
    sigma: float = 0.0
    stall_prob: float = 0.0
    stall_median_ms: float = 0.0
    stall_sigma: float = 0.0
    thinking_tokens: int = 0

    @classmethod
    def fixed(
        cls, ttft_ms: float = 200.0, itl_ms: float = 0.0, output_tokens: int = 20, thinking_tokens: int = 0
    ) -> LatencyProfile:
        """Constant TTFT and inter-token time, fixed token count, no stalls."""
        return cls("fixed", ttft_ms, itl_ms, output_tokens, thinking_tokens=thinking_tokens)

    @classmethod
    def instant(cls, output_tokens: int = 20, thinking_tokens: int = 0) -> LatencyProfile:
        """No delay at all: for measuring the emulator's own overhead."""
        return cls("instant", 0.0, 0.0, output_tokens, thinking_tokens=thinking_tokens)

    def draw(self, rng: random.Random, max_tokens: int | None = None, thinking_tokens: int | None = None) -> Draw:
        """Draw one request; always consumes the same RNG values so later draws stay aligned.

        ``thinking_tokens`` overrides the profile's count. Thinking and text share ``max_tokens``:
        thinking gets at most ``max_tokens - 1`` of it, the text what thinking leaves."""
        factor = math.exp(self.sigma * rng.gauss(0.0, 1.0))
        tokens = max(1, round(rng.gauss(self.output_tokens, self.tokens_sd)))
        stalled = rng.random() < self.stall_prob
        size = self.stall_median_ms * math.exp(self.stall_sigma * rng.gauss(0.0, 1.0))
        stall = size if stalled else 0.0
        thinking = self.thinking_tokens if thinking_tokens is None else thinking_tokens
        if max_tokens is not None:
            thinking = min(thinking, max(max_tokens - 1, 0))
            tokens = min(tokens, max_tokens - thinking)
        return Draw(self.ttft_ms * factor, self.itl_ms * factor, tokens, stall, thinking)


def request_rng(seed: int, model: str, key: str) -> random.Random:
    """The RNG for one request: a function of (seed, model, key) only (any string, even one with
    lone surrogates from a JSON escape)."""
    return random.Random(f"{seed}|{model}|{key}".encode("utf-8", "surrogatepass"))


class ProfileSet:
    """Maps model ids to profiles by case-insensitive substring, first match wins; ``"*"`` is the default."""

    def __init__(self, rules: Mapping[str, LatencyProfile]) -> None:
        self._rules = [(k.lower(), p) for k, p in rules.items() if k != "*"]
        self._default = rules.get("*")

    def for_model(self, model: str) -> LatencyProfile:
        """The profile for ``model``; raises ``LookupError`` when nothing matches and there is no default."""
        lowered = model.lower()
        for substring, profile in self._rules:
            if substring in lowered:
                return profile
        if self._default is None:
            raise LookupError(model)
        return self._default


PROFILE_NAMES = ("report", "fixed", "instant", "haiku", "sonnet")
"""Names :func:`profile_set` accepts: the ``report`` set, or one named profile for every model."""

SPEC_PARAMETERS: dict[str, tuple[str, ...]] = {
    "fixed": ("ttft_ms", "itl_ms", "output_tokens", "thinking_tokens"),
    "instant": ("output_tokens", "thinking_tokens"),
    "haiku": ("thinking_tokens",),
    "sonnet": ("thinking_tokens",),
    "report": ("thinking_tokens",),
}
"""The parameters each name takes in a spec string ``NAME:param=value,...``."""
_INTEGER_PARAMETERS = ("output_tokens", "thinking_tokens")
MAX_TOKENS_PARAMETER = 100_000
"""Upper bound of ``output_tokens`` and ``thinking_tokens`` in a spec (and of the thinking header)."""


def _spec_help() -> str:
    takes = "; ".join(f"{name} takes {', '.join(params)}" for name, params in SPEC_PARAMETERS.items())
    return (f"expected {', '.join(PROFILE_NAMES[:-1])} or {PROFILE_NAMES[-1]}, optionally with parameters "
            f"NAME:param=value,... ({takes}; e.g. fixed:ttft_ms=200,itl_ms=20,output_tokens=50)")


def parse_spec(spec: str) -> tuple[str, dict[str, float]]:
    """Split ``NAME`` or ``NAME:param=value,...`` into the name and its parameters; raises
    ``ValueError`` (naming the valid names and parameters) when either is unknown or malformed."""
    if not isinstance(spec, str):
        raise BadInput(f"a latency profile must be a name or spec string, not {type(spec).__name__}; {_spec_help()}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in SPEC_PARAMETERS:
        raise BadInput(f"unknown latency profile {name!r}; {_spec_help()}")
    params: dict[str, float] = {}
    for pair in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, text = (part.strip() for part in pair.partition("="))
        if not sep or key not in SPEC_PARAMETERS[name] or key in params:
            problem = "repeated" if key in params else "not name=value" if not sep else "unknown"
            raise BadInput(f"latency profile {spec!r}: parameter {pair!r} is {problem}; {_spec_help()}")
        try:
            value = int(text) if key in _INTEGER_PARAMETERS else float(text)
        except ValueError:
            value = -1
        integer = key in _INTEGER_PARAMETERS
        least, most = (1 if key == "output_tokens" else 0), (MAX_TOKENS_PARAMETER if integer else math.inf)
        if not least <= value <= most or value == math.inf:
            kind = f"a whole number from {least} to {most:,}" if integer else "a finite number of at least 0"
            raise BadInput(f"latency profile {spec!r}: {key} must be {kind}, not {text!r}; {_spec_help()}")
        params[key] = value
    return name, params


def get_profile(name: str) -> LatencyProfile:
    """A named profile or spec: ``fixed`` (200 ms, 20 tokens), ``instant`` (no delay), ``haiku``,
    ``sonnet``, with optional parameters (``fixed:ttft_ms=200,itl_ms=20,output_tokens=50``)."""
    base, params = parse_spec(name)
    if base == "report":
        raise BadInput(f"'report' is a profile set (haiku and sonnet by model id), not one profile; {_spec_help()}")
    if base == "fixed":
        return LatencyProfile.fixed(**params)  # type: ignore[arg-type]
    if base == "instant":
        return LatencyProfile.instant(**params)  # type: ignore[arg-type]
    return replace(report_profiles()[base], **params) if params else report_profiles()[base]


def profile_set(spec: str | LatencyProfile | Mapping[str, LatencyProfile]) -> ProfileSet:
    """Resolve ``report`` (haiku or sonnet by model id substring, sonnet for other models), a
    profile name or spec string, or :class:`LatencyProfile` (every model), or a mapping {model
    substring or ``"*"``: profile}. Raises ``ValueError`` for an unknown name or parameter."""
    if isinstance(spec, LatencyProfile):
        return ProfileSet({"*": spec})
    if isinstance(spec, Mapping):
        return ProfileSet(spec)
    name, params = parse_spec(spec)
    if name == "report":
        fitted = {name: replace(p, **params) if params else p for name, p in report_profiles().items()}
        return ProfileSet({"haiku": fitted["haiku"], "sonnet": fitted["sonnet"], "*": fitted["sonnet"]})
    return ProfileSet({"*": get_profile(spec)})


READINGS = ("design", "stated")
"""How many calls the report's "59 calls over 3,000 ms" is a share of. The report's text says 1,000
(``"stated"``); its design, 5 windows x 2 models x 50 calls, makes 500 (``"design"``). Under the
stated reading the fit leaves Sonnet's body nearly constant (log-scale sigma about 0.03), and the
emulator then cannot produce the report's own 203 ms spread of Sonnet window medians; under the
design reading it can. The profiles use the design reading (:data:`READING`); notebook 01 shows both."""
READING = "design"


REFERENCE_FILES = (REFERENCE_DIR / "experiment1_windows.csv", REFERENCE_DIR / "experiment1_aggregates.csv")
"""The report's figures the profiles are fitted to."""


@functools.cache
def report_profiles(reading: str = READING) -> dict[str, LatencyProfile]:
    """The fitted ``haiku`` and ``sonnet`` profiles under a reading of :data:`READINGS` (computed once per
    process)."""
    return fit_report_profiles(*REFERENCE_FILES, reading)


@functools.cache
def fit_id() -> str:
    """What the fitted profiles are a function of, for a cache key: the fit's code version and a hash of the
    reference figures (line endings normalised), e.g. ``report-fit-2-3f9a0c12b4d5``."""
    digest = hashlib.sha256()
    for path in REFERENCE_FILES:
        digest.update(b"\n".join(path.read_bytes().splitlines()) + b"\0")
    return f"report-fit-{FIT_VERSION}-{digest.hexdigest()[:12]}"


def _rounded(value: float, digits: int = FIT_DIGITS) -> float:
    return float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class _Targets:
    quantiles: dict[str, list[tuple[float, float]]]  # model -> [(x_ms, q)]
    over_share: float
    mean_tokens: float


def _read_targets(windows_csv: Path, aggregates_csv: Path, reading: str) -> _Targets:
    with open(aggregates_csv, newline="") as f:
        agg = {row["name"]: float(row["value"]) for row in csv.DictReader(f)}
    with open(windows_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    per_window = agg["calls_per_window_model"]
    quantiles: dict[str, list[tuple[float, float]]] = {}
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        maxima = sorted(float(r["max_ms"]) for r in mine)
        quantiles[model.lower()] = [
            (sum(float(r["median_ms"]) for r in mine) / len(mine), 0.5),
            (sum(float(r["p95_ms"]) for r in mine) / len(mine), 0.95),
            *(((x, ((i + 0.5) / len(maxima)) ** (1 / per_window)) for i, x in enumerate(maxima))),
        ]
    if reading not in READINGS:
        raise BadInput(f"reading must be one of {', '.join(READINGS)}, not {reading!r}")
    calls = agg["n_calls"] if reading == "stated" else per_window * len(rows)
    return _Targets(quantiles, agg["calls_over_3000ms"] / calls, agg["mean_output_tokens_under_2000ms"])


def fit_report_profiles(windows_csv: Path, aggregates_csv: Path, reading: str = READING
                        ) -> dict[str, LatencyProfile]:
    """Fit the body + stall mixture to the report's figures (see the module docstring), the share of
    slow calls read as :data:`READINGS` says."""
    import numpy as np
    from scipy.optimize import least_squares
    from scipy.special import expit, logit, ndtr

    targets = _read_targets(windows_csv, aggregates_csv, reading)
    models = list(targets.quantiles)
    nodes, weights = np.polynomial.hermite_e.hermegauss(48)
    weights = weights / weights.sum()

    def cdf(x: float, m: float, sigma: float, p: float, s: float, sigma_s: float) -> float:
        rest = x - m * np.exp(sigma * nodes)
        ok = rest > 0
        stall_cdf = np.zeros_like(rest)
        stall_cdf[ok] = ndtr(np.log(rest[ok] / s) / sigma_s)
        return (1 - p) * ndtr(math.log(x / m) / sigma) + p * float(weights @ stall_cdf)

    def unpack(theta: np.ndarray) -> dict[str, tuple[float, float, float, float, float]]:
        return {
            model: (math.exp(a), math.exp(b), float(expit(c)), math.exp(d), math.exp(e))
            for model, (a, b, c, d, e) in zip(models, theta.reshape(-1, 5))
        }

    def residuals(theta: np.ndarray) -> np.ndarray:
        params = unpack(theta)
        out = [
            logit(np.clip(cdf(x, *params[model]), 1e-12, 1 - 1e-12)) - logit(q)
            for model in models
            for x, q in targets.quantiles[model]
        ]
        over = np.mean([1 - cdf(OVER_MS, *p) for p in params.values()])
        out.append(math.log(max(over, 1e-12) / targets.over_share))
        return np.array(out)

    start = []
    for model in models:
        (median, _), (p95, _), *_ = targets.quantiles[model]
        start += [math.log(median), math.log(math.log(p95 / median) / 1.645), logit(0.03), math.log(median), 0.0]
    fitted = unpack(least_squares(residuals, np.array(start)).x)

    tokens = targets.mean_tokens
    token_log_sd = (1 - TTFT_SHARE) * TOKENS_CV
    return {
        model: LatencyProfile(
            name=model,
            ttft_ms=_rounded(TTFT_SHARE * m),
            itl_ms=_rounded((1 - TTFT_SHARE) * m / tokens),
            output_tokens=tokens,
            tokens_sd=_rounded(TOKENS_CV * tokens),
            sigma=_rounded(math.sqrt(max(sigma**2 - token_log_sd**2, 0.0))),
            stall_prob=_rounded(p),
            stall_median_ms=_rounded(s),
            stall_sigma=_rounded(sigma_s),
        )
        for model, (m, sigma, p, s, sigma_s) in fitted.items()
    }
