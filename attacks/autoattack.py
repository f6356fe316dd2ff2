"""AutoAttack (Croce & Hein 2020) through pyautoattack, always with an explicit seed."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from attacks.base import (Attack, AttackError, AttackStats, check_int, model_device_dtype,
                          seeded_global_rng)
from attacks.registry import register

PARTS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
# The parts each fixed version runs (pyautoattack's _set_version); "custom" runs those given.
VERSION_PARTS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
                 "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
                 "rand": ("apgd-ce", "apgd-dlr")}
VERSIONS = tuple(VERSION_PARTS) + ("custom",)
NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}
N_ITER = 100  # pyautoattack's iterations per APGD and FAB run; the fixed versions keep it


def version_restarts(version: str, threat: str) -> int:
    """APGD-CE restarts of a fixed version (pyautoattack's _set_version)."""
    return 5 if version == "plus" or (version == "standard" and threat == "l1") else 1


def check_parts(parts: Any) -> Tuple[str, ...]:
    """A list of AutoAttack parts (or "apgd-ce,apgd-t", as a flag gives it) -> a tuple."""
    if isinstance(parts, str):
        parts = [p.strip() for p in parts.split(",") if p.strip()]
    if not isinstance(parts, (list, tuple)) or not parts:
        raise AttackError(f"autoattack parts must be a non-empty list such as ['apgd-ce'], got "
                          f"{parts!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise AttackError(f"unknown autoattack part(s) {unknown}; known: {', '.join(PARTS)}")
    if len(set(parts)) != len(parts):
        raise AttackError(f"autoattack parts repeat: {list(parts)}")
    return tuple(parts)


@register
class AutoAttack(Attack):
    """AutoAttack: an ensemble of parameter-free attacks (APGD, FAB, Square), by version.

    version='standard' is the published evaluation (APGD-CE, APGD-T, FAB-T, Square);
    'plus' and 'rand' are pyautoattack's other fixed versions. version='custom' runs the parts
    given (`attacks=`, the plain option `parts`) with n_iter iterations and `restarts` APGD-CE
    restarts: e.g. attacks=('apgd-ce',), n_iter=10 is the cheap CI subset. A fixed version
    fixes its parts, n_iter and restarts; setting them differently is refused.

    AutoAttack has no single step count: its rows leave `steps` empty and record version,
    parts (`attacks`) and n_iter in params. pyautoattack seeds torch's global RNG; it is
    restored afterwards.
    """

    name = "autoattack"
    title = "AutoAttack"
    threat = "linf"
    default_eps = 8 / 255
    default_steps = None
    strength = 2
    engines = ("pyautoattack",)
    options = ("threat", "version", "parts", "n_iter", "restarts")
    choices = {"threat": tuple(NORMS), "version": VERSIONS, "parts": PARTS}

    def __init__(self, model: nn.Module, eps: float = default_eps, *, norm: str = "Linf",
                 version: str = "standard", attacks: Optional[Sequence[str]] = None,
                 n_iter: Optional[int] = None, restarts: Optional[int] = None, seed: int = 0,
                 engine: str = "pyautoattack", **options: Any):
        if seed is None:
            raise AttackError("AutoAttack needs an explicit integer seed (pyautoattack would "
                              "seed from the clock)")
        if options.get("targeted"):
            raise AttackError("AutoAttack runs untargeted (its targeted parts pick their own "
                              "target classes)")
        config = self.resolve({"eps": eps, "threat": norm, "version": version, "parts": attacks,
                               "n_iter": n_iter, "restarts": restarts, "engine": engine})
        super().__init__(model, seed=seed, restarts=config["restarts"], engine=config["engine"],
                         **options)
        self.eps, self.norm, self.version = config["eps"], config["norm"], config["version"]
        self.threat = self.norm.lower()
        self.attacks: Tuple[str, ...] = config["attacks"]
        self.n_iter: int = config["n_iter"]
        self.uses_gradients = self.attacks != ("square",)  # Square alone is gradient-free

    # -- metadata
    @classmethod
    def fixed_options(cls, given: Mapping[str, Any]) -> Dict[str, Tuple[Any, str]]:
        fixed = super().fixed_options(given)
        fixed["steps"] = (None, "its iterations are n_iter (with version 'custom')")
        version = given.get("version", "standard")
        if isinstance(version, str) and version in VERSION_PARTS:
            threat = str(given.get("threat", given.get("norm", cls.threat))).lower()
            values = {"parts": VERSION_PARTS[version], "n_iter": N_ITER,
                      "restarts": version_restarts(version, threat)}
            fixed.update({option: (value, f"version {version!r} fixes {option} at {value!r}; "
                                          "choose version 'custom' to set it")
                          for option, value in values.items()})
        return fixed

    @classmethod
    def resolve(cls, given: Mapping[str, Any]) -> Dict[str, Any]:
        """Also norm, version, attacks (the parts run), n_iter and restarts, all filled in."""
        given = {k: v for k, v in given.items() if v is not None}
        version = given.setdefault("version", "standard")
        if version not in VERSIONS:
            raise AttackError(f"autoattack version must be one of {', '.join(VERSIONS)}, got "
                              f"{version!r}")
        threat = str(given.get("threat", cls.threat)).lower()
        if threat not in NORMS:
            raise AttackError(f"autoattack threat (norm) must be one of {', '.join(NORMS)}, got "
                              f"{given['threat']!r}")
        given["threat"] = threat
        if "parts" in given:
            given["parts"] = check_parts(given["parts"])
        kwargs = super().resolve(given)
        if version == "custom":
            if "parts" not in given:
                raise AttackError("autoattack version 'custom' needs parts (the constructor's "
                                  "attacks=), e.g. ['apgd-ce']")
            kwargs.update(attacks=given["parts"],
                          n_iter=check_int("autoattack n_iter", given.get("n_iter", N_ITER)))
        else:
            kwargs.update(attacks=VERSION_PARTS[version], n_iter=N_ITER,
                          restarts=version_restarts(version, threat))
        kwargs.update(norm=NORMS[threat], version=version)
        return kwargs

    @classmethod
    def label(cls, params: Optional[Mapping[str, Any]] = None) -> str:
        """"AutoAttack (standard: apgd-ce, apgd-t, fab-t, square)",
        "AutoAttack (custom: apgd-ce, n_iter 10)"."""
        params = params or {}
        version = params.get("version") or "standard"
        details = [", ".join(params.get("attacks") or VERSION_PARTS.get(version, ()))]
        if version == "custom":
            if params.get("n_iter"):
                details.append(f"n_iter {params['n_iter']}")
            if (params.get("restarts") or 1) > 1:
                details.append(f"{params['restarts']} restarts")
        return f"{cls.title} ({version}: {', '.join(details)})"

    # -- running
    def hyperparameters(self) -> Dict[str, Any]:
        return {"eps": self.eps, "norm": self.norm, "version": self.version,
                "attacks": self.attacks, "n_iter": self.n_iter}

    def build(self, device: torch.device, seed: int, num_classes: Optional[int] = None) -> Any:
        """The configured pyautoattack.AutoAttack object."""
        from pyautoattack import AutoAttack as PyAutoAttack

        custom = self.version == "custom"
        attack = PyAutoAttack(self.model, norm=self.norm, eps=self.eps, version=self.version,
                              seed=seed, device=device,
                              attacks=list(self.attacks) if custom else None)
        if num_classes is not None:  # pyautoattack assumes >= 10 classes (9 target classes)
            for part in (attack.apgd_targeted, attack.fab):
                part.n_target_classes = min(part.n_target_classes, num_classes - 1)
        if custom:  # the fixed versions keep pyautoattack's own settings
            attack.apgd.n_restarts = self.restarts
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
