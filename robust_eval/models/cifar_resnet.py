"""CIFAR ResNet-18/34/50 in the official ConvNorm attribute layout (shengliu66/ConvNorm).

conv1, norm1, layer{1..4}.{j}.conv1/norm1/conv2/norm2(/conv3/norm3)/shortcut.0/shortcut.1,
linear: official checkpoints map key for key. 3x3 stem, no max-pool, global average pool (the
official avg_pool2d(4) on 32 px inputs). With norm="convnorm" the norm layers are Identity.
"""
from __future__ import annotations

from typing import List, Type

import torch
import torch.nn.functional as F
from torch import nn

from robust_eval.models.registry import (CIFAR10_MEAN_CONVNORM, CIFAR10_STD_CONVNORM,
                                         register_model)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, norm, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = norm.make_conv(in_planes, planes, 3, stride, 1)
        self.norm1 = norm.make_norm(planes)
        self.conv2 = norm.make_conv(planes, planes, 3, 1, 1)
        self.norm2 = norm.make_norm(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(norm.make_conv(in_planes, planes, 1, stride, 0),
                                          norm.make_norm(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, norm, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = norm.make_conv(in_planes, planes, 1, 1, 0)
        self.norm1 = norm.make_norm(planes)
        self.conv2 = norm.make_conv(planes, planes, 3, stride, 1)
        self.norm2 = norm.make_norm(planes)
        self.conv3 = norm.make_conv(planes, out_planes, 1, 1, 0)
        self.norm3 = norm.make_norm(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(norm.make_conv(in_planes, out_planes, 1, stride, 0),
                                          norm.make_norm(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block: Type[nn.Module], num_blocks: List[int], norm: str = "bn",
                 num_classes: int = 10):
        super().__init__()
        from robust_eval.nn import get_norm

        n = get_norm(norm)
        self.in_planes = 64
        self.conv1 = n.make_conv(3, 64, 3, 1, 1)
        self.norm1 = n.make_norm(64)
        self.layer1 = self._make_layer(n, block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(n, block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(n, block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(n, block, 512, num_blocks[3], 2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, norm, block, planes: int, count: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (count - 1):
            layers.append(block(norm, self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


_CIFAR = dict(default_mean=CIFAR10_MEAN_CONVNORM, default_std=CIFAR10_STD_CONVNORM)


@register_model("resnet18", description="CIFAR ResNet-18, official ConvNorm layout", **_CIFAR)
def resnet18(norm: str = "bn", num_classes: int = 10) -> nn.Module:
    return ResNet(BasicBlock, [2, 2, 2, 2], norm, num_classes)


@register_model("resnet34", description="CIFAR ResNet-34, official ConvNorm layout", **_CIFAR)
def resnet34(norm: str = "bn", num_classes: int = 10) -> nn.Module:
    return ResNet(BasicBlock, [3, 4, 6, 3], norm, num_classes)


@register_model("resnet50", description="CIFAR ResNet-50 (bottleneck), official ConvNorm layout",
                **_CIFAR)
def resnet50(norm: str = "bn", num_classes: int = 10) -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3], norm, num_classes)
