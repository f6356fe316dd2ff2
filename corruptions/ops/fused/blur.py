"""Fused numba kernels for the blur family (uint8 input), equal bit for bit to the torch ops of
corruptions/ops/blur.py (tests/corruptions/test_fused_blur.py): motion, glass and gaussian blur repeat
their float32 operations in the same order; defocus sums exact integers (its fixed-point disk),
so it may take a cheaper order. Inner loops index with unsigned ints (no wraparound test) and
take taps as tuples (unrolled), which is what lets LLVM vectorise them."""
from __future__ import annotations

import functools

import numpy as np
import torch
from numba import literal_unroll

from .. import TRUNC_EPS, Context
from ._common import TRUNC_EPS32, level_floats
from .._image import border_index, gaussian_taps
from ..blur import DEFOCUS_FIXED_BITS, NARROW_GAUSSIAN_TAPS, disk_kernel_fixed, motion_taps
from .._nbrng import bits24, element_hashes, jit, keys_array, randint_from_bits24

F32 = np.float32
_ZERO, _ONE, _255 = F32(0.0), F32(1.0), F32(255.0)


@functools.lru_cache(maxsize=1)
def _levels_times_255() -> np.ndarray:
    """motion_blur's x * 255.0 per input level, in float32 as torch computes it."""
    return level_floats() * _255


@jit
def _store_row(acc, scale_back, out_row):
    """generate's uint8 tail for one row: [/ 255], clamp(0, 1), * 255, + eps, truncate."""
    for x in range(acc.shape[0]):
        v = acc[x] / _255 if scale_back else acc[x]
        v = min(max(v, _ZERO), _ONE) * _255 + TRUNC_EPS32
        out_row[x] = np.uint8(v)


# ---- motion blur -------------------------------------------------------------------------------
@jit
def _motion_nb(raw, lut, taps, dys, dxs, n_alive, out):
    n, c, h, w = raw.shape
    acc = np.empty(w, np.float32)
    for ni in range(n):
        na = n_alive[ni]
        # source columns x - dx run over [-left, w + right): pad each row by edge values
        left, right = 0, 0
        for i in range(na):
            left, right = max(left, dxs[ni, i]), max(right, -dxs[ni, i])
        img = np.empty((h, left + w + right), np.float32)
        for ci in range(c):
            for y in range(h):
                row = img[y]
                for x in range(w):
                    row[left + x] = lut[raw[ni, ci, y, x]]
                row[:left] = row[left]
                row[left + w:] = row[left + w - 1]
            for y in range(h):
                acc[:] = _ZERO
                for i in range(na):  # tap by tap, as torch adds the shifted images
                    k = taps[i]
                    src = img[min(max(y - dys[ni, i], 0), h - 1)]
                    off = np.uint64(left - dxs[ni, i])  # unsigned: no wraparound test, so SIMD
                    for x in range(np.uint64(w)):
                        acc[x] += src[off + x] * k
                _store_row(acc, True, out[ni, ci, y])


def _motion_shifts(radius: int, sigma: float, angle_deg: torch.Tensor, h: int, w: int):
    """motion_taps in the kernel's layout: float32 taps, (N, width) shifts, live taps per image."""
    k, dys, dxs, alive = motion_taps(radius, sigma, angle_deg, h, w)
    return (k.astype(np.float32), np.ascontiguousarray(dys.T.numpy()),
            np.ascontiguousarray(dxs.T.numpy()), alive.sum(0).numpy())


def motion_blur(p, ctx: Context):
    raw = ctx.raw
    n, c, h, w = raw.shape
    angle = ctx.rng.uniform_range(0, (), -45.0, 45.0, dtype=torch.float64)
    taps, dys, dxs, n_alive = _motion_shifts(int(p[0]), float(p[1]), angle, h, w)
    out = np.empty((n, c, h, w), np.uint8)
    _motion_nb(raw.numpy(), _levels_times_255(), taps, dys, dxs, n_alive, out)
    return torch.from_numpy(out)


# ---- glass blur --------------------------------------------------------------------------------
@jit
def _gauss_pass(dst, dst_off, src, stride, n, taps):
    """dst[dst_off + j] = src[j + r*stride] * taps[0] + sum_t (src[j + (r-t)*stride] +
    src[j + (r+t)*stride]) * taps[t], left to right. taps is a tuple: its length is a
    compile-time constant, so the tap loop unrolls and the j loop vectorises."""
    r = len(taps) - 1
    U = np.uint64
    for j in range(U(n)):
        acc = src[j + U(r * stride)] * taps[0]
        for t in range(1, len(taps)):
            acc += (src[j + U((r - t) * stride)] + src[j + U((r + t) * stride)]) * taps[t]
        dst[U(dst_off) + j] = acc


