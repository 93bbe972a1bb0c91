"""``lab analyze --run RUN`` (a report on any run) and ``lab compare --run A --run B`` (a verdict between two).

Both print what a reader needs first (the findings and a table), then write the HTML page; ``--json``
prints everything computed instead, for machines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lab.cli.common import UsageError, add_run

METRIC_NAMES = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "latency_ms", "gap": "max_gap_ms",
                "response": "response_ms"}
WINDOWS = ("hour", "weekday", "day", "window")


def objective(value: str) -> tuple[str, float]:
    """``ttft=500``: a latency objective, metric and milliseconds."""
    name, _, ms = value.partition("=")
    if name not in METRIC_NAMES:
        raise argparse.ArgumentTypeError(f"{value!r}: name a metric ({', '.join(METRIC_NAMES)}), e.g. ttft=500")
    try:
        limit = float(ms)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give the objective in ms, e.g. {name}=500") from None
    if not limit > 0 or limit == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: the objective must be a positive number of ms")
    return METRIC_NAMES[name], limit


def _analyze(args: argparse.Namespace) -> int:
    from lab.analysis.analyze import Analysis, Options
    from lab.report import pages

    options = Options(by=args.by, tz=args.tz, baseline=args.baseline, all_pairs=args.all_pairs,
                      objectives=dict(args.slo or []))
    result = Analysis(args.run, options)
    if args.json:
        print(json.dumps(result.as_json(), indent=1, default=str))
    else:
        print(result.terminal(), flush=True)
    if args.no_page or (args.json and not args.out):  # JSON for a machine: a page only when asked for by path
        return 0
    page = pages.write(pages.analysis(result), args.out or Path("reports") / f"{args.run}.html")
    if not args.json:
        print(f"\nwrote {page}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from lab.analysis import compare
    from lab.report import pages

    if len(args.run) != 2:
        raise UsageError(f"lab compare takes two runs, the reference first: --run A --run B (not {len(args.run)})")
    by = [c for c in (args.by or "").split(",") if c]
    unknown = set(by) - set(compare.BY)
    if unknown:
        raise UsageError(f"--by takes {', '.join(compare.BY)}, not {', '.join(sorted(unknown))}")
    metrics = [METRIC_NAMES[m] for m in args.metric] if args.metric else list(compare.METRICS)
    result = compare.Runs(*args.run, by=by, metrics=metrics)
    if not result.results:
        raise UsageError(f"the runs share no {', '.join(by) or 'metric'} with values to compare (try without --by)")
    print(json.dumps(result.as_json(), indent=1, default=str) if args.json else result.terminal(), flush=True)
    if args.out:
        pages.write(pages.comparison(result), args.out)
        if not args.json:
            print(f"\nwrote {args.out}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze", help="a report on any run: targets ranked, with intervals, in the terminal and as a page",
        description="A report on any run, collected, imported or proxied: per target (and task), the latency "
                    "percentiles with distribution-free intervals, error rates, throughput, and the targets ranked "
                    "in groups that cannot be told apart; printed, then written as a shareable HTML page.")
    add_run(analyze, "the run to analyse")
    analyze.add_argument("--out", metavar="FILE.html", help="the HTML page to write (default: reports/RUN.html)")
    analyze.add_argument("--no-page", action="store_true", help="print only; write no HTML page")
    analyze.add_argument("--json", action="store_true",
                         help="print everything computed as JSON, for machines (a page only with --out)")
    analyze.add_argument("--by", choices=WINDOWS,
                         help="also look at time: windows by hour of day, weekday, day, or the run's own windows; "
                              "tests whether they differ, latency over time and change points")
    analyze.add_argument("--tz", default="UTC", metavar="ZONE",
                         help="the time zone of --by's hours, weekdays and days, e.g. Europe/Paris (default: UTC)")
    analyze.add_argument("--baseline", metavar="TARGET", help="compare every target with this one (Holm-adjusted)")
    analyze.add_argument("--all-pairs", action="store_true",
                         help="also compare every pair of targets with a verdict each (slow with many targets)")
    analyze.add_argument("--slo", action="append", type=objective, metavar="METRIC=MS",
                         help="a latency objective for goodput, e.g. ttft=500 or e2e=4000; repeat for several")
    analyze.set_defaults(handler=_analyze)

    comp = commands.add_parser(
        "compare", help="did B get slower than A? two runs compared, with a verdict",
        description="Two runs compared, metric by metric: each side's percentiles with intervals, the ratio of "
                    "medians, rank and tail tests with their power, error rates, and a one-line verdict. Name the "
                    "reference first: --run A --run B.")
    add_run(comp, "a run to compare: give it twice, the reference first (--run A --run B)", action="append")
    comp.add_argument("--by", metavar="COLUMNS",
                      help="compare within groups, e.g. target,task (columns both runs have; default: the whole runs)")
    comp.add_argument("--metric", action="append", choices=sorted(METRIC_NAMES),
                      help="ttft, tpot, e2e, gap or response; repeat for several (default: ttft, tpot, e2e)")
    comp.add_argument("--json", action="store_true", help="print everything computed as JSON, for machines")
    comp.add_argument("--out", metavar="FILE.html", help="also write the comparison as a self-contained HTML page")
    comp.set_defaults(handler=_compare)
