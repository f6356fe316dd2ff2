"""ImageNet ResNet-18/50 in torchvision's attribute layout (torchvision weights load as-is)."""
from __future__ import annotations

import torch
from torch import nn

from robust_eval.models.registry import IMAGENET_MEAN, IMAGENET_STD, register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, norm, in_planes: int, planes: int, stride: int, downsample):
        super().__init__()
        self.conv1 = norm.make_conv(in_planes, planes, 3, stride, 1)
        self.bn1 = norm.make_norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = norm.make_conv(planes, planes, 3, 1, 1)
        self.bn2 = norm.make_norm(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, norm, in_planes: int, planes: int, stride: int, downsample):
        super().__init__()
        self.conv1 = norm.make_conv(in_planes, planes, 1, 1, 0)
        self.bn1 = norm.make_norm(planes)
        self.conv2 = norm.make_conv(planes, planes, 3, stride, 1)  # stride on 3x3 (v1.5)
        self.bn2 = norm.make_norm(planes)
        self.conv3 = norm.make_conv(planes, planes * 4, 1, 1, 0)
        self.bn3 = norm.make_norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ImageNetResNet(nn.Module):
    def __init__(self, block, layers, norm: str = "bn", num_classes: int = 1000):
        super().__init__()
        from robust_eval.nn import get_norm

        n = get_norm(norm)
        self.in_planes = 64
        self.conv1 = n.make_conv(3, 64, 7, 2, 3)
        self.bn1 = n.make_norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(n, block, 64, layers[0], 1)
        self.layer2 = self._make_layer(n, block, 128, layers[1], 2)
        self.layer3 = self._make_layer(n, block, 256, layers[2], 2)
        self.layer4 = self._make_layer(n, block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, norm, block, planes: int, count: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes * block.expansion:
            downsample = nn.Sequential(
                norm.make_conv(self.in_planes, planes * block.expansion, 1, stride, 0),
                norm.make_norm(planes * block.expansion))
        layers = [block(norm, self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * block.expansion
        layers += [block(norm, self.in_planes, planes, 1, None) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_IMAGENET = dict(default_mean=IMAGENET_MEAN, default_std=IMAGENET_STD, input_size=(224, 224),
                 default_num_classes=1000)


@register_model("imagenet_resnet18", description="torchvision ResNet-18 layout", **_IMAGENET)
def imagenet_resnet18(norm: str = "bn", num_classes: int = 1000) -> nn.Module:
    return ImageNetResNet(BasicBlock, [2, 2, 2, 2], norm, num_classes)


@register_model("imagenet_resnet50", description="torchvision ResNet-50 layout", **_IMAGENET)
def imagenet_resnet50(norm: str = "bn", num_classes: int = 1000) -> nn.Module:
    return ImageNetResNet(Bottleneck, [3, 4, 6, 3], norm, num_classes)
