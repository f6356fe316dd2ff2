"""Fused kernels for brightness, saturate, contrast and pixelate (uint8 input, one pass per image).

brightness/saturate: _image.rgb_to_hsv / hsv_to_rgb per pixel, the same float64 operations in the
same order, then generate's float64 tail (clamp, * 255, truncate). contrast: exact integer channel
sums (as the torch kernel does for uint8 input), then one 256-entry table per channel. pixelate:
PIL's 22-bit fixed-point BOX resize down and up in integers (tap tables cached per size), with
the W pass on a transposed copy so that every pass is a contiguous vector loop.
"""
from __future__ import annotations

import functools
import sys

import numpy as np
import torch

from .. import Context
from .._image import _sparse_rows
from .._nbrng import jit

# x / 255.0 for every byte, float64: what generate's u8.to(float64).div_(255.0) gives
_UNIT = np.arange(256, dtype=np.float64) / 255.0
_HALF = np.int32(1 << 21)
_S22 = np.int32(22)
_I32 = np.int32


def _prepare(ctx: Context):
    raw = ctx.raw
    n, c, h, w = raw.shape
    if c != 3:
        return None
    src = raw.numpy().reshape(n, 3, h * w)
    out = np.empty_like(src)
    return src, out, (n, c, h, w)


@jit
def _to_byte(y):
    """generate's float64 tail: clamp(0, 1), * 255, truncate."""
    y = min(max(y, 0.0), 1.0)
    return np.uint8(np.int32(y * 255.0))


@jit
def _hsv_roundtrip(src, out, unit, mode, a, b):
    """mode 0: v -> clamp(v + a, 0, 1) (brightness); mode 1: s -> clamp(s * a + b, 0, 1)."""
    n, _, hw = src.shape
    for i in range(n):
        for k in range(hw):
            r = unit[src[i, 0, k]]
            g = unit[src[i, 1, k]]
            bl = unit[src[i, 2, k]]
            v = max(r, g, bl)
            delta = v - min(r, g, bl)
            # rgb_to_hsv
            if delta == 0.0:
                s = 0.0
                h = 0.0
            else:
                s = delta / v  # v > 0 here
                if bl == v:
                    hh = (4.0 + (r - g) / delta) / 6.0
                elif g == v:
                    hh = (2.0 + (bl - r) / delta) / 6.0
                else:
                    hh = (0.0 + (g - bl) / delta) / 6.0
                # torch.remainder(hh, 1.0) for hh in [-1/6, 1): fmod is exact, then + 1 if < 0
                h = hh + 1.0 if hh < 0.0 else hh
            if mode == 0:
                v = min(max(v + a, 0.0), 1.0)
            else:
                s = min(max(s * a + b, 0.0), 1.0)
            # hsv_to_rgb
            h6 = h * 6.0
            hi = np.floor(h6)
            f = h6 - hi
            p = v * (1.0 - s)
            q = v * (1.0 - f * s)
            t = v * (1.0 - (1.0 - f) * s)
            sector = np.int64(hi) % 6
            if sector == 0:
                ro, go, bo = v, t, p
            elif sector == 1:
                ro, go, bo = q, v, p
            elif sector == 2:
                ro, go, bo = p, v, t
            elif sector == 3:
                ro, go, bo = p, q, v
            elif sector == 4:
                ro, go, bo = t, p, v
            else:
                ro, go, bo = v, p, q
            out[i, 0, k] = _to_byte(ro)
            out[i, 1, k] = _to_byte(go)
            out[i, 2, k] = _to_byte(bo)


def _hsv_kernel(mode, a, b, ctx):
    prep = _prepare(ctx)
    if prep is None:
        return None
    src, out, shape = prep
    _hsv_roundtrip(src, out, _UNIT, mode, float(a), float(b))
    return torch.from_numpy(out).view(shape)


def brightness(c, ctx: Context):
    return _hsv_kernel(0, c, 0.0, ctx)


def saturate(p, ctx: Context):
    return _hsv_kernel(1, p[0], p[1], ctx)


