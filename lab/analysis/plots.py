"""What the notebooks' figures share: one style, plain-number log axes, and empirical CDFs."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import NullFormatter, StrMethodFormatter


def style() -> None:
    """The notebooks' figure style: 100 dpi, no top or right spines, a colour-blind palette."""
    plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False})
    sns.set_palette("colorblind")


def plain_log_ticks(axis: Axis, minor: bool = True) -> None:
    """Label a log-scaled axis in plain numbers (1,500 rather than 1.5 x 10^3)."""
    axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axis.set_minor_formatter(StrMethodFormatter("{x:,.0f}") if minor else NullFormatter())


def ecdf(ax: Axes, values: Sequence[float], label: str | None = None, **style: object) -> None:
    """The empirical CDF of ``values`` (NaN dropped) as a step line: the share of calls at or below x."""
    x = np.sort(np.asarray(values, float))
    x = x[~np.isnan(x)]
    if len(x):
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label, **style)
