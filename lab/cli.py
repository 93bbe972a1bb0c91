"""The ``lab`` command: ``lab doctor``, ``lab emulator``, ``lab report``."""

from __future__ import annotations

import argparse
import sys

from lab import config


def _doctor(args: argparse.Namespace) -> int:
    from lab import doctor

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

    if args.in_place:
        report.refresh(args.notebooks)
    else:
        report.build(args.notebooks, args.out)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="lab", description="inference-lab: measure how LLM providers behave.")
    commands = root.add_subparsers(dest="command", required=True)

    doctor = commands.add_parser("doctor", help="check keys and endpoints; --call makes one tiny call each")
    doctor.add_argument("--provider", choices=config.PROVIDERS, help="check only this provider")
    doctor.add_argument("--call", action="store_true", help="make one tiny streamed call (costs a few tokens)")
    doctor.set_defaults(run=_doctor)

    emulator = commands.add_parser("emulator", help="run the local provider emulator (synthetic answers)")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--profile", default="report", help="latency profile set: report (default) or fixed")
    emulator.add_argument("--seed", type=int, default=0)
    emulator.set_defaults(run=_emulator)

    report = commands.add_parser("report", help="execute the notebooks and write HTML to reports/")
    report.add_argument("--notebooks", default="notebooks")
    report.add_argument("--out", default="reports")
    report.add_argument("--in-place", action="store_true",
                        help="maintainers: re-execute the notebooks in place instead (commit their outputs)")
    report.set_defaults(run=_report)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except config.ConfigurationError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
