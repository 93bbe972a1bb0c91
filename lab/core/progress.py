"""Progress of a long collection: a bar on a terminal, a line now and then in a log.

tqdm redraws its bar in place with carriage returns, which a log file or a CI console keeps as one
line growing by a copy per update (a 20 KB line for a run of a few hundred calls). :func:`bar` gives
tqdm's bar when the stream is a terminal, and otherwise a :class:`Lines` that prints a plain line
when a quarter more is done or a minute has passed, and at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

EVERY_S = 60.0
"""Longest silence of a progress line in a log."""


class Lines:
    """tqdm's ``update``/``set_postfix_str``/``write``/``close`` for output that is not a terminal."""

    def __init__(self, total: int, desc: str | None, unit: str, initial: int = 0, file: TextIO | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc or "", unit, initial
        self.file = file or sys.stderr
        self.postfix = ""
        self._said_at, self._said_n = time.monotonic(), initial

    def update(self, n: int = 1) -> None:
        self.n += n
        step = max(1, self.total // 4)
        if self.n >= self.total or self.n - self._said_n >= step or time.monotonic() - self._said_at >= EVERY_S:
            self._say()

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        if self.n != self._said_n:
            self._say()

    def _say(self) -> None:
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        last = f"; last: {self.postfix}" if self.postfix else ""
        print(f"{self.desc + ': ' if self.desc else ''}{self.n} of {self.total} {self.unit}s{share}{last}",
              file=self.file, flush=True)
        self._said_at, self._said_n = time.monotonic(), self.n

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent(Lines):
    def _say(self) -> None:
        pass

    def write(self, text: str) -> None:
        pass


def bar(total: int, *, desc: str | None = None, unit: str = "call", initial: int = 0, enabled: bool = True,
        leave: bool = True) -> Any:
    """A progress bar (tqdm) on a terminal, plain periodic lines elsewhere, nothing when not ``enabled``."""
    if not enabled:
        return _Silent(total, desc, unit, initial)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave)
    return Lines(total, desc, unit, initial)


def write(text: str) -> None:
    """A line beside a running bar (above it on a terminal)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        tqdm.write(text, file=sys.stdout)
    else:
        print(text, flush=True)
