"""Counter-based random numbers: each image's stream is a pure function of its key.

A key is hashed from (seed, global image index, corruption id, severity); element e of stream s of
that image is lowbias32(H(e, s) ^ key). Everything is int32 tensor arithmetic (wrapping multiply,
masked shifts), so the bits are identical on CPU and GPU and do not depend on batch size or order.
"""
from __future__ import annotations

import functools
import math

import torch

_M1 = 0x7FEB352D
_M2 = 0x846CA68B
_MASK32 = 0xFFFFFFFF


def _signed(v: int) -> int:
    v &= _MASK32
    return v - (1 << 32) if v >= (1 << 31) else v


def mix32_int(x: int) -> int:
    """lowbias32 on a Python int (mod 2**32); the reference for the tensor version."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * _M1) & _MASK32
    x ^= x >> 15
    x = (x * _M2) & _MASK32
    x ^= x >> 16
    return x


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on an int32 tensor (bit pattern = the unsigned value); logical shifts by masking."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _signed(_M1)
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * _signed(_M2)
    x = x ^ ((x >> 16) & 0xFFFF)
    return x


def mix32_(x: torch.Tensor) -> torch.Tensor:
    """mix32 in place (x must be a fresh contiguous int32 tensor): no temporaries beyond one."""
    t = torch.empty_like(x)
    for shift, mask, mult in ((16, 0xFFFF, _M1), (15, 0x1FFFF, _M2), (16, 0xFFFF, None)):
        torch.bitwise_right_shift(x, shift, out=t)
        x.bitwise_xor_(t.bitwise_and_(mask))
        if mult is not None:
            x.mul_(_signed(mult))
    return x


@functools.lru_cache(maxsize=64)
def _element_hashes(stream: int, numel: int, device: str) -> torch.Tensor:
    """The key-independent half of element e's hash in stream `stream`."""
    salt1 = mix32_int(stream * 0x632BE5AB + 0x5BD1E995)
    salt2 = mix32_int(salt1 ^ 0x68E31DA4) ^ 0x1B56C4E9  # != mix(salt1): element 0 differs per stream
    counters = torch.arange(numel, dtype=torch.int32, device=torch.device(device))
    return mix32(mix32(counters ^ _signed(salt1)) ^ _signed(salt2))


def image_keys(seed: int, indices: torch.Tensor, corruption_id: int, severity: int) -> torch.Tensor:
    """One int32 key per image from its global index (int64 tensor) and the corruption cell."""
    base = mix32_int(seed & _MASK32)
    base = mix32_int(base ^ ((seed >> 32) & _MASK32))
    base = mix32_int(base ^ (corruption_id * 16 + severity) ^ 0x9E3779B9)
    idx = indices.to(torch.int64)
    lo = (idx & _MASK32).to(torch.int64)
    lo = torch.where(lo >= (1 << 31), lo - (1 << 32), lo).to(torch.int32)
    hi = ((idx >> 32) & 0x7FFFFFFF).to(torch.int32)
    k = mix32(lo ^ _signed(base))
    return mix32(k ^ mix32(hi ^ _signed(mix32_int(base))))


def normal_from_bits(b: torch.Tensor) -> torch.Tensor:
    """Standard normals (float32) from 24 random bits k: the inverse CDF at p = (k + 1/2) / 2**24,
    as sqrt(2) erfinv(2p - 1). 2p - 1 is exact in float32, and torch's CPU erfinv gives the same
    bits wherever an element sits in the tensor (tested on all 2**24 inputs), so a normal does
    not depend on the batch. |z - Q(p)| < 5e-7; |z| <= 5.42."""
    return b.to(torch.float32).mul_(2.0 ** -23).add_(2.0 ** -24 - 1.0).erfinv_().mul_(math.sqrt(2.0))


class ImageRNG:
    """Random tensors of shape (N, *shape) whose row n depends only on key n and the stream id."""

    def __init__(self, keys: torch.Tensor):
        self.keys = keys
        self.device = keys.device

    def __len__(self) -> int:
        return self.keys.numel()

    def subset(self, mask: torch.Tensor) -> "ImageRNG":
        return ImageRNG(self.keys[mask])

    def bits(self, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        numel = math.prod(shape)
        per_element = _element_hashes(stream, numel, str(self.device))
        out = per_element.unsqueeze(0) ^ self.keys.unsqueeze(1)
        return mix32_(out).view(len(self), *shape)

    def uniform(self, stream: int, shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
        """Uniform on (0, 1]: 24 random bits, (k + 1) / 2**24, exact in float32."""
        b = self.bits(stream, shape).bitwise_right_shift_(8).bitwise_and_(0xFFFFFF)
        return b.to(dtype).add_(1.0).mul_(1.0 / 16777216.0)  # every step exact

    def normal(self, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normals, element by element (normal_from_bits)."""
        return normal_from_bits(self.bits(stream, shape).bitwise_right_shift_(8).bitwise_and_(0xFFFFFF))

    def randint(self, stream: int, shape: tuple[int, ...], low: int, high: int) -> torch.Tensor:
        """Integers in [low, high) (numpy randint convention), int64."""
        # Defined as low + clamp(floor((u - 2**-25) * span), 0, span - 1) with u = (b + 1) / 2**24;
        # every step of that is exact in float64, and it equals low + ((2b + 1) * span >> 25) in
        # integers (never outside [0, span - 1]), which is what runs here
        span = high - low
        b = self.bits(stream, shape).bitwise_right_shift_(8).bitwise_and_(0xFFFFFF).to(torch.int64)
        return b.mul_(2).add_(1).mul_(span).bitwise_right_shift_(25).add_(low)

    def uniform_range(self, stream: int, shape: tuple[int, ...], low: float, high: float,
                      dtype=torch.float32) -> torch.Tensor:
        return low + (high - low) * (self.uniform(stream, shape, dtype=dtype) - 2.0 ** -25)
