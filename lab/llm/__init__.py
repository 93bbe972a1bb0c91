"""The provider layer: one API over Anthropic, OpenAI and OpenAI-compatible servers.

>>> from lab import llm
>>> answer = llm.complete("Explain in 2-3 sentences why reliability matters.", max_tokens=256)
>>> answer.text, answer.record.latency_ms

The provider comes from ``provider=`` or ``LLM_PROVIDER``, the model from
``model=`` or ``LLM_MODEL`` (defaults in :data:`lab.config.DEFAULT_MODELS`).
"""

from lab.config import ConfigurationError
from lab.llm.api import (
    AsyncTextStream,
    Completion,
    TextStream,
    acomplete,
    acomplete_json,
    astream,
    complete,
    complete_json,
    drain,
    stream,
)
from lab.llm.retry import NO_RETRY, RetryPolicy

__all__ = [
    "AsyncTextStream", "Completion", "ConfigurationError", "NO_RETRY", "RetryPolicy", "TextStream",
    "acomplete", "acomplete_json", "astream", "complete", "complete_json", "drain", "stream",
]
