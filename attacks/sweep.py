"""An eps sweep in one call: robust accuracy per (attack, eps) as long-format rows.

The rows carry the result schema's attack columns (benchmark, attack, threat, eps, steps,
restarts, seed, n, correct, accuracy) plus seconds, params (JSON: engine, alpha, the attack's
repr, clean accuracy) and warnings; the hub adds the CI and identity columns.

Warnings flag the usual signs of a broken evaluation or of gradient masking: robust accuracy
above clean accuracy, a stronger attack (PGD, AutoAttack) scoring above a weaker one (FGSM)
at the same eps, accuracy rising with eps, zero or NaN input gradients, a final loss not above
the clean loss, and a PGD loss that did not increase over the steps.
"""
from __future__ import annotations

import json
import logging
import numbers
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import (AttackError, AttackStats, check_finite_logits, check_images,
                          check_int, check_labels, check_logits, derive_seed, eval_mode,
                          model_device_dtype, predict_logits)

LOGGER = logging.getLogger("attacks.sweep")
SWEEP_COLUMNS = ["benchmark", "attack", "threat", "eps", "steps", "restarts", "seed", "n",
                 "correct", "accuracy", "seconds", "params", "warnings"]
# A stronger attack scoring above a weaker one at the same eps is a red flag.
STRENGTH_ORDER = {"fgsm": 0, "pgd": 1, "autoattack": 2}
GRADIENT_ATTACKS = ("fgsm", "pgd", "pgd_l2")


def parse_attack_names(attack: Union[str, Sequence[str]]) -> List[str]:
    from attacks import ATTACKS

    names = [a.strip() for a in attack.split(",")] if isinstance(attack, str) else list(attack)
    names = [n for n in names if n]
    if not names:
        raise AttackError("no attack named; choose from " + ", ".join(ATTACKS))
    for name in names:
        if name not in ATTACKS:
            raise AttackError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    if len(set(names)) != len(names):
        raise AttackError(f"attack names repeat: {names}")
    return names


def build_attack(model: nn.Module, name: str, eps: float, *, steps: int, alpha: Optional[float],
                 restarts: int, seed: int, engine: str, amp: Optional[str],
                 channels_last: bool, compile: Any, options: Mapping[str, Any]):
    """One configured attack for the sweep (validates every hyper-parameter)."""
    from attacks import ATTACKS

    cls = ATTACKS[name]
    kwargs: Dict[str, Any] = {"seed": seed}
    if name == "autoattack":
        if options.get("version") == "custom":  # other versions fix their own restarts
            kwargs.update(restarts=restarts)
    else:
        kwargs.update(engine=engine)
        if engine == "native":
            kwargs.update(amp=amp, channels_last=channels_last, compile=compile)
        if name == "fgsm":
            kwargs.update(restarts=1)  # FGSM is deterministic: restarts repeat the same step
        else:
            kwargs.update(steps=steps, alpha=alpha, restarts=restarts)
    kwargs.update(options)
    return cls(model, eps=eps, **kwargs)


def _within_threat(adv: torch.Tensor, images: torch.Tensor, threat: str, eps: float) -> None:
    """Guard: the returned images must satisfy the threat model exactly (up to rounding)."""
    if float(adv.min()) < 0.0 or float(adv.max()) > 1.0:
        raise AttackError("attack returned images outside [0, 1]")
    delta = (adv - images).flatten(1).double()
    size = delta.abs().amax(1) if threat == "linf" else delta.norm(p=2, dim=1)
    largest = float(size.max())
    if largest > eps * (1 + 1e-5) + 1e-6:
        raise AttackError(f"attack left the {threat} ball: perturbation {largest:.6g} > eps "
                          f"{eps:.6g}")


