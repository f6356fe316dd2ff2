"""`robust-eval report | baseline | check | compare`: views of result directories (reports/ does
the work)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robust_eval.cli import CliError, command_help


def register(subparsers) -> None:
    report = subparsers.add_parser(
        "report", help=command_help("report"),
        description="Write a PDF report of RESULTS_DIR(s), merged into one (a model name found "
                    "in several folders is called FOLDER/MODEL): page 1 holds what was "
                    "evaluated, the headline table with n, 95 %% intervals and each model's "
                    "difference from --reference (Holm-adjusted), and a summary in words; then "
                    "differences, plots, pictures, details, failed cells, and config and "
                    "environment in an appendix.")
    report.add_argument("results", metavar="RESULTS_DIR", nargs="+",
                        help="folder holding results.csv/.parquet (and run.json), or one table")
    report.add_argument("-o", "--output", default=None,
                        help="PDF path (default the first RESULTS_DIR/report.pdf)")
    report.add_argument("--reference", metavar="MODEL", default=None,
                        help="the model the others are compared with (default the first)")
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
        description="Test RESULTS_DIR against a baseline, cell by cell and per aggregate "
                    "(corruption mean, per severity, attack eps sweep), seeds ignored. A cell or "
                    "aggregate REGRESSES when its drop is significantly larger than the "
                    "tolerance: one-sided test of H0 delta >= -tolerance, paired on per-example "
                    "outcomes when both sides have them for the same examples (else unpaired), "
                    "Holm-adjusted over everything tested. Baseline cells missing or failed in "
                    "the new run also fail; a changed checkpoint, arch, norm, mean/std, n or "
                    "example set is a warning (a failure with --strict). Exit 0 = pass, "
                    "1 = regression, 2 = unusable input.")
    check.add_argument("results", metavar="RESULTS_DIR")
    check.add_argument("--baseline", required=True, help="JSON written by `robust-eval baseline`")
    check.add_argument("--tolerance", type=float, default=0.0, metavar="PP",
                       help="drops up to this many percentage points are allowed (default 0)")
    check.add_argument("--alpha", type=float, default=0.05,
                       help="significance level after Holm's adjustment (default 0.05)")
    check.add_argument("--strict", action="store_true",
                       help="fail when a cell's identity changed (checkpoint, arch, norm, "
                            "mean/std, n, examples) instead of warning")
    check.add_argument("--all", action="store_true", help="list every test, not only failures "
                                                          "and the largest drops")
    check.add_argument("--json", metavar="FILE", default=None,
                       help="also write the verdict and every test as JSON")
    check.set_defaults(func=run_check)

    compare = subparsers.add_parser(
        "compare", help=command_help("compare"),
        description="Compare every model in RESULTS_DIR(s) with --reference, per cell and per "
                    "aggregate: delta in points, its 95 % interval, two-sided p and "
                    "Holm-adjusted p over the tests of each model pair. Paired (McNemar / "
                    "bootstrap over examples) when both have per-example outcomes of the same "
                    "examples, else unpaired (said in the method column). A model name found "
                    "in several folders is called FOLDER/MODEL.")
    compare.add_argument("results", metavar="RESULTS_DIR", nargs="+")
    compare.add_argument("--reference", required=True, metavar="MODEL",
                         help="the model the others are compared with")
    compare.add_argument("--alpha", type=float, default=0.05,
                         help="significance level after Holm's adjustment (default 0.05)")
    compare.add_argument("--json", metavar="FILE", default=None,
                         help="also write one record per test as JSON")
    compare.set_defaults(func=run_compare)


def _error(error: Exception) -> CliError:
    """One line, whatever the underlying message held."""
    return CliError(" ".join(str(error.args[0] if error.args else error).split()))


def _load(path: str):
    from reports import load_results

    try:
        return load_results(path)
    except (FileNotFoundError, ValueError) as error:
        raise _error(error) from None


def run_report(args: argparse.Namespace) -> int:
    from robust_eval.api import report

    sets = [_load(path) for path in args.results]
    first = Path(args.results[0])
    base = first if first.is_dir() else first.parent
    try:
        written = report(sets, args.output or base / "report.pdf", plots=args.plots,
                         plot_formats=args.plot_format or ["png"], markdown=args.markdown,
                         latex=args.latex, mce_reference=args.mce_reference,
                         reference=args.reference)
    except ValueError as error:
        raise _error(error) from None
    for path in written:
        print(f"wrote {path}")
    for note in (note for results in sets for note in results.notes):
        print(f"note: {note}", file=sys.stderr)
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    from reports import freeze_baseline
    from reports.results import write_atomic

    results = _load(args.results)
    try:
        baseline = freeze_baseline(results)
    except ValueError as error:
        raise _error(error) from None
    write_atomic(args.output, json.dumps(baseline, indent=1, allow_nan=False) + "\n")
    skipped = len(baseline["failed_cells"])
    paired = sum(c["outcomes"] is not None for c in baseline["cells"])
    print(f"wrote {args.output}: {len(baseline['cells'])} cells, {paired} with per-example "
          f"outcomes" + (f" ({skipped} failed cell(s) left out)" if skipped else ""))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from reports import check_against_baseline, format_check, read_baseline
    from reports.results import write_atomic

    if not args.tolerance >= 0 or args.tolerance >= 100:
        raise CliError(f"--tolerance must be in [0, 100) percentage points, got {args.tolerance}")
    if not 0 < args.alpha < 1:
        raise CliError(f"--alpha must lie in (0, 1), got {args.alpha}")
    try:
        baseline = read_baseline(args.baseline)
    except (FileNotFoundError, ValueError) as error:
        raise _error(error) from None
    results = _load(args.results)
    try:
        result = check_against_baseline(results, baseline, args.tolerance, args.alpha,
                                        args.strict)
    except ValueError as error:
        raise _error(error) from None
    print(format_check(result, show_all=args.all), end="")
    for note in results.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        write_atomic(args.json, json.dumps(result.to_json(), indent=1, allow_nan=False))
    return 1 if result.failed else 0


def run_compare(args: argparse.Namespace) -> int:
    from reports.compare import compare_models, folder_names, format_comparison, merge_results
    from reports.results import write_atomic

    if not 0 < args.alpha < 1:
        raise CliError(f"--alpha must lie in (0, 1), got {args.alpha}")
    sets = [_load(path) for path in args.results]
    results = sets[0] if len(sets) == 1 else merge_results(sets, folder_names(args.results))
    try:
        table = compare_models(results, args.reference, args.alpha)
    except ValueError as error:
        raise _error(error) from None
    print(format_comparison(table, args.alpha), end="")
    for note in results.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        write_atomic(args.json, json.dumps(records, indent=1, allow_nan=False))
    return 0
