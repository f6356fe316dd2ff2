"""The `robust-eval` command. Each subcommand lives in its own module with `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional, Sequence

# command -> (module that registers it, its one-line help). `robust-eval --help` and --version
# list the commands from this table alone: the modules import torch (seconds) when they register.
COMMANDS = {
    "evaluate": ("evaluate", "evaluate a checkpoint on clean/corrupted/adversarial data"),
    "corruptions": ("corruptions", "generate or download corrupted test sets"),
    "train": ("train", "train a model with a recipe (standard, label_noise, data_scarcity, "
                       "free_adv)"),
    "run": ("run", "run a job config (models x datasets x benchmarks)"),
    "demo": ("demo", "offline demo: train tiny BN/ConvNorm models on digits and benchmark them"),
    "report": ("report", "PDF report (and optional plots/tables) of a results directory"),
    "baseline": ("report", "freeze a results directory as a regression baseline (JSON)"),
    "check": ("report", "test a results directory against a baseline; exit 1 on regression"),
    "compare": ("report", "compare models against a reference, with paired statistics"),
    "zoo": ("zoo", "list or download RobustBench zoo models"),
}


def command_help(name: str) -> str:
    return COMMANDS[name][1]

def positive_int(text: str) -> int:
    """argparse type for counts such as --limit and --batch-size."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


class CliError(Exception):
    """A user error: printed without a traceback, exit code 2."""


def parse_device(text: str):
    """--device value -> torch.device, refusing CUDA where there is none (the jobs' check)."""
    import torch

    from robust_eval.jobs.executors import resolve_device

    try:
        return torch.device(resolve_device(text))
    except ValueError as error:
        raise CliError(f"--device: {error}") from None


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The `robust-eval` parser. Given the arguments, only the module of the command they name is
    imported; every other command gets an entry with its help line alone (enough to list it)."""
    from robust_eval import __version__

    parser = argparse.ArgumentParser(
        prog="robust-eval",
        description="Robustness evaluation for convolutional networks (ConvNorm and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"robust-eval {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # the top level has no option that takes a value: the first word is the command
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (module, text) in COMMANDS.items():
        if name in subparsers.choices:  # registered with an earlier command of its module
            continue
        if wanted is None or COMMANDS.get(wanted, ("",))[0] == module:
            importlib.import_module(f"robust_eval.cli.{module}").register(subparsers)
        else:
            subparsers.add_parser(name, help=text)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as error:
        print(f"robust-eval {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"robust-eval {args.command}: error: {message}", file=sys.stderr)
        return 2
