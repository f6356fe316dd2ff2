"""WRN-28-10 in RobustBench's 'Standard' layout (model_zoo/architectures/wide_resnet.py).

Pre-activation blocks: block{1..3}.layer.{j}.bn1/conv1/bn2/conv2/convShortcut, then bn1, fc.
The zoo's 'Standard' model takes [0,1] inputs with no normalisation, hence mean 0 / std 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust_eval.models.registry import register_model


class WideBasicBlock(nn.Module):
    def __init__(self, norm, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = norm.make_norm(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = norm.make_conv(in_planes, out_planes, 3, stride, 1)
        self.bn2 = norm.make_norm(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = norm.make_conv(out_planes, out_planes, 3, 1, 1)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (None if self.equal_in_out
                             else norm.make_conv(in_planes, out_planes, 1, stride, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(pre)))
        out = self.conv2(out)
        # RobustBench: the shortcut of a widening block sees the pre-activated input.
        return (x if self.equal_in_out else self.convShortcut(pre)) + out


class NetworkBlock(nn.Module):
    def __init__(self, norm, count: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(norm, in_planes if i == 0 else out_planes, out_planes,
                           stride if i == 0 else 1) for i in range(count)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, widen_factor: int = 10, norm: str = "bn",
                 num_classes: int = 10):
        super().__init__()
        from robust_eval.nn import get_norm

        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = get_norm(norm)
        count = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = n.make_conv(3, ch[0], 3, 1, 1)
        self.block1 = NetworkBlock(n, count, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, count, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, count, ch[2], ch[3], 2)
        self.bn1 = n.make_norm(ch[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model("wrn28_10", description="WideResNet-28-10, RobustBench 'Standard' layout")
def wrn28_10(norm: str = "bn", num_classes: int = 10) -> nn.Module:
    return WideResNet(28, 10, norm, num_classes)
