"""Attack cells for `robust-eval evaluate --benchmark fgsm,pgd,pgd_l2,autoattack`.

The evaluate command (robust_eval/cli/evaluate.py) calls `add_arguments(parser)` once and
`run_from_args(...)` with the loaded model and data; job runners call `run_attack_cells(...)`
directly. Both return schema rows (`robust_eval.schema.make_row`), one per (attack, eps), with
the sweep's warnings and its parameters (JSON, `params`) kept.
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from robust_eval.schema import make_row

BENCHMARK_NAMES = ("fgsm", "pgd", "pgd_l2", "autoattack")
ENGINE_CHOICES = ("native", "torchattacks")
DEFAULT_EPS = {"fgsm": 8 / 255, "pgd": 8 / 255, "pgd_l2": 0.5, "autoattack": 8 / 255}


def parse_number(text: str, what: str = "value") -> float:
    """'8/255', '0.03' or '1e-2' -> float, without eval(); finite only."""
    raw = str(text).strip()
    parts = raw.split("/")
    try:
        if len(parts) == 1:
            value = float(parts[0])
        elif len(parts) == 2:
            numerator, denominator = float(parts[0]), float(parts[1])
            if denominator == 0:
                raise ValueError
            value = numerator / denominator
        else:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what} {raw!r} is not a number or fraction such as 8/255") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{what} {raw!r} must be a finite number >= 0")
    return value


def parse_eps_list(text: str) -> List[float]:
    """'2/255,4/255,8/255' -> [0.00784..., 0.0156..., 0.0313...]."""
    items = [item for item in str(text).split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("--eps needs at least one value, e.g. 8/255")
    return [parse_number(item, "eps") for item in items]


def _positive_int(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _seed(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {text!r} must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--eps --steps --alpha --restarts --seed --engine. --seed is shared: when another
    plug-in or the evaluate command already defines it, that definition is used."""
    group = parser.add_argument_group("attacks (--benchmark fgsm, pgd, pgd_l2, autoattack)")
    group.add_argument("--eps", type=parse_eps_list, default=None, metavar="E[,E...]",
                       help="perturbation budgets, fractions allowed: 2/255,4/255,8/255 "
                            "(default 8/255 for L-inf, 0.5 for pgd_l2)")
    group.add_argument("--steps", type=_positive_int, default=10,
                       help="PGD steps (default 10; FGSM is one step)")
    group.add_argument("--alpha", type=lambda t: parse_number(t, "alpha"), default=None,
                       help="PGD step size, fractions allowed (default eps/4)")
    group.add_argument("--restarts", type=_positive_int, default=1,
                       help="random restarts, per-example worst case (default 1)")
    if "--seed" not in parser._option_string_actions:  # noqa: SLF001 (argparse has no API)
        group.add_argument("--seed", type=_seed, default=0,
                           help="seed of the random starts (default 0)")
    group.add_argument("--engine", choices=ENGINE_CHOICES, default="native",
                       help="native (this package's batched loop) or torchattacks (reference)")


def requested_benchmarks(value: Union[None, str, Sequence[str]]) -> List[str]:
    """The benchmarks this module handles among --benchmark's values, in order."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [
        part for v in value for part in str(v).split(",")]
    return [b.strip() for b in items if b.strip() in BENCHMARK_NAMES]


def run_from_args(model: nn.Module, data: Any, args: argparse.Namespace, base: Mapping[str, Any],
                  device: Union[str, torch.device, None],
                  benchmark: Optional[str] = None) -> List[Dict[str, Any]]:
    """Rows for the attack benchmarks requested in args.benchmark (or just `benchmark`)."""
    names = [benchmark] if benchmark else requested_benchmarks(getattr(args, "benchmark", None))
    unknown = [n for n in names if n not in BENCHMARK_NAMES]
    if unknown:
        raise ValueError(f"robust_eval.evaluate.attack handles {BENCHMARK_NAMES}, not {unknown}")
    if not names:
        return []
    return run_attack_cells(
        model, data.images, data.labels, attacks=names, eps_list=getattr(args, "eps", None),
        steps=getattr(args, "steps", 10), alpha=getattr(args, "alpha", None),
        restarts=getattr(args, "restarts", 1), seed=getattr(args, "seed", 0) or 0,
        engine=getattr(args, "engine", "native"),
        batch_size=getattr(args, "batch_size", None) or 256, device=device, base=base)


def run_attack_cells(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                     attacks: Union[str, Sequence[str]], eps_list: Optional[Sequence[float]] = None,
                     steps: int = 10, alpha: Optional[float] = None, restarts: int = 1,
                     seed: int = 0, engine: str = "native", batch_size: int = 256,
                     device: Union[str, torch.device, None] = None,
                     base: Optional[Mapping[str, Any]] = None,
                     options: Optional[Mapping[str, Mapping[str, Any]]] = None,
                     **native: Any) -> List[Dict[str, Any]]:
    """The plain entry point (no argparse): schema rows for every (attack, eps).

    images: uint8 or [0, 1] float NCHW. eps_list None -> each attack's default budget. All
    attacks sharing eps_list run in one sweep, so the cross-attack warnings apply. `native`
    passes amp=/channels_last=/compile= to the native engine; `options` per-attack keyword
    arguments (e.g. {"autoattack": {"version": "custom", "attacks": ["apgd-ce"]}}).
    """
    from attacks.sweep import eps_sweep, parse_attack_names

    names = parse_attack_names(attacks)
    groups: Dict[tuple, List[str]] = {}
    for name in names:  # one sweep per eps list, so defaults may differ by threat
        key = tuple(eps_list) if eps_list else (DEFAULT_EPS[name],)
        groups.setdefault(key, []).append(name)
    base = dict(base or {})
    base.pop("benchmark", None)
    rows: List[Dict[str, Any]] = []
    for eps_values, group in groups.items():
        frame = eps_sweep(model, images, labels, attack=group, eps_list=list(eps_values),
                          steps=steps, alpha=alpha, restarts=restarts, seed=seed, engine=engine,
                          batch_size=batch_size, device=device,
                          options={k: v for k, v in (options or {}).items() if k in group},
                          **native)
        for record in frame.to_dict("records"):
            fields = dict(base)
            fields.update({k: record[k] for k in ("benchmark", "attack", "threat", "eps",
                                                  "steps", "restarts", "seed", "seconds",
                                                  "params", "warnings")})
            rows.append(make_row(correct=int(record["correct"]), n=int(record["n"]), **fields))
    return rows


__all__ = ["BENCHMARK_NAMES", "add_arguments", "parse_eps_list", "parse_number",
           "requested_benchmarks", "run_attack_cells", "run_from_args"]
