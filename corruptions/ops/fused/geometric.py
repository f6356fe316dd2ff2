"""Fused elastic_transform (uint8 in, uint8 out): affine warp, smoothed displacement, one pass
per image instead of ~40 torch passes over the batch.

Reproduces ops/digital.elastic_transform plus generate's uint8 tail exactly: the same closed-form
float64 affine (_affine_from_points), float32 bilinear taps in the same order, and the field
smoothing on the same 2**-k-rounded matrices, whose products and sums are exact (see
digital._FIELD_BITS_W), so the banded loops here may sum in any order.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .. import Context
from ._common import TRUNC_EPS32, level_floats
from .._image import border_index
from .._nbrng import bits24, element_hashes, inline_jit, jit, keys_array, uniform64_range
from ..digital import _FIELD_BITS_H, _FIELD_BITS_MID, _FIELD_BITS_W, _field_filter_matrix

I32 = np.int32
U32 = np.uint32
F32 = np.float32
_U1 = U32(1)
_ZERO = F32(0.0)
_ONE = F32(1.0)
_F255 = F32(255.0)
_MID_SCALE = 2.0 ** _FIELD_BITS_MID
_MID_INV = 2.0 ** -_FIELD_BITS_MID


@functools.lru_cache(maxsize=64)
def _banded(n: int, sigma: float, bits: int):
    """The rounded filter matrix M (n x n) and, per row, the [lo, hi) span of its nonzeros."""
    m = np.ascontiguousarray(_field_filter_matrix(n, sigma, bits))
    nz = m != 0
    lo = np.where(nz.any(1), nz.argmax(1), 0).astype(np.int64)
    hi = np.where(nz.any(1), n - nz[:, ::-1].argmax(1), 0).astype(np.int64)
    return m, lo, hi


@functools.lru_cache(maxsize=64)
def _border_table(n: int, margin: int, mode: str, scale: int) -> np.ndarray:
    """scale * (source index) of positions -margin .. n + margin + 1 (digital's border_index)."""
    return (border_index(n, margin, margin + 2, mode) * scale).astype(np.int32)


@inline_jit
def _reflect(i, n):
    """scipy 'reflect' (d c b a | a b c d) source index of any integer position."""
    if 0 <= i < n:
        return i
    period = 2 * n
    i = i % period
    return period - 1 - i if i >= n else i


@inline_jit
def _reflect101(i, n):
    """OpenCV BORDER_REFLECT_101 (d c b | a b c d) source index of any integer position."""
    if 0 <= i < n:
        return i
    if n == 1:
        return 0
    period = 2 * n - 2
    i = i % period
    return period - i if i >= n else i


@jit
def _sample(src, rows, cols, h, w, rtab, ctab, margin, mode, dst):
    """digital._bilinear_reflect: dst[k, p] = src[k] sampled at float32 (rows[p], cols[p]).

    src, dst: (3, h*w). Border indices come from the tables (rtab pre-scaled by w) when every
    coordinate lies within `margin` of the image, otherwise from the modulo formulas."""
    hw = rows.shape[0]
    if _sample_tables(src, rows, cols, rtab, ctab, margin, dst):
        return
    s0, s1, s2 = src[0], src[1], src[2]
    d0, d1, d2 = dst[0], dst[1], dst[2]
    for p in range(hw):
        ry = rows[p]
        cx = cols[p]
        r0 = np.floor(ry)
        c0 = np.floor(cx)
        fr = ry - r0
        fc = cx - c0
        ri = np.int64(r0)
        ci = np.int64(c0)
        if mode == 0:
            ra, rb = _reflect101(ri, h) * w, _reflect101(ri + 1, h) * w
            ca, cb = _reflect101(ci, w), _reflect101(ci + 1, w)
        else:
            ra, rb = _reflect(ri, h) * w, _reflect(ri + 1, h) * w
            ca, cb = _reflect(ci, w), _reflect(ci + 1, w)
        _taps(s0, s1, s2, d0, d1, d2, p, U32(ra + ca), U32(ra + cb), U32(rb + ca), U32(rb + cb),
              fr, fc)


@inline_jit
def _blend(s, o00, o01, o10, o11, fr, fc, gr, gc):
    """One channel's 4-tap float32 blend of _bilinear_reflect, in its order."""
    top = s[o00] * gc
    top = top + s[o01] * fc
    bottom = s[o10] * gc
    bottom = bottom + s[o11] * fc
    v = top * gr
    return v + bottom * fr


@inline_jit
def _taps(s0, s1, s2, d0, d1, d2, p, o00, o01, o10, o11, fr, fc):
    """The blend for the 3 channels. Unsigned offsets: numba adds no negative-index wrap-around
    to them."""
    gr = _ONE - fr
    gc = _ONE - fc
    d0[p] = _blend(s0, o00, o01, o10, o11, fr, fc, gr, gc)
    d1[p] = _blend(s1, o00, o01, o10, o11, fr, fc, gr, gc)
    d2[p] = _blend(s2, o00, o01, o10, o11, fr, fc, gr, gc)


@jit
def _sample_tables(src, rows, cols, rtab, ctab, margin, dst):
    """_sample through the border tables, without a branch; False (dst incomplete) if some
    coordinate lies beyond them (its indices are clamped into the tables, then redone)."""
    s0, s1, s2 = src[0], src[1], src[2]
    d0, d1, d2 = dst[0], dst[1], dst[2]
    lim_r = I32(rtab.shape[0] - 2)
    lim_c = I32(ctab.shape[0] - 2)
    bad = False
    for p in range(rows.shape[0]):
        ry = rows[p]
        cx = cols[p]
        r0 = np.floor(ry)
        c0 = np.floor(cx)
        fr = ry - r0
        fc = cx - c0
        ri = np.int32(r0) + margin
        ci = np.int32(c0) + margin
        rc = min(max(ri, I32(0)), lim_r)
        cc = min(max(ci, I32(0)), lim_c)
        bad |= (rc != ri) | (cc != ci)
        ra = rtab[U32(rc)]
        rb = rtab[U32(rc) + _U1]
        ca = ctab[U32(cc)]
        cb = ctab[U32(cc) + _U1]
        _taps(s0, s1, s2, d0, d1, d2, p, U32(ra + ca), U32(ra + cb), U32(rb + ca), U32(rb + cb),
              fr, fc)
    return not bad


@jit
def _band_matmul(m, lo, hi, src, dst):
    """dst[i, :] = sum over x in [lo[i], hi[i]) of m[i, x] * src[x, :], 4 taps per pass over the
    row. Only for exact data (see _smooth), where the grouping cannot change a bit."""
    n = dst.shape[1]
    for i in range(dst.shape[0]):
        d = dst[i]
        for k in range(n):
            d[k] = 0.0
        x = lo[i]
        end = hi[i]
        while x + 4 <= end:
            w0, w1, w2, w3 = m[i, x], m[i, x + 1], m[i, x + 2], m[i, x + 3]
            r0, r1, r2, r3 = src[x], src[x + 1], src[x + 2], src[x + 3]
            for k in range(n):
                d[k] += (w0 * r0[k] + w1 * r1[k]) + (w2 * r2[k] + w3 * r3[k])
            x += 4
        if x + 2 <= end:
            w0, w1 = m[i, x], m[i, x + 1]
            r0, r1 = src[x], src[x + 1]
            for k in range(n):
                d[k] += w0 * r0[k] + w1 * r1[k]
            x += 2
        if x < end:
            w0 = m[i, x]
            r0 = src[x]
            for k in range(n):
                d[k] += w0 * r0[k]


@jit
def _smooth(ft, mw, lo_w, hi_w, mh, lo_h, hi_h, t, t2, out):
    """out[y, f*w + x] = (mh @ round26(field_f @ mw.T))[y, x] from ft[x, f*h + y] = field_f[y, x].

    Every product and partial sum is exact (digital._FIELD_BITS_W), so these row updates, which
    vectorise, give the torch GEMMs' result whatever their order."""
    w, h2 = ft.shape
    h = h2 // 2
    _band_matmul(mw, lo_w, hi_w, ft, t)
    for i in range(w):
        for f in range(2):
            for y in range(h):
                t2[y, f * w + i] = np.floor(t[i, f * h + y] * _MID_SCALE + 0.5) * _MID_INV
    _band_matmul(mh, lo_h, hi_h, t2, out)


@jit
def _elastic_images(raw, keys, eh_shift, eh_fields, xs, pts1, affine, alpha, smooth, mw, lo_w,
                    hi_w, mh, lo_h, hi_h, rtab1, ctab1, margin1, rtab2, ctab2, margin2, eps, out):
    n, _, h, w = raw.shape
    hw = h * w
    img = np.empty((3, hw), np.float32)
    warped = np.empty((3, hw), np.float32)
    final = np.empty((3, hw), np.float32)
    rows = np.empty(hw, np.float32)
    cols = np.empty(hw, np.float32)
    ft = np.empty((w, 2 * h), np.float64)
    frow = np.empty(w, np.float64)
    t = np.empty((w, 2 * h), np.float64)
    t2 = np.empty((h, 2 * w), np.float64)
    sm = np.empty((h, 2 * w), np.float64)
    pts2 = np.empty((3, 2), np.float64)
    coef = np.empty((2, 3), np.float64)
    for i in range(n):
        key = keys[i]
        src = raw[i].reshape(3, hw)
        for k in range(3):
            for p in range(hw):
                img[k, p] = xs[src[k, p]]
        # shift = uniform_range(0, (3, 2), -affine, affine, float64).float(); pts2 = pts1 + shift
        for e in range(6):
            b = bits24(eh_shift[e], key)
            s = np.float64(F32(uniform64_range(b, -affine, affine)))
            pts2[e // 2, e % 2] = pts1[e // 2, e % 2] + s
        # digital._affine_from_points(pts2, pts1): dst -> src
        x0 = pts2[0, 0]
        y0 = pts2[0, 1]
        dx1 = pts2[1, 0] - x0
        dy1 = pts2[1, 1] - y0
        dx2 = pts2[2, 0] - x0
        dy2 = pts2[2, 1] - y0
        det = dx1 * dy2 - dx2 * dy1
        for k in range(2):
            u0 = pts1[0, k]
            du1 = pts1[1, k] - u0
            du2 = pts1[2, k] - u0
            a = (du1 * dy2 - du2 * dy1) / det
            bb = (dx1 * du2 - dx2 * du1) / det
            c = u0 - a * x0
            coef[k, 0] = a
            coef[k, 1] = bb
            coef[k, 2] = c - bb * y0
        a0, b0, c0 = coef[0, 0], coef[0, 1], coef[0, 2]
        a1, b1, c1 = coef[1, 0], coef[1, 1], coef[1, 2]
        for y in range(h):
            fy = np.float64(y)
            for x in range(w):
                fx = np.float64(x)
                sx = a0 * fx + b0 * fy
                sy = a1 * fx + b1 * fy
                cols[y * w + x] = F32(sx + c0)
                rows[y * w + x] = F32(sy + c1)
        _sample(img, rows, cols, h, w, rtab1, ctab1, margin1, 0, warped)
        res = warped
        if alpha != 0.0:
            # fields = uniform_range(1, (2, h, w), -1, 1, float64), stored transposed: ft[x, f*h + y]
            for f in range(2):
                for y in range(h):
                    ehr = eh_fields[(f * h + y) * w:(f * h + y + 1) * w]
                    for x in range(w):  # a contiguous row first: this loop vectorises
                        b = bits24(ehr[x], key)
                        frow[x] = uniform64_range(b, -1.0, 1.0)
                    for x in range(w):
                        ft[x, f * h + y] = frow[x]
            if smooth:
                _smooth(ft, mw, lo_w, hi_w, mh, lo_h, hi_h, t, t2, sm)
            else:
                for x in range(w):
                    for f in range(2):
                        for y in range(h):
                            sm[y, f * w + x] = ft[x, f * h + y]
            for y in range(h):
                fy = F32(y)
                for x in range(w):
                    cols[y * w + x] = F32(x) + F32(sm[y, x] * alpha)
                    rows[y * w + x] = fy + F32(sm[y, w + x] * alpha)
            _sample(warped, rows, cols, h, w, rtab2, ctab2, margin2, 1, final)
            res = final
        dst = out[i].reshape(3, hw)
        for k in range(3):
            for p in range(hw):
                v = min(max(res[k, p], _ZERO), _ONE)
                v = v * _F255
                v = v + eps
                dst[k, p] = np.uint8(np.int32(v))


def _margins(h: int, w: int, alpha: float) -> tuple[np.int32, np.int32]:
    """Border-table margins of the two warps: the affine one stays within 16 image sizes for all
    but ~5 % of the images (ImageNet severity 1 at 32 px; its draws reach near-singular maps),
    the displacement is at most |alpha| * (1 + 2**-20) pixels (weights sum to 1); _sample falls
    back to modulo arithmetic for an image whose coordinates go beyond."""
    return I32(16 * max(h, w) + 8), I32(np.ceil(abs(alpha)) + 8)


def elastic_transform(p, ctx: Context):
    alpha, sigma, affine = (float(v) for v in p)
    raw = ctx.raw
    n, c, h, w = raw.shape
    if c != 3:
        return None
    centre = np.array([h // 2, w // 2], np.float64)
    sq = min(h, w) // 3
    pts1 = np.stack([centre + sq, np.array([centre[0] + sq, centre[1] - sq]), centre - sq])
    smooth = alpha != 0 and sigma > 0
    if smooth:
        mw, lo_w, hi_w = _banded(w, sigma, _FIELD_BITS_W)
        mh, lo_h, hi_h = _banded(h, sigma, _FIELD_BITS_H)
    else:
        mw = mh = np.zeros((1, 1))
        lo_w = hi_w = lo_h = hi_h = np.zeros(1, np.int64)
    margin1, margin2 = _margins(h, w, alpha)
    eh_fields = element_hashes(1, 2 * h * w) if alpha != 0 else np.zeros(1, np.int32)
    out = torch.empty_like(raw)
    _elastic_images(raw.numpy(), keys_array(ctx.rng.keys), element_hashes(0, 6), eh_fields,
                    level_floats(), pts1, affine, alpha, smooth, mw, lo_w, hi_w, mh, lo_h, hi_h,
                    _border_table(h, margin1, "reflect101", w), _border_table(w, margin1, "reflect101", 1),
                    margin1, _border_table(h, margin2, "reflect", w), _border_table(w, margin2, "reflect", 1),
                    margin2, TRUNC_EPS32, out.numpy())
    return out


KERNELS = {"elastic_transform": elastic_transform}
