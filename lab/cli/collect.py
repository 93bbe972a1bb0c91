"""``lab collect``: run an experiment's calls into a run (resumable)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import shlex
import zlib
from typing import Any

from lab import config
from lab.cli.common import COUNT, RATE, SECONDS, SEED, USD, emulator_profile, http_url, label, run_id


def _argv(args: argparse.Namespace) -> str:
    """The command as typed, to resume a collection with."""
    return shlex.join(["lab", *args.argv])


def _may_spend(args: argparse.Namespace, targets: dict[str, tuple[str, str | None, str]], calls: int,
               bound: float | None) -> bool:
    """Print what the calls cost; False when paid calls lack --live, or their estimate exceeds --max-cost.
    ``targets``: name -> (provider, model, endpoint). A paid target without a key is refused at once."""
    from lab.endpoints import is_local

    paid = {name: t for name, t in targets.items() if not is_local(t[2])}
    if not paid:
        print(f"{calls} calls to local endpoints: no charge")
        return True
    for provider, model, endpoint in paid.values():
        config.resolve(provider, model, endpoint)  # a paid call needs a key: say so now
    estimate = "unknown (a model is missing from the price table)" if bound is None else f"at most ${bound:.4f}"
    print(f"{calls} calls, to paid endpoints for {', '.join(paid)}: estimated cost {estimate}")
    if not args.live:
        print("lab: these calls are paid; add --live to make them", file=sys.stderr)
        return False
    if args.max_cost is not None and (bound is None or bound > args.max_cost):
        print(f"lab: refusing: the estimate exceeds --max-cost ${args.max_cost:g}", file=sys.stderr)
        return False
    return True


def _collect_experiment(args: argparse.Namespace, chosen: Any, window: str | None) -> int:
    """Collect an experiment into ``--run``, after the cost check; one line on what was done."""
    from lab import experiment
    from lab.store import Run

    run = Run(args.run)
    urls = {t.name: "emulator" for t in chosen.targets} if args.emulator else experiment.endpoints_of(chosen)
    if args.emulator:
        print(f"emulated targets ({args.emulator} profile unless a target names its own): answers are synthetic")
    calls = [c for slot in experiment.sessions(run, chosen, window) for c in experiment.plan(chosen, slot)]
    targets = {t.name: (t.provider, t.model, urls[t.name]) for t in chosen.targets}
    if not _may_spend(args, targets, len(calls), experiment.cost_bound(calls, urls)):
        return 2
    made = experiment.collect(run, chosen, window=window, emulator=args.emulator, seed=args.seed, live=args.live,
                              command=_argv(args), wait=args.wait)
    if chosen.design.mode == "serial":
        print(f"{made} calls made, {len(calls) - made} already recorded; run in {run.dir}")
    else:
        print(f"{made} open-loop schedules run, the others already recorded; run in {run.dir}")
    return 0


def _variance(args: argparse.Namespace) -> int:
    from lab import variance

    window = variance.window_label() if args.window == "auto" else args.window
    provider = args.provider or config.resolve(require_key=False).provider
    models = args.model or [config.resolve(provider, require_key=False).model]
    chosen = variance.experiment(models, provider=provider, base_url=args.base_url, n=args.n, pause_s=args.pause,
                                 max_tokens=args.max_tokens, stream=args.stream)
    return _collect_experiment(args, chosen, window)


def _file(args: argparse.Namespace) -> int:
    from lab import experiment, variance

    window = variance.window_label() if args.window == "auto" else args.window
    return _collect_experiment(args, experiment.load_file(args.file), window)


def _review(args: argparse.Namespace) -> int:
    from lab import collector
    from lab.emulator import Emulator
    from lab.endpoints import EMULATOR, identity
    from lab.review import emulated, experiment
    from lab.store import Run

    settings = config.resolve(args.provider, args.model, args.base_url, require_key=False)
    keyed = EMULATOR if args.emulator else identity(settings.endpoint)
    who = experiment.Session(settings.provider, keyed, settings.model)
    design = experiment.Design(n=args.n, pause_s=args.pause)
    target = {f"{who.provider}/{who.model}": (who.provider, who.model, keyed)}
    if not _may_spend(args, target, 3 * design.n, experiment.cost_bound(design, who.provider, who.model)):
        return 2
    run = Run(args.run)
    session = experiment.session(run, design, who, live=args.live)

    @contextlib.contextmanager
    def endpoint(_: Any) -> Any:
        if not args.emulator:
            session.extra["called"]["endpoint"] = settings.endpoint
            yield
            return
        seed = args.seed ^ zlib.crc32(f"review {who.provider} {who.model}".encode())
        with Emulator(args.emulator, seed=seed, responder=emulated.reviewer()) as emu:
            print(f"emulator ({args.emulator} profile, seed {seed}): answers are synthetic")
            session.extra["called"]["endpoint"] = emu.url_for(who.provider)
            yield

    made = collector.collect(run, lambda: [session], command=_argv(args), wait=args.wait, context=endpoint)
    print(f"{made} reviews made, {design.n - made} already recorded; run in {run.dir}")
    return 0


def _hedging(args: argparse.Namespace) -> int:
    from lab.hedge import scenarios
    from lab.store import Run

    design = scenarios.Design(n=args.n, rate_per_s=args.rate, seed=args.seed)
    run = Run(args.run)
    print(f"every arm sends {design.n} requests at {design.rate_per_s:g}/s to two in-process emulators "
          "(synthetic answers, no charge)")
    made = scenarios.collect(run, design, [scenarios.scenarios()[name] for name in args.scenario or ()],
                             wait=args.wait, command=_argv(args))
    print(f"{made} arms run, the others already recorded; run in {run.dir}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    collect = commands.add_parser("collect", help="collect an experiment's calls into a run (resumable)")
    experiments = collect.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT",
                                         parser_class=type(collect))

    var = experiments.add_parser("variance",
                                 help="experiment 1: identical requests per time window and model")
    var.add_argument("--window", type=label, required=True, help='window label, or "auto" for weekday, peak/off-peak and time')
    var.add_argument("--n", type=COUNT, default=50, help="calls per model")
    var.add_argument("--max-tokens", type=COUNT, default=256, help="max_tokens of each call")
    var.add_argument("--stream", action="store_true", help="also a streamed call per sample (time to first token)")
    var.set_defaults(handler=_variance)

    run = experiments.add_parser("run", help="an experiment file: your targets and prompts, serial or open-loop")
    run.add_argument("file", metavar="EXPERIMENT.toml", help="the experiment file (see experiments/)")
    run.add_argument("--window", type=label, help='a label for this collection, or "auto" for weekday, peak/off-peak and time')
    run.set_defaults(handler=_file)

    rev = experiments.add_parser("review",
                                 help="experiment 2: n reviews of the sample code, three call sites each")
    rev.add_argument("--n", type=COUNT, default=20, help="reviews")
    rev.set_defaults(handler=_review)

    hed = experiments.add_parser("hedging",
                                 help="routing policies (single, fallback, hedge) in emulated scenarios")
    hed.add_argument("--run", type=run_id, required=True, help="run id: data/runs/RUN/")
    from lab.hedge import SCENARIOS

    hed.add_argument("--scenario", action="append", choices=SCENARIOS, metavar="NAME",
                     help=f"scenario, repeat for several (default: all): {', '.join(SCENARIOS)}")
    hed.add_argument("--n", type=COUNT, default=400, help="requests per policy and scenario")
    hed.add_argument("--rate", type=RATE, default=10.0, help="requests sent per second, open loop")
    hed.add_argument("--seed", type=SEED, default=0, help="emulator seed")
    hed.set_defaults(handler=_hedging)

    for sub in (var, rev):
        sub.add_argument("--provider", choices=config.PROVIDERS, help="default: LLM_PROVIDER or anthropic")
        sub.add_argument("--model", action="append" if sub is var else "store",
                         help="model id (default: the provider's)" + ("; repeat for several" if sub is var else ""))
        sub.add_argument("--pause", type=SECONDS, default=0.3, help="seconds between calls")
        sub.add_argument("--base-url", type=http_url,
                         help="endpoint override, e.g. a running `lab emulator` or a vLLM server")
    for sub in (var, rev, run):
        sub.add_argument("--run", type=run_id, required=True, help="run id: data/runs/RUN/")
        sub.add_argument("--emulator", metavar="PROFILE", type=emulator_profile,
                         help="run against in-process emulators (synthetic answers): report, fixed, instant, "
                              "haiku, sonnet, or a spec such as fixed:ttft_ms=200,itl_ms=20,output_tokens=50")
        sub.add_argument("--seed", type=SEED, default=0, help="emulator seed (combined with the window's name)")
        sub.add_argument("--live", action="store_true", help="allow paid calls to a real provider")
        sub.add_argument("--max-cost", type=USD, metavar="USD", help="refuse a paid run whose estimate exceeds this")
    for sub in (var, rev, run, hed):
        sub.add_argument("--wait", action="store_true",
                         help="if another collector holds the run, wait for it instead of stopping")
