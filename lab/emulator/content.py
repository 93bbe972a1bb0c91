"""Synthetic answers: what the emulator says, separate from how (wire) and when (profiles).

A :data:`Responder` turns a parsed :class:`ChatRequest` into answer text; the server splits the
text into tokens with :func:`split_tokens`, one streamed delta each. :func:`default_responder`
writes sentences about infrastructure reliability, or a JSON instance of the requested schema
(:func:`json_from_schema`). A content policy (e.g. a code reviewer reading the prompt) is just
another responder passed to ``Emulator(responder=...)``. The thinking phase, when a request has one,
is always :func:`synthetic_thinking` (responders write only the answer).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatRequest:
    """One chat request, API-neutral. ``output_tokens`` is the drawn answer length (already capped
    by ``max_tokens``); ``variant`` is a seeded per-request number for varying the content.
    ``thinking_budget``: the request asked for extended thinking with this budget (Anthropic)."""

    api: str
    model: str
    prompt: str
    max_tokens: int | None
    stream: bool
    schema: Mapping[str, Any] | None = None
    json_object: bool = False
    output_tokens: int = 0
    variant: int = 0
    thinking_budget: int | None = None
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def structured(self) -> bool:
        return self.schema is not None or self.json_object


Responder = Callable[[ChatRequest], str]

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+$")


def estimate_tokens(text: str) -> int:
    """Input token estimate: one token per four characters, at least one."""
    return max(1, math.ceil(len(text) / 4))


def split_tokens(text: str) -> list[str]:
    """Word-ish tokens (a word or one punctuation character, with its leading whitespace);
    ``"".join(split_tokens(t)) == t``."""
    return _TOKEN.findall(text)


_SENTENCES = (
    "Reliable infrastructure keeps a software company's promises to its customers.",
    "When a dependency fails, every minute of downtime costs revenue and trust.",
    "Teams that measure latency tails find problems before their users do.",
    "Retries, timeouts and fallbacks turn a partial outage into a slow afternoon.",
    "Capacity planning matters because peak traffic rarely arrives on schedule.",
    "Observability lets engineers explain an incident instead of guessing at it.",
    "A dependable platform frees product teams to ship features with confidence.",
)
_THINKING_SENTENCES = (
    "The question is about reliability, so I should connect it to customers and revenue.",
    "A short answer needs one concrete cost of downtime and one practice that prevents it.",
    "Latency tails matter more than averages, which is worth a sentence of its own.",
    "I will keep it to two or three sentences, as the prompt asks.",
)


class _Prose:
    """Sentences as one cyclic token stream; an excerpt starts at a sentence boundary."""

    def __init__(self, sentences: tuple[str, ...]) -> None:
        self.tokens = split_tokens(" " + " ".join(sentences))
        self.starts = [i for i, t in enumerate(self.tokens) if i == 0 or self.tokens[i - 1] == "."]

    def excerpt(self, n_tokens: int, variant: int) -> str:
        start = self.starts[variant % len(self.starts)]
        repeats = (start + n_tokens) // len(self.tokens) + 1
        return "".join((self.tokens * repeats)[start : start + n_tokens]).lstrip()


_ANSWER, _THINKING = _Prose(_SENTENCES), _Prose(_THINKING_SENTENCES)


def synthetic_text(n_tokens: int, variant: int = 0) -> str:
    """Exactly ``n_tokens`` tokens of reliability prose, starting at sentence ``variant``."""
    return _ANSWER.excerpt(n_tokens, variant)


def synthetic_thinking(n_tokens: int, variant: int = 0) -> str:
    """Exactly ``n_tokens`` tokens of plausible reasoning, starting at sentence ``variant``."""
    return _THINKING.excerpt(n_tokens, variant)


def default_responder(request: ChatRequest) -> str:
    """Schema instance for structured output, ``{"answer": ...}`` for JSON mode, else prose."""
    if request.schema is not None:
        return json.dumps(json_from_schema(request.schema))
    text = synthetic_text(request.output_tokens, request.variant)
    return json.dumps({"answer": text}) if request.json_object else text


_MAX_DEPTH = 4
_MAX_STEPS = 20_000  # schema nodes visited per instance (bounds $ref cycles and huge minItems)
_MAX_LENGTH = 100_000  # longest string a minLength may ask for
_FORMATS = {
    "date-time": "2026-01-01T12:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00Z",
    "duration": "PT1S",
    "email": "synthetic@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/synthetic",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


class UnsupportedSchema(ValueError):
    """A JSON schema :func:`json_from_schema` cannot build an instance of (malformed, cyclic or huge)."""


def json_from_schema(schema: Mapping[str, Any]) -> Any:
    """A deterministic instance of ``schema``: objects (all properties near the root, required
    ones always), arrays (``minItems``, else one item), strings (``enum``, ``const``, common
    ``format``s, length bounds), integers/numbers within bounds, booleans, null, ``$ref`` into
    ``$defs``/``definitions``, ``anyOf``/``oneOf`` (first non-null branch; null when deep) and
    ``allOf``. Numeric constraints that a client moved into the description as a trailing
    ``{minItems: 2, ...}`` (the Anthropic SDK's ``transform_schema`` does) are honoured too.
    Not honoured: ``pattern``, ``multipleOf``, ``not``, ``if``/``then``. Raises
    :class:`UnsupportedSchema` for a schema it cannot follow (bad ``$ref``, wrong types, a
    required cycle, an instance too large to build)."""
    try:
        return _Generator(schema).value(schema, "value", 0, 0)
    except UnsupportedSchema:
        raise
    except (LookupError, TypeError, AttributeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise UnsupportedSchema(f"cannot build an instance of this schema ({type(exc).__name__}: {exc})") from None


class _Generator:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.steps = 0

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        if not isinstance(schema, Mapping):
            raise UnsupportedSchema(f"expected a schema object, found {type(schema).__name__}")
        while "$ref" in schema:
            self.count_step()
            node: Any = self.root
            for part in schema["$ref"].removeprefix("#").split("/"):
                if part:
                    node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    def count_step(self) -> None:
        self.steps += 1
        if self.steps > _MAX_STEPS:
            raise UnsupportedSchema(f"the schema needs more than {_MAX_STEPS:,} steps (a cycle or a huge instance)")

    def value(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> Any:
        self.count_step()
        schema = _with_description_hints(self.resolve(schema))
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][salt % len(schema["enum"])]
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            return self.value({**rest, **self.pick(branches, depth)}, name, depth, salt)
        if "allOf" in schema:
            return self.value(self.merge(schema), name, depth, salt)
        kind = schema.get("type")
        if isinstance(kind, list):
            options = [k for k in kind if k != "null"]
            kind = "null" if not options or ("null" in kind and depth >= _MAX_DEPTH) else options[0]
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind not in _KINDS:
            raise UnsupportedSchema(f"unknown type {kind!r}")
        return getattr(self, f"gen_{kind}")(schema, name, depth, salt)

    def pick(self, branches: list[Mapping[str, Any]], depth: int) -> Mapping[str, Any]:
        nulls = [b for b in branches if self.resolve(b).get("type") == "null"]
        others = [b for b in branches if b not in nulls]
        return nulls[0] if nulls and (depth >= _MAX_DEPTH or not others) else others[0]

    def merge(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in map(self.resolve, schema["allOf"]):
            properties = {**merged.get("properties", {}), **part.get("properties", {})}
            required = [*merged.get("required", []), *part.get("required", [])]
            merged.update(part, properties=properties, required=required)
        return merged

    def gen_object(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> dict[str, Any]:
        required = set(schema.get("required", ()))
        return {
            key: self.value(sub, key, depth + 1, salt)
            for key, sub in schema.get("properties", {}).items()
            if key in required or depth < _MAX_DEPTH
        }

    def gen_array(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> list[Any]:
        count = max(schema.get("minItems", 0), 1 if depth < _MAX_DEPTH else 0)
        count = min(count, schema.get("maxItems", count))
        items = schema.get("items", {})
        return [self.value(items, name, depth + 1, salt + i) for i in range(count)]

    def gen_string(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> str:
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        suffix = f" {salt}" if salt else ""  # keeps array items distinct
        text = f"synthetic {name}"
        if "maxLength" in schema:
            text = (text[: max(schema["maxLength"] - len(suffix), 0)] + suffix)[: schema["maxLength"]]
        else:
            text += suffix
        if schema.get("minLength", 0) > _MAX_LENGTH:
            raise UnsupportedSchema(f"minLength above {_MAX_LENGTH:,}")
        return text.ljust(schema.get("minLength", 0), "x")

    def gen_integer(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> int:
        low, high = _bounds(schema, step=1)
        return math.ceil(min(max(3 + salt, low), high))

    def gen_number(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> float:
        low, high = _bounds(schema, step=1e-6)
        return float(min(max(0.5 + salt, low), high))

    def gen_boolean(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> bool:
        return True

    def gen_null(self, schema: Mapping[str, Any], name: str, depth: int, salt: int) -> None:
        return None


_KINDS = ("object", "array", "string", "integer", "number", "boolean", "null")
_HINTS = re.compile(r"\{([^{}]*)\}\s*$")
_HINT = re.compile(r"(\w+): (-?\d+(?:\.\d+)?)")


def _with_description_hints(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    match = _HINTS.search(schema.get("description", ""))
    if not match:
        return schema
    hints = {key: float(number) if "." in number else int(number) for key, number in _HINT.findall(match.group(1))}
    return {**hints, **schema}


def _bounds(schema: Mapping[str, Any], step: float) -> tuple[float, float]:
    low, high = schema.get("minimum", float("-inf")), schema.get("maximum", float("inf"))
    if "exclusiveMinimum" in schema:
        low = max(low, schema["exclusiveMinimum"] + step)
    if "exclusiveMaximum" in schema:
        high = min(high, schema["exclusiveMaximum"] - step)
    return low, high
