"""`robust-eval demo`: the offline demo, i.e. `robust-eval run` on the packaged demo config,
then plots and the PDF report. Needs no network and no data download (scikit-learn digits)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_eval.cli import command_help


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help=command_help("demo"),
        description="Train two tiny CNNs (BatchNorm, ConvNorm) on scikit-learn's digits (cached "
                    "for the next run), run clean, 15 corruptions x 5 severities, FGSM/PGD eps "
                    "sweeps and label-noise training, then write results, plots and a PDF "
                    "report. No network needed.")
    from robust_eval.cli.run import add_run_arguments

    add_run_arguments(parser, default_out="demo-out")
    parser.add_argument("--config", default=None,
                        help="another config instead of the packaged demo.yaml")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from robust_eval.cli import CliError
    from robust_eval.cli.run import execute, print_outputs
    from robust_eval.jobs import ConfigError, load_config, packaged_config

    try:
        config = load_config(args.config or packaged_config("demo"))
    except ConfigError as error:
        raise CliError(str(error)) from None
    out = Path(args.out)
    summary = execute(config, out, args)
    if summary.dry_run:
        return 0
    print_clean_accuracy(summary.frame)
    try:
        summary.outputs.update(write_report(out))
    except Exception as error:  # noqa: BLE001 - results are safe on disk; say what failed
        print(f"robust-eval demo: the report could not be written: {type(error).__name__}: "
              f"{error}", file=sys.stderr)
        print_outputs(summary)
        return 1
    print_outputs(summary)
    print(f"demo outputs are in {out.resolve()}")
    return summary.exit_code


def print_clean_accuracy(frame) -> None:
    clean = frame[(frame["benchmark"] == "clean")]
    for row in clean.to_dict("records"):
        if row.get("status") == "failed":
            print(f"clean accuracy of {row['model']} on {row['dataset']}: FAILED "
                  f"({row.get('error')})")
        else:
            print(f"clean accuracy of {row['model']} ({row['norm']}) on {row['dataset']}: "
                  f"{row['accuracy']:.2%} [95% CI {row['ci_low']:.2%}-{row['ci_high']:.2%}, "
                  f"n={int(row['n'])}]")


def write_report(out: Path) -> dict:
    """Plots and the PDF report from the results folder (F's reports package)."""
    from reports import load_results
    from reports.pdf import build_pdf_report
    from reports.plots import save_all

    results = load_results(out)
    pdf = build_pdf_report(results, out / "report.pdf", title="robust-eval offline demo")
    plots = save_all(results.frame, out / "plots", ["png"])
    return {"report_pdf": Path(pdf), "plots": out / "plots" if plots else None}