@jit
def _contrast(src, out, unit, c):
    n, ch, hw = src.shape
    denom = 255.0 * hw
    lut = np.empty(256, np.uint8)
    for i in range(n):
        for j in range(ch):
            row = src[i, j]
            total = np.int64(0)
            for k in range(hw):
                total += row[k]
            m = np.float64(total) / denom
            for u in range(256):
                lut[u] = _to_byte((unit[u] - m) * c + m)
            dst = out[i, j]
            for k in range(hw):
                dst[k] = lut[row[k]]


def contrast(c, ctx: Context):
    prep = _prepare(ctx)
    if prep is None:
        return None
    src, out, shape = prep
    _contrast(src, out, _UNIT, float(c))
    return torch.from_numpy(out).view(shape)


# ---- pixelate ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _down_taps(n_in: int, n_out: int):
    """PIL's BOX taps for n_in -> n_out <= n_in as (first index, count, int32 weight) per output:
    each output's taps are a contiguous window with one shared 22-bit weight (checked)."""
    idx, wts = _sparse_rows(n_in, n_out, True)
    count = (wts != 0).sum(1)
    for o in range(n_out):
        assert np.array_equal(idx[o, :count[o]], idx[o, 0] + np.arange(count[o]))
        assert (wts[o, :count[o]] == wts[o, 0]).all()
    # the sums fit int32 and round to <= 255, so the passes need no clip
    assert (255 * count * wts[:, 0] + (1 << 21)).max() < 256 << 22
    return idx[:, 0].astype(np.int32), count.astype(np.int32), wts[:, 0].astype(np.int32)


@functools.lru_cache(maxsize=64)
def _up_index(n_in: int, n_out: int):
    """PIL's BOX taps for n_in -> n_out >= n_in: one tap of weight 2**22 each (checked), i.e.
    (v * 2**22 + 2**21) >> 22 == v: a plain gather."""
    idx, wts = _sparse_rows(n_in, n_out, True)
    assert wts.shape[1] == 1 and (wts == 1 << 22).all()
    steps = np.diff(idx[:, 0])  # monotone and onto: the kernels copy each source row forward
    assert idx[0, 0] == 0 and idx[-1, 0] == n_in - 1 and ((steps == 0) | (steps == 1)).all()
    return idx[:, 0].astype(np.int32)


@jit
def _pixelate_any(src, out, fw, cw, ww, rx, fh, ch, wh, ry):
    """BOX down (W then H, rounding after each pass like PIL), then BOX up (a gather), any size.

    The W pass reads columns into a transposed buffer (one row per small column, all C x H
    image rows along it) so that its sums and the H pass are contiguous vector loops; the
    transpose back applies the W up-sampling gather; each H-pass output row is copied to the
    output rows that replicate it."""
    n, c, h, w = src.shape
    sh, sw, rows = fh.shape[0], fw.shape[0], c * h
    t1T = np.empty((sw, rows), np.uint8)
    t1 = np.empty((rows, w), np.uint8)
    acc = np.empty(max(rows, w), np.int32)
    for i in range(n):
        img = src[i].reshape(rows, w)
        for o in range(sw):
            b = fw[o]
            for r in range(rows):
                acc[r] = img[r, b]
            for k in range(1, cw[o]):
                for r in range(rows):
                    acc[r] += img[r, b + k]
            wt = ww[o]
            to = t1T[o]
            for r in range(rows):
                to[r] = np.uint8((_I32(acc[r] * wt) + _HALF) >> _S22)
        for x in range(w):
            s = t1T[rx[x]]
            for r in range(rows):
                t1[r, x] = s[r]
        for j in range(c):
            dst = out[i, j]
            y = 0
            for o in range(sh):
                b = j * h + fh[o]
                for x in range(w):
                    acc[x] = t1[b, x]
                for k in range(1, ch[o]):
                    for x in range(w):
                        acc[x] += t1[b + k, x]
                wt = wh[o]
                d0 = dst[y]
                for x in range(w):
                    d0[x] = np.uint8((_I32(acc[x] * wt) + _HALF) >> _S22)
                y += 1
                while y < h and ry[y] == o:
                    dy = dst[y]
                    for x in range(w):
                        dy[x] = d0[x]
                    y += 1


