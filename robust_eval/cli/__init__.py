"""The `robust-eval` command. Each subcommand lives in its own module with `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import List, Optional

# module name -> the subcommands it registers; modules are imported only when present.
SUBCOMMAND_MODULES = [
    "evaluate",     # robust-eval evaluate
    "corruptions",  # robust-eval corruptions generate|download
    "train",        # robust-eval train
    "run",          # robust-eval run CONFIG
    "demo",         # robust-eval demo
    "report",       # robust-eval report | baseline | check | compare
    "zoo",          # robust-eval zoo list|download
]


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
    """--device value -> torch.device, refusing CUDA where there is none."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise CliError(f"--device {text!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {text}: CUDA is not available on this machine")
    return device


def build_parser() -> argparse.ArgumentParser:
    from robust_eval import __version__

    parser = argparse.ArgumentParser(
        prog="robust-eval",
        description="Robustness evaluation for convolutional networks (ConvNorm and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"robust-eval {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        if importlib.util.find_spec(f"robust_eval.cli.{name}") is None:
            continue
        module = importlib.import_module(f"robust_eval.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
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
