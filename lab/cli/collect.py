"""``lab collect``: run an experiment's calls into a run (resumable)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING, Any

from lab.cli.common import COUNT, RATE, SECONDS, SEED, USD, add_run, add_window, emulator_profile, http_url
from lab.core import config

if TYPE_CHECKING:
    from lab.collect.experiment import Spend


def _argv(args: argparse.Namespace) -> str:
    """The command as typed, to resume a collection with."""
    return shlex.join(["lab", *args.argv])


def _may_spend(args: argparse.Namespace, spend: Spend) -> bool:
    """Print what the calls cost; False when paid calls lack --live, or their estimate exceeds --max-cost.
    A paid target without a key is refused at once."""
    if not spend.paid:
        print(f"{spend.calls} calls to local endpoints: no charge")
        return True
    for provider, model, endpoint in spend.paid.values():
        config.resolve(provider, model, endpoint)  # a paid call needs a key: say so now
    estimate = ("unknown (a model is missing from the price table)" if spend.bound is None
                else f"at most ${spend.bound:.4f}")
    print(f"{spend.calls} calls, to paid endpoints for {', '.join(spend.paid)}: estimated cost {estimate}")
    if not args.live:
        print("lab: these calls are paid; add --live to make them (or --emulator PROFILE to run offline)",
              file=sys.stderr)
        return False
    if args.max_cost is not None and (spend.bound is None or spend.bound > args.max_cost):
        print(f"lab: refusing: the estimate exceeds --max-cost ${args.max_cost:g}", file=sys.stderr)
        return False
    return True


def _collect(args: argparse.Namespace, experiment: Any) -> int:
    """Collect ``experiment`` into ``--run`` after the cost check; one line on what was done."""
    from lab.collect.experiment import Reach, collect
    from lab.store import Run

    run = Run(args.run)
    reach = Reach(getattr(args, "emulator", None), args.seed, getattr(args, "live", False))
    if reach.emulated:
        print(f"emulated targets ({reach.profile} profile unless a target names its own): answers are synthetic")
    if not _may_spend(args, experiment.spend(run, reach)):
        return 2
    done = collect(run, experiment, reach, command=_argv(args), wait=args.wait)
    print(f"{done}; run in {run.dir}")
    return 0


def _window(args: argparse.Namespace) -> str | None:
    from lab.collect.variance import window_label

    return window_label() if args.window == "auto" else args.window


def _variance(args: argparse.Namespace) -> Any:
    from lab.collect import variance

    provider = args.provider or config.resolve(require_key=False).provider
    models = args.model or [config.resolve(provider, require_key=False).model]
    return variance.workload(models, provider=provider, base_url=args.base_url, n=args.n, pause_s=args.pause,
                             max_tokens=args.max_tokens, stream=args.stream).at(_window(args))


def _file(args: argparse.Namespace) -> Any:
    from lab.collect.workload import load_file

    return load_file(args.file).at(_window(args))


def _review(args: argparse.Namespace) -> Any:
    from lab.collect.review import CodeReview, ReviewDesign

    settings = config.resolve(args.provider, args.model, args.base_url, require_key=False)
    return CodeReview(settings.provider, settings.model, ReviewDesign(n=args.n, pause_s=args.pause), args.base_url)


def _hedging(args: argparse.Namespace) -> Any:
    from lab.collect.hedging import Hedging, ScenarioDesign, scenarios

    design = ScenarioDesign(n=args.n, rate_per_s=args.rate, seed=args.seed)
    print(f"every arm sends {design.n} requests at {design.rate_per_s:g}/s to two in-process emulators "
          "(synthetic answers, no charge)")
    return Hedging(design, tuple(scenarios()[name] for name in args.scenario or ()))


def register(commands: argparse._SubParsersAction) -> None:
    collect = commands.add_parser(
        "collect", help="collect an experiment's calls into a run (resumable)",
        description="Collect an experiment's calls into a run: the field report's experiment 1 (variance), your "
                    "own targets and prompts from a file (run), the code review (review) or the routing scenarios "
                    "(hedging). Killed at any moment, the same command resumes; paid calls need --live, and "
                    "--emulator PROFILE runs everything offline against in-process emulators.")
    experiments = collect.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT",
                                         parser_class=type(collect))

    var = experiments.add_parser("variance", help="experiment 1: identical requests per time window and model",
                                 description="The field report's experiment 1: n identical requests per model, one "
                                             "after the other with a pause, in one time window of the run.")
    add_window(var, required=True)
    var.add_argument("--n", type=COUNT, default=50, help="calls per model")
    var.add_argument("--max-tokens", type=COUNT, default=256, help="max_tokens of each call")
    var.add_argument("--stream", action="store_true", help="also a streamed call per sample (time to first token)")
    var.set_defaults(handler=lambda args: _collect(args, _variance(args)))

    run = experiments.add_parser("run", help="an experiment file: your targets and prompts, serial or open-loop",
                                 description="Your targets and prompts from an experiment file (TOML; see "
                                             "experiments/ and the README), serial or under open-loop load.")
    run.add_argument("file", metavar="EXPERIMENT.toml", help="the experiment file (see experiments/)")
    add_window(run)
    run.set_defaults(handler=lambda args: _collect(args, _file(args)))

    rev = experiments.add_parser("review", help="experiment 2: n reviews of the sample code, three call sites each",
                                 description="The field report's experiment 2: n independent reviews of the sample "
                                             "code by one provider and model, each through the assistant's three "
                                             "call sites.")
    rev.add_argument("--n", type=COUNT, default=20, help="reviews")
    rev.set_defaults(handler=lambda args: _collect(args, _review(args)))

    hed = experiments.add_parser("hedging", help="routing policies (single, fallback, hedge) in emulated scenarios",
                                 description="Every routing policy (one provider alone, fallback, hedging on latency "
                                             "or on the first token) in emulated scenarios, open loop, against two "
                                             "in-process emulators (synthetic answers, no charge).")
    from lab.hedge import SCENARIOS

    hed.add_argument("--scenario", action="append", choices=SCENARIOS, metavar="NAME",
                     help=f"scenario, repeat for several (default: all): {', '.join(SCENARIOS)}")
    hed.add_argument("--n", type=COUNT, default=400, help="requests per policy and scenario")
    hed.add_argument("--rate", type=RATE, default=10.0, help="requests sent per second, open loop")
    hed.set_defaults(handler=lambda args: _collect(args, _hedging(args)))

    for sub in (var, rev):
        sub.add_argument("--provider", choices=config.PROVIDERS, help="the provider (default: LLM_PROVIDER, else anthropic)")
        sub.add_argument("--model", action="append" if sub is var else "store",
                         help="model id (default: the provider's)" + ("; repeat for several" if sub is var else ""))
        sub.add_argument("--pause", type=SECONDS, default=0.3, help="seconds between calls")
        sub.add_argument("--base-url", type=http_url,
                         help="the endpoint, e.g. a running `lab emulator` or a vLLM server (default: the provider's "
                              "own, or its *_BASE_URL)")
    for sub in (var, rev, run, hed):
        add_run(sub, "the run to collect into (created if new; resumed if it exists)")
        sub.add_argument("--seed", type=SEED, default=0, help="seed of the emulators' draws" + (
            "" if sub is hed else " (combined with the session's name)"))
    for sub in (var, rev, run):
        sub.add_argument("--emulator", metavar="PROFILE", type=emulator_profile,
                         help="run against in-process emulators (synthetic answers): report, fixed, instant, "
                              "haiku, sonnet, or a spec such as fixed:ttft_ms=200,itl_ms=20,output_tokens=50 "
                              "(default: the targets' own endpoints)")
        sub.add_argument("--live", action="store_true", help="allow paid calls to a real provider")
        sub.add_argument("--max-cost", type=USD, metavar="USD",
                         help="refuse a paid run whose estimate exceeds this (default: no limit)")
    for sub in (var, rev, run, hed):
        sub.add_argument("--wait", action="store_true",
                         help="if another collector holds the run, wait for it instead of stopping")
