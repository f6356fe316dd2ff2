"""Fused noise kernels (uint8 in, uint8 out): gaussian, shot, impulse and speckle noise.

Each reproduces corruptions/ops/noise.py plus generate's uint8 tail bit for bit: the same 24 random
bits as ImageRNG, the same float32 operations in the same order, and the torch path's own Poisson
tables. Each image's stream is processed in chunks that stay in L1, in separate passes: the
integer hashing and the float tail vectorise (AVX-512 where present); only table lookups run
scalar, since LLVM does not emit gathers for every CPU (AMD Zen).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .. import Context
from ._common import TRUNC_EPS32
from .._nbrng import (_HALF24, _INV2_17, _LOW17, _ROW, _TOP24, bits24, element_hashes, f32_bits,
                      jit, keys_array, normal_table_arrays)
from .._rng import NORMAL_KNOTS

I32 = np.int32
F32 = np.float32
_KNOT_MASK = I32(NORMAL_KNOTS - 1)
_ZERO = F32(0.0)
_ONE = F32(1.0)
_F255 = F32(255.0)
_U8_MAX = np.uint8(255)
_U8_ZERO = np.uint8(0)
# elements per pass: five 4 KB chunk buffers plus the element hashes stay in L1
_CHUNK = 1024
_SHOT_BIN_SHIFT = I32(14)  # shot noise: 1024 guide bins per level over the 24 random bits


@jit
def _scaled_normals(ehc, key, table, steps, c, m, idx, frac, sign_c, out):
    """out[e] * sign_c[e] == z_e * c for the first m elements of a chunk, z_e = ImageRNG.normal's
    value (_rng.normal_from_bits): z * c == |z| * (+-c) exactly, so the sign rides on c.
    ehc = the chunk's element hashes; idx and frac are scratch buffers."""
    neg_c = -c
    for e in range(m):  # integer part, vectorised
        b = bits24(ehc[e], key)
        v = f32_bits(F32(I32(min(b, I32(_TOP24 - b)) + I32(1))))
        idx[e] = I32(I32(I32(v >> I32(23)) - I32(126)) * _ROW) + I32((v >> I32(17)) & _KNOT_MASK)
        frac[e] = F32(I32(v & _LOW17)) * _INV2_17
        sign_c[e] = c if b < _HALF24 else neg_c
    for e in range(m):  # table lookups, scalar
        k = np.uint32(idx[e])
        z = steps[k] * frac[e]
        out[e] = z + table[k]


@jit
def _uint8_tail(y, eps):
    """generate's tail: clamp(0, 1), * 255, + eps, truncate."""
    y = min(max(y, _ZERO), _ONE)
    y = y * _F255
    y = y + eps
    return np.uint8(I32(y))


@jit
def _gaussian_images(raw, keys, eh, table, steps, c, eps, speckle, out):
    """x + c * z (gaussian) or x + x * (c * z) (speckle), x = raw / 255 in float32."""
    n, numel = raw.shape
    idx = np.empty(_CHUNK, np.int32)
    frac = np.empty(_CHUNK, np.float32)
    sign_c = np.empty(_CHUNK, np.float32)
    zc = np.empty(_CHUNK, np.float32)
    for i in range(n):
        for s in range(0, numel, _CHUNK):
            m = min(_CHUNK, numel - s)
            _scaled_normals(eh[s:s + m], keys[i], table, steps, c, m, idx, frac, sign_c, zc)
            src = raw[i, s:s + m]
            dst = out[i, s:s + m]
            if speckle:
                for e in range(m):
                    x = F32(src[e]) / _F255  # == torch's uint8 -> float32 -> div_(255.0)
                    y = zc[e] * sign_c[e]
                    y = y * x
                    dst[e] = _uint8_tail(y + x, eps)
            else:
                for e in range(m):
                    x = F32(src[e]) / _F255
                    y = zc[e] * sign_c[e]
                    dst[e] = _uint8_tail(y + x, eps)


@jit
def _impulse_images(raw, keys, eh, flip_max, salt_max, out):
    n, numel = raw.shape
    for i in range(n):
        key = keys[i]
        src = raw[i]
        dst = out[i]
        for e in range(numel):
            b = bits24(eh[e], key)
            salt = _U8_MAX if b <= salt_max else _U8_ZERO
            dst[e] = salt if b <= flip_max else src[e]


