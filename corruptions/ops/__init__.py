"""Batched corruption kernels, one module per family. Each kernel is
`fn(x, p, ctx) -> y`: x float NCHW in [0, 1], p the severity's parameter entry, ctx a `Context`;
y float in [0, 1] before the caller's 8-bit quantisation, or (only when ctx.raw is given) the
final uint8 output, for kernels whose whole 8-bit pipeline folds into a lookup table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ._rng import ImageRNG

# uint8 outputs of float32 kernels get this nudge (in 8-bit levels) before truncation, so exact
# levels k do not drop to k - 1 (generate.py; the shot-noise byte table applies it too)
TRUNC_EPS = 2e-3


@dataclass
class Context:
    rng: ImageRNG
    quantized: bool  # input was uint8: emulate the reference's 8-bit intermediate steps
    param_set: str  # "cifar10" or "imagenet"
    raw: Optional[torch.Tensor] = None  # the uint8 input chunk, when the input was uint8
