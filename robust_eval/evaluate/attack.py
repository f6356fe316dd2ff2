"""The `attack` benchmark type: robust accuracy per (attack, eps), from the attacks leaf.

`--benchmark fgsm,pgd,pgd_l2,autoattack` on the CLI and `{type: attack, attack: pgd, ...}` in a
config are the same options. `run_attack_cells` is the plain library form (schema rows for every
(attack, eps)).
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from robust_eval.schema import make_row

from robust_eval.evaluate import Benchmark, CellPlan, register_benchmark

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


def attack_measurements(model, images, labels, *, attack: str, eps: float, steps, alpha,
                        restarts: int, seed: int, engine: str, batch_size: int, device,
                        options: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
    """One (attack, eps) cell as measurements: counts, warnings and the sweep's parameters."""
    import json

    from attacks.sweep import eps_sweep

    frame = eps_sweep(model, images, labels, attack=[attack], eps_list=[eps], steps=steps or 1,
                      alpha=alpha, restarts=restarts, seed=seed, engine=engine,
                      batch_size=batch_size, device=device,
                      options={attack: dict(options)} if options else None)
    record = frame.to_dict("records")[0]
    return [{"correct": int(record["correct"]), "n": int(record["n"]),
             "warnings": record.get("warnings"),
             "details": json.loads(record["params"]) if record.get("params") else {}}]


