"""PGD (Madry et al. 2018), L-inf: uniform random start in the eps ball, signed steps."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from attacks.base import Attack, AttackError, check_eps, check_int, check_real
from attacks.registry import register


@register
class PGD(Attack):
    """PGD: random start in the L-inf ball, then signed-gradient steps projected back into it.

    alpha (step size) defaults to eps/4 (2/255 at 8/255, the paper's setting).

    Each step: x <- x + alpha*sign(grad); x <- x0 + clamp(x - x0, -eps, eps); x <- clamp(x, 0, 1)
    -- the torchattacks formula, so the fp32 result is bit-identical for the same start.
    """

    name = "pgd"
    title = "PGD"
    threat = "linf"
    default_eps = 8 / 255
    default_steps = 10
    strength = 1
    engines = ("native", "torchattacks")
    options = ("steps", "alpha", "restarts")

    def __init__(self, model: nn.Module, eps: float = default_eps, alpha: Optional[float] = None,
                 steps: int = default_steps, random_start: bool = True, **options: Any):
        super().__init__(model, **options)
        self.eps = check_eps(eps, self.threat)  # eps=0: the clean point
        self.alpha = self.eps / 4 if alpha is None else check_real(
            "alpha", alpha, high=1.0, low_inclusive=self.eps == 0)
        self.steps = check_int("steps", steps)
        if not isinstance(random_start, bool):
            raise AttackError(f"random_start must be True or False, got {random_start!r}")
        self.random_start = random_start

    def hyperparameters(self) -> Dict[str, Any]:
        return {"eps": self.eps, "alpha": self.alpha, "steps": self.steps,
                "random_start": self.random_start}

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        adv = images
        if self.random_start:
            noise = torch.empty_like(images).uniform_(-self.eps, self.eps, generator=generator)
            adv = torch.clamp(images + noise, min=0, max=1)
        for _ in range(self.steps):
            adv = adv + self.alpha * self._gradient(adv, labels).sign()
            delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
            adv = torch.clamp(images + delta, min=0, max=1)
        return adv

    def _torchattacks(self):
        import torchattacks

        return torchattacks.PGD(self.model, eps=self.eps, alpha=self.alpha, steps=self.steps,
                                random_start=self.random_start)