@jit
def _gauss_nearest(src, dst, taps, pbuf, qbuf):
    """blur.gaussian_nearest_fixed on one (h, w) float32 plane: W pass, then H pass. Both run
    as flat loops over edge-padded planes of row stride w + 2r (pad columns are discarded)."""
    h, w = src.shape
    r = len(taps) - 1
    wp = w + 2 * r
    for y in range(h):  # pbuf rows 0..h-1: src rows with r edge columns each side
        b = y * wp
        for x in range(w):
            pbuf[b + r + x] = src[y, x]
        for x in range(r):
            pbuf[b + x] = src[y, 0]
            pbuf[b + r + w + x] = src[y, w - 1]
    _gauss_pass(qbuf, r * wp, pbuf, 1, h * wp - 2 * r, taps)  # W pass into qbuf rows r..r+h-1
    for t in range(r):  # edge rows for the H pass
        for x in range(wp):
            qbuf[t * wp + x] = qbuf[r * wp + x]
            qbuf[(r + h + t) * wp + x] = qbuf[(r + h - 1) * wp + x]
    _gauss_pass(pbuf, 0, qbuf, wp, h * wp, taps)
    for y in range(h):
        for x in range(w):
            dst[y, x] = pbuf[y * wp + x]


@jit
def _glass_nb(raw, lut, taps, delta, iterations, hashes, keys, out):
    n, c, h, w = raw.shape
    r = len(taps) - 1
    img = np.empty((c, h * w), np.float32)
    tmp = np.empty((h, w), np.float32)
    pbuf = np.zeros((h + 2 * r) * (w + 2 * r), np.float32)  # zeros: pad columns stay finite
    qbuf = np.zeros((h + 2 * r) * (w + 2 * r), np.float32)
    nh, nw = max(h - 2 * delta, 0), max(w - 2 * delta, 0)
    shift = np.empty(iterations * nh * nw, np.int64)
    for ni in range(n):
        for ci in range(c):
            for y in range(h):
                for x in range(w):
                    tmp[y, x] = lut[raw[ni, ci, y, x]]
            plane = img[ci].reshape(h, w)
            _gauss_nearest(tmp, plane, taps, pbuf, qbuf)
            for j in range(h * w):
                img[ci, j] = np.floor(img[ci, j] * _255) / _255  # np.uint8(blurred * 255) / 255
        # the reference's raster loop; its tuple 'swap' copies x[h+dy, w+dx] into x[h, w]
        key = keys[ni]
        for s in range(shift.shape[0]):  # random offsets apart from the sequential loop
            dx = randint_from_bits24(bits24(hashes[2 * s], key), -delta, delta)
            dy = randint_from_bits24(bits24(hashes[2 * s + 1], key), -delta, delta)
            shift[s] = dy * w + dx
        s = 0
        for _ in range(iterations):
            for hh in range(h - delta, h - delta - nh, -1):
                for ww in range(w - delta, w - delta - nw, -1):
                    dst = np.uint64(hh * w + ww)
                    src = np.uint64(hh * w + ww + shift[s])
                    s += 1
                    for ci in range(c):
                        img[ci, dst] = img[ci, src]
        for ci in range(c):
            _gauss_nearest(img[ci].reshape(h, w), tmp, taps, pbuf, qbuf)
            for y in range(h):
                _store_row(tmp[y], False, out[ni, ci, y])


@jit
def _gaussian_nb(raw, lut, taps, out):
    n, c, h, w = raw.shape
    r = len(taps) - 1
    plane = np.empty((h, w), np.float32)
    blurred = np.empty((h, w), np.float32)
    pbuf = np.zeros((h + 2 * r) * (w + 2 * r), np.float32)
    qbuf = np.zeros((h + 2 * r) * (w + 2 * r), np.float32)
    for ni in range(n):
        for ci in range(c):
            for y in range(h):
                for x in range(w):
                    plane[y, x] = lut[raw[ni, ci, y, x]]
            _gauss_nearest(plane, blurred, taps, pbuf, qbuf)
            for y in range(h):
                _store_row(blurred[y], False, out[ni, ci, y])


