"""`robust-eval report | baseline | check`: views of a results directory (reports/ does the work)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robust_eval.cli import CliError, command_help


def register(subparsers) -> None:
    report = subparsers.add_parser(
        "report", help=command_help("report"),
        description="Write a PDF report of RESULTS_DIR: title page with config, models and "
                    "environment, summary table, plots, detailed tables, failed cells.")
    report.add_argument("results", metavar="RESULTS_DIR",
                        help="folder holding results.csv/.parquet (and run.json), or one table")
    report.add_argument("-o", "--output", default=None,
                        help="PDF path (default RESULTS_DIR/report.pdf)")
    report.add_argument("--plots", metavar="DIR", default=None,
                        help="also save each plot here")
    report.add_argument("--plot-format", action="append", choices=("png", "svg", "pdf"),
                        default=None, help="plot file format(s) for --plots (default png)")
    report.add_argument("--markdown", metavar="FILE", default=None,
                        help="also write the summary table as Markdown")
    report.add_argument("--latex", metavar="FILE", default=None,
                        help="also write the summary table as a LaTeX booktabs table")
    report.add_argument("--mce-reference", choices=("alexnet",), default=None,
                        help="add ImageNet-C mCE normalised by AlexNet's errors")
    report.set_defaults(func=run_report)

    baseline = subparsers.add_parser(
        "baseline", help=command_help("baseline"),
        description="Freeze RESULTS_DIR as a baseline for `robust-eval check`.")
    baseline.add_argument("results", metavar="RESULTS_DIR")
    baseline.add_argument("-o", "--output", required=True, help="baseline JSON to write")
    baseline.set_defaults(func=run_baseline)

    check = subparsers.add_parser(
        "check", help=command_help("check"),
        description="Compare RESULTS_DIR to a baseline cell by cell (seeds ignored). A cell "
                    "regresses when its new 95%% CI upper bound plus the tolerance lies below "
                    "the baseline's 95%% CI lower bound; baseline cells missing or failed in the "
                    "new run also fail. Exit 0 = pass, 1 = regression, 2 = bad input.")
    check.add_argument("results", metavar="RESULTS_DIR")
    check.add_argument("--baseline", required=True, help="JSON written by `robust-eval baseline`")
    check.add_argument("--tolerance", type=float, default=0.0, metavar="PP",
                       help="extra slack in percentage points (default 0)")
    check.add_argument("--all", action="store_true", help="list every cell, not only failures")
    check.add_argument("--json", metavar="FILE", default=None,
                       help="also write the comparison table as JSON")
    check.set_defaults(func=run_check)


def _load(path: str):
    from reports import load_results

    try:
        return load_results(path)
    except (FileNotFoundError, ValueError) as error:
        raise CliError(str(error)) from None


def _mce_reference(name):
    if name is None:
        return None
    from corruptions.metrics import ALEXNET_ERRORS

    return ALEXNET_ERRORS


def run_report(args: argparse.Namespace) -> int:
    from reports import formatted_summary, summary_table, to_latex, to_markdown
    from reports.pdf import build_pdf_report
    from reports.plots import save_all
    from reports.results import write_atomic

    results = _load(args.results)
    base = Path(args.results) if Path(args.results).is_dir() else Path(args.results).parent
    output = Path(args.output) if args.output else base / "report.pdf"
    if output.suffix.lower() != ".pdf":
        raise CliError(f"-o {output}: the report is a PDF; give a path ending in .pdf")
    reference = _mce_reference(args.mce_reference)
    build_pdf_report(results, output, corruption_reference=reference)
    print(f"wrote {output}")
    summary = summary_table(results.frame, reference)
    if args.markdown:
        write_atomic(args.markdown, to_markdown(formatted_summary(summary),
                                                summary.attrs.get("notes")))
        print(f"wrote {args.markdown}")
    if args.latex:
        write_atomic(args.latex, to_latex(formatted_summary(summary),
                                          caption="Top-1 accuracy (%) per model.",
                                          label="tab:robust-eval-summary"))
        print(f"wrote {args.latex}")
    if args.plots:
        for path in save_all(results.frame, args.plots, args.plot_format or ["png"]):
            print(f"wrote {path}")
    for note in results.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    from reports import freeze_baseline
    from reports.results import write_atomic

    results = _load(args.results)
    try:
        baseline = freeze_baseline(results)
    except ValueError as error:
        raise CliError(str(error)) from None
    write_atomic(args.output, json.dumps(baseline, indent=1, allow_nan=False) + "\n")
    skipped = len(baseline["failed_cells"])
    print(f"wrote {args.output}: {len(baseline['cells'])} cells"
          + (f" ({skipped} failed cell(s) left out)" if skipped else ""))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from reports import check_against_baseline, format_check, read_baseline
    from reports.results import write_atomic

    if args.tolerance < 0:
        raise CliError(f"--tolerance must be >= 0 percentage points, got {args.tolerance}")
    results = _load(args.results)
    try:
        baseline = read_baseline(args.baseline)
    except (FileNotFoundError, ValueError) as error:
        raise CliError(str(error)) from None
    result = check_against_baseline(results, baseline, args.tolerance)
    print(format_check(result, show_all=args.all), end="")
    if args.json:
        write_atomic(args.json, result.table.to_json(orient="records", indent=1))
    return 1 if result.failed else 0
