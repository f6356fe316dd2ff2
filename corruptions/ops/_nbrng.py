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
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

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

def _cache_probe():
    return 0


def cache_usable() -> bool:
    """Whether numba can cache compiled kernels on disk here (beside the package, or in the user
    cache dir). Without a writable place, cache=True fails at import; then compile per process."""
    try:
        numba.njit(cache=True)(_cache_probe)
    except RuntimeError as exc:
        if "no locator available" not in str(exc):
            raise
        return False
    return True


_CACHE = cache_usable()
jit = numba.njit(cache=_CACHE, nogil=True, error_model="numpy")
# for per-pixel helpers inside image loops (a call per pixel costs more than the work)
inline_jit = numba.njit(cache=_CACHE, nogil=True, error_model="numpy", inline="always")


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
    """lowbias32 on an int32 (bit pattern = unsigned value); logical shifts by masking. Every
    step is cast back to int32: numba widens int32 arithmetic to int64, halving the SIMD width."""
    h = I32(h ^ ((h >> I32(16)) & _LOW16))
    h = I32(h * _M1)
    h = I32(h ^ ((h >> I32(15)) & _LOW17))
    h = I32(h * _M2)
    return I32(h ^ ((h >> I32(16)) & _LOW16))


@jit
def bits24(element_hash, key):
    """The 24 random bits ImageRNG.uniform/normal/randint use, as an int32 in [0, 2**24)."""
    return I32((mix32(I32(element_hash ^ key)) >> I32(8)) & _LOW24)


@intrinsic
def f32_bits(typingctx, x):
    """The bit pattern of a float32 as int32 (numba has no scalar bitcast); compiles to nothing."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


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
        out[e] = bits24(element_hashes[e], key)


@jit
def normal_from_bits24(b, table, steps):
    """ImageRNG.normal's value for the 24 random bits b (see _rng.normal_from_bits)."""
    v = f32_bits(F32(I32(min(b, I32(_TOP24 - b)) + I32(1))))
    idx = I32(I32(I32(v >> I32(23)) - I32(126)) * _ROW) + I32((v >> I32(17)) & (_KNOTS - I32(1)))
    z = steps[idx] * (F32(I32(v & _LOW17)) * _INV2_17)
    z = z + table[idx]
    return z if b < _HALF24 else -z


@jit
def normals_into(element_hashes, key, table, steps, out):
    """out[e] = the standard normal ImageRNG.normal gives element e of one image's stream."""
    for e in range(out.shape[0]):
        out[e] = normal_from_bits24(bits24(element_hashes[e], key), table, steps)