def eps_sweep(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              attack: Union[str, Sequence[str]] = "pgd", eps_list: Sequence[float] = (8 / 255,),
              steps: int = 10, alpha: Optional[float] = None, restarts: int = 1, seed: int = 0,
              engine: str = "native", batch_size: int = 256,
              device: Optional[Union[str, torch.device]] = None, *, amp: Optional[str] = None,
              channels_last: bool = False, compile: Any = False,
              options: Optional[Mapping[str, Mapping[str, Any]]] = None,
              reference_fgsm: bool = True) -> pd.DataFrame:
    """Robust accuracy of `model` for every (attack, eps); one row each.

    images: uint8 (converted per batch) or float in [0, 1], (N, C, H, W); labels: int (N,).
    attack: a name, "fgsm,pgd", or a list; running several in one sweep enables the
    cross-attack warnings. alpha defaults to eps/4 per eps. options: per-attack extra keyword
    arguments, e.g. {"autoattack": {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 10}}.
    device: where to compute (the model is moved there if it lives elsewhere).
    The random start of batch b uses seed for b=0 and derive_seed(seed, "batch", start) after,
    so results depend on batch_size but not on the engine.
    reference_fgsm: when PGD runs without FGSM, also run FGSM (one step, ~10 % of PGD-10) so
    that "PGD above FGSM" is still checked; it adds no row.
    """
    names = parse_attack_names(attack)
    if isinstance(eps_list, (int, float)):
        eps_list = [eps_list]
    for eps in eps_list:
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
            raise AttackError(f"eps values must be numbers, got {eps!r}")
    eps_values = [float(e) for e in eps_list]
    if not eps_values:
        raise AttackError("eps_list is empty")
    batch_size = check_int("batch_size", batch_size)
    options = dict(options or {})
    unknown = set(options) - set(names)
    if unknown:
        raise AttackError(f"options given for attacks not in the sweep: {sorted(unknown)}")

    if device is not None:
        device = torch.device(device)
        current, _ = model_device_dtype(model)
        if current != device and not (device.type == current.type and device.index is None):
            model.to(device)
    device, dtype = model_device_dtype(model)

    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise AttackError("images and labels must be torch tensors")
    if images.dtype == torch.uint8:
        if images.ndim < 2 or images.shape[0] == 0:
            raise AttackError(f"images must be a non-empty batch, got {tuple(images.shape)}")
    else:
        check_images(images)
    labels = check_labels(labels, images.shape[0])

    run_names = list(names)
    if reference_fgsm and "pgd" in names and "fgsm" not in names:
        run_names.append("fgsm")
    attacks = {(name, eps): build_attack(model, name, eps, steps=steps, alpha=alpha,
                                         restarts=restarts, seed=seed, engine=engine, amp=amp,
                                         channels_last=channels_last, compile=compile,
                                         options=options.get(name, {}))
               for name in run_names for eps in eps_values}
    correct = {key: 0 for key in attacks}
    adv_loss = {key: 0.0 for key in attacks}
    seconds = {key: 0.0 for key in attacks}
    stats = {key: AttackStats() for key in attacks}
    clean_correct, clean_loss, clean_zero, clean_nan = 0, 0.0, 0, 0
    n = images.shape[0]

    for start in range(0, n, batch_size):
        x = images[start:start + batch_size].to(device)
        x = x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)
        y = labels[start:start + batch_size].to(device)
        batch_seed = seed if start == 0 else derive_seed(seed, "batch", start)
        with eval_mode(model):
            logits, grad = _clean_pass(model, x, y)
        clean_correct += int((logits.argmax(1) == y).sum())
        clean_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        flat = grad.flatten(1)
        clean_nan += int(torch.isnan(flat).any(1).sum())
        clean_zero += int((flat == 0).all(1).sum())
        for key, atk in attacks.items():
            began = _now(device)
            adv = atk.perturb(x, y, seed=batch_seed)
            with eval_mode(model):
                adv_logits = predict_logits(model, adv, f"on {key[0]} adversarial images")
            seconds[key] += _now(device) - began
            _within_threat(adv, x, atk.threat, atk.eps)
            correct[key] += int((adv_logits.argmax(1) == y).sum())
            adv_loss[key] += float(F.cross_entropy(adv_logits.float(), y, reduction="sum"))
            if atk.last_stats is not None:
                stats[key].merge(atk.last_stats)

    rows = []
    for (name, eps), atk in attacks.items():
        if name not in names:
            continue  # the hidden FGSM reference
        key = (name, eps)
        params = {"engine": atk.engine, "attack_repr": repr(atk), "clean_correct": clean_correct,
                  "batch_size": batch_size, **{k: v for k, v in atk.hyperparameters().items()
                                               if k not in ("eps", "steps")}}
        rows.append({
            "benchmark": "attack", "attack": name, "threat": atk.threat, "eps": eps,
            "steps": atk.steps_run, "restarts": atk.restarts, "seed": seed, "n": n,
            "correct": correct[key], "accuracy": correct[key] / n, "seconds": seconds[key],
            "params": json.dumps(params, default=str, sort_keys=True),
            "warnings": "",
        })
    frame = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    notes = _warnings(frame, correct, clean_correct, clean_loss / n, clean_zero, clean_nan,
                      {k: v / n for k, v in adv_loss.items()}, stats)
    frame["warnings"] = ["; ".join(notes[(r.attack, r.eps)]) for r in frame.itertuples()]
    for r in frame.itertuples():
        LOGGER.info("%s eps=%.6g: robust accuracy %d/%d (clean %d) in %.1f s", r.attack, r.eps,
                    r.correct, n, clean_correct, r.seconds)
        for note in notes[(r.attack, r.eps)]:
            LOGGER.warning("%s eps=%.6g: %s", r.attack, r.eps, note)
    return frame


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _clean_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits and the input gradient of the clean batch (validates model and labels)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        logits = check_logits(model(x), x.shape[0], "on the clean images")
        check_finite_logits(logits, "on the clean images")
        check_labels(y, x.shape[0], logits.shape[1])
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x,
                                      allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    return logits.detach(), grad


