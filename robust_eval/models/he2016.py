"""He et al. 2016 CIFAR ResNets (6n+2 layers, 16/32/64 channels, option-A shortcuts).

Attribute layout of akamaster/pytorch_resnet_cifar10 (conv1, bn1, layer1..3.{j}.conv1/bn1/
conv2/bn2, linear), so its released checkpoints load key for key. Option A: the shortcut
subsamples by 2 and zero-pads channels, so it has no parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robust_eval.models.registry import IMAGENET_MEAN, IMAGENET_STD, register_model


class OptionAShortcut(nn.Module):
    def __init__(self, pad_channels: int):
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad_channels
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))


class BasicBlock(nn.Module):
    def __init__(self, norm, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = norm.make_conv(in_planes, planes, 3, stride, 1)
        self.bn1 = norm.make_norm(planes)
        self.conv2 = norm.make_conv(planes, planes, 3, 1, 1)
        self.bn2 = norm.make_norm(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = OptionAShortcut(planes // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, norm: str = "bn", num_classes: int = 10):
        super().__init__()
        from robust_eval.nn import get_norm

        if (depth - 2) % 6:
            raise ValueError(f"He-2016 CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        n = get_norm(norm)
        self.in_planes = 16
        self.conv1 = n.make_conv(3, 16, 3, 1, 1)
        self.bn1 = n.make_norm(16)
        self.layer1 = self._make_layer(n, 16, blocks, 1)
        self.layer2 = self._make_layer(n, 32, blocks, 2)
        self.layer3 = self._make_layer(n, 64, blocks, 2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, norm, planes: int, count: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (count - 1):
            layers.append(BasicBlock(norm, self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _register(depth: int) -> None:
    # ImageNet statistics: what the released akamaster checkpoints were trained with.
    @register_model(f"resnet{depth}", default_mean=IMAGENET_MEAN, default_std=IMAGENET_STD,
                    description=f"He-2016 CIFAR ResNet-{depth} (option A), akamaster layout")
    def build(norm: str = "bn", num_classes: int = 10) -> nn.Module:
        return CifarResNet(depth, norm, num_classes)


for _depth in (20, 32, 44, 56, 110):
    _register(_depth)