@register_benchmark
class Attack(Benchmark):
    name = "attack"
    fields = ("attack", "eps", "steps", "alpha", "restarts", "engine", "threat", "version",
              "parts", "n_iter")
    help = "robust accuracy under FGSM, PGD (L-inf, L2) or AutoAttack, per eps"

    @property
    def cli_names(self):
        import attacks

        return tuple(attacks.ATTACKS)

    def add_arguments(self, parser) -> None:
        group = parser.add_argument_group("attacks (--benchmark fgsm, pgd, pgd_l2, autoattack)")
        group.add_argument("--eps", type=parse_eps_list, default=None, metavar="E[,E...]",
                           help="perturbation budgets, fractions allowed: 2/255,4/255,8/255 "
                                "(default: the attack's own, 8/255 L-inf, 0.5 L2)")
        group.add_argument("--steps", type=int, default=None,
                           help="PGD steps (default: the attack's own, 10 for PGD)")
        group.add_argument("--alpha", type=lambda t: parse_number(t, "alpha"), default=None,
                           help="PGD step size, fractions allowed (default eps/4)")
        group.add_argument("--restarts", type=int, default=None,
                           help="random restarts, per-example worst case (default 1)")
        group.add_argument("--seed", type=int, default=0,
                           help="seed of the random starts (default 0)")
        group.add_argument("--engine", default=None,
                           help="native (this package's batched loop) or torchattacks "
                                "(reference); FGSM and PGD only")
        group.add_argument("--aa-version", default=None,
                           help="AutoAttack version: standard (default), plus, rand or custom")
        group.add_argument("--aa-attacks", default=None,
                           help="AutoAttack parts for --aa-version custom, e.g. apgd-ce,apgd-t")
        group.add_argument("--aa-n-iter", type=int, default=None,
                           help="AutoAttack iterations per part (custom version)")

    def options_from_args(self, args, cli_name):
        raw: Dict[str, Any] = {"type": self.name, "attack": cli_name, "seed": args.seed}
        if args.eps is not None:
            raw["eps"] = list(args.eps)
        for key in ("steps", "alpha", "restarts", "engine"):
            if getattr(args, key) is not None:
                raw[key] = getattr(args, key)
        if cli_name == "autoattack":
            for flag, key in (("aa_version", "version"), ("aa_n_iter", "n_iter")):
                if getattr(args, flag) is not None:
                    raw[key] = getattr(args, flag)
            if args.aa_attacks:
                raw["parts"] = [a.strip() for a in args.aa_attacks.split(",") if a.strip()]
        return raw

    def parse(self, raw, check, path, job_seed):
        import attacks

        name = check.choice(raw.get("attack"), f"{path}.attack", tuple(attacks.ATTACKS))
        options: Dict[str, Any] = {"attack": name}
        eps = raw.get("eps", DEFAULT_EPS.get(name))
        eps = check.sequence(eps, f"{path}.eps", allow_scalar=True)
        options["eps"] = [check.number(e, f"{path}.eps[{i}]", minimum=0)
                          for i, e in enumerate(eps)]
        gradient = name != "autoattack"
        if "steps" in raw:
            options["steps"] = check.integer(raw["steps"], f"{path}.steps", minimum=1)
            if name == "fgsm" and options["steps"] != 1:
                raise check.fail(f"{path}.steps", "fgsm is one step; steps does not apply")
            if name == "autoattack":
                raise check.fail(f"{path}.steps", "autoattack takes n_iter, not steps")
        else:
            options["steps"] = 10 if name in ("pgd", "pgd_l2") else (1 if gradient else None)
        options["alpha"] = (check.number(raw["alpha"], f"{path}.alpha", minimum=0)
                            if raw.get("alpha") is not None else None)
        options["restarts"] = check.integer(raw.get("restarts", 1), f"{path}.restarts",
                                            minimum=1)
        if gradient:
            options["engine"] = check.choice(raw.get("engine", "native"), f"{path}.engine",
                                             ("native", "torchattacks"))
        elif raw.get("engine", "autoattack") != "autoattack":
            raise check.fail(f"{path}.engine", f"{name} runs on its own engine; "
                                               f"{raw['engine']!r} does not apply")
        else:
            options["engine"] = "autoattack"
        threat = "l2" if name == "pgd_l2" else "linf"
        options["threat"] = check.choice(raw.get("threat", threat), f"{path}.threat", (threat,))
        aa: Dict[str, Any] = {}
        for key in ("version", "parts", "n_iter"):
            if key in raw and name != "autoattack":
                raise check.fail(f"{path}.{key}", f"applies to autoattack, not {name}")
        if "version" in raw:
            aa["version"] = check.choice(raw["version"], f"{path}.version",
                                         ("standard", "plus", "rand", "custom"))
        if "parts" in raw:
            aa["parts"] = [check.string(v, f"{path}.parts[{i}]") for i, v in
                           enumerate(check.sequence(raw["parts"], f"{path}.parts",
                                                    allow_scalar=True))]
        if "n_iter" in raw:
            aa["n_iter"] = check.integer(raw["n_iter"], f"{path}.n_iter", minimum=1)
        options["autoattack"] = aa
        return options

    def precisions(self, options):
        """bf16 runs the native engine's gradient steps under autocast (the reported predictions
        stay fp32, attacks/base.py); torchattacks and AutoAttack are not measured in bf16."""
        return ("fp32", "bf16") if options["engine"] == "native" else ("fp32",)

    def expand(self, options, seed, dataset_kind=None):
        for eps in options["eps"]:
            params = {k: options[k] for k in ("attack", "steps", "alpha", "restarts", "engine",
                                              "threat")}
            params["eps"] = eps
            if options["autoattack"]:
                params["autoattack"] = options["autoattack"]
            yield CellPlan(params, seed)

    def columns(self, params):
        return {"attack": params["attack"], "threat": params["threat"], "eps": params["eps"],
                "steps": params["steps"], "restarts": params["restarts"]}

    def label(self, params, seed):
        from reports.stats import eps_label

        return f"{params['attack']} eps={eps_label(params['eps'])}"

    def run(self, cell, ctx):
        p = cell["params"]
        data = ctx.data()
        aa = dict(p.get("autoattack") or {})
        if "parts" in aa:
            aa["attacks"] = aa.pop("parts")
        return attack_measurements(
            ctx.model(), data.images, data.labels, attack=p["attack"], eps=p["eps"],
            steps=p["steps"], alpha=p["alpha"], restarts=p["restarts"], seed=cell["seed"],
            engine=p["engine"], batch_size=ctx.batch_size, device=ctx.device, options=aa)


__all__ = ["DEFAULT_EPS", "attack_measurements", "parse_eps_list", "parse_number",
           "run_attack_cells"]