_U64 = np.uint64
_S8, _S16, _S32 = _U64(8), _U64(16), _U64(32)
_M8, _M16, _M32 = _U64(0x00FF00FF00FF00FF), _U64(0x0000FFFF0000FFFF), _U64(0x00000000FFFFFFFF)


@jit
def _t8(a0, a1, a2, a3, a4, a5, a6, a7):
    """Transpose the 8x8 bytes held in 8 little-endian words (row i = word i) by 3 rounds of
    masked swaps: ~1 integer op per byte instead of a scalar load and store."""
    t = ((a0 >> _S8) ^ a1) & _M8; a1 ^= t; a0 ^= t << _S8  # noqa: E702
    t = ((a2 >> _S8) ^ a3) & _M8; a3 ^= t; a2 ^= t << _S8  # noqa: E702
    t = ((a4 >> _S8) ^ a5) & _M8; a5 ^= t; a4 ^= t << _S8  # noqa: E702
    t = ((a6 >> _S8) ^ a7) & _M8; a7 ^= t; a6 ^= t << _S8  # noqa: E702
    t = ((a0 >> _S16) ^ a2) & _M16; a2 ^= t; a0 ^= t << _S16  # noqa: E702
    t = ((a1 >> _S16) ^ a3) & _M16; a3 ^= t; a1 ^= t << _S16  # noqa: E702
    t = ((a4 >> _S16) ^ a6) & _M16; a6 ^= t; a4 ^= t << _S16  # noqa: E702
    t = ((a5 >> _S16) ^ a7) & _M16; a7 ^= t; a5 ^= t << _S16  # noqa: E702
    t = ((a0 >> _S32) ^ a4) & _M32; a4 ^= t; a0 ^= t << _S32  # noqa: E702
    t = ((a1 >> _S32) ^ a5) & _M32; a5 ^= t; a1 ^= t << _S32  # noqa: E702
    t = ((a2 >> _S32) ^ a6) & _M32; a6 ^= t; a2 ^= t << _S32  # noqa: E702
    t = ((a3 >> _S32) ^ a7) & _M32; a7 ^= t; a3 ^= t << _S32  # noqa: E702
    return a0, a1, a2, a3, a4, a5, a6, a7


