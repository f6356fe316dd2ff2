"""PGD in the L2 ball: random start inside the ball, normalised-gradient steps."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from attacks.base import Attack, AttackError, check_eps, check_int, check_real
from attacks.registry import register


@register
class PGDL2(Attack):
    """L2 PGD: random start in the L2 ball, then normalised-gradient steps projected back.

    alpha defaults to eps/4. The step, projection and random start (direction ~ N(0, I),
    radius ~ U(0, eps)) follow torchattacks.PGDL2 operation for operation."""

    name = "pgd_l2"
    title = "L2 PGD"
    threat = "l2"
    default_eps = 0.5
    default_steps = 10
    strength = 1
    engines = ("native", "torchattacks")
    options = ("steps", "alpha", "restarts")

    def __init__(self, model: nn.Module, eps: float = default_eps, alpha: Optional[float] = None,
                 steps: int = default_steps, random_start: bool = True,
                 eps_for_division: float = 1e-10, **options: Any):
        super().__init__(model, **options)
        self.eps = check_eps(eps, self.threat)  # eps=0: the clean point
        self.alpha = self.eps / 4 if alpha is None else check_real(
            "alpha", alpha, low_inclusive=self.eps == 0)
        self.steps = check_int("steps", steps)
        if not isinstance(random_start, bool):
            raise AttackError(f"random_start must be True or False, got {random_start!r}")
        self.random_start = random_start
        self.eps_for_division = check_real("eps_for_division", eps_for_division)

    def hyperparameters(self) -> Dict[str, Any]:
        return {"eps": self.eps, "alpha": self.alpha, "steps": self.steps,
                "random_start": self.random_start, "eps_for_division": self.eps_for_division}

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        n = images.shape[0]
        per_example = (n,) + (1,) * (images.ndim - 1)
        adv = images
        if self.random_start:
            delta = torch.empty_like(images).normal_(generator=generator)
            norms = delta.reshape(n, -1).norm(p=2, dim=1).view(per_example)
            radius = torch.zeros_like(norms).uniform_(0, 1, generator=generator)
            delta *= radius / norms * self.eps
            adv = torch.clamp(images + delta, min=0, max=1)
        for _ in range(self.steps):
            grad = self._gradient(adv, labels)
            grad_norms = grad.reshape(n, -1).norm(p=2, dim=1) + self.eps_for_division
            adv = adv + self.alpha * (grad / grad_norms.view(per_example))
            delta = adv - images
            delta_norms = delta.reshape(n, -1).norm(p=2, dim=1)
            factor = torch.min(self.eps / delta_norms, torch.ones_like(delta_norms))
            adv = torch.clamp(images + delta * factor.view(per_example), min=0, max=1)
        return adv

    def _torchattacks(self):
        import torchattacks

        return torchattacks.PGDL2(self.model, eps=self.eps, alpha=self.alpha, steps=self.steps,
                                  random_start=self.random_start,
                                  eps_for_division=self.eps_for_division)
