"""The lab's own retry policy: explicit, off by default, every attempt recorded."""

from __future__ import annotations

from dataclasses import dataclass

RETRYABLE: frozenset[str] = frozenset({"rate_limit", "overloaded", "server_error", "timeout", "connection"})


@dataclass(frozen=True)
class RetryPolicy:
    """Retry failed attempts of a call.

    The default, one attempt, is right for measurements: a hidden retry
    inflates measured latency. ``retry-after`` from the provider is honoured
    up to ``max_delay_s``; otherwise the delay doubles from ``base_delay_s``.
    """

    max_attempts: int = 1
    retry_on: frozenset[str] = RETRYABLE
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def should_retry(self, attempt: int, error_type: str) -> bool:
        return attempt < self.max_attempts and error_type in self.retry_on

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        wanted = retry_after_s if retry_after_s is not None else self.base_delay_s * 2 ** (attempt - 1)
        return min(wanted, self.max_delay_s)


NO_RETRY = RetryPolicy()