@jit
def _shot_images(raw, keys, eh, bounds, guide, out):
    """Output o for bits b at level v: the largest o with bounds[v, o] <= b, found from the guide
    entry of b's bin, guide[v, b >> _SHOT_BIN_SHIFT], onward (see _shot_tables)."""
    n, numel = raw.shape
    width = I32(bounds.shape[1])
    bins = I32(guide.shape[1])
    bflat = bounds.reshape(-1)
    gflat = guide.reshape(-1)
    bits = np.empty(_CHUNK, np.int32)
    gidx = np.empty(_CHUNK, np.int32)
    row = np.empty(_CHUNK, np.int32)
    for i in range(n):
        key = keys[i]
        for s in range(0, numel, _CHUNK):
            m = min(_CHUNK, numel - s)
            ehc = eh[s:s + m]
            src = raw[i, s:s + m]
            dst = out[i, s:s + m]
            for e in range(m):  # vectorised
                b = bits24(ehc[e], key)
                v = I32(src[e])
                bits[e] = b
                gidx[e] = I32(v * bins) + I32(b >> _SHOT_BIN_SHIFT)
                row[e] = I32(v * width) + I32(1)
            for e in range(m):
                b = bits[e]
                r = np.uint32(row[e])
                o = np.uint32(gflat[np.uint32(gidx[e])])
                while bflat[r + o] <= b:
                    o += np.uint32(1)
                dst[e] = np.uint8(o)


@functools.lru_cache(maxsize=16)
def _shot_tables(c: float) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 path of noise.shot_noise as thresholds on the 24 random bits b, per input level v.

    There u = (b + 1) / 2**24 and k = the smallest k with cdf[v, k] >= u (noise._poisson_draw
    returns exactly that k: its guide start never passes it and its steps and bisection stop
    there), and the output is lut[k]. k >= K iff cdf[v, K - 1] < u iff
    b >= floor(cdf[v, K - 1] * 2**24) (exact in float64), and lut is nondecreasing in k, so the
    output is >= o iff b >= bounds[v, o] with bounds[v, o] = that threshold for K = the first k
    with lut[k] >= o (2**25, never reached, where there is none). guide[v, j] = the output at
    b = j << 14, where the search starts."""
    from ..noise import _poisson_tables, _shot_output_lut

    cdf, _, width, _ = _poisson_tables(float(c), 255, "cpu")
    lut = _shot_output_lut(float(c), width, "cpu").numpy()
    never = 1 << 25
    cdf = cdf.numpy().reshape(256, width).astype(np.float64)
    k_bounds = np.zeros((256, width + 1), np.int64)  # k_bounds[v, K]: the smallest b with k >= K
    k_bounds[:, 1:] = np.minimum(np.floor(cdf * 2.0 ** 24), never)
    k_bounds[:, width] = never
    first_k = np.searchsorted(lut, np.arange(257))  # the first k with lut[k] >= o (width: none)
    bounds = k_bounds[:, first_k]  # (256, 257); bounds[:, 0] = 0 and bounds[:, 256] = never
    starts = np.arange(1 << (24 - int(_SHOT_BIN_SHIFT)), dtype=np.int64) << int(_SHOT_BIN_SHIFT)
    guide = np.stack([np.searchsorted(bounds[v, 1:], starts, side="right") for v in range(256)])
    return np.ascontiguousarray(bounds, np.int32), guide.astype(np.uint8)


def _flat(ctx: Context):
    raw = ctx.raw
    out = torch.empty_like(raw)
    n = raw.shape[0]
    return raw.reshape(n, -1).numpy(), keys_array(ctx.rng.keys), out, out.view(n, -1).numpy()


def _normal_family(c, ctx: Context, speckle: bool):
    raw, keys, out, out_np = _flat(ctx)
    table, steps = normal_table_arrays()
    _gaussian_images(raw, keys, element_hashes(0, raw.shape[1]), table, steps, F32(c), TRUNC_EPS32,
                     speckle, out_np)
    return out


def gaussian_noise(c, ctx: Context):
    return _normal_family(c, ctx, False)


def speckle_noise(c, ctx: Context):
    return _normal_family(c, ctx, True)


def impulse_noise(amount, ctx: Context):
    raw, keys, out, out_np = _flat(ctx)
    # as noise.impulse_noise: (b + 1) / 2**24 <= float32(t) <=> b <= floor(float32(t) * 2**24) - 1
    flip_max, salt_max = (int(math.floor(float(np.float32(t)) * 2.0 ** 24)) - 1
                          for t in (amount, amount / 2))
    _impulse_images(raw, keys, element_hashes(0, raw.shape[1]), I32(flip_max), I32(salt_max),
                    out_np)
    return out


def shot_noise(c, ctx: Context):
    raw, keys, out, out_np = _flat(ctx)
    bounds, guide = _shot_tables(float(c))
    _shot_images(raw, keys, element_hashes(0, raw.shape[1]), bounds, guide, out_np)
    return out


KERNELS = {"gaussian_noise": gaussian_noise, "shot_noise": shot_noise,
           "impulse_noise": impulse_noise, "speckle_noise": speckle_noise}
