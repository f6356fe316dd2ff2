"""`robust-eval run CONFIG`: run a job config (docs/jobs.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from robust_eval.cli import command_help


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help=command_help("run"),
        description="Expand CONFIG into a grid of cells, skip the cells already in the output "
                    "folder, run the rest and write results.csv/.parquet, tables/ and run.json. "
                    "Exit code 0: every cell ok; 1: some cell failed (see results.csv status "
                    "and error); 2: bad config or arguments.")
    add_run_arguments(parser)
    parser.add_argument("config", help="YAML job config (see configs/ and docs/jobs.md)")
    parser.set_defaults(func=main)


def add_run_arguments(parser: argparse.ArgumentParser, default_out: str = None) -> None:
    parser.add_argument("--out", default=default_out,
                        help="output folder (default: runs/<config name>)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: in-process, or one worker per GPU; ray: a Ray cluster")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the cells and which are already done; run nothing")
    parser.add_argument("--device", default=None,
                        help="auto, cpu, cuda, cuda:N (default: the config's device)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: one per GPU, else 1)")
    parser.add_argument("--ray-address", default=None,
                        help="existing Ray cluster, e.g. auto or ray://head:10001 "
                             "(default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--ray-num-cpus", type=int, default=None,
                        help="CPUs of a local Ray (ignored with --ray-address)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="fp32, or bf16 (the model runs under bf16 autocast; needs a GPU or "
                             "a CPU with AVX-512 BF16/AMX to be faster) (default: the config's "
                             "precision, else fp32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def execute(config, out, args) -> "object":
    from robust_eval.cli import CliError
    from robust_eval.jobs import ConfigError, run_job

    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    try:
        return run_job(config, out, executor=args.executor, dry_run=args.dry_run,
                       progress=not args.no_progress, workers=args.workers,
                       device=args.device, ray_address=args.ray_address,
                       ray_num_cpus=args.ray_num_cpus, precision=args.precision)
    except ConfigError as error:
        raise CliError(str(error)) from None


def main(args: argparse.Namespace) -> int:
    from robust_eval.cli import CliError
    from robust_eval.jobs import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as error:
        raise CliError(str(error)) from None
    out = Path(args.out) if args.out else Path("runs") / config.name
    summary = execute(config, out, args)
    if summary.dry_run:
        return 0
    print_outputs(summary)
    return summary.exit_code


def print_outputs(summary) -> None:
    ok = len(summary.cells) - len(summary.failed)
    print(f"{ok}/{len(summary.cells)} cells ok ({summary.ran} run now, {summary.skipped} "
          f"reused), {len(summary.failed)} failed, {summary.seconds:.1f} s")
    for name, path in summary.outputs.items():
        print(f"  {name}: {path}")
