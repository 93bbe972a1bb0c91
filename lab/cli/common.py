"""What every command shares: a parser whose errors are one line, and argument types that
refuse bad values before anything starts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from lab.core.errors import LabError
from lab.core.paths import RUN_ID_PATTERN, valid_run_id


class UsageError(LabError):
    """A command that cannot run as asked; the message says what to do instead."""


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not any(action.default is v for v in (None, False, argparse.SUPPRESS)) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``lab: <problem> (see `<command> --help`)``, exit 2; defaults in help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"lab: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def run_id(value: str) -> str:
    if not valid_run_id(value):
        raise argparse.ArgumentTypeError(
            f"invalid run id {value!r}: use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit ({RUN_ID_PATTERN})")
    return value


def number(kind: type, *, minimum: float | None = None, above: float | None = None, maximum: float | None = None,
           what: str = "a number") -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float) within bounds, with a message naming them."""

    def parse(value: str) -> float:
        try:
            parsed = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
        if parsed != parsed or parsed in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}")
        if minimum is not None and parsed < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: {what} of at least {minimum:g}")
        if above is not None and parsed <= above:
            raise argparse.ArgumentTypeError(f"{value} is too small: {what} above {above:g}")
        if maximum is not None and parsed > maximum:
            raise argparse.ArgumentTypeError(f"{value} is too large: {what} of at most {maximum:g}")
        return parsed

    return parse


COUNT = number(int, minimum=1, maximum=1_000_000, what="a whole number")
SEED = number(int, minimum=0, maximum=2**32 - 1, what="a whole number")
SECONDS = number(float, minimum=0, maximum=7 * 24 * 3600, what="a number of seconds")
RATE = number(float, minimum=0.001, maximum=100_000, what="a rate per second")
USD = number(float, minimum=0, what="an amount in US dollars")
PORT = number(int, minimum=1, maximum=65535, what="a TCP port")


def http_url(value: str) -> str:
    """An http:// or https:// URL with a host (see :func:`lab.core.endpoints.http_url`)."""
    from lab.core.endpoints import http_url as checked

    try:
        return checked(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


RUNS_DIR_HELP = "the runs folder (default: LAB_RUNS_DIR, else the nearest data/runs)"


def add_run(parser: argparse.ArgumentParser, help: str = "the run: a folder of the runs folder", *,
            action: str = "store") -> None:
    """The run a command works on, ``--run RUN``, and where runs are, ``--runs-dir DIR``: the same in every
    command."""
    parser.add_argument("--run", type=run_id, required=True, metavar="RUN", action=action, help=help)
    parser.add_argument("--runs-dir", metavar="DIR", help=RUNS_DIR_HELP)


def add_window(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The label of a collection in its run (a time window, an occasion): ``--window``, in every command."""
    parser.add_argument("--window", type=label, required=required, metavar="LABEL",
                        help='a label for this collection in the run, or "auto" for the weekday, peak or off-peak, '
                             "and the time" + ("" if required else " (default: none)"))


def label(value: str) -> str:
    """A window or session label: one line of printable text."""
    if not value.strip() or not value.isprintable() or len(value) > 200:
        raise argparse.ArgumentTypeError(f"{value!r} is not a label: use one line of up to 200 printable characters")
    return value


def emulator_profile(value: str) -> str:
    """A profile name or spec the emulator accepts (checked now, so nothing starts with a bad one)."""
    from lab.emulator import profile_set

    try:
        profile_set(value)
    except (KeyError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc).strip("'\"")) from None
    return value
