"""``lab doctor``: is each provider set up, and (on request) does one tiny call work?"""

from __future__ import annotations

from dataclasses import dataclass

from lab import llm
from lab.core import config

PROBE_PROMPT = "Reply with the single word: ready"


@dataclass(frozen=True)
class Check:
    """One provider's set-up, and the outcome of a probe call if one was made."""

    provider: str
    key: str
    endpoint: str
    model: str
    problem: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    call_status: str | None = None


def check(provider: str, *, call: bool = False) -> Check:
    """Inspect one provider's settings; with ``call`` make one tiny streamed call."""
    key_var = config.env_var(provider, "API_KEY")
    try:
        settings = config.resolve(provider, require_key=False)
    except config.ConfigurationError as exc:  # no endpoint or no model to name
        return Check(provider, f"{key_var} {'set' if config.key_set(provider) else 'not set'}", "not set",
                     "not set", problem=str(exc))
    if not settings.key_configured and not settings.custom_endpoint:
        return Check(provider, f"{key_var} not set", settings.public_endpoint, settings.model,
                     problem=f"set {key_var} in the environment or in .env to call {provider}; or work offline: "
                             f"`lab emulator`, then set {config.env_var(provider, 'BASE_URL')} to it")
    key = f"{key_var} set" if settings.key_configured else f"{key_var} not set (custom endpoint)"
    result = Check(provider, key, settings.public_endpoint, settings.model)
    if not call:
        return result
    chunks = llm.stream(PROBE_PROMPT, max_tokens=8, provider=provider, timeout=30.0)
    record = llm.drain(chunks).record
    status = "ok" if record.ok else f"{record.error_type} {record.http_status or ''}: {record.error_message}".strip()
    return Check(provider, key, settings.public_endpoint, settings.model,
                 latency_ms=record.latency_ms, ttft_ms=record.ttft_ms, call_status=status)


def render(checks: list[Check]) -> str:
    """Plain-text report, one block per provider; never shows a key."""
    lines = []
    for c in checks:
        lines.append(f"{c.provider}")
        lines.append(f"  key:      {c.key}")
        lines.append(f"  endpoint: {c.endpoint}")
        lines.append(f"  model:    {c.model}")
        if c.problem:
            lines.append(f"  problem:  {c.problem}")
        if c.call_status is not None:
            lines.append(f"  call:     {c.call_status}")
        if c.latency_ms is not None:
            ttft = f"{c.ttft_ms:.0f} ms" if c.ttft_ms is not None else "no text received"
            lines.append(f"  latency:  {c.latency_ms:.0f} ms, time to first token {ttft}")
    return "\n".join(lines)
