"""The ``lab`` command. Each command group lives in its own module and registers its parsers.

A mistake the user can fix (:class:`lab.core.errors.LabError`, a refused file or value, a machine's limit)
ends in one line on stderr that says what to do, with exit status 2; anything else is a fault of the lab's,
said in one line with exit status 1. ``--debug`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import traceback
import warnings
from collections.abc import Iterator

from pydantic import ValidationError

from lab.cli import analyze, collect, imports, proxy, runs, tools
from lab.cli.common import Parser
from lab.core import config
from lab.core.errors import LabError
from lab.core.redact import guard_logging, redact
from lab.core.validation import one_line

GROUPS = (tools, collect, runs, imports, analyze, proxy)


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="lab", description="inference-lab: measure how LLM providers behave.")
    root.add_argument("--debug", action="store_true", help="show a traceback when something goes wrong")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in GROUPS:
        group.register(commands)
    return root


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    advice = {
        errno.EROFS: "the folder is read-only: work in a writable folder, or set LAB_RUNS_DIR to one",
        errno.EACCES: "permission denied: work in a folder you may write, or set LAB_RUNS_DIR to one",
        errno.EPERM: "permission denied: work in a folder you may write, or set LAB_RUNS_DIR to one",
        errno.ENOSPC: "the disk is full: free some space, then run the same command again (it resumes)",
        errno.EDQUOT: "the disk quota is exceeded: free some space, then run the same command again",
        errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run the same command again",
        errno.EADDRINUSE: "the port is in use: choose another with --port",
    }.get(exc.errno or 0, "check that the path exists and can be written (runs are kept in LAB_RUNS_DIR, else "
          "./data/runs of the folder you work in)")
    return f"cannot use{where}: {exc.strerror or exc}; {advice}"


def _warn_in_one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: object = None, line: str | None = None) -> None:
    """Warnings (a damaged line in a run, say) as one ``lab: warning:`` line each."""
    print(f"lab: warning: {' '.join(redact(str(message)).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    guard_logging()
    config.remember_secrets()  # a key echoed by a provider, a proxied upstream or an imported file is masked
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.debug:
        warnings.showwarning = _warn_in_one_line
    try:
        with _runs_in(getattr(args, "runs_dir", None)):
            return args.handler(args)
    except BrokenPipeError:  # the reader left (`lab ... | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("lab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (LabError, ValidationError) as exc:  # the user's to fix: one line
        return _said(args, one_line(exc) if isinstance(exc, ValidationError) else str(exc), 2)
    except OSError as exc:  # the machine's: a disk, a permission, a port, a limit
        return _said(args, _os_error(exc), 2)
    except Exception as exc:  # a fault of the lab's, whatever it is (a failed analysis notebook too)
        return _said(args, f"internal error: {type(exc).__name__}: {exc} (a fault of the lab's: run again with "
                           "--debug to see where, and report it)", 1)


@contextlib.contextmanager
def _runs_in(folder: str | None) -> Iterator[None]:
    """``--runs-dir``: every run the command names is looked for there, while it runs."""
    if not folder:
        yield
        return
    before = os.environ.get("LAB_RUNS_DIR")
    os.environ["LAB_RUNS_DIR"] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LAB_RUNS_DIR", None)
        else:
            os.environ["LAB_RUNS_DIR"] = before


def _said(args: argparse.Namespace, message: str, code: int) -> int:
    if args.debug:
        traceback.print_exc()
    print(f"lab: {' '.join((redact(message) or '').split())}", file=sys.stderr)
    return code

if __name__ == "__main__":
    sys.exit(main())