@jit
def _pixelate8(src64, out64, fw, cw, ww, rx, fh, ch, wh, ry):
    """_pixelate_any for H and W multiples of 8, on the images as 64-bit words: both transposes
    are 8x8 byte-block word transposes, the H pass runs on rows holding all C channels, and
    one-tap outputs (weight 2**22: the value itself) are read from their source row, not computed."""
    n, c, h, w8 = src64.shape
    w = w8 * 8
    sh, sw, rows = fh.shape[0], fw.shape[0], c * h
    r8, h8, cw_ = rows // 8, h // 8, c * w
    img_t64 = np.empty((w, r8), np.uint64)  # column x of all C x H rows
    img_t = img_t64.view(np.uint8)
    t1_t64 = np.empty((sw, r8), np.uint64)  # W-pass outputs of 2+ taps, transposed
    t1_t = t1_t64.view(np.uint8)
    sup64 = np.empty((h, c * w8), np.uint64)  # back to rows: row y = row y of every channel
    sup = sup64.view(np.uint8)
    small64 = np.empty((sh, c * w8), np.uint64)  # H-pass outputs of 2+ taps
    small = small64.view(np.uint8)
    acc = np.empty(max(rows, cw_), np.int32)
    for i in range(n):
        img = src64[i].reshape(rows, w8)
        for rb in range(r8):
            r0 = 8 * rb
            for q in range(w8):
                a0, a1, a2, a3, a4, a5, a6, a7 = _t8(
                    img[r0, q], img[r0 + 1, q], img[r0 + 2, q], img[r0 + 3, q],
                    img[r0 + 4, q], img[r0 + 5, q], img[r0 + 6, q], img[r0 + 7, q])
                x0 = 8 * q
                img_t64[x0, rb] = a0
                img_t64[x0 + 1, rb] = a1
                img_t64[x0 + 2, rb] = a2
                img_t64[x0 + 3, rb] = a3
                img_t64[x0 + 4, rb] = a4
                img_t64[x0 + 5, rb] = a5
                img_t64[x0 + 6, rb] = a6
                img_t64[x0 + 7, rb] = a7
        for o in range(sw):  # W pass, outputs of 2+ taps
            k = cw[o]
            if k == 1:
                continue
            b, wt, to = fw[o], ww[o], t1_t[o]
            s0, s1 = img_t[b], img_t[b + 1]
            if k == 2:
                for r in range(rows):
                    to[r] = np.uint8((_I32((_I32(s0[r]) + _I32(s1[r])) * wt) + _HALF) >> _S22)
                continue
            for r in range(rows):
                acc[r] = _I32(s0[r]) + _I32(s1[r])
            for kk in range(2, k):
                sk = img_t[b + kk]
                for r in range(rows):
                    acc[r] += sk[r]
            for r in range(rows):
                to[r] = np.uint8((_I32(acc[r] * wt) + _HALF) >> _S22)
        for q in range(w8):  # transpose back; the W up-sampling picks the source rows
            x0 = 8 * q
            o = rx[x0]
            p0 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            o = rx[x0 + 1]
            p1 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            o = rx[x0 + 2]
            p2 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            o = rx[x0 + 3]
            p3 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            o = rx[x0 + 4]
            p4 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            o = rx[x0 + 5]
            p5 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            o = rx[x0 + 6]
            p6 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            o = rx[x0 + 7]
            p7 = img_t64[fw[o]] if cw[o] == 1 else t1_t64[o]
            for j in range(c):
                col = j * w8 + q
                for yb in range(h8):
                    rb = j * h8 + yb
                    a0, a1, a2, a3, a4, a5, a6, a7 = _t8(p0[rb], p1[rb], p2[rb], p3[rb],
                                                         p4[rb], p5[rb], p6[rb], p7[rb])
                    y0 = 8 * yb
                    sup64[y0, col] = a0
                    sup64[y0 + 1, col] = a1
                    sup64[y0 + 2, col] = a2
                    sup64[y0 + 3, col] = a3
                    sup64[y0 + 4, col] = a4
                    sup64[y0 + 5, col] = a5
                    sup64[y0 + 6, col] = a6
                    sup64[y0 + 7, col] = a7
        dst = out64[i]
        y = 0
        for o in range(sh):
            k, b = ch[o], fh[o]
            if k == 1:
                row = sup64[b]
            else:  # H pass, 2+ taps
                wt, to = wh[o], small[o]
                s0, s1 = sup[b], sup[b + 1]
                if k == 2:
                    for x in range(cw_):
                        to[x] = np.uint8((_I32((_I32(s0[x]) + _I32(s1[x])) * wt) + _HALF) >> _S22)
                else:
                    for x in range(cw_):
                        acc[x] = _I32(s0[x]) + _I32(s1[x])
                    for kk in range(2, k):
                        sk = sup[b + kk]
                        for x in range(cw_):
                            acc[x] += sk[x]
                    for x in range(cw_):
                        to[x] = np.uint8((_I32(acc[x] * wt) + _HALF) >> _S22)
                row = small64[o]
            while y < h and ry[y] == o:  # the H up-sampling: copies of the row
                for j in range(c):
                    d = dst[j, y]
                    for q in range(w8):
                        d[q] = row[j * w8 + q]
                y += 1


def pixelate(c, ctx: Context):
    raw = ctx.raw
    n, ch, h, w = raw.shape
    sh, sw = int(h * c), int(w * c)
    if not (1 <= sh <= h and 1 <= sw <= w):
        return None
    src = raw.numpy()
    out = np.empty_like(src)
    tables = (*_down_taps(w, sw), _up_index(sw, w), *_down_taps(h, sh), _up_index(sh, h))
    if h % 8 == 0 and w % 8 == 0 and sys.byteorder == "little":  # _t8's byte order
        _pixelate8(src.view(np.uint64), out.view(np.uint64), *tables)
    else:
        _pixelate_any(src, out, *tables)
    return torch.from_numpy(out)


KERNELS = {"brightness": brightness, "saturate": saturate, "contrast": contrast,
           "pixelate": pixelate}
