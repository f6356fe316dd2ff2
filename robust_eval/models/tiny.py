"""tiny_cnn: a small fast CNN for tests and the offline demo (any norm, any input >= 8 px)."""
from __future__ import annotations

import torch
from torch import nn

from robust_eval.models.registry import register_model


class TinyCNN(nn.Module):
    def __init__(self, norm: str = "bn", num_classes: int = 10, width: int = 16):
        super().__init__()
        from robust_eval.nn import get_norm

        n = get_norm(norm)
        w = width
        self.conv1, self.norm1 = n.make_conv(3, w, 3, 1, 1), n.make_norm(w)
        self.conv2, self.norm2 = n.make_conv(w, 2 * w, 3, 2, 1), n.make_norm(2 * w)
        self.conv3, self.norm3 = n.make_conv(2 * w, 4 * w, 3, 2, 1), n.make_norm(4 * w)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 8:
            raise ValueError(f"tiny_cnn needs inputs of at least 8x8 px, got {tuple(x.shape)}")
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        x = self.relu(self.norm3(self.conv3(x)))
        return self.linear(torch.flatten(self.pool(x), 1))


@register_model("tiny_cnn", default_mean=(0.5, 0.5, 0.5), default_std=(0.25, 0.25, 0.25),
                description="3-conv CNN (16/32/64 ch) for tests and the offline demo")
def tiny_cnn(norm: str = "bn", num_classes: int = 10, width: int = 16) -> nn.Module:
    return TinyCNN(norm, num_classes, width)
