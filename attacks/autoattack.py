"""AutoAttack (Croce & Hein 2020) through pyautoattack, always with an explicit seed."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from attacks.base import (Attack, AttackError, AttackStats, check_int, check_real,
                          seeded_global_rng)

AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
VERSIONS = ("standard", "plus", "rand", "custom")
NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


class AutoAttack(Attack):
    """version='standard' is the published evaluation (APGD-CE, APGD-T, FAB-T, Square).
    version='custom' with e.g. attacks=('apgd-ce',) and a small n_iter is the cheap CI subset.

    steps/restarts of the result row are APGD's n_iter (100 unless n_iter is given) and
    n_restarts. pyautoattack seeds torch's global RNG; it is restored afterwards.
    """

    name = "autoattack"
    engines = ("pyautoattack",)

    def __init__(self, model: nn.Module, eps: float = 8 / 255, *, norm: str = "Linf",
                 version: str = "standard", attacks: Optional[Sequence[str]] = None,
                 n_iter: Optional[int] = None, seed: int = 0, restarts: int = 1,
                 engine: str = "pyautoattack", **options: Any):
        if seed is None:
            raise AttackError("AutoAttack needs an explicit integer seed (pyautoattack would "
                              "seed from the clock)")
        if options.get("targeted"):
            raise AttackError("AutoAttack runs untargeted (its targeted parts pick their own "
                              "target classes)")
        super().__init__(model, seed=seed, restarts=restarts, engine=engine, **options)
        key = str(norm).lower()
        if key not in NORMS:
            raise AttackError(f"norm must be one of Linf, L2, L1, got {norm!r}")
        self.norm = NORMS[key]
        self.threat = key
        self.eps = check_real("eps", eps, high=1.0 if key == "linf" else float("inf"),
                              low_inclusive=True)
        if version not in VERSIONS:
            raise AttackError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if version == "custom":
            if not attacks:
                raise AttackError("version='custom' needs attacks=, e.g. ('apgd-ce',)")
            unknown = [a for a in attacks if a not in AUTOATTACK_ATTACKS]
            if unknown:
                raise AttackError(f"unknown AutoAttack part(s) {unknown}; known: "
                                  f"{', '.join(AUTOATTACK_ATTACKS)}")
            self.attacks: Optional[Tuple[str, ...]] = tuple(attacks)
        elif attacks is not None:
            raise AttackError(f"attacks= needs version='custom' (version={version!r} fixes "
                              "its own list)")
        else:
            self.attacks = None
        self.version = version
        self.n_iter = None if n_iter is None else check_int("n_iter", n_iter)
        if version != "custom":  # the version fixes APGD's restarts; record what it runs
            if self.restarts != 1:
                raise AttackError(f"restarts= needs version='custom' (version={version!r} "
                                  "fixes its own)")
            self.restarts = 5 if version == "plus" or (version == "standard"
                                                       and self.norm == "L1") else 1

    @property
    def steps_run(self) -> int:
        return self.n_iter or 100

    def hyperparameters(self) -> Dict[str, Any]:
        return {"eps": self.eps, "norm": self.norm, "version": self.version,
                "attacks": self.attacks, "n_iter": self.steps_run}

    def build(self, device: torch.device, seed: int, num_classes: Optional[int] = None) -> Any:
        """The configured pyautoattack.AutoAttack object."""
        from pyautoattack import AutoAttack as PyAutoAttack

        attack = PyAutoAttack(self.model, norm=self.norm, eps=self.eps, version=self.version,
                              seed=seed, device=device,
                              attacks=list(self.attacks) if self.attacks else None)
        if self.version == "custom":
            attack.apgd.n_restarts = self.restarts
        if num_classes is not None:  # pyautoattack assumes >= 10 classes (9 target classes)
            for part in (attack.apgd_targeted, attack.fab):
                part.n_target_classes = min(part.n_target_classes, num_classes - 1)
        if self.n_iter is not None:
            for part in (attack.apgd, attack.apgd_targeted):
                part.n_iter = part.n_iter_orig = self.n_iter
                # pyautoattack derives its checkpoint schedule from n_iter in __init__
                part.n_iter_2 = max(int(0.22 * self.n_iter), 1)
                part.n_iter_min = max(int(0.06 * self.n_iter), 1)
                part.size_decr = max(int(0.03 * self.n_iter), 1)
            attack.fab.n_iter = self.n_iter
        return attack

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, *,
                seed: Optional[int] = None) -> torch.Tensor:
        if self.dtype != torch.float32:
            from attacks.base import model_device_dtype

            self.device, self.dtype = model_device_dtype(self.model)
            if self.dtype != torch.float32:
                raise AttackError(f"AutoAttack needs a float32 model, got {self.dtype}")
        return super().perturb(images, labels, seed=seed)

    def _restart(self, images, labels, best, seed):
        return best  # APGD restarts itself (restarts -> n_restarts)

    def _run_once(self, images, labels, seed: int, stats: AttackStats) -> torch.Tensor:
        attack = self.build(images.device, seed, getattr(self, "_num_classes", None))
        with seeded_global_rng(seed, images.device):
            adv, _ = attack.run_standard_evaluation(images, labels, batch_size=images.shape[0])
        stats.merge(AttackStats(n=images.shape[0]))
        return adv.detach()
