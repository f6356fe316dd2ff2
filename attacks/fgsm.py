"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps, L-inf."""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn

from attacks.base import Attack, check_real


class FGSM(Attack):
    """x_adv = clamp(x + eps * sign(grad), 0, 1). `restarts` repeats the same deterministic
    step, so it is accepted but only useful for symmetry with PGD."""

    name = "fgsm"
    threat = "linf"

    def __init__(self, model: nn.Module, eps: float = 8 / 255, **options: Any):
        super().__init__(model, **options)
        self.eps = check_real("eps", eps, high=1.0, low_inclusive=True)

    def hyperparameters(self) -> Dict[str, Any]:
        return {"eps": self.eps}

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        grad = self._gradient(images, labels)
        return torch.clamp(images + self.eps * grad.sign(), min=0, max=1)

    def _torchattacks(self):
        import torchattacks

        return torchattacks.FGSM(self.model, eps=self.eps)
