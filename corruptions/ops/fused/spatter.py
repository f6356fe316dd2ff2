"""Fused spatter (uint8 in, uint8 out): per image, in scratch buffers allocated once per call.

The torch kernel (ops/weather.spatter, ops/_spatter) needs tens of whole-batch passes, and its
iterative parts (Canny hysteresis, the chamfer relaxation) many more. Here hysteresis is a flood
fill, and the chamfer distance comes from in-place forward/backward raster scans until no step
can lower any value: the fixed point the torch relaxation reaches too (the least, over all paths,
of the float32 sums of the steps in path order; float addition is monotone). The scans run for
LANES images side by side, so their sequential chains interleave. Every float step is the torch
step, in its order.

Hot loops index zero-based views (a[j] with j from range(n)): numba's negative-index handling of
a[j - k] would make LLVM vectorise them with gathers, ~10x slower.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .. import Context
from ._common import TRUNC_EPS32
from .._image import gaussian_taps
from .._nbrng import element_hashes, jit, keys_array, normal_table_arrays, normals_into

I32 = np.int32
F32 = np.float32
_ZERO = F32(0.0)
_ONE = F32(1.0)
_F255 = F32(255.0)
_INF = F32(1e9)  # _spatter._INF
_CAP = F32(20.0)
_STEP_A = F32(1.0)  # the chamfer steps as torch adds them to a float32 tensor
_STEP_B = F32(1.4)
_STEP_C = F32(2.1969)
_EPS6 = F32(1e-6)  # water_mask's floor nudge, added to float32
LANES = 8  # images per chamfer group, side by side (_chain is written for 8)


@functools.lru_cache(maxsize=16)
def _half_taps(sigma: float) -> np.ndarray:
    """gaussian_nearest's taps from the centre outwards (w_0, w_1, .., w_r)."""
    taps = np.asarray(gaussian_taps(float(sigma)), dtype=np.float64)
    return np.ascontiguousarray(taps[len(taps) // 2:])


@jit
def _taps_flat(src, dst, taps, stride, n):
    """dst[i] = src[c + i] * w_0, then += (src[c + i - t*stride] + src[c + i + t*stride]) * w_t
    for t = 1..r in that order, with c = r * stride: one pass of gaussian_nearest over a padded
    buffer. Four taps per sweep over dst (same additions, same order; less memory traffic)."""
    r = taps.shape[0] - 1
    c = r * stride
    mid = src[c:c + n]
    w0 = taps[0]
    for i in range(n):
        dst[i] = mid[i] * w0
    t = 1
    while t + 3 <= r:
        w1, w2, w3, w4 = taps[t], taps[t + 1], taps[t + 2], taps[t + 3]
        a1 = src[c - t * stride:c - t * stride + n]
        b1 = src[c + t * stride:c + t * stride + n]
        a2 = src[c - (t + 1) * stride:c - (t + 1) * stride + n]
        b2 = src[c + (t + 1) * stride:c + (t + 1) * stride + n]
        a3 = src[c - (t + 2) * stride:c - (t + 2) * stride + n]
        b3 = src[c + (t + 2) * stride:c + (t + 2) * stride + n]
        a4 = src[c - (t + 3) * stride:c - (t + 3) * stride + n]
        b4 = src[c + (t + 3) * stride:c + (t + 3) * stride + n]
        for i in range(n):
            v = dst[i] + (a1[i] + b1[i]) * w1
            v = v + (a2[i] + b2[i]) * w2
            v = v + (a3[i] + b3[i]) * w3
            dst[i] = v + (a4[i] + b4[i]) * w4
        t += 4
    while t <= r:
        wt = taps[t]
        a = src[c - t * stride:c - t * stride + n]
        b = src[c + t * stride:c + t * stride + n]
        for i in range(n):
            dst[i] = dst[i] + (a[i] + b[i]) * wt
        t += 1


@jit
def _gauss_nearest(img, taps, pw, acc, ph):
    """_spatter.gaussian_nearest on one HxW float64 image, in place. The W pass runs over whole
    edge-padded rows laid end to end (pw, h * (w + 2r)), the H pass over the image with r
    replicated rows above and below (ph, (h + 2r) * w): long loops, the torch per-pixel order."""
    h, w = img.shape
    r = taps.shape[0] - 1
    wp = w + 2 * r
    for y in range(h):
        row = img[y]
        dst = pw[y * wp:(y + 1) * wp]
        for j in range(r):
            dst[j] = row[0]
            dst[r + w + j] = row[w - 1]
        mid = dst[r:r + w]
        for x in range(w):
            mid[x] = row[x]
    # acc[j] is the W-pass value at padded position j + r; row y's outputs start at y * wp
    _taps_flat(pw, acc, taps, 1, h * wp - 2 * r)
    for y in range(h + 2 * r):
        sy = min(max(y - r, 0), h - 1)
        src = acc[sy * wp:sy * wp + w]
        dst = ph[y * w:(y + 1) * w]
        for x in range(w):
            dst[x] = src[x]
    _taps_flat(ph, img.reshape(-1), taps, w, h * w)


@jit
def _liquid(eh, key, table, steps, loc, scale, taps, threshold, z, liq, pw, acc, ph):
    """The thresholded, blurred liquid layer of one image (HxW float64) into liq."""
    normals_into(eh, key, table, steps, z)
    flat = liq.reshape(-1)
    for e in range(flat.shape[0]):
        flat[e] = loc + scale * np.float64(z[e])
    _gauss_nearest(liq, taps, pw, acc, ph)
    for e in range(flat.shape[0]):
        flat[e] = 0.0 if flat[e] < threshold else flat[e]


@jit
def _fill_l8(liq, l8p):
    """liquid8 = floor(liquid * 255) clamped to 0..255, with a replicated 1-pixel border."""
    h, w = liq.shape
    for y in range(h):
        src = liq[y]
        row = l8p[y + 1]
        mid = row[1:w + 1]
        for x in range(w):
            mid[x] = I32(min(max(np.floor(src[x] * 255.0), 0.0), 255.0))
        row[0] = row[1]
        row[w + 1] = row[w]
    for x in range(w + 2):
        l8p[0, x] = l8p[1, x]
        l8p[h + 1, x] = l8p[h, x]


@jit
def _at(a, start, n):
    """a[start:start + n]: a shifted view for the stencil loops."""
    return a[start:start + n]


@jit
def _zero_border_cols(a):
    w = a.shape[1] - 2
    for y in range(a.shape[0]):
        a[y, 0] = 0
        a[y, w + 1] = 0


@jit
def _canny(l8p, magp, code, cand, stack):
    """_spatter.canny(low=50, high=150) on l8p ((h+2, w+2) int32, replicated border).

    magp ((h+2, w+2), zero border) gets the L1 magnitude; cand ((h+2, w+2) uint8, zero border)
    ends 2 on edge pixels, 1 on candidates that no strong pixel reaches, 0 elsewhere. The 3x3
    stencils run as one loop over the padded rows laid end to end; the border columns that this
    also computes are reset afterwards."""
    h = l8p.shape[0] - 2
    w2 = l8p.shape[1]
    p0 = w2 + 1
    n = (h - 1) * w2 + w2 - 2  # positions p0 .. p0 + n - 1 = (1, 1) .. (h, w)
    src = l8p.reshape(-1)
    a0, a1, a2 = _at(src, p0 - w2 - 1, n), _at(src, p0 - w2, n), _at(src, p0 - w2 + 1, n)
    b0, b2 = _at(src, p0 - 1, n), _at(src, p0 + 1, n)
    c0, c1, c2 = _at(src, p0 + w2 - 1, n), _at(src, p0 + w2, n), _at(src, p0 + w2 + 1, n)
    mag = magp.reshape(-1)[p0:p0 + n]
    cod = code.reshape(-1)[p0:p0 + n]
    for i in range(n):
        # every value fits int32; I32(..) lets LLVM keep numba's int64 arithmetic in 32 bits
        dx = I32((a2[i] - a0[i]) + I32(2) * (b2[i] - b0[i]) + (c2[i] - c0[i]))
        dy = I32((c0[i] + I32(2) * c1[i] + c2[i]) - (a0[i] + I32(2) * a1[i] + a2[i]))
        ax = abs(dx)
        ay = abs(dy)
        mag[i] = I32(ax + ay)
        yy = I32(ay * I32(32768))
        tg22x = I32(ax * I32(13573))
        tg67x = I32(tg22x + ax * I32(65536))
        # 0 horizontal, 1 vertical, 2 diagonal with dx * dy >= 0, 3 with dx * dy < 0 (a
        # diagonal pixel with dx or dy == 0 has magnitude 0: never a candidate)
        c = I32(I32(2) + I32((dx ^ dy) < 0))
        c = I32(1) if yy > tg67x else c
        c = I32(0) if yy < tg22x else c
        cod[i] = c
    _zero_border_cols(magp)
    m = magp.reshape(-1)
    u0, u1, u2 = _at(m, p0 - w2 - 1, n), _at(m, p0 - w2, n), _at(m, p0 - w2 + 1, n)
    m0, m1, m2 = _at(m, p0 - 1, n), _at(m, p0, n), _at(m, p0 + 1, n)
    d0, d1, d2 = _at(m, p0 + w2 - 1, n), _at(m, p0 + w2, n), _at(m, p0 + w2 + 1, n)
    out = cand.reshape(-1)[p0:p0 + n]
    for i in range(n):
        v = m1[i]
        c = cod[i]
        keep = ((c == 0) & (v > m0[i]) & (v >= m2[i])) \
            | ((c == 1) & (v > u1[i]) & (v >= d1[i])) \
            | ((c == 2) & (v > u0[i]) & (v > d2[i])) \
            | ((c == 3) & (v > u2[i]) & (v > d0[i]))
        keep = keep & (v > 50)
        out[i] = np.uint8(keep) + np.uint8(keep & (v > 150))
    _zero_border_cols(cand)
    flat = cand.reshape(-1)
    top = 0
    for p in range(w2, (h + 1) * w2):
        if flat[p] == 2:
            stack[top] = p
            top += 1
    while top > 0:  # hysteresis: the 8-connected candidate regions holding a strong pixel
        top -= 1
        p = stack[top]
        for q in (p - w2 - 1, p - w2, p - w2 + 1, p - 1, p + 1, p + w2 - 1, p + w2, p + w2 + 1):
            if flat[q] == 1:
                flat[q] = 2
                stack[top] = q
                top += 1


@jit
def _seed_lane(cand, d, k):
    """Lane k of d ((h+4, (w+4) * LANES), pixel-major, 2-pixel INF border): 0 on the edge pixels
    (cand == 2), INF elsewhere."""
    h = d.shape[0] - 4
    w = d.shape[1] // LANES - 4
    for y in range(h):
        src = cand[y + 1, 1:w + 1]
        dst = d[y + 2, 2 * LANES + k:(w + 2) * LANES + k:LANES]
        for x in range(w):
            dst[x] = _ZERO if src[x] == 2 else _INF


@jit
def _chain(o, cb, start, s):
    """o[x] = min(cb[x], o[x - s] + 1) along a row of pixels (s = 1: left to right, -1: right to
    left), o[-s] = start, for the 8 lanes of each pixel: one scalar per lane, so the chains stay
    in registers (a loop over o[j - 8] goes through memory, ~2x slower)."""
    p0, p1, p2, p3, p4, p5, p6, p7 = start[0], start[1], start[2], start[3], start[4], start[5], \
        start[6], start[7]
    nx = o.shape[0] // 8
    for i in range(nx):
        x = i if s > 0 else nx - 1 - i
        c = cb[x * 8:x * 8 + 8]
        t = o[x * 8:x * 8 + 8]
        p0 = min(c[0], p0 + _STEP_A)
        p1 = min(c[1], p1 + _STEP_A)
        p2 = min(c[2], p2 + _STEP_A)
        p3 = min(c[3], p3 + _STEP_A)
        p4 = min(c[4], p4 + _STEP_A)
        p5 = min(c[5], p5 + _STEP_A)
        p6 = min(c[6], p6 + _STEP_A)
        p7 = min(c[7], p7 + _STEP_A)
        t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7] = p0, p1, p2, p3, p4, p5, p6, p7


@jit
def _relax_from_rows(o, a, b, c, e, f, g, q, cb, n):
    """cb[j] = min(o[j], neighbours in the two rows already scanned + their chamfer steps)."""
    for j in range(n):
        v = min(o[j], a[j] + _STEP_C)
        v = min(v, b[j] + _STEP_C)
        v = min(v, c[j] + _STEP_C)
        v = min(v, e[j] + _STEP_B)
        v = min(v, f[j] + _STEP_A)
        v = min(v, g[j] + _STEP_B)
        v = min(v, q[j] + _STEP_C)
        cb[j] = v


@jit
def _forward(d, cb):
    """One forward raster scan of the 5x5 chamfer relaxation, in place. Per row: the steps from
    the two rows above for all pixels (vectorised), then the chain along the row."""
    L = LANES
    lo = 2 * L
    hi = d.shape[1] - 2 * L
    n = hi - lo
    for y in range(2, d.shape[0] - 2):
        u2, u1, row = d[y - 2], d[y - 1], d[y]
        a, b = u2[lo - L:hi - L], u2[lo + L:hi + L]
        c, e, f = u1[lo - 2 * L:hi - 2 * L], u1[lo - L:hi - L], u1[lo:hi]
        g, q = u1[lo + L:hi + L], u1[lo + 2 * L:hi + 2 * L]
        o = row[lo:hi]
        _relax_from_rows(o, a, b, c, e, f, g, q, cb, n)
        _chain(o, cb, row[lo - L:lo], 1)


@jit
def _backward(d, cb):
    L = LANES
    lo = 2 * L
    hi = d.shape[1] - 2 * L
    n = hi - lo
    for y in range(d.shape[0] - 3, 1, -1):
        u2, u1, row = d[y + 2], d[y + 1], d[y]
        a, b = u2[lo + L:hi + L], u2[lo - L:hi - L]
        c, e, f = u1[lo + 2 * L:hi + 2 * L], u1[lo + L:hi + L], u1[lo:hi]
        g, q = u1[lo - L:hi - L], u1[lo - 2 * L:hi - 2 * L]
        o = row[lo:hi]
        _relax_from_rows(o, a, b, c, e, f, g, q, cb, n)
        _chain(o, cb, row[hi:hi + L], -1)


@jit
def _settled(d, s):
    """No step from the rows above (s = 1) or below (s = -1), or from the previous pixel of the
    row in that scan direction, can lower any value."""
    L = LANES
    lo = 2 * L
    hi = d.shape[1] - 2 * L
    n = hi - lo
    for y in range(2, d.shape[0] - 2):
        u2, u1, row = d[y - 2 * s], d[y - s], d[y]
        a, b = u2[lo - L:hi - L], u2[lo + L:hi + L]
        c, e, f = u1[lo - 2 * L:hi - 2 * L], u1[lo - L:hi - L], u1[lo:hi]
        g, q = u1[lo + L:hi + L], u1[lo + 2 * L:hi + 2 * L]
        p = row[lo - s * L:hi - s * L]
        o = row[lo:hi]
        bad = I32(0)
        for j in range(n):
            v = min(a[j] + _STEP_C, b[j] + _STEP_C)
            v = min(v, c[j] + _STEP_C)
            v = min(v, e[j] + _STEP_B)
            v = min(v, f[j] + _STEP_A)
            v = min(v, g[j] + _STEP_B)
            v = min(v, q[j] + _STEP_C)
            v = min(v, p[j] + _STEP_A)
            bad |= I32(v < o[j])
        if bad:
            return False
    return True


@jit
def _chamfer(d, cb):
    """_spatter.chamfer_distance for LANES seeded images. Every scan leaves its own half of the
    mask satisfied; stop once the other half is too: then no step can lower any value, the
    fixed point that the torch relaxation reaches."""
    _forward(d, cb)
    _backward(d, cb)
    while not _settled(d, 1):
        _forward(d, cb)
        if _settled(d, -1):
            break
        _backward(d, cb)


@jit
def _reflect_border(a):
    """Fill the 1-pixel border of a padded (h+2, w+2) array by BORDER_REFLECT_101."""
    h = a.shape[0] - 2
    w = a.shape[1] - 2
    for y in range(1, h + 1):
        a[y, 0] = a[y, 2]
        a[y, w + 1] = a[y, w - 1]
    for x in range(w + 2):
        a[0, x] = a[2, x]
        a[h + 1, x] = a[h - 1, x]


@jit
def _round_half_even(v):
    r = np.floor(v)
    diff = v - r
    if diff > F32(0.5) or (diff == F32(0.5) and r % F32(2.0) != _ZERO):
        r += _ONE
    return r


@jit
def _equalize_lut(hist, total, lut):
    """_spatter.equalize_hist's table for the counts hist[:lut.shape[0]] of `total` pixels."""
    i0 = 0
    while hist[i0] == 0:
        i0 += 1
    h0 = hist[i0]
    if h0 == total:
        lut[:] = i0
        return
    scale = (_ONE / F32(total - h0)) * _F255  # torch's 255.0 / t is t.reciprocal() * 255
    cum = 0
    cum0 = 0
    for b in range(lut.shape[0]):
        cum += hist[b]
        if b == i0:
            cum0 = cum
        if b <= i0:
            lut[b] = 0
        else:
            v = _round_half_even(F32(cum - cum0) * scale)
            lut[b] = I32(min(max(v, _ZERO), _F255))


@jit
def _water_from_distance(d, k, l8p, dc, rs, e1, e2, mi, hist, lut, intensity, mvals):
    """The rest of _spatter.water_mask from lane k's distances: float32 m (h*w) into mvals.
    Padded (h+2, w+2) buffers; the 3x3 stencils run over the padded rows laid end to end (the
    border columns they also fill get BORDER_REFLECT_101 values before anything reads them)."""
    h = l8p.shape[0] - 2
    w2 = l8p.shape[1]
    w = w2 - 2
    p0 = w2 + 1
    n = (h - 1) * w2 + w  # positions (1, 1) .. (h, w)
    # clamp at 20, 3x3 box sum (exact in float64), / 9, float32, + 1e-6, floor
    for y in range(h):
        src = d[y + 2, 2 * LANES + k:(w + 2) * LANES + k:LANES]
        dst = dc[y + 1, 1:w + 1]
        for x in range(w):
            dst[x] = min(src[x], _CAP)
    _reflect_border(dc)
    f = dc.reshape(-1)
    m = (h + 2) * w2 - 2
    s0, s1, s2 = f[0:m], f[1:m + 1], f[2:m + 2]
    rsf = rs.reshape(-1)  # rsf[p] = row sum centred at p + 1
    for i in range(m):
        rsf[i] = np.float64(s0[i]) + np.float64(s1[i]) + np.float64(s2[i])
    a, b, c = _at(rsf, p0 - w2 - 1, n), _at(rsf, p0 - 1, n), _at(rsf, p0 + w2 - 1, n)
    e1f = e1.reshape(-1)
    dst = e1f[p0:p0 + n]
    for i in range(n):
        dst[i] = I32(np.floor(F32((a[i] + b[i] + c[i]) / 9.0) + _EPS6))
    # equalizeHist (values 0..20); 8 interleaved counts: no chain of increments to one bin
    hist[:] = 0
    for y in range(h):
        src = e1[y + 1, 1:w + 1]
        for x in range(w):
            hist[(x & 7) * 21 + src[x]] += 1
    for b in range(21):
        hist[b] += (hist[21 + b] + hist[42 + b] + hist[63 + b] + hist[84 + b] + hist[105 + b]
                    + hist[126 + b] + hist[147 + b])
    _equalize_lut(hist, h * w, lut)
    for i in range(n):  # the border columns in between hold 0..20 too
        dst[i] = lut[dst[i]]
    _reflect_border(e1)
    # emboss [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], clamped to 0..255
    a0, a1 = _at(e1f, p0 - w2 - 1, n), _at(e1f, p0 - w2, n)
    b0, b1, b2 = _at(e1f, p0 - 1, n), _at(e1f, p0, n), _at(e1f, p0 + 1, n)
    c1, c2 = _at(e1f, p0 + w2, n), _at(e1f, p0 + w2 + 1, n)
    e2f = e2.reshape(-1)
    dst = e2f[p0:p0 + n]
    for i in range(n):
        v = I32(I32(-2) * a0[i] - a1[i] - b0[i] + b1[i] + b2[i] + c1[i] + I32(2) * c2[i])
        dst[i] = min(max(v, I32(0)), I32(255))
    _reflect_border(e2)
    # 3x3 mean rounded (k / 9 is never a tie: round = (2k + 9) // 18, and v // 18 ==
    # (v * 3641) >> 16 for 0 <= v <= 2 * 9 * 255 + 9: tested), times liquid8; max
    s0, s1, s2 = e2f[0:m], e2f[1:m + 1], e2f[2:m + 2]
    for i in range(m):  # e1f[p] = row sum centred at p + 1
        e1f[i] = I32(s0[i] + s1[i] + s2[i])
    top = I32(0)
    for y in range(h):
        a, b, c = e1[y, 0:w], e1[y + 1, 0:w], e1[y + 2, 0:w]
        l8 = l8p[y + 1, 1:w + 1]
        dst = mi[y * w:(y + 1) * w]
        for x in range(w):
            v = I32(l8[x] * I32((I32(2) * (a[x] + b[x] + c[x]) + I32(9)) * I32(3641) >> I32(16)))
            dst[x] = v
            top = max(top, v)
    if top > 0:
        t64 = np.float64(top)
        for e in range(h * w):
            mvals[e] = F32((np.float64(mi[e]) / t64) * intensity)
    else:
        mvals[:] = _ZERO


@jit
def _blend_water(src, dst, mvals, color, eps):
    for ch in range(src.shape[0]):
        col = color[ch]
        s = src[ch]
        o = dst[ch]
        for e in range(s.shape[0]):
            y = F32(s[e]) / _F255 + mvals[e] * col  # == _level_floats()[s[e]] (tested)
            y = min(max(y, _ZERO), _ONE)
            o[e] = np.uint8(I32(y * _F255 + eps))


@jit
def _blend_mud(src, dst, mvals, color, eps):
    for ch in range(src.shape[0]):
        col = color[ch]
        s = src[ch]
        o = dst[ch]
        for e in range(s.shape[0]):
            mk = mvals[e]
            y = F32(s[e]) / _F255 * (_ONE - mk) + col * mk
            y = min(max(y, _ZERO), _ONE)
            o[e] = np.uint8(I32(y * _F255 + eps))


@jit
def _spatter_images(raw, h, w, keys, eh, table, steps, loc, scale, taps, threshold, water,
                    intensity, mud_taps, color, eps, out):
    """raw, out: (N, C, h * w) uint8. Scratch is allocated once per call."""
    n = raw.shape[0]
    hw = h * w
    r = max(taps.shape[0], mud_taps.shape[0]) - 1
    z = np.empty(hw, np.float32)
    liq = np.empty((h, w), np.float64)
    pw = np.empty(h * (w + 2 * r), np.float64)
    acc = np.empty(h * (w + 2 * r), np.float64)
    ph = np.empty((h + 2 * r) * w, np.float64)
    mvals = np.empty(hw, np.float32)
    if not water:
        flat = liq.reshape(-1)
        for i in range(n):
            _liquid(eh, keys[i], table, steps, loc, scale, taps, threshold, z, liq, pw, acc,
                    ph)
            for e in range(hw):
                flat[e] = 1.0 if flat[e] > threshold else 0.0
            _gauss_nearest(liq, mud_taps, pw, acc, ph)
            for e in range(hw):
                v = flat[e]
                mvals[e] = _ZERO if v < 0.8 else F32(v)
            _blend_mud(raw[i], out[i], mvals, color, eps)
        return
    l8s = np.empty((LANES, h + 2, w + 2), np.int32)
    magp = np.zeros((h + 2, w + 2), np.int32)  # borders stay 0
    code = np.empty((h + 2, w + 2), np.int32)
    cand = np.zeros((h + 2, w + 2), np.uint8)  # borders stay 0
    stack = np.empty((h + 2) * (w + 2), np.int64)
    d = np.full((h + 4, (w + 4) * LANES), _INF, np.float32)  # borders stay INF
    cb = np.empty(w * LANES, np.float32)
    dc = np.empty((h + 2, w + 2), np.float32)
    rs = np.empty((h + 2, w + 2), np.float64)
    e1 = np.empty((h + 2, w + 2), np.int32)
    e2 = np.empty((h + 2, w + 2), np.int32)
    mi = np.empty(hw, np.int32)
    hist = np.empty(8 * 21, np.int32)
    lut = np.empty(21, np.int32)
    for g in range(0, n, LANES):
        for k in range(LANES):
            if g + k < n:
                _liquid(eh, keys[g + k], table, steps, loc, scale, taps, threshold, z, liq,
                        pw, acc, ph)
                _fill_l8(liq, l8s[k])
                _canny(l8s[k], magp, code, cand, stack)
                _seed_lane(cand, d, k)
            else:  # no image: all INF, settled from the start
                for y in range(2, h + 2):
                    d[y, 2 * LANES + k:(w + 2) * LANES + k:LANES] = _INF
        _chamfer(d, cb)
        for k in range(min(LANES, n - g)):
            _water_from_distance(d, k, l8s[k], dc, rs, e1, e2, mi, hist, lut, intensity, mvals)
            _blend_water(raw[g + k], out[g + k], mvals, color, eps)


def spatter(p: tuple, ctx: Context):
    loc, scale, sigma, threshold, intensity, mode = p
    raw = ctx.raw
    n, c, h, w = raw.shape
    water = mode == 0
    colour = ((175 / 255.0, 238 / 255.0, 238 / 255.0) if water
              else (63 / 255.0, 42 / 255.0, 20 / 255.0))
    color = torch.tensor(colour, dtype=torch.float32).numpy()  # as weather.spatter builds it
    table, steps = normal_table_arrays()
    taps = _half_taps(float(sigma))
    mud_taps = taps if water else _half_taps(float(intensity))
    out = np.empty((n, c, h * w), np.uint8)
    _spatter_images(raw.numpy().reshape(n, c, h * w), h, w, keys_array(ctx.rng.keys),
                    element_hashes(0, h * w), table, steps, float(loc), float(scale),
                    taps, float(threshold), bool(water), float(intensity), mud_taps, color,
                    TRUNC_EPS32, out)
    return torch.from_numpy(out.reshape(n, c, h, w))


KERNELS = {"spatter": spatter}