def _half_taps(sigma: float) -> tuple:
    """gaussian_nearest's float32 taps from the centre outwards (torch multiplies float32 planes
    by them in float32), as a tuple: one compiled loop nest per kernel width."""
    full = gaussian_taps(float(sigma))
    return tuple(np.float32(t) for t in full[len(full) // 2:])


def gaussian_blur(sigma, ctx: Context):
    if len(gaussian_taps(float(sigma))) > NARROW_GAUSSIAN_TAPS:
        return None  # wide kernels: the torch GEMM (blur.gaussian_blur) is cheaper at these sizes
    out = np.empty(tuple(ctx.raw.shape), np.uint8)
    _gaussian_nb(ctx.raw.numpy(), level_floats(), _half_taps(sigma), out)
    return torch.from_numpy(out)


def glass_blur(p, ctx: Context):
    raw = ctx.raw
    n, c, h, w = raw.shape
    sigma, delta, iterations = float(p[0]), int(p[1]), int(p[2])
    taps = _half_taps(sigma)
    steps = max(h - 2 * delta, 0) * max(w - 2 * delta, 0)
    numel = iterations * steps * 2
    hashes = element_hashes(0, numel) if numel else np.zeros(1, np.int32)
    out = np.empty((n, c, h, w), np.uint8)
    _glass_nb(raw.numpy(), level_floats(), taps, delta, iterations, hashes, keys_array(ctx.rng.keys), out)
    return torch.from_numpy(out)


# ---- defocus blur ------------------------------------------------------------------------------
# Exact integer sums (blur.disk_kernel_fixed): any order gives torch's result, so the plateau of
# the disk (its flat centre: one value on a disk of rows +-A_b per column b) is summed from
# column prefix sums (2 loads a column), and only the ring taps are multiplied one by one, with
# rows +a and -a (equal taps) added first.
@jit
def _ring_taps(v, j, c0, b0, taps):
    """c0 * v[j] + sum_t taps[t] * (v[j - b] + v[j + b]), b = b0 + t (unrolled: taps is a tuple)."""
    U = np.uint64
    acc = c0 * v[j]
    for t in range(len(taps)):
        acc += taps[t] * (v[j - U(b0 + t)] + v[j + U(b0 + t)])
    return acc


@jit
def _disk_ring_rows(z, v1, v2, v3, h, w, wp, r, rows):
    """z[y, x] += the ring taps of three kernel rows (v1..v3: their pairs of image rows added,
    row stride wp), one pass for three rows. The x loop vectorises (int32)."""
    U = np.uint64
    ra, rb, rc = rows
    for y in range(h):
        vb, zb = U(y * wp + r), U(y * w)
        for x in range(U(w)):
            j = vb + x
            acc = _ring_taps(v1, j, ra[1], ra[2], ra[3])
            acc += _ring_taps(v2, j, rb[1], rb[2], rb[3])
            acc += _ring_taps(v3, j, rc[1], rc[2], rc[3])
            z[zb + x] += acc


@jit
def _pair_rows(v, up, r, a, wp, plane):
    """v = image rows y - a and y + a added (a = 0: row y once), for all output rows y."""
    U = np.uint64
    lo, hi = U((r - a) * wp), U((r + a) * wp)
    if a == 0:
        for j in range(U(plane)):
            v[j] = up[lo + j]
    elif a > 0:
        for j in range(U(plane)):
            v[j] = up[lo + j] + up[hi + j]


@jit
def _disk_plateau(z, cp, h, w, wp, r, value, spans):
    """z[y, x] += value * (sum of up over rows y-A..y+A of columns x +- b, A = spans[b]), from
    the column prefix sums cp (cp row i = sum of up rows < i)."""
    U = np.uint64
    for y in range(h):
        zb = U(y * w)
        for x in range(U(w)):
            acc = np.int32(0)
            for b in range(len(spans)):
                hi = U((y + r + spans[b] + 1) * wp + r) + x
                lo = U((y + r - spans[b]) * wp + r) + x
                acc += cp[hi + U(b)] - cp[lo + U(b)]
                if b > 0:
                    acc += cp[hi - U(b)] - cp[lo - U(b)]
            z[zb + x] += value * acc


@jit
def _defocus_nb(raw, rows, cols, r, ring_rows, value, spans, scale, out):
    n, c, h, w = raw.shape
    U = np.uint64
    wp = w + 2 * r
    plane = h * wp
    # int16 planes (pixels, pairs <= 510): half the bytes per load, measured 20 % faster
    up = np.empty((h + 2 * r) * wp, np.int16)  # reflect101-padded channel
    cp = np.zeros((h + 2 * r + 1) * wp, np.int32)
    v1, v2, v3 = np.zeros(plane, np.int16), np.zeros(plane, np.int16), np.zeros(plane, np.int16)
    z = np.empty(h * w, np.int32)
    for ni in range(n):
        for ci in range(c):
            for y in range(h):  # image rows, padded along W; then the pad rows copied
                src = raw[ni, ci, y]
                b = U((r + y) * wp)
                for x in range(U(w)):
                    up[b + U(r) + x] = src[x]
                for x in range(r):
                    up[b + U(x)] = src[cols[x]]
                    up[b + U(r + w + x)] = src[cols[r + w + x]]
            for yy in range(h + 2 * r):
                if yy < r or yy >= r + h:
                    b, sb = U(yy * wp), U((r + rows[yy]) * wp)
                    for x in range(U(wp)):
                        up[b + x] = up[sb + x]
            z[:] = 0
            if value != 0:
                for yy in range(h + 2 * r):
                    b = U(yy * wp)
                    for x in range(U(wp)):
                        cp[b + U(wp) + x] = cp[b + x] + up[b + x]
                _disk_plateau(z, cp, h, w, wp, r, value, spans)
            for rows3 in literal_unroll(ring_rows):  # three (a, c0, b0, taps) rows a pass
                if rows3[0][0] < 0:  # padding only (no ring at all)
                    continue
                _pair_rows(v1, up, r, rows3[0][0], wp, plane)
                _pair_rows(v2, up, r, rows3[1][0], wp, plane)
                _pair_rows(v3, up, r, rows3[2][0], wp, plane)
                _disk_ring_rows(z, v1, v2, v3, h, w, wp, r, rows3)
            for y in range(h):  # generate's float64 tail on Z * 2**-bits / 255
                dst = out[ni, ci, y]
                b = U(y * w)
                for x in range(U(w)):
                    val = np.float64(z[b + x]) * scale
                    val = min(max(val, 0.0), 1.0) * 255.0 + TRUNC_EPS
                    dst[x] = np.uint8(val)


@functools.lru_cache(maxsize=32)
def _disk_plan(radius: float, alias_blur: float):
    """(r, ring_rows, plateau value, spans) for _defocus_nb, or None (torch fallback) where the
    fixed-point disk is not symmetric, its sums could leave int32, or its plateau is not a disk."""
    k = disk_kernel_fixed(radius, alias_blur).astype(np.int64)
    nz = np.flatnonzero(k.any(1))
    c0 = k.shape[0] // 2
    if len(nz) == 0 or k.min() < 0 or k.sum() * 255 >= 2 ** 31:
        return None
    r = int(max(c0 - nz[0], nz[-1] - c0))
    k = k[c0 - r:c0 + r + 1, c0 - r:c0 + r + 1]
    if r == 0 or not (np.array_equal(k, k[::-1]) and np.array_equal(k, k[:, ::-1])):
        return None
    value = int(k[r, r])
    half = []  # plateau half-width of row a: taps b = 0..T_a equal the centre value
    for a in range(r + 1):
        row = k[r + a, r:]
        t = 0
        while t < len(row) and row[t] == value:
            t += 1
        half.append(t - 1)
    if (k == value).sum() < 16:  # small plateaus cost more in prefix sums than as ring taps
        half = [-1] * (r + 1)
    if any(half[a] < half[a + 1] for a in range(r)):
        return None
    # half[] does not grow with a, so column b of the plateau is the rows |a| <= spans[b]
    spans = tuple(np.int64(max(a for a in range(r + 1) if half[a] >= b)) for b in range(half[0] + 1))
    ring_rows = []
    for a in range(r + 1):
        row = k[r + a, r:]
        centre = int(row[0]) if half[a] < 0 else 0
        b0 = max(half[a] + 1, 1)
        ring = row[b0:]
        if ring.any():
            ring = ring[:int(np.flatnonzero(ring)[-1]) + 1]
        elif centre == 0:
            continue
        else:
            ring = np.zeros(1, np.int64)  # centre only
        ring_rows.append((np.int64(a), np.int32(centre), np.int64(b0),
                          tuple(np.int32(t) for t in ring)))
    if not spans:  # numba needs non-empty tuples: a zero-weight plateau adds exact zeros
        value, spans = 0, (np.int64(0),)
    while not ring_rows or len(ring_rows) % 3:  # a = -1: no row, zero taps (adds exact zeros)
        ring_rows.append((np.int64(-1), np.int32(0), np.int64(1), (np.int32(0),)))
    triples = tuple(tuple(ring_rows[i:i + 3]) for i in range(0, len(ring_rows), 3))
    return r, triples, np.int32(value), spans


def defocus_blur(p, ctx: Context):
    plan = _disk_plan(float(p[0]), float(p[1]))
    if plan is None:
        return None
    r, ring_rows, value, spans = plan
    raw = ctx.raw
    n, c, h, w = raw.shape
    rows = border_index(h, r, r, "reflect101").astype(np.int64)
    cols = border_index(w, r, r, "reflect101").astype(np.int64)
    out = np.empty((n, c, h, w), np.uint8)
    _defocus_nb(raw.numpy(), rows, cols, r, ring_rows, value, spans,
                2.0 ** -DEFOCUS_FIXED_BITS / 255.0, out)
    return torch.from_numpy(out)


KERNELS = {"motion_blur": motion_blur, "glass_blur": glass_blur, "defocus_blur": defocus_blur,
           "gaussian_blur": gaussian_blur}
