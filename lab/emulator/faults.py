"""Fault injection: rules per emulator (time windows, models, probabilities) or one per request.

Kinds and their parameters (defaults in :data:`DEFAULT_PARAMS`):

* ``rate_limit`` (429, ``retry_after`` seconds), ``overloaded`` (529 Anthropic / 503 OpenAI),
  ``server_error`` (500). With ``after=N`` on a streamed request the error arrives mid-stream,
  after N deltas (thinking deltas count), as an SSE error event instead of an HTTP status.
* ``timeout``: nothing, not even headers, for ``ms`` milliseconds (or until the client leaves).
* ``stall_first_token``: headers and start events go out, the first token waits ``ms`` more.
* ``slow_stream``: inter-token time multiplied by ``factor``.
* ``cut_stream``: the connection closes mid-body, after ``after`` deltas (default: half)
  when streamed, after half of the JSON body (with a full ``Content-Length``) when not.
* ``malformed_json``: structured output gets truncated JSON text; otherwise the body itself
  (or one SSE event's data) is invalid JSON.

A request forces a fault with the header ``x-emulator-fault: KIND`` or ``KIND;ms=5000;after=3``.
Parameters are finite numbers of at least 0, and each kind takes only its own (:data:`PARAMETERS`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lab.core.errors import BadInput

FAULT_HEADER = "x-emulator-fault"

DEFAULT_PARAMS: dict[str, dict[str, float]] = {
    "rate_limit": {"retry_after": 1.0},
    "overloaded": {},
    "server_error": {},
    "timeout": {"ms": 30_000.0},
    "stall_first_token": {"ms": 5_000.0},
    "slow_stream": {"factor": 10.0},
    "cut_stream": {},
    "malformed_json": {},
}
PARAMETERS: dict[str, tuple[str, ...]] = {
    "rate_limit": ("retry_after", "after"),
    "overloaded": ("after",),
    "server_error": ("after",),
    "timeout": ("ms",),
    "stall_first_token": ("ms",),
    "slow_stream": ("factor",),
    "cut_stream": ("after",),
    "malformed_json": (),
}
"""The parameters each kind takes."""
FAULT_KINDS = tuple(DEFAULT_PARAMS)
ERROR_KINDS = ("rate_limit", "overloaded", "server_error")


@dataclass(frozen=True)
class Fault:
    """A fault chosen for one request, with its parameters merged over the defaults."""

    kind: str
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in DEFAULT_PARAMS:
            raise BadInput(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        for name, value in self.params.items():
            if name not in PARAMETERS[self.kind]:
                takes = ", ".join(PARAMETERS[self.kind]) or "no parameters"
                raise BadInput(f"fault {self.kind} takes {takes}, not {name!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise BadInput(f"fault parameter {name} must be a finite number of at least 0, not {value!r}")
        object.__setattr__(self, "params", {**DEFAULT_PARAMS[self.kind], **self.params})


@dataclass(frozen=True)
class FaultRule:
    """Inject ``kind`` with ``probability`` into requests for ``models`` (substrings; None = all)
    received between ``start_s`` and ``end_s`` seconds after the emulator started (None = open)."""

    kind: str
    probability: float = 1.0
    start_s: float | None = None
    end_s: float | None = None
    models: Sequence[str] | None = None
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Fault(self.kind, self.params)  # validates the kind and parameters

    def applies(self, model: str, elapsed_s: float) -> bool:
        return (
            (self.start_s is None or elapsed_s >= self.start_s)
            and (self.end_s is None or elapsed_s < self.end_s)
            and (self.models is None or any(m.lower() in model.lower() for m in self.models))
        )


def parse_fault_header(value: str) -> Fault:
    """Parse ``KIND`` or ``KIND;name=value;...``; raises ``ValueError`` when malformed."""
    kind, *pairs = (part.strip() for part in value.split(";"))
    params = {}
    for pair in pairs:
        name, sep, number = pair.partition("=")
        if not sep:
            raise BadInput(f"fault parameter {pair!r} is not name=value")
        try:
            params[name.strip()] = float(number)
        except ValueError:
            raise BadInput(f"fault parameter {pair!r} is not name=number") from None
    return Fault(kind, params)


def select_fault(rules: Sequence[FaultRule], *, model: str, elapsed_s: float, rng: random.Random) -> Fault | None:
    """The first applicable rule whose probability draw succeeds. One uniform draw per rule,
    applicable or not, so the RNG sequence does not depend on the clock."""
    chosen = None
    for rule in rules:
        hit = rng.random() < rule.probability
        if chosen is None and hit and rule.applies(model, elapsed_s):
            chosen = Fault(rule.kind, rule.params)
    return chosen
