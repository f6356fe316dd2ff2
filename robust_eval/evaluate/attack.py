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
                     steps: Optional[int] = None, alpha: Optional[float] = None,
                     restarts: Optional[int] = None, seed: int = 0,
                     engine: Optional[str] = None, batch_size: int = 256,
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
    import attacks as leaf
    from attacks.sweep import eps_sweep, parse_attack_names

    names = parse_attack_names(attacks)
    groups: Dict[tuple, List[str]] = {}
    for name in names:  # one sweep per eps list, so defaults may differ by threat
        key = tuple(eps_list) if eps_list else (leaf.describe(name)["default_eps"],)
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


OPTIONS = ("steps", "alpha", "restarts", "engine", "threat", "version", "parts", "n_iter")


def attack_measurements(model, images, labels, *, attack: str, eps: float,
                        options: Mapping[str, Any], seed: int, batch_size: int, device,
                        progress=None) -> List[Dict[str, Any]]:
    """One (attack, eps) cell as a measurement: counts, per-example outcomes (with the clean
    prediction), the sweep's warnings and parameters. `options`: attacks.resolve_options'
    constructor arguments without eps."""
    import json

    from attacks.sweep import eps_sweep

    predictions: Dict[Any, torch.Tensor] = {}
    frame = eps_sweep(model, images, labels, attack=[attack], eps_list=[eps], seed=seed,
                      batch_size=batch_size, device=device, options={attack: dict(options)},
                      predictions=predictions, on_batch=progress)
    record = frame.to_dict("records")[0]
    labels = labels.cpu()
    return [{"correct": int(record["correct"]), "n": int(record["n"]),
             "warnings": record.get("warnings"),
             "outcomes": {"label": labels, "pred": predictions[(attack, eps)],
                          "clean_pred": predictions["clean"]},
             "details": json.loads(record["params"]) if record.get("params") else {}}]


@register_benchmark
class Attack(Benchmark):
    """What an attack takes (default eps and steps, threat, which options and engines apply)
    comes from its class in the attacks leaf, so adding an attack needs no change here."""

    name = "attack"
    fields = ("attack", "eps") + OPTIONS
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
                           help="FGSM/PGD: native (default) or torchattacks (reference)")
        group.add_argument("--aa-version", default=None,
                           help="AutoAttack version: standard (default), plus, rand or custom")
        group.add_argument("--aa-parts", "--aa-attacks", dest="aa_parts", default=None,
                           help="AutoAttack parts for --aa-version custom, e.g. apgd-ce,apgd-t")
        group.add_argument("--aa-n-iter", type=int, default=None,
                           help="AutoAttack iterations per part (--aa-version custom)")

    def options_from_args(self, args, cli_name):
        """Shared flags (--steps, --engine, ...) reach the attacks that take them; the command
        refuses a flag that no requested attack takes."""
        import attacks

        takes = attacks.describe(cli_name)["options"]
        raw: Dict[str, Any] = {"type": self.name, "attack": cli_name, "seed": args.seed}
        if args.eps is not None:
            raw["eps"] = list(args.eps)
        for key in ("steps", "alpha", "restarts", "engine"):
            if getattr(args, key) is not None and key in takes:
                raw[key] = getattr(args, key)
        if cli_name == "autoattack":
            for flag, key in (("aa_version", "version"), ("aa_n_iter", "n_iter"),
                              ("aa_parts", "parts")):
                if getattr(args, flag) is not None:
                    raw[key] = getattr(args, flag)
        return raw

    def parse(self, raw, check, path, job_seed):
        import attacks

        name = check.choice(raw.get("attack"), f"{path}.attack", tuple(attacks.ATTACKS))
        eps = check.sequence(raw.get("eps", attacks.describe(name)["default_eps"]),
                             f"{path}.eps", allow_scalar=True)
        eps = [check.number(e, f"{path}.eps[{i}]", minimum=0) for i, e in enumerate(eps)]
        given: Dict[str, Any] = {}
        for key in OPTIONS:
            if key not in raw:
                continue
            value = raw[key]
            if key in ("steps", "restarts", "n_iter"):
                value = check.integer(value, f"{path}.{key}", minimum=1)
            elif key == "alpha":
                value = check.number(value, f"{path}.alpha", minimum=0)
            elif key == "parts" and not isinstance(value, str):
                value = [check.string(v, f"{path}.parts[{i}]") for i, v in
                         enumerate(check.sequence(value, f"{path}.parts"))]
            given[key] = value
        resolved = None
        for i, value in enumerate(eps):
            try:
                resolved = attacks.resolve_options(name, eps=value, **given)
            except attacks.AttackError as error:
                field = next((k for k in given if f" {k}" in str(error)), f"eps[{i}]")
                raise check.fail(f"{path}.{field}", str(error)) from None
        resolved.pop("eps")
        return {"attack": name, "eps": eps, "options": resolved}

    def precisions(self, options):
        """bf16 runs the native engine's gradient steps under autocast (the reported predictions
        stay fp32, attacks/base.py); torchattacks and AutoAttack are not measured in bf16."""
        return ("fp32", "bf16") if options["options"].get("engine") == "native" else ("fp32",)

    def expand(self, options, seed, dataset_kind=None):
        for eps in options["eps"]:
            yield CellPlan({"attack": options["attack"], "eps": eps, **options["options"]}, seed)

    def _class(self, params):
        import attacks

        return attacks.ATTACKS[params["attack"]]

    def columns(self, params):
        cls = self._class(params)
        return {"attack": params["attack"], "threat": params.get("threat", cls.threat),
                "eps": params["eps"], "steps": params.get("steps", cls.default_steps),
                "restarts": params.get("restarts", 1)}

    def label(self, params, seed):
        from reports.stats import eps_label

        options = {k: v for k, v in params.items() if k not in ("attack", "eps")}
        return f"{self._class(params).label(options)} eps={eps_label(params['eps'])}"

    def run(self, cell, ctx):
        p = dict(cell["params"])
        name, eps = p.pop("attack"), p.pop("eps")
        data = ctx.data()
        with ctx.bar(len(data), "attacked images") as bar:
            return attack_measurements(ctx.model(), data.images, data.labels, attack=name,
                                       eps=eps, options=p, seed=cell["seed"],
                                       batch_size=ctx.batch_size, device=ctx.device,
                                       progress=bar.update)


__all__ = ["attack_measurements", "parse_eps_list", "parse_number",
           "run_attack_cells"]
