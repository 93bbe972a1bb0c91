"""A local HTTP server that emulates LLM provider APIs, closely enough for the unmodified SDKs.

It speaks Anthropic Messages (``POST /v1/messages``) and OpenAI Chat Completions
(``POST /v1/chat/completions``), JSON and SSE, with synthetic answers (every response carries
``x-lab-synthetic: true``), seeded latency from data (:mod:`lab.emulator.profiles`), injectable
faults (:mod:`lab.emulator.faults`) and a request log (also ``GET /_emulator/requests``;
``DELETE`` clears it; ``GET /_emulator/health`` answers ok). API keys are accepted and never
stored.

In process::

    with Emulator("fixed", seed=0) as emu:
        client = anthropic.Anthropic(base_url=emu.url_for("anthropic"), api_key="x", max_retries=0)
        openai_client = openai.OpenAI(base_url=emu.url_for("openai"), api_key="x", max_retries=0)
        ...
        emu.requests  # [RequestLogEntry(...)]

Blocking, for the CLI::

    serve(port: int = 8765, profile: str = "report", seed: int = 0, host: str = "127.0.0.1",
          faults: Sequence[FaultRule] | None = None) -> None

prints ``lab emulator serving http://HOST:PORT (profile ..., seed ...)`` once ready and runs
until interrupted (``port=0`` picks a free port).

Per request, the headers ``x-emulator-key`` (RNG key; default: per-model arrival counter) and
``x-emulator-fault`` (``KIND`` or ``KIND;name=value``) steer the draw and force a fault.
"""

from lab.emulator.content import ChatRequest, Responder, default_responder, json_from_schema
from lab.emulator.faults import FAULT_HEADER, FAULT_KINDS, Fault, FaultRule
from lab.emulator.profiles import (
    PROFILE_NAMES,
    Draw,
    LatencyProfile,
    ProfileSet,
    get_profile,
    profile_set,
    report_profiles,
)
from lab.emulator.server import KEY_HEADER, Emulator, RequestLogEntry, serve

__all__ = [
    "ChatRequest",
    "Draw",
    "Emulator",
    "FAULT_HEADER",
    "FAULT_KINDS",
    "Fault",
    "FaultRule",
    "KEY_HEADER",
    "LatencyProfile",
    "PROFILE_NAMES",
    "ProfileSet",
    "RequestLogEntry",
    "Responder",
    "default_responder",
    "get_profile",
    "json_from_schema",
    "profile_set",
    "report_profiles",
    "serve",
]
