"""attacks: FGSM, PGD (L-inf, L2) and an AutoAttack adapter for any nn.Module that maps [0, 1]
images to logits. A leaf package: it never imports robust_eval.

    import attacks
    adv = attacks.ATTACKS["pgd"](model, eps=8/255, steps=10, seed=0)(images, labels)
    kwargs = attacks.resolve_options("pgd", steps=20)      # front ends: validated, defaults filled
    frame = attacks.sweep.eps_sweep(model, images, labels, attack="fgsm,pgd", eps_list=[8/255])

Adding an attack: one module with an `@register`-ed Attack subclass that declares its
metadata (see attacks.base.Attack), and its import below.
"""
from attacks.base import (ENGINES, OPTION_NAMES, Attack, AttackError, AttackStats, derive_seed,
                          eval_mode, restart_seed)
from attacks.registry import ATTACKS, describe, register, resolve_options
from attacks.fgsm import FGSM
from attacks.pgd import PGD
from attacks.pgdl2 import PGDL2
from attacks.autoattack import AutoAttack
from attacks import sweep  # noqa: E402  (attacks.sweep.eps_sweep)

__all__ = ["ATTACKS", "ENGINES", "OPTION_NAMES", "Attack", "AttackError", "AttackStats",
           "AutoAttack", "FGSM", "PGD", "PGDL2", "derive_seed", "describe", "eval_mode",
           "register", "resolve_options", "restart_seed", "sweep"]
