"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps, L-inf."""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn

from attacks.base import Attack, check_eps
from attacks.registry import register


@register
class FGSM(Attack):
    """FGSM: one signed-gradient step of size eps (L-inf).

    x_adv = clamp(x + eps * sign(grad), 0, 1). Deterministic: restarts would repeat the same
    step, so `resolve` (the front ends' path) refuses restarts > 1."""

    name = "fgsm"
    title = "FGSM"
    threat = "linf"
    default_eps = 8 / 255
    default_steps = 1
    strength = 0
    engines = ("native", "torchattacks")

    def __init__(self, model: nn.Module, eps: float = default_eps, **options: Any):
        super().__init__(model, **options)
        self.eps = check_eps(eps, self.threat)

    def hyperparameters(self) -> Dict[str, Any]:
        return {"eps": self.eps}

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        grad = self._gradient(images, labels)
        return torch.clamp(images + self.eps * grad.sign(), min=0, max=1)

    def _torchattacks(self):
        import torchattacks

        return torchattacks.FGSM(self.model, eps=self.eps)
