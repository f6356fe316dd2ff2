"""Blur family: gaussian, defocus (disk), glass (local pixel shuffling), motion, zoom."""
from __future__ import annotations

import functools

import numpy as np
import torch

from . import Context
from ._image import clipped_zoom, filter2d, gather_shifted, gaussian_filter, separable_filter


def gaussian_blur(x: torch.Tensor, sigma: float, ctx: Context) -> torch.Tensor:
    return gaussian_filter(x, float(sigma), mode="nearest", truncate=4.0)


@functools.lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's disk(): aliased disk, then cv2.GaussianBlur(ksize 3 or 5, sigma alias_blur)."""
    if radius <= 8:
        grid = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        grid = np.arange(-radius, radius + 1)
        ksize = 5
    xx, yy = np.meshgrid(grid, grid)
    disk = np.array((xx ** 2 + yy ** 2) <= radius ** 2, dtype=np.float32)
    disk /= disk.sum()
    t = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-(t ** 2) / (2 * alias_blur ** 2))
    g = (g / g.sum()).tolist()
    smoothed = separable_filter(torch.from_numpy(disk.astype(np.float64))[None, None], g, g, "reflect101")
    return smoothed[0, 0].numpy().astype(np.float32)


def defocus_blur(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    return filter2d(x, disk_kernel(float(p[0]), float(p[1])), "reflect101")


# ---- glass blur --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _glass_schedule(h: int, w: int, delta: int):
    """Wavefronts of the reference's raster loop (h from h-delta down to delta+1, w likewise).

    Step (h, w) moves pixels only inside rows/cols [h-delta, h+delta-1]; two steps whose column
    ranges are disjoint commute. Time t = (W-w) + 2*delta*(H-h) keeps every overlapping pair in
    the original order and puts only disjoint steps in the same wavefront, so running the
    wavefronts in order gives exactly the sequential result."""
    hs = np.arange(h - delta, delta, -1)
    ws = np.arange(w - delta, delta, -1)
    if len(hs) == 0 or len(ws) == 0:
        return hs, ws, []
    hh, ww = np.meshgrid(hs, ws, indexing="ij")
    t = (w - ww) + 2 * delta * (h - hh)
    order = np.argsort(t.reshape(-1), kind="stable")
    ts = t.reshape(-1)[order]
    cuts = np.flatnonzero(np.diff(ts)) + 1
    groups = np.split(order, cuts)  # flat step ids (row-major over hs x ws) per wavefront
    return hs, ws, groups


def glass_shuffle(x: torch.Tensor, offsets: torch.Tensor, delta: int) -> torch.Tensor:
    """Apply x[h, w] <- x[h+dy, w+dx] for every step of the loop (see `_glass_schedule`).

    offsets: (N, iterations, len(hs)*len(ws), 2) int64 with (dx, dy) per step. The reference's
    tuple 'swap' on numpy views copies rather than swaps (x[h', w'] keeps its value)."""
    n, c, h, w = x.shape
    hs, ws, groups = _glass_schedule(h, w, delta)
    if not groups:
        return x
    dev = x.device
    flat = x.reshape(n, c, h * w).clone()
    hh = torch.as_tensor(np.repeat(hs, len(ws)), device=dev)
    ww = torch.as_tensor(np.tile(ws, len(hs)), device=dev)
    # steps sorted by wavefront once, so each wavefront is a slice (no index ops per wavefront)
    order = torch.as_tensor(np.concatenate(groups), device=dev)
    bounds = np.cumsum([0] + [len(g) for g in groups]).tolist()
    dst_sorted = (hh * w + ww)[order]
    for it in range(offsets.shape[1]):
        dx, dy = offsets[:, it, :, 0], offsets[:, it, :, 1]
        src_sorted = ((hh + dy) * w + (ww + dx))[:, order]  # N, steps in wavefront order
        for a, b in zip(bounds[:-1], bounds[1:]):
            dst = dst_sorted[a:b].view(1, 1, -1).expand(n, c, -1)
            src = src_sorted[:, a:b].unsqueeze(1).expand(n, c, -1)
            flat.scatter_(2, dst, torch.gather(flat, 2, src))
    return flat.view(n, c, h, w)


def glass_blur(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    sigma, delta, iterations = float(p[0]), int(p[1]), int(p[2])
    n, c, h, w = x.shape
    y = torch.floor(gaussian_filter(x, sigma, "nearest") * 255.0) / 255.0  # np.uint8(... * 255)
    steps = max(h - 2 * delta, 0) * max(w - 2 * delta, 0)
    offsets = ctx.rng.randint(0, (iterations, steps, 2), -delta, delta)
    y = glass_shuffle(y, offsets, delta)
    return gaussian_filter(y, sigma, "nearest")


# ---- motion blur -------------------------------------------------------------------------------
def motion_blur_layer(x: torch.Tensor, radius: int, sigma: float, angle_deg: torch.Tensor):
    """imagecorruptions' numpy version of ImageMagick's MotionBlurImage: a one-sided Gaussian
    kernel of width 2*radius+1 along the angle, edge-replicating shifts, per-image angle."""
    n, c, h, w = x.shape
    width = 2 * int(radius) + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    ang = torch.deg2rad(angle_deg.to(torch.float64))
    py, px = width * torch.sin(ang), width * torch.cos(ang)
    hyp = torch.hypot(py, px)
    # every tap's shift at once (same float64 ops as tap by tap), then only the gathers loop
    taps = torch.arange(width, dtype=torch.float64, device=x.device).view(-1, 1)
    dys = -torch.ceil(taps * py / hyp - 0.5).to(torch.int64)
    dxs = -torch.ceil(taps * px / hyp - 0.5).to(torch.int64)
    # the reference stops at the border: tap i counts only while taps 0..i all stayed inside
    alive = ((dys.abs() < h) & (dxs.abs() < w)).to(torch.int64).cumprod(0).bool()
    any_alive, all_alive = alive.any(1).tolist(), alive.all(1).tolist()
    out = torch.zeros_like(x)
    for i in range(width):
        if not any_alive[i]:
            break
        term = gather_shifted(x, dys[i], dxs[i]).mul_(float(k[i]))
        if not all_alive[i]:  # x 1.0 is exact, so the multiply is only needed for dead rows
            term.mul_(alive[i].view(n, 1, 1, 1).to(x.dtype))
        out.add_(term)
    return out


def motion_blur(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    angle = ctx.rng.uniform_range(0, (), -45.0, 45.0, dtype=torch.float64)
    y = motion_blur_layer(x * 255.0, int(p[0]), float(p[1]), angle)
    return y / 255.0


# ---- zoom blur ---------------------------------------------------------------------------------
def zoom_factors(end: float, step: float) -> np.ndarray:
    return np.arange(1, end, step)


def zoom_blur(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    factors = zoom_factors(float(p[0]), float(p[1]))
    out = torch.zeros_like(x)
    for z in factors:
        out = out + clipped_zoom(x, float(z), "centre")
    return (x + out) / (len(factors) + 1)
