"""An eps sweep in one call: robust accuracy per (attack, eps) as long-format rows.

The rows carry the result schema's attack columns (benchmark, attack, threat, eps, steps,
restarts, seed, n, correct, accuracy) plus seconds, params (JSON: engine, label, alpha, the
attack's repr, clean accuracy) and warnings; the hub adds the CI and identity columns.

Warnings flag the usual signs of a broken evaluation or of gradient masking: robust accuracy
above clean accuracy, a stronger attack (higher `strength`: PGD, AutoAttack) scoring above a
weaker one (FGSM) at the same eps and threat, accuracy rising with eps, zero or NaN input
gradients, a final loss not above the clean loss (attacks with `uses_gradients`), and a PGD
loss that did not increase over the steps. All of it comes from the attacks' metadata.
"""
from __future__ import annotations

import json
import logging
import numbers
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import (Attack, AttackError, AttackStats, check_finite_logits, check_images,
                          check_int, check_labels, check_logits, derive_seed, eval_mode,
                          model_device_dtype, predict_logits)
from attacks.fgsm import FGSM
from attacks.registry import ATTACKS, attack_class

LOGGER = logging.getLogger("attacks.sweep")
SWEEP_COLUMNS = ["benchmark", "attack", "threat", "eps", "steps", "restarts", "seed", "n",
                 "correct", "accuracy", "seconds", "params", "warnings"]


def parse_attack_names(attack: Union[str, Sequence[str]]) -> List[str]:
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


