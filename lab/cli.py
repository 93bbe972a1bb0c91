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


def _collect_variance(args: argparse.Namespace) -> int:
    import contextlib
    import zlib

    from lab import variance
    from lab.emulator import Emulator
    from lab.store import Run, is_local

    window = variance.window_label() if args.window == "auto" else args.window
    design = variance.Design(n=args.n, pause_s=args.pause, max_tokens=args.max_tokens, stream=args.stream)
    with contextlib.ExitStack() as stack:
        base_url = args.base_url
        if args.emulator:
            # Each window gets its own draws: the emulator's seed depends on the window's name.
            seed = args.seed ^ zlib.crc32(window.encode())
            emulator = stack.enter_context(Emulator(args.emulator, seed=seed))
            base_url = emulator.url_for(args.provider or config.resolve(require_key=False).provider)
            print(f"emulator ({args.emulator} profile, seed {seed}) at {emulator.base_url}: answers are synthetic")
        first = config.resolve(args.provider, args.model[0] if args.model else None, base_url, require_key=False)
        models = tuple(args.model or [first.model])
        local = is_local(first.endpoint)
        if not local:
            config.resolve(first.provider, first.model, base_url)  # a paid run needs a key: say so now
            if not args.live:
                print(f"lab: {first.endpoint} is a paid provider; add --live to make real calls", file=sys.stderr)
                return 2
        bound = variance.cost_bound(design, first.provider, models)
        calls = design.n * len(models) * len(design.kinds)
        estimate = "unknown (a model is missing from data/prices.csv)" if bound is None else f"at most ${bound:.4f}"
        if local:
            print(f"{calls} calls to a local endpoint: no charge (at list prices: {estimate})")
        else:
            print(f"{calls} calls, estimated cost {estimate} (prices in data/prices.csv)")
            if args.max_cost is not None and (bound is None or bound > args.max_cost):
                print(f"lab: refusing: the estimate exceeds --max-cost ${args.max_cost}", file=sys.stderr)
                return 2
        run = Run(args.run)
        session = variance.Session(window, first.provider, first.endpoint, models)
        made = variance.collect(run, design, session, live=args.live)
    errors = sum(not r.ok for r in run.records() if r.window == window)
    print(f"{made} calls made, {calls - made} already recorded; {errors} errors recorded in window {window!r}; "
          f"run in {run.dir}")
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
    doctor.set_defaults(handler=_doctor)

    emulator = commands.add_parser("emulator", help="run the local provider emulator (synthetic answers)")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--profile", default="report", help="latency profile set: report (default) or fixed")
    emulator.add_argument("--seed", type=int, default=0)
    emulator.set_defaults(handler=_emulator)

    collect = commands.add_parser("collect", help="collect an experiment's calls into a run (resumable)")
    experiments = collect.add_subparsers(dest="experiment", required=True)
    var = experiments.add_parser("variance", help="experiment 1: identical requests per time window and model")
    var.add_argument("--run", required=True, help="run id: data/runs/RUN/")
    var.add_argument("--provider", choices=config.PROVIDERS, help="default: LLM_PROVIDER or anthropic")
    var.add_argument("--model", action="append", help="model id; repeat for several (default: the provider's)")
    var.add_argument("--window", required=True, help='window label, or "auto" for weekday, peak/off-peak and time')
    var.add_argument("--n", type=int, default=50, help="calls per model (default 50)")
    var.add_argument("--pause", type=float, default=0.3, help="seconds between calls (default 0.3)")
    var.add_argument("--max-tokens", type=int, default=256)
    var.add_argument("--stream", action="store_true", help="also a streamed call per sample (time to first token)")
    var.add_argument("--base-url", help="endpoint override, e.g. a running `lab emulator` or a vLLM server")
    var.add_argument("--emulator", metavar="PROFILE", help="run against an in-process emulator (synthetic): report, fixed")
    var.add_argument("--seed", type=int, default=0, help="emulator seed (combined with the window's name)")
    var.add_argument("--live", action="store_true", help="allow paid calls to a real provider")
    var.add_argument("--max-cost", type=float, metavar="USD", help="refuse a paid run whose estimate exceeds this")
    var.set_defaults(handler=_collect_variance)

    report = commands.add_parser("report", help="execute the notebooks and write HTML to reports/")
    report.add_argument("--notebooks", default="notebooks")
    report.add_argument("--out", default="reports")
    report.add_argument("--in-place", action="store_true",
                        help="maintainers: re-execute the notebooks in place instead (commit their outputs)")
    report.set_defaults(handler=_report)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except config.ConfigurationError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
