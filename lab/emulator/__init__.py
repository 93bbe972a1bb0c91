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

    Emulator(profile="fixed", *, seed=0, host="127.0.0.1", port=0, faults=None,
             responder=default_responder, key_by="arrival", keepalive_timeout_s=15.0,
             request_timeout_s=10.0, max_body_bytes=32 MiB)

Blocking, for the CLI::

    serve(port: int = 8765, profile: str = "report", seed: int = 0, host: str = "127.0.0.1",
          faults: Sequence[FaultRule] | None = None, *, keepalive_timeout_s=15.0,
          request_timeout_s=10.0, max_body_bytes=32 MiB) -> None

prints ``lab emulator serving http://HOST:PORT (profile ..., seed ...)`` once ready and runs
until interrupted (``port=0`` picks a free port).

Profiles. ``profile`` is ``report`` (the fitted ``haiku``/``sonnet`` profiles by model id), a
name (``fixed``, ``instant``, ``haiku``, ``sonnet``; :data:`PROFILE_NAMES`), a spec string with
parameters (``fixed:ttft_ms=200,itl_ms=20,output_tokens=50``, ``instant:output_tokens=50``,
``haiku:thinking_tokens=8``; :data:`~lab.emulator.profiles.SPEC_PARAMETERS`), a
:class:`LatencyProfile`, or a mapping {model substring or ``"*"``: profile}. An unknown name or
parameter raises ``ValueError`` listing the valid ones (from :func:`profile_set`, ``Emulator()``
and ``serve()`` alike, before anything starts).

Thinking. A profile's ``thinking_tokens`` are streamed before the text, one per inter-token
time from the TTFT on; the text follows them. Per request, the header ``x-emulator-thinking: N``
overrides the count; otherwise an Anthropic request with ``"thinking": {"type": "enabled",
"budget_tokens": B}`` gets ``min(B, 16)`` (``adaptive``: 16). Thinking and text share
``max_tokens`` (thinking takes at most ``max_tokens - 1``), and output token counts include
thinking. On the wire: Anthropic sends a ``thinking`` block at index 0 (``thinking_delta``
events, then a ``signature_delta``) and the text block at index 1, and the JSON body lists the
thinking block first; OpenAI sends ``reasoning_content`` deltas before the ``content`` deltas
(vLLM's and DeepSeek's field; the SDK keeps it as an extra: ``delta.model_extra``), puts
``message.reasoning_content`` in the JSON body and ``completion_tokens_details.reasoning_tokens``
in the usage. The thinking text is synthetic (:func:`~lab.emulator.content.synthetic_thinking`);
a responder writes only the answer.

The request log records each request's configured truth, to compare a client's measurements
with: ``planned_ttft_ms`` (first content byte, thinking or text), ``planned_first_text_ms``,
``planned_itl_ms``, ``planned_end_ms`` and ``thinking_tokens`` (see :class:`RequestLogEntry`).

Per request, the headers ``x-emulator-key`` (RNG key; default: per-model arrival counter),
``x-emulator-fault`` (``KIND`` or ``KIND;name=value``) and ``x-emulator-thinking`` (``N``) steer
the draw, force a fault and set the thinking tokens.

Endpoints for other tools (GuideLLM, AIPerf, vLLM-style probes): ``GET /health`` (``{"status":
"ok"}``); ``GET /v1/models`` (OpenAI's list format, or Anthropic's when the request has an
``anthropic-version`` header: claude-haiku-4-5, claude-sonnet-4-6, gpt-5-mini and gpt-5 when the
profile set serves them, then every model id requested so far, up to 1,000); ``GET
/v1/models/{id}`` (any id the profile set serves, else 404); ``GET /metrics`` (Prometheus text:
``lab_emulator_requests_total{api,status}``, ``lab_emulator_requests_in_flight``,
``lab_emulator_output_tokens_total``).

Misuse. Every malformed request (invalid or too deeply nested JSON, a field of the wrong type,
an unusable output schema, a bad ``x-emulator-*`` header) gets a 4xx in the API's own error
format, never a 500: Anthropic's ``{"type": "error", "error": {"type": "invalid_request_error",
...}}`` under ``/v1/messages``, OpenAI's ``{"error": {"message", "type", "param", "code"}}``
everywhere else. So do unknown paths (404), wrong methods (405, with ``Allow``), bodies over
``max_body_bytes`` (413), a body not sent within ``request_timeout_s`` (408) and unparsable HTTP
(400). Idle connections close after ``keepalive_timeout_s``; a request whose headers are not in
``request_timeout_s`` after its first byte has its connection closed (slowloris).
"""

from lab.emulator.content import ChatRequest, Responder, UnsupportedSchema, default_responder, json_from_schema
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
from lab.emulator.server import KEY_HEADER, THINKING_HEADER, Emulator, RequestLogEntry, serve

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
    "THINKING_HEADER",
    "UnsupportedSchema",
    "default_responder",
    "get_profile",
    "json_from_schema",
    "profile_set",
    "report_profiles",
    "serve",
]