def build_attack(model: nn.Module, name: str, eps: float, *, steps: Optional[int] = None,
                 alpha: Optional[float] = None, restarts: Optional[int] = None, seed: int = 0,
                 engine: Optional[str] = None, amp: Optional[str] = None,
                 channels_last: bool = False, compile: Any = False,
                 options: Optional[Mapping[str, Any]] = None) -> Attack:
    """One configured attack of a sweep. The sweep-wide steps, alpha, restarts and engine are
    shared settings: each reaches the attacks that take it (FGSM runs one step, AutoAttack
    its own engine and, unless version='custom', its own restarts). `options` are this
    attack's own constructor keyword arguments; they win, and the constructor checks them."""
    cls = attack_class(name)
    options = dict(options or {})
    kwargs: Dict[str, Any] = {"seed": seed}
    for key, value in (("engine", engine), ("steps", steps), ("alpha", alpha),
                       ("restarts", restarts)):
        if (value is not None and key not in options and (key == "engine" or key in cls.options)
                and cls.rejects(key, value, options) is None):
            kwargs[key] = value
    kwargs.update(options)
    if kwargs.get("engine", cls.engines[0]) == "native":
        kwargs.setdefault("amp", amp)
        kwargs.setdefault("channels_last", channels_last)
        kwargs.setdefault("compile", compile)
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
              steps: Optional[int] = None, alpha: Optional[float] = None,
              restarts: Optional[int] = None, seed: int = 0, engine: Optional[str] = None,
              batch_size: int = 256,
              device: Optional[Union[str, torch.device]] = None, *, amp: Optional[str] = None,
              channels_last: bool = False, compile: Any = False,
              options: Optional[Mapping[str, Mapping[str, Any]]] = None,
              reference_fgsm: bool = True,
              predictions: Optional[Dict[Any, torch.Tensor]] = None,
              on_batch: Optional[Callable[[int], None]] = None) -> pd.DataFrame:
    """Robust accuracy of `model` for every (attack, eps); one row each.

    images: uint8 (converted per batch) or float in [0, 1], (N, C, H, W); labels: int (N,).
    attack: a name, "fgsm,pgd", or a list; running several in one sweep enables the
    cross-attack warnings. steps, alpha, restarts, engine: shared settings, each reaching the
    attacks that take it (see build_attack); None: each attack's default (alpha: eps/4 per
    eps). options: per-attack constructor keyword arguments, e.g. resolve_options' result
    without eps, or {"autoattack": {"version": "custom", "attacks": ["apgd-ce"], "n_iter": 10}}.
    device: where to compute (the model is moved there if it lives elsewhere).
    The random start of batch b uses seed for b=0 and derive_seed(seed, "batch", start) after,
    so results depend on batch_size but not on the engine.
    reference_fgsm: when a stronger attack of FGSM's threat (PGD, AutoAttack) runs without
    FGSM, also run FGSM (one step, ~10 % of PGD-10) so that "stronger above FGSM" is still
    checked; it adds no row.
    predictions: a dict to receive per-example top-1 predictions (CPU int64): key "clean" and
    each (attack, eps). on_batch(n): called after each batch of n images (progress bars).
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
    for name, extra in options.items():
        if "eps" in extra:
            raise AttackError(f"options[{name!r}] sets eps; the sweep's eps come from eps_list")

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

    shared = dict(steps=steps, alpha=alpha, restarts=restarts, seed=seed, engine=engine,
                  amp=amp, channels_last=channels_last, compile=compile)
    attacks = {(name, eps): build_attack(model, name, eps, options=options.get(name), **shared)
               for name in names for eps in eps_values}
    if reference_fgsm and FGSM.name not in names and any(
            a.threat == FGSM.threat and a.strength > FGSM.strength for a in attacks.values()):
        attacks.update({(FGSM.name, eps): build_attack(model, FGSM.name, eps, **shared)
                        for eps in eps_values})
    correct = {key: 0 for key in attacks}
    adv_loss = {key: 0.0 for key in attacks}
    seconds = {key: 0.0 for key in attacks}
    stats = {key: AttackStats() for key in attacks}
    clean_correct, clean_loss, clean_zero, clean_nan = 0, 0.0, 0, 0
    n = images.shape[0]

    batch_predictions: Dict[Any, List[torch.Tensor]] = {"clean": []}
    for start in range(0, n, batch_size):
        x = images[start:start + batch_size].to(device)
        x = x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)
        y = labels[start:start + batch_size].to(device)
        batch_seed = seed if start == 0 else derive_seed(seed, "batch", start)
        with eval_mode(model):
            logits, grad = _clean_pass(model, x, y)
        clean_correct += int((logits.argmax(1) == y).sum())
        batch_predictions["clean"].append(logits.argmax(1).cpu())
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
            batch_predictions.setdefault(key, []).append(adv_logits.argmax(1).cpu())
            adv_loss[key] += float(F.cross_entropy(adv_logits.float(), y, reduction="sum"))
            if atk.last_stats is not None:
                stats[key].merge(atk.last_stats)
        if on_batch is not None:
            on_batch(len(x))

    rows = []
    for (name, eps), atk in attacks.items():
        if name not in names:
            continue  # the hidden FGSM reference
        key = (name, eps)
        hyper = atk.hyperparameters()
        params = {"engine": atk.engine, "attack_repr": repr(atk), "clean_correct": clean_correct,
                  "batch_size": batch_size, "label": atk.label({**hyper, "restarts": atk.restarts}),
                  **{k: v for k, v in hyper.items() if k not in ("eps", "steps")}}
        rows.append({
            "benchmark": "attack", "attack": name, "threat": atk.threat, "eps": eps,
            "steps": atk.steps_run, "restarts": atk.restarts, "seed": seed, "n": n,
            "correct": correct[key], "accuracy": correct[key] / n, "seconds": seconds[key],
            "params": json.dumps(params, default=str, sort_keys=True),
            "warnings": "",
        })
    frame = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    notes = _warnings(frame, attacks, correct, clean_correct, clean_loss / n, clean_zero,
                      clean_nan, {k: v / n for k, v in adv_loss.items()}, stats)
    frame["warnings"] = ["; ".join(notes[(r.attack, r.eps)]) for r in frame.itertuples()]
    for r in frame.itertuples():
        LOGGER.info("%s eps=%.6g: robust accuracy %d/%d (clean %d) in %.1f s", r.attack, r.eps,
                    r.correct, n, clean_correct, r.seconds)
        for note in notes[(r.attack, r.eps)]:
            LOGGER.warning("%s eps=%.6g: %s", r.attack, r.eps, note)
    if predictions is not None:  # per-example outcomes, for paired comparisons
        predictions.update({k: torch.cat(v) for k, v in batch_predictions.items()})
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


def _warnings(frame: pd.DataFrame, attacks: Dict[Tuple[str, float], Attack],
              accuracy: Dict[Tuple[str, float], int], clean_correct: int,
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
        atk = attacks[key]
        for (weaker, eps), other_atk in attacks.items():
            other = accuracy[(weaker, eps)]
            if (eps == r.eps and other_atk.threat == atk.threat
                    and other_atk.strength < atk.strength and r.correct > other):
                found.append(f"{r.attack} accuracy {r.correct}/{n} above {weaker} "
                             f"{other}/{n} at the same eps")
        smaller = [(e, c) for (a, e), c in accuracy.items() if a == r.attack and e < r.eps]
        for eps, other in smaller:
            if r.correct > other:
                found.append(f"accuracy {r.correct}/{n} above the {other}/{n} at the smaller "
                             f"eps {eps:.6g}")
        if atk.uses_gradients and r.eps > 0 and not adv_loss[key] > clean_loss:
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
