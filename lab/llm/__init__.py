"""The provider layer: one API over Anthropic, OpenAI and OpenAI-compatible servers.

>>> from lab import llm
>>> answer = llm.complete("Explain in 2-3 sentences why reliability matters.", max_tokens=256)
>>> answer.text, answer.record.latency_ms

The provider comes from ``provider=`` or ``LLM_PROVIDER``; the model from ``model=``, the
provider's own variable (``ANTHROPIC_MODEL``, ``OPENAI_MODEL``, ``OPENAI_COMPATIBLE_MODEL``),
then ``LLM_MODEL`` for the ``LLM_PROVIDER`` provider, then :data:`lab.core.config.DEFAULT_MODELS`.
"""

import importlib
from typing import Any

from lab.core.config import DEFAULT_MAX_TOKENS, DEFAULT_TIMEOUT_S, ConfigurationError
from lab.llm.retry import NO_RETRY, RetryPolicy

_API = ("AsyncTextStream", "Completion", "TextStream", "acomplete", "acomplete_json", "astream", "complete",
        "complete_json", "drain", "prepare", "session", "stream")
__all__ = ["ConfigurationError", "DEFAULT_MAX_TOKENS", "DEFAULT_TIMEOUT_S", "NO_RETRY", "RetryPolicy", *_API]


def __getattr__(name: str) -> Any:
    """The API loads the provider SDKs (about 2 s): import it when a call is first made, not with the package,
    so replaying recorded runs never pays for it."""
    if name not in _API:
        raise AttributeError(f"module 'lab.llm' has no attribute {name!r}")
    return getattr(importlib.import_module("lab.llm.api"), name)
