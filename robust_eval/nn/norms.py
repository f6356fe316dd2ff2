"""Norm registry: how an architecture builds each (conv, norm) pair for a norm choice.

Architectures ask for `get_norm(name).make_conv(...)` and `.make_norm(channels)`, so every
arch takes every norm. ConvNorm carries its own affine+BN, so its make_norm is Identity
(the official configs use norm_layer_type "no" with ConvNorm).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from robust_eval.registry import Registry

NORMS = Registry("norm")


@dataclass(frozen=True)
class Norm:
    name: str
    make_conv: Callable[..., nn.Module]  # (in_ch, out_ch, kernel_size, stride, padding) -> module
    make_norm: Callable[[int], nn.Module]  # (channels) -> module
    # Extra loss term added by training recipes (OCNN); None for most norms.
    penalty: Optional[Callable[[nn.Module], torch.Tensor]] = None
    description: str = ""


def register_norm(norm: Norm) -> Norm:
    NORMS.register(norm.name)(norm)
    return norm


def get_norm(name: str) -> Norm:
    return NORMS.get(name)


def list_norms(pattern: str = "*"):
    return NORMS.list(pattern)


def _plain_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                padding: int = 0) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                     bias=False)


register_norm(Norm("bn", _plain_conv, nn.BatchNorm2d, description="conv + BatchNorm2d"))
