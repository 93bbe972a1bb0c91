"""The provider layer: one API over Anthropic, OpenAI and OpenAI-compatible servers.

>>> from lab import llm
>>> answer = llm.complete("Explain in 2-3 sentences why reliability matters.", max_tokens=256)
>>> answer.text, answer.record.latency_ms

The provider comes from ``provider=`` or ``LLM_PROVIDER``; the model from ``model=``, the
provider's own variable (``ANTHROPIC_MODEL``, ``OPENAI_MODEL``, ``OPENAI_COMPATIBLE_MODEL``),
then ``LLM_MODEL`` for the ``LLM_PROVIDER`` provider, then :data:`lab.config.DEFAULT_MODELS`.
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
    prepare,
    session,
    stream,
)
from lab.llm.retry import NO_RETRY, RetryPolicy

__all__ = [
    "AsyncTextStream", "Completion", "ConfigurationError", "NO_RETRY", "RetryPolicy", "TextStream",
    "acomplete", "acomplete_json", "astream", "complete", "complete_json", "drain", "prepare", "session", "stream",
]
