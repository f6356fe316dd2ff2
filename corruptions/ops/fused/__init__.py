"""Fused numba CPU kernels for uint8 input: one pass per image instead of tens of torch passes.

Each family module exposes KERNELS {name: kernel(p, ctx) -> uint8 NCHW tensor, or None to fall
back to the torch ops}; ctx is ops.Context with ctx.raw the contiguous uint8 CPU batch and
ctx.rng.keys the per-image keys. Every kernel reproduces the torch kernel's output exactly
(tests/corruptions/test_fused_*.py), so the engine never changes a result.
"""
from __future__ import annotations

from . import blur, color, geometric, jpeg, noise, spatter, weather

KERNELS: dict = {}
for _family in (noise, color, jpeg, blur, geometric, weather, spatter):
    KERNELS.update(_family.KERNELS)