def _warnings(frame: pd.DataFrame, accuracy: Dict[Tuple[str, float], int], clean_correct: int,
              clean_loss: float, clean_zero: int, clean_nan: int,
              adv_loss: Dict[Tuple[str, float], float],
              stats: Dict[Tuple[str, float], AttackStats]) -> Dict[Tuple[str, float], List[str]]:
    n = int(frame["n"].iloc[0])
    notes: Dict[Tuple[str, float], List[str]] = {}
    for r in frame.itertuples():
        key = (r.attack, r.eps)
        found: List[str] = []
        if r.correct > clean_correct:
            found.append(f"robust accuracy {r.correct}/{n} above clean accuracy "
                         f"{clean_correct}/{n}")
        rank = STRENGTH_ORDER.get(r.attack)
        if rank is not None:
            for weaker, weaker_rank in STRENGTH_ORDER.items():
                other = accuracy.get((weaker, r.eps))
                if weaker_rank < rank and other is not None and r.correct > other:
                    found.append(f"{r.attack} accuracy {r.correct}/{n} above {weaker} "
                                 f"{other}/{n} at the same eps")
        smaller = [(e, c) for (a, e), c in accuracy.items() if a == r.attack and e < r.eps]
        for eps, other in smaller:
            if r.correct > other:
                found.append(f"accuracy {r.correct}/{n} above the {other}/{n} at the smaller "
                             f"eps {eps:.6g}")
        if r.attack in GRADIENT_ATTACKS and r.eps > 0 and not adv_loss[key] > clean_loss:
            found.append(f"adversarial loss {adv_loss[key]:.4g} not above the clean loss "
                         f"{clean_loss:.4g} (gradient masking?)")
        if clean_nan:
            found.append(f"NaN input gradients for {clean_nan}/{n} clean images")
        if clean_zero:
            found.append(f"all-zero input gradients for {clean_zero}/{n} clean images "
                         "(gradient masking?)")
        found.extend(stats[key].warnings())
        notes[key] = found
    return notes


def robust_accuracy(frame: pd.DataFrame) -> Dict[Tuple[str, float], float]:
    """(attack, eps) -> accuracy, a convenience view of a sweep frame."""
    return {(r.attack, r.eps): r.accuracy for r in frame.itertuples()}


__all__ = ["SWEEP_COLUMNS", "build_attack", "eps_sweep", "parse_attack_names",
           "robust_accuracy"]
