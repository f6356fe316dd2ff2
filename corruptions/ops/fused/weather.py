"""Fused snow (uint8 in, uint8 out): snow layer, zoom, motion blur and blend in one pass per image
instead of ~60 torch passes over the batch.

Reproduces ops/weather.snow plus generate's uint8 tail exactly: the same normals (_nbrng), the
2-tap zoom of weather.zoom_taps, motion_blur_layer's taps summed in its order, and float32
operations in the torch order. The motion blur's per-image shifts come from the torch code itself
(sin/cos/hypot there are not libm's).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import Context
from ._common import TRUNC_EPS32, level_floats
from .._nbrng import element_hashes, jit, keys_array, normal_table_arrays, normals_into
from ..blur import motion_taps
from ..weather import zoom_taps

I32 = np.int32
U32 = np.uint32
F32 = np.float32
_ZERO = F32(0.0)
_ONE = F32(1.0)
_F255 = F32(255.0)
_GRAY = (F32(0.299), F32(0.587), F32(0.114))  # _image.rgb_to_gray's float32 weights
_R, _G, _B = _GRAY
_F1_5 = F32(1.5)
_F0_5 = F32(0.5)


def motion_shifts(angle_deg: torch.Tensor, radius: int, sigma: float, h: int, w: int):
    """blur.motion_blur_layer's per-image tap shifts, by its torch code: (dys, dxs) int32 (N, width),
    the number of leading taps alive per image, and the float32 tap weights."""
    k, dys, dxs, alive = motion_taps(radius, sigma, angle_deg, h, w)
    return (dys.T.to(torch.int32).contiguous().numpy(), dxs.T.to(torch.int32).contiguous().numpy(),
            alive.sum(0).to(torch.int32).numpy(), np.array([F32(float(v)) for v in k], np.float32))


@jit
def _snow_images(raw, keys, eh, table, steps, xs, loc, scale, thr, cifar, ziw, zww, zih, zwh,
                 dys, dxs, alive, ktaps, pad, a, b, eps, out):
    n, _, h, w = raw.shape
    hw = h * w
    z = np.empty(hw, np.float32)
    t = np.empty((h, w), np.float32)
    wide = np.empty((h, w + 2 * pad), np.float32)  # the zoomed layer, columns edge-replicated
    acc = np.empty((h, w), np.float32)
    for i in range(n):
        normals_into(eh, keys[i], table, steps, z)
        layer = z.reshape(h, w)
        for p in range(hw):
            z[p] = loc + scale * z[p]
        # weather._clipped_zoom_2tap: W, then H
        for y in range(h):
            for o in range(w):
                v = layer[y, ziw[o, 0]] * zww[o, 0]
                t[y, o] = v + layer[y, ziw[o, 1]] * zww[o, 1]
        for o in range(h):
            r0 = t[zih[o, 0]]
            r1 = t[zih[o, 1]]
            w0 = zwh[o, 0]
            w1 = zwh[o, 1]
            dst = wide[o]
            for x in range(w):
                v = r0[x] * w0
                v = v + r1[x] * w1
                v = _ZERO if v < thr else v
                v = min(max(v, _ZERO), _ONE)
                if cifar:  # floor(layer * 255) / 255
                    v = np.floor(v * _F255) / _F255
                dst[pad + x] = v
            for x in range(pad):
                dst[x] = dst[pad]
                dst[pad + w + x] = dst[pad + w - 1]
        # blur.motion_blur_layer: taps in order, edge-replicating shifts, while alive
        acc[:] = _ZERO
        for k in range(alive[i]):
            dy = dys[i, k]
            off = U32(pad - dxs[i, k])  # >= 0; unsigned indices skip numba's wrap-around (vectorises)
            wt = ktaps[k]
            for y in range(h):
                src = wide[min(max(y - dy, 0), h - 1)]
                row = acc[y]
                for x in range(U32(w)):
                    row[x] += src[off + x] * wt
        for y in range(h):
            for x in range(w):
                acc[y, x] = np.rint(acc[y, x] * _F255) / _F255
        # gray blend, + layer + flipped layer, generate's tail
        img = raw[i]
        dst = out[i]
        for y in range(h):
            fl = acc[h - 1 - y]
            for x in range(w):
                r = xs[img[0, y, x]]
                g = xs[img[1, y, x]]
                bl = xs[img[2, y, x]]
                gray = _R * r + _G * g
                gray = gray + _B * bl
                lift = gray * _F1_5 + _F0_5
                ly = acc[y, x]
                lf = fl[U32(w - 1 - x)]
                for c in range(3):
                    v = r if c == 0 else (g if c == 1 else bl)
                    m = max(v, lift)
                    v = a * v + b * m
                    v = v + ly
                    v = v + lf
                    v = min(max(v, _ZERO), _ONE)
                    v = v * _F255
                    v = v + eps
                    dst[c, y, x] = np.uint8(np.int32(v))


def snow(p, ctx: Context):
    raw = ctx.raw
    n, c, h, w = raw.shape
    if c != 3:
        return None
    angle = ctx.rng.uniform_range(1, (), -135.0, -45.0, dtype=torch.float64)
    dys, dxs, alive, ktaps = motion_shifts(angle, int(p[4]), float(p[5]), h, w)
    live = np.arange(dxs.shape[1])[None, :] < alive[:, None]
    pad = int(np.abs(dxs[live]).max(initial=0))
    ziw, zww = zoom_taps(w, float(p[2]))
    zih, zwh = zoom_taps(h, float(p[2]))
    ziw, zih = ziw.astype(np.uint32), zih.astype(np.uint32)
    table, steps = normal_table_arrays()
    out = torch.empty_like(raw)
    _snow_images(raw.numpy(), keys_array(ctx.rng.keys), element_hashes(0, h * w), table, steps,
                 level_floats(), F32(p[0]), F32(p[1]), F32(p[3]), ctx.param_set == "cifar10",
                 ziw, zww, zih, zwh, dys, dxs, alive, ktaps, pad, F32(p[6]), F32(1 - p[6]),
                 TRUNC_EPS32, out.numpy())
    return out


KERNELS = {"snow": snow}
