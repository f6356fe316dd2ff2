"""The water mask of spatter (modes with c[5] == 0), batched: OpenCV's Canny (L1, aperture 3),
5x5 chamfer distance transform (DIST_L2), box blurs, equalizeHist and an 8-bit emboss filter,
re-implemented in torch so the runtime needs no OpenCV."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import numpy as np

from ._image import filter2d

_INF = 1e9


def _conv3(x: torch.Tensor, k, mode: str) -> torch.Tensor:
    return filter2d(x, np.asarray(k, dtype=np.float64), mode)


def canny(img8: torch.Tensor, low: float = 50, high: float = 150) -> torch.Tensor:
    """cv2.Canny(img, low, high) on N1HW integer-valued float64 images -> bool edge map."""
    # integer sums below 2**24: float32 GEMMs give the exact values, twice as fast as float64
    img32 = img8.to(torch.float32)
    dx = _conv3(img32, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "nearest").to(img8.dtype)
    dy = _conv3(img32, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "nearest").to(img8.dtype)
    mag = dx.abs() + dy.abs()
    low_i, high_i = int(low), int(high)
    mp = F.pad(mag, (1, 1, 1, 1))  # magnitude outside the image is 0

    def nb(oy, ox):
        h, w = mag.shape[-2:]
        return mp[..., 1 + oy:1 + oy + h, 1 + ox:1 + ox + w]

    ax, ay = dx.abs(), dy.abs()
    tg22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
    yy = ay * (1 << 15)
    tg22x = ax * tg22
    tg67x = tg22x + ax * (1 << 16)
    horiz = yy < tg22x
    vert = ~horiz & (yy > tg67x)
    diag = ~horiz & ~vert
    s = torch.where((dx * dy) < 0, -1, 1)
    keep_h = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    keep_v = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    keep_dpos = (mag > nb(-1, -1)) & (mag > nb(1, 1))  # s = +1
    keep_dneg = (mag > nb(-1, 1)) & (mag > nb(1, -1))  # s = -1
    keep_d = torch.where(s > 0, keep_dpos, keep_dneg)
    cand = (mag > low_i) & ((horiz & keep_h) | (vert & keep_v) | (diag & keep_d))
    edges = cand & (mag > high_i)
    while True:  # hysteresis: grow strong edges through 8-connected candidates
        grown = _dilate3(edges).logical_and_(cand)
        if torch.equal(grown, edges):
            return edges
        edges = grown


def _dilate3(e: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a bool N1HW map (zero outside), separable: 4 in-place ORs."""
    hz = e.clone()
    hz[..., 1:] |= e[..., :-1]
    hz[..., :-1] |= e[..., 1:]
    out = hz.clone()
    out[..., 1:, :] |= hz[..., :-1, :]
    out[..., :-1, :] |= hz[..., 1:, :]
    return out


def chamfer_distance(zero: torch.Tensor, cap: float = 20.0) -> torch.Tensor:
    """cv2.distanceTransform(src, DIST_L2, 5) (distance to the nearest zero pixel; 5x5 chamfer
    steps 1, 1.4, 2.1969), exact up to `cap` and >= cap beyond it."""
    a, b, c = 1.0, 1.4, 2.1969
    steps = []
    for oy in range(-2, 3):
        for ox in range(-2, 3):
            if (oy, ox) == (0, 0):
                continue
            if abs(oy) + abs(ox) == 1:
                steps.append((oy, ox, a))
            elif abs(oy) == 1 and abs(ox) == 1:
                steps.append((oy, ox, b))
            elif {abs(oy), abs(ox)} == {1, 2}:
                steps.append((oy, ox, c))
    d = torch.where(zero, 0.0, _INF).to(torch.float32)
    h, w = d.shape[-2:]
    by_cost: dict[float, list] = {}
    for oy, ox, cost in steps:
        by_cost.setdefault(cost, []).append((oy, ox))
    for _ in range(int(cap) + 1):
        p = F.pad(d, (2, 2, 2, 2), value=_INF)
        best = d.clone()
        # min_k(p_k + cost) == min_k(p_k) + cost exactly (rounding is monotonic): one add per cost
        for cost, offsets in by_cost.items():
            low = None
            for oy, ox in offsets:
                view = p[..., 2 + oy:2 + oy + h, 2 + ox:2 + ox + w]
                low = view.clone() if low is None else torch.minimum(low, view, out=low)
            torch.minimum(best, low.add_(cost), out=best)
        if torch.equal(best, d):
            break
        d = best
    return d


def equalize_hist(img8: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image on N1HW integer-valued tensors."""
    n = img8.shape[0]
    flat = img8.reshape(n, -1).to(torch.int64)
    total = flat.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.int64, device=img8.device).scatter_add_(
        1, flat, torch.ones_like(flat))
    i0 = (hist > 0).to(torch.int64).argmax(dim=1, keepdim=True)
    h0 = hist.gather(1, i0)
    cum = hist.cumsum(1)
    scale = 255.0 / (total - h0).clamp_min(1).to(torch.float32)
    lut = torch.round((cum - cum.gather(1, i0)).to(torch.float32) * scale).clamp(0, 255)
    bins = torch.arange(256, device=img8.device).view(1, -1)
    lut = torch.where(bins <= i0, torch.zeros_like(lut), lut)
    lut = torch.where(h0 == total, i0.to(lut.dtype).expand(-1, 256), lut)
    return lut.gather(1, flat).view_as(img8).to(img8.dtype)


def _box3_u8(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(3x3) on 8-bit data: mean, rounded, BORDER_REFLECT_101."""
    return torch.round(_conv3(x, [[1 / 9] * 3] * 3, "reflect101") + 1e-9)


def water_mask(liquid: torch.Tensor, intensity: float) -> torch.Tensor:
    """m of the reference's water branch, N1HW float64, scaled so its max is `intensity`."""
    liquid8 = torch.floor(liquid * 255.0).clamp(0, 255)
    edges = canny(liquid8)
    dist = chamfer_distance(edges).clamp_max(20.0).to(torch.float64)
    dist = torch.floor(_conv3(dist, [[1 / 9] * 3] * 3, "reflect101").to(torch.float32) + 1e-6)
    dist = equalize_hist(dist.to(torch.float64))
    emboss = _conv3(dist.to(torch.float32), [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "reflect101")
    dist = torch.round(emboss.to(torch.float64)).clamp(0, 255)  # integer sums: exact in float32
    dist = _box3_u8(dist)
    m = liquid8 * dist
    top = m.amax(dim=(1, 2, 3), keepdim=True)
    m = torch.where(top > 0, m / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(m))
    return m * intensity
