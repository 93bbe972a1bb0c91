"""``lab doctor``, ``lab emulator`` and ``lab report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.cli.common import PORT, SEED, UsageError, emulator_profile
from lab.core import config


def _doctor(args: argparse.Namespace) -> int:
    from lab.llm import doctor

    providers = [args.provider] if args.provider else list(config.PROVIDERS)
    checks = [doctor.check(p, call=args.call) for p in providers]
    print(doctor.render(checks))
    failed = [c for c in checks if c.call_status not in (None, "ok") or (args.provider and c.problem)]
    if not args.call:
        print("\n(no call made; `lab doctor --call` makes one tiny streamed call per configured provider)")
    return 1 if failed else 0


def _emulator(args: argparse.Namespace) -> int:
    from lab.emulator import serve

    serve(port=args.port, profile=args.profile, seed=args.seed, host=args.host)
    return 0


def _report(args: argparse.Namespace) -> int:
    from lab import report

    folder = Path(args.notebooks)
    if not folder.is_dir() or not any(folder.glob("*.ipynb")):
        raise UsageError(f"no notebooks in {folder}: pass --notebooks with a folder of .ipynb files")
    if args.in_place:
        report.refresh(folder)
        return 0
    _, failures = report.build(folder, args.out)
    if failures:
        listed = "; ".join(failures)
        print(f"lab: {len(failures)} notebook(s) not rendered: {listed}", file=sys.stderr)
        return 1
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser(
        "doctor", help="check keys and endpoints; --call makes one tiny call each",
        description="For each provider: whether its key is set (never shown), its endpoint and default model; with "
                    "--call, one tiny streamed call with its latency and time to first token.")
    doctor.add_argument("--provider", choices=config.PROVIDERS, help="check only this provider (default: all)")
    doctor.add_argument("--call", action="store_true", help="make one tiny streamed call (costs a few tokens)")
    doctor.set_defaults(handler=_doctor)

    emulator = commands.add_parser(
        "emulator", help="run the local provider emulator (synthetic answers)",
        description="A local server that speaks the Anthropic Messages and OpenAI Chat Completions APIs with "
                    "synthetic answers and configured latencies, so the official SDKs, AIPerf or GuideLLM run "
                    "against it offline. Stop it with Ctrl-C or SIGTERM.")
    emulator.add_argument("--port", type=PORT, default=8765, help="TCP port, 1 to 65535")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulator.add_argument("--profile", type=emulator_profile, default="report",
                          help="latency profile: report, fixed, instant, haiku, sonnet, or a spec such as "
                               "fixed:ttft_ms=200,itl_ms=20,output_tokens=50")
    emulator.add_argument("--seed", type=SEED, default=0, help="seed of the latency draws")
    emulator.set_defaults(handler=_emulator)

    report = commands.add_parser(
        "report", help="replay the notebooks and write HTML to reports/",
        description="Replay every notebook (from the recorded runs and the simulation cache: nothing is called or "
                    "simulated) and write each as a shareable HTML page, findings first, with an index.")
    report.add_argument("--notebooks", default="notebooks", help="folder of notebooks to execute")
    report.add_argument("--out", default="reports", help="folder for the HTML pages")
    report.add_argument("--in-place", action="store_true",
                        help="maintainers: re-execute the notebooks in place instead (commit their outputs)")
    report.set_defaults(handler=_report)
