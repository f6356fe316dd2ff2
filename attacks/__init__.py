"""attacks: FGSM, PGD (L-inf, L2) and an AutoAttack adapter for any nn.Module that maps [0, 1]
images to logits. A leaf package: it never imports robust_eval.

    from attacks import ATTACKS
    adv = ATTACKS["pgd"](model, eps=8/255, steps=10, seed=0)(images, labels)
    frame = attacks.sweep.eps_sweep(model, images, labels, attack="fgsm,pgd", eps_list=[8/255])
"""
from typing import Dict, Type

from attacks.autoattack import AutoAttack
from attacks.base import (ENGINES, Attack, AttackError, AttackStats, derive_seed, eval_mode,
                          restart_seed)
from attacks.fgsm import FGSM
from attacks.pgd import PGD
from attacks.pgdl2 import PGDL2
from attacks import sweep  # noqa: E402  (attacks.sweep.eps_sweep)

# name -> class; the hub wraps it with robust_eval.registry.Registry.view("attack", ATTACKS).
ATTACKS: Dict[str, Type[Attack]] = {
    "fgsm": FGSM,
    "pgd": PGD,
    "pgd_l2": PGDL2,
    "autoattack": AutoAttack,
}

__all__ = ["ATTACKS", "ENGINES", "Attack", "AttackError", "AttackStats", "AutoAttack", "FGSM",
           "PGD", "PGDL2", "derive_seed", "eval_mode", "restart_seed", "sweep"]
