"""``lab analyze --run RUN`` (a report on any run) and ``lab compare --run A --run B`` (a verdict between two)."""

from __future__ import annotations

import argparse
import html
from pathlib import Path

from lab.cli.common import UsageError, add_run

METRIC_NAMES = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2e": "latency_ms", "gap": "max_gap_ms",
                "response": "response_ms"}


def _analyze(args: argparse.Namespace) -> int:
    from lab import report

    page = report.analysis_page(args.run, args.out)
    print(f"wrote {page}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from lab.analysis import analyze, compare, stats

    if len(args.run) != 2:
        raise UsageError(f"lab compare takes two runs, the reference first: --run A --run B (not {len(args.run)})")
    args.run_a, args.run_b = args.run
    by = [c for c in (args.by or "").split(",") if c]
    unknown = set(by) - {"target", "task", "window", "provider", "model", "kind"}
    if unknown:
        raise UsageError(f"--by takes target, task, window, provider, model or kind, not {', '.join(sorted(unknown))}")
    metrics = [METRIC_NAMES[m] for m in args.metric] if args.metric else list(compare.METRICS)
    a, b = analyze.load(args.run_a), analyze.load(args.run_b)
    names = (args.run_a, args.run_b) if args.run_a != args.run_b else ("A", "B")
    results = compare.compare_frames(a, b, by=by, metrics=metrics, names=names)
    if not results:
        raise UsageError(f"the runs share no {', '.join(by) or 'metric'} with values to compare (try without --by)")
    errors = compare.error_comparison(a, b, names)
    lines = [f"{args.run_b} against {args.run_a}" + (f", by {', '.join(by)}" if by else "")]
    for where, result in results:
        lines.append(("  " + ", ".join(f"{k} {v}" for k, v in where.items()) + ": " if where else "  ") + result.verdict)
    lines.append("  errors: " + "; ".join(f"{r.side} {stats.fmt_interval(r.error_rate * 100, r.low * 100, r.high * 100, '.1f')} %"
                                         f" ({r.errors} of {r.n})" for r in errors.itertuples()))
    print("\n".join(lines))
    for where, result in results:
        print(f"\n{result.metric}" + (f" ({', '.join(f'{k} {v}' for k, v in where.items())})" if where else ""))
        print(_quantiles(result.table).to_string(index=False))
    if args.out:
        _write_html(Path(args.out), lines, results, errors)
        print(f"\nwrote {args.out}")
    return 0


def _quantiles(table):  # noqa: ANN001, ANN202 (frames)
    from lab.analysis import stats

    table = table.assign(value=[stats.fmt_interval(r.estimate, r.low, r.high, ",.1f") for r in table.itertuples()])
    wide = table.pivot_table(index=["side", "n"], columns="percentile", values="value", aggfunc="first", sort=False)
    wide.columns = [f"p{c}" for c in wide.columns]
    return wide.reset_index()


def _write_html(path: Path, lines: list[str], results: list, errors) -> None:  # noqa: ANN001
    body = [f"<h1>{html.escape(lines[0])}</h1>", "<h2>Findings</h2><ul>"]
    body += [f"<li>{html.escape(line.strip())}</li>" for line in lines[1:]]
    body.append("</ul><h2>Percentiles with 95% distribution-free intervals (unbounded: not estimable at this n)</h2>")
    for where, result in results:
        title = result.metric + (f" ({', '.join(f'{k} {v}' for k, v in where.items())})" if where else "")
        body.append(f"<h3>{html.escape(title)}</h3>{_quantiles(result.table).to_html(index=False)}")
        body.append(result.effects.to_frame("value").to_html())
    body.append(f"<h2>Errors (95% Wilson intervals)</h2>{errors.to_html(index=False)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
                    f"{html.escape(lines[0])}</title><style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}"
                    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style></head>"
                    f"<body>{''.join(body)}</body></html>\n", encoding="utf-8")


def register(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze", help="a report on any run: per target and task, with intervals",
        description="A report on any run, collected, imported or proxied: per target and task, the latency "
                    "percentiles with distribution-free intervals, error rates, and every pair of targets compared; "
                    "written as a shareable HTML page.")
    add_run(analyze, "the run to analyse")
    analyze.add_argument("--out", metavar="FILE.html", help="the HTML page to write (default: reports/RUN.html)")
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
    comp.add_argument("--out", metavar="FILE.html", help="also write the comparison as a self-contained HTML page")
    comp.set_defaults(handler=_compare)
