"""The ``lab`` command: ``lab doctor``, ``lab emulator``, ``lab collect``, ``lab report``."""

from __future__ import annotations

import argparse
import contextlib
import sys
import zlib
from typing import Any

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


def _target(args: argparse.Namespace, stack: contextlib.ExitStack, seed_text: str,
            responder: Any = None) -> config.ProviderSettings:
    """Where a collection sends its calls: ``--emulator`` (in-process, synthetic), ``--base-url`` or the provider."""
    base_url = args.base_url
    if args.emulator:
        from lab.emulator import Emulator
        from lab.emulator.content import default_responder

        # Each window (or experiment) gets its own draws: the seed depends on its name.
        seed = args.seed ^ zlib.crc32(seed_text.encode())
        emulator = stack.enter_context(Emulator(args.emulator, seed=seed, responder=responder or default_responder))
        base_url = emulator.url_for(args.provider or config.resolve(require_key=False).provider)
        print(f"emulator ({args.emulator} profile, seed {seed}) at {emulator.base_url}: answers are synthetic")
    model = args.model[0] if isinstance(args.model, list) else args.model  # variance takes several
    return config.resolve(args.provider, model, base_url, require_key=False)


def _may_spend(args: argparse.Namespace, target: config.ProviderSettings, calls: int, bound: float | None) -> bool:
    """Print the cost estimate; False when a paid run lacks --live, a key, or fits no --max-cost."""
    from lab.store import is_local

    estimate = "unknown (a model is missing from data/prices.csv)" if bound is None else f"at most ${bound:.4f}"
    if is_local(target.endpoint):
        print(f"{calls} calls to a local endpoint: no charge (at list prices: {estimate})")
        return True
    config.resolve(target.provider, target.model, target.endpoint)  # a paid run needs a key: say so now
    print(f"{calls} calls to {target.endpoint}, estimated cost {estimate} (prices in data/prices.csv)")
    if not args.live:
        print("lab: these calls are paid; add --live to make them", file=sys.stderr)
        return False
    if args.max_cost is not None and (bound is None or bound > args.max_cost):
        print(f"lab: refusing: the estimate exceeds --max-cost ${args.max_cost}", file=sys.stderr)
        return False
    return True


def _collect_variance(args: argparse.Namespace) -> int:
    from lab import variance
    from lab.store import Run

    window = variance.window_label() if args.window == "auto" else args.window
    design = variance.Design(n=args.n, pause_s=args.pause, max_tokens=args.max_tokens, stream=args.stream)
    with contextlib.ExitStack() as stack:
        target = _target(args, stack, window)
        models = tuple(args.model or [target.model])
        calls = design.n * len(models) * len(design.kinds)
        if not _may_spend(args, target, calls, variance.cost_bound(design, target.provider, models)):
            return 2
        run = Run(args.run)
        made = variance.collect(run, design, variance.Session(window, target.provider, target.endpoint, models),
                                live=args.live)
    errors = sum(not r.ok for r in run.records() if r.window == window)
    print(f"{made} calls made, {calls - made} already recorded; {errors} errors recorded in window {window!r}; "
          f"run in {run.dir}")
    return 0


def _collect_review(args: argparse.Namespace) -> int:
    from lab.review import emulated, experiment
    from lab.store import Run

    design = experiment.Design(n=args.n, pause_s=args.pause)
    with contextlib.ExitStack() as stack:
        target = _target(args, stack, f"review {args.provider} {args.model}", responder=emulated.reviewer())
        if not _may_spend(args, target, 3 * design.n, experiment.cost_bound(design, target.provider, target.model)):
            return 2
        run = Run(args.run)
        made = experiment.collect(run, design, experiment.Session(target.provider, target.endpoint, target.model),
                                  live=args.live)
    print(f"{made} reviews made, {design.n - made} already recorded; run in {run.dir}")
    return 0


def _collect_hedging(args: argparse.Namespace) -> int:
    from lab.hedge import scenarios
    from lab.store import Run

    unknown = set(args.scenario or ()) - set(scenarios.scenarios())
    if unknown:
        raise config.ConfigurationError(f"unknown scenario {', '.join(sorted(unknown))}; expected some of "
                                        f"{', '.join(scenarios.scenarios())}")
    design = scenarios.Design(n=args.n, rate_per_s=args.rate, seed=args.seed)
    run = Run(args.run)
    print(f"every arm sends {design.n} requests at {design.rate_per_s:g}/s to two in-process emulators "
          "(synthetic answers, no charge)")
    made = scenarios.collect(run, design, [scenarios.scenarios()[name] for name in args.scenario or ()])
    print(f"{made} arms run, the others already recorded; run in {run.dir}")
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
    var.add_argument("--window", required=True, help='window label, or "auto" for weekday, peak/off-peak and time')
    var.add_argument("--n", type=int, default=50, help="calls per model (default 50)")
    var.add_argument("--max-tokens", type=int, default=256)
    var.add_argument("--stream", action="store_true", help="also a streamed call per sample (time to first token)")
    var.set_defaults(handler=_collect_variance)
    rev = experiments.add_parser("review", help="experiment 2: n reviews of the sample code, three call sites each")
    rev.add_argument("--n", type=int, default=20, help="reviews (default 20)")
    rev.set_defaults(handler=_collect_review)
    hed = experiments.add_parser("hedging", help="routing policies (single, fallback, hedge) in emulated scenarios")
    hed.add_argument("--run", required=True, help="run id: data/runs/RUN/")
    hed.add_argument("--scenario", action="append", help="scenario name (default: all); repeat for several")
    hed.add_argument("--n", type=int, default=400, help="requests per policy and scenario (default 400)")
    hed.add_argument("--rate", type=float, default=10.0, help="requests sent per second, open loop (default 10)")
    hed.add_argument("--seed", type=int, default=0, help="emulator seed")
    hed.set_defaults(handler=_collect_hedging)
    for sub in (var, rev):
        sub.add_argument("--run", required=True, help="run id: data/runs/RUN/")
        sub.add_argument("--provider", choices=config.PROVIDERS, help="default: LLM_PROVIDER or anthropic")
        sub.add_argument("--model", action="append" if sub is var else "store",
                         help="model id (default: the provider's)" + ("; repeat for several" if sub is var else ""))
        sub.add_argument("--pause", type=float, default=0.3, help="seconds between calls (default 0.3)")
        sub.add_argument("--base-url", help="endpoint override, e.g. a running `lab emulator` or a vLLM server")
        sub.add_argument("--emulator", metavar="PROFILE",
                         help="run against an in-process emulator (synthetic answers): report, fixed, instant")
        sub.add_argument("--seed", type=int, default=0, help="emulator seed (combined with the window's name)")
        sub.add_argument("--live", action="store_true", help="allow paid calls to a real provider")
        sub.add_argument("--max-cost", type=float, metavar="USD", help="refuse a paid run whose estimate exceeds this")

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
