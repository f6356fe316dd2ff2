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


def _convnorm_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                   padding: int = 0) -> nn.Module:
    from robust_eval.nn.convnorm import ConvNorm2d
    return ConvNorm2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def _sn_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
    from robust_eval.nn.baselines import SNConv2d
    return SNConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def _oni_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
              padding: int = 0) -> nn.Module:
    from robust_eval.nn.baselines import ONIConv2d
    return ONIConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def _ocnn_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
               padding: int = 0) -> nn.Module:
    from robust_eval.nn.baselines import OCNNConv2d
    return OCNNConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def _ocnn_penalty(model: nn.Module) -> torch.Tensor:
    from robust_eval.nn.baselines import ocnn_penalty
    return ocnn_penalty(model)


register_norm(Norm("bn", _plain_conv, nn.BatchNorm2d, description="conv + BatchNorm2d"))
register_norm(Norm("convnorm", _convnorm_conv, lambda channels: nn.Identity(),
                   description="ConvNorm2d (its own depthwise affine + BatchNorm inside)"))
register_norm(Norm("sn", _sn_conv, nn.BatchNorm2d,
                   description="spectral-norm conv (flattened kernel) + BatchNorm2d"))
register_norm(Norm("oni", _oni_conv, nn.BatchNorm2d,
                   description="ONI conv (Newton T=3, scale 1.414) + BatchNorm2d"))
register_norm(Norm("ocnn", _ocnn_conv, nn.BatchNorm2d, penalty=_ocnn_penalty,
                   description="conv + BatchNorm2d; penalty(model) = 1e-4 * OCNN orthogonality "
                               "distance, to add to the loss"))
