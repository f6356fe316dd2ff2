"""The counter-based random numbers of _rng.py as numba functions, for the fused CPU kernels.

Same bits as ImageRNG: element e of stream s of the image with key k is mix32(H_s[e] ^ k), with
H_s = element_hashes(s, numel). Every function here is exact integer or exactly rounded float
arithmetic in the same order as the torch version, so fused kernels reproduce it bit for bit
(tests/corruptions/test_numba_rng.py). Constants are typed globals: an untyped literal would
promote int32/float32 arithmetic to 64 bits (slower, and for floats, different rounding).
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from ._rng import NORMAL_KNOTS, _element_hashes, normal_tables

I32 = np.int32
F32 = np.float32
_M1 = I32(0x7FEB352D)
_M2 = I32(0x846CA68B - (1 << 32))
_LOW16 = I32(0xFFFF)
_LOW17 = I32(0x1FFFF)
_LOW24 = I32(0xFFFFFF)
_HALF24 = I32(1 << 23)
_TOP24 = I32((1 << 24) - 1)
_KNOTS = I32(NORMAL_KNOTS)
_ROW = I32(NORMAL_KNOTS + 1)
_INV2_17 = F32(1.0 / 131072.0)
_INV2_24 = F32(1.0 / 16777216.0)

jit = numba.njit(cache=True, nogil=True, error_model="numpy")


def element_hashes(stream: int, numel: int) -> np.ndarray:
    """The key-independent half of each element's hash (int32), shared with the torch path."""
    return _element_hashes(stream, numel, "cpu").numpy()


def keys_array(keys: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(keys.detach().cpu().numpy(), dtype=np.int32)


def normal_table_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(T, D) for normal_from_bits24 / normals_into."""
    return normal_tables()


@jit
def mix32(h):
    """lowbias32 on an int32 (bit pattern = unsigned value); logical shifts by masking."""
    h ^= (h >> I32(16)) & _LOW16
    h *= _M1
    h ^= (h >> I32(15)) & _LOW17
    h *= _M2
    h ^= (h >> I32(16)) & _LOW16
    return h


@jit
def bits24(element_hash, key):
    """The 24 random bits ImageRNG.uniform/normal/randint use, as an int32 in [0, 2**24)."""
    return (mix32(element_hash ^ key) >> I32(8)) & _LOW24


@jit
def uniform_from_bits24(b):
    """(b + 1) / 2**24 in float32 (exact), ImageRNG.uniform."""
    return F32(b + I32(1)) * _INV2_24


@jit
def uniform64_range(b, low, high):
    """ImageRNG.uniform_range(..., dtype=float64): low + (high - low) * (u - 2**-25)."""
    u = np.float64(b + I32(1)) * (1.0 / 16777216.0)
    return low + (high - low) * (u - 2.0 ** -25)


@jit
def randint_from_bits24(b, low, high):
    """ImageRNG.randint: low + ((2b + 1) * span >> 25), int64."""
    span = np.int64(high) - np.int64(low)
    return np.int64(low) + (((np.int64(b) * 2 + 1) * span) >> 25)


@jit
def bits24_into(element_hashes, key, out):
    """out[e] = bits24(element_hashes[e], key) for one image's stream."""
    for e in range(out.shape[0]):
        out[e] = (mix32(element_hashes[e] ^ key) >> I32(8)) & _LOW24


@jit
def normals_into(element_hashes, key, table, steps, out, scratch):
    """out[e] = the standard normal ImageRNG.normal gives element e (see _rng.normal_from_bits).

    scratch: int32 buffer of out's length. Two loops so that the float32 -> bits reinterpretation
    is an array view (numba has no scalar bitcast)."""
    folded = out.view(np.int32)  # out's memory holds float32(b' + 1) between the loops
    for e in range(out.shape[0]):
        b = (mix32(element_hashes[e] ^ key) >> I32(8)) & _LOW24
        scratch[e] = b
        out[e] = F32(min(b, _TOP24 - b) + I32(1))
    for e in range(out.shape[0]):
        v = folded[e]
        idx = ((v >> I32(23)) - I32(126)) * _ROW + ((v >> I32(17)) & (_KNOTS - I32(1)))
        frac = F32(v & _LOW17) * _INV2_17
        z = steps[idx] * frac
        z = z + table[idx]
        out[e] = z if scratch[e] < _HALF24 else -z
