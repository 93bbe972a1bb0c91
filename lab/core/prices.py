"""Cost of a call from the dated, editable price table ``prices.csv``.

One row per model with its list prices in US dollars per million tokens: input,
output, and where the provider has them, prompt-cache reads and writes. Dated
snapshot ids (``claude-haiku-4-5-20251001``) are listed in the row's ``aliases``
column: a snapshot priced differently gets a row of its own, and an id in no
row stays unpriced (cost ``None``, never 0).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from lab.core.paths import DATA_DIR

PRICES_CSV = DATA_DIR / "prices.csv"


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens; a cache rate is None where the table has none."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


def _rate(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


@functools.cache
def price_table(path: Path = PRICES_CSV) -> dict[tuple[str, str], Price]:
    """``(provider, model id or alias) -> Price``."""
    table = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            price = Price(float(row["input_usd_per_mtok"]), float(row["output_usd_per_mtok"]),
                          _rate(row.get("cache_read_usd_per_mtok")), _rate(row.get("cache_write_usd_per_mtok")))
            for model in [row["model"], *(row.get("aliases") or "").split()]:
                table[(row["provider"], model)] = price
    return table


def price(provider: str, model: str) -> Price | None:
    """The row for a model id or one of its aliases, or None when the table does not list it."""
    return price_table().get((provider, model))


def cost_usd(provider: str, model: str, input_tokens: int | None, output_tokens: int | None,
             cache_read_tokens: int | None = None, cache_write_tokens: int | None = None) -> float | None:
    """Dollar cost of one call, or ``None`` when the model or the usage is unknown.

    ``input_tokens`` counts every prompt token, cached or not; the cache counts are the parts of
    it read from and written to the provider's prompt cache, priced at their own rates (a
    cache count with no rate in the table makes the cost unknown).
    """
    rates = price(provider, model)
    if rates is None or input_tokens is None or output_tokens is None:
        return None
    cached = {"read": (cache_read_tokens or 0, rates.cache_read), "write": (cache_write_tokens or 0, rates.cache_write)}
    total = (input_tokens - sum(n for n, _ in cached.values())) * rates.input + output_tokens * rates.output
    for tokens, rate in cached.values():
        if tokens:
            if rate is None:
                return None
            total += tokens * rate
    return total / 1e6


def total_cost(costs: list[float | None]) -> float | None:
    """Sum of costs, ``None`` as soon as one is unknown (an unknown cost never counts as free)."""
    if any(c is None or math.isnan(c) for c in costs):
        return None
    return float(sum(costs))  # type: ignore[arg-type]
