"""The emulator's counters, rendered in the Prometheus text format for ``GET /metrics``.

Plain counters, no client library: requests by API and HTTP status (chat requests, and requests
to unknown paths or with a wrong method), chat requests in flight, and output tokens (thinking
included) of chat requests answered in full. Updated only on the server's event loop.
"""

from __future__ import annotations

from collections import Counter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Counters since the emulator started (clearing the request log does not reset them)."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.in_flight = 0
        self.output_tokens = 0

    def render(self) -> str:
        """The Prometheus text exposition of every counter."""
        lines = [
            "# HELP lab_emulator_requests_total Requests answered, by API and HTTP status.",
            "# TYPE lab_emulator_requests_total counter",
            *(f'lab_emulator_requests_total{{api="{api}",status="{status}"}} {count}'
              for (api, status), count in sorted(self.requests.items())),
            "# HELP lab_emulator_requests_in_flight Chat requests being answered now.",
            "# TYPE lab_emulator_requests_in_flight gauge",
            f"lab_emulator_requests_in_flight {self.in_flight}",
            "# HELP lab_emulator_output_tokens_total Output tokens (thinking included) of chat requests answered"
            " in full.",
            "# TYPE lab_emulator_output_tokens_total counter",
            f"lab_emulator_output_tokens_total {self.output_tokens}",
        ]
        return "\n".join(lines) + "\n"
