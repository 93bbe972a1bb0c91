"""Cost of a call from the dated, editable price table ``data/prices.csv``."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from lab.paths import DATA_DIR

PRICES_CSV = DATA_DIR / "prices.csv"


@functools.cache
def price_table(path: Path = PRICES_CSV) -> dict[tuple[str, str], tuple[float, float]]:
    """``(provider, model) -> (input, output)`` in US dollars per million tokens."""
    with open(path, newline="") as handle:
        return {
            (row["provider"], row["model"]): (float(row["input_usd_per_mtok"]), float(row["output_usd_per_mtok"]))
            for row in csv.DictReader(handle)
        }


def cost_usd(provider: str, model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
    """Dollar cost of one call, or ``None`` when the model or the usage is unknown."""
    prices = price_table().get((provider, model))
    if prices is None or input_tokens is None or output_tokens is None:
        return None
    return (input_tokens * prices[0] + output_tokens * prices[1]) / 1e6
