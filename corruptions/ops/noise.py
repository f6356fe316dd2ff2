"""Noise family: gaussian, shot (Poisson), impulse (salt & pepper), speckle."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from . import TRUNC_EPS, Context

# float inputs put the Poisson rate on a grid of c/1020 (4 steps per 8-bit level); uint8 inputs
# land on it exactly
_RATE_LEVELS = 255 * 4


def gaussian_noise(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    return ctx.rng.normal(0, tuple(x.shape[1:])).mul_(c).add_(x)  # x + c * z, in place


def speckle_noise(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    return ctx.rng.normal(0, tuple(x.shape[1:])).mul_(c).mul_(x).add_(x)  # x + x * (c * z)


def impulse_noise(x: torch.Tensor, amount: float, ctx: Context) -> torch.Tensor:
    """skimage random_noise(mode='s&p'): each value flips w.p. amount, to 1 or 0 with p=1/2."""
    if ctx.raw is not None:  # uint8 input: compare the 24 random bits, keep untouched bytes as is
        # u = (b + 1) / 2**24 <= float32(t)  <=>  b <= floor(float32(t) * 2**24) - 1
        flip_max, salt_max = (int(math.floor(float(np.float32(t)) * 2.0 ** 24)) - 1
                              for t in (amount, amount / 2))
        b = ctx.rng.bits(0, tuple(x.shape[1:])).bitwise_right_shift_(8).bitwise_and_(0xFFFFFF)
        salt = (b <= salt_max).to(torch.uint8).mul_(255)
        return torch.where(b <= flip_max, salt, ctx.raw)
    u = ctx.rng.uniform(0, tuple(x.shape[1:]))
    flipped = u <= amount
    salt = u <= amount / 2
    return torch.where(flipped, salt.to(x.dtype), x)


@functools.lru_cache(maxsize=16)
def _poisson_tables(c: float, levels: int, device: str):
    """Poisson CDF rows for rates c * j / levels (j = 0..levels) and a guide table for inversion.

    float32 CDF and int16 guide keep the tables cache-sized (256 levels: ~0.7 MB + 0.5 MB at
    c = 500); float32 rounding moves a CDF boundary by <= 6e-8 in probability."""
    lam = np.arange(levels + 1, dtype=np.float64) * (c / levels)
    kmax = int(math.ceil(c + 12 * math.sqrt(c) + 20))
    k = np.arange(kmax + 1, dtype=np.float64)
    from scipy.special import gammaln

    with np.errstate(divide="ignore", invalid="ignore"):
        logp = k[None, :] * np.log(lam[:, None]) - lam[:, None] - gammaln(k + 1)[None, :]
    logp[0] = -np.inf
    logp[0, 0] = 0.0
    cdf = np.cumsum(np.exp(logp), axis=1)
    cdf /= cdf[:, -1:]  # tail mass beyond kmax (< 1e-20) folded into the last entries
    # every uniform (<= 1) stops where the true CDF passes 1 - 2**-26 (remaining mass < 1.5e-8,
    # below the uniforms' 2**-24 resolution), and always by the last entry
    cdf32 = cdf.astype(np.float32)
    cdf32[cdf >= 1.0 - 2.0 ** -26] = 2.0
    cdf32[:, -1] = 2.0
    guides = 1024
    cdf_t = torch.from_numpy(cdf32)
    grid = torch.arange(guides, dtype=torch.float32) / guides
    guide = torch.searchsorted(cdf_t, grid.expand(len(cdf), guides).contiguous())
    dev = torch.device(device)
    return cdf_t.reshape(-1).to(dev), guide.reshape(-1).to(torch.int16).to(dev), kmax + 1, guides


def _poisson_draw(rate_level: torch.Tensor, u: torch.Tensor, c: float, levels: int) -> torch.Tensor:
    """Flat int32 inverse-CDF Poisson draws (see poisson_from_uniform); int32 indices and
    index_select keep the two table lookups per draw cheap."""
    cdf, guide, width, guides = _poisson_tables(float(c), int(levels), str(u.device))
    lv = rate_level.reshape(-1).to(torch.int32)
    uf = u.reshape(-1)
    j = (uf * guides).to(torch.int32).clamp_max_(guides - 1)
    k = guide.index_select(0, torch.addcmul(j, lv, torch.tensor(guides, dtype=torch.int32))).to(torch.int32)
    row = lv * width
    step = cdf.index_select(0, row + k) < uf  # one full step settles almost every draw
    k.add_(step)
    cand = torch.nonzero(step).flatten()
    if cand.numel():
        todo = cand[cdf.index_select(0, row[cand] + k[cand]) < uf[cand]].to(torch.int64)
    else:
        todo = cand
    if todo.numel():  # draws in wide guide bins (the far tails): bisect up to the next bin's start
        r, uu, jj = row[todo].to(torch.int64), uf[todo], j[todo].to(torch.int64)
        lo = k[todo].to(torch.int64)  # cdf[lo] < u
        nxt = (r // width * guides + jj + 1).clamp_max(guide.numel() - 1)
        hi = torch.where(jj + 1 < guides, guide[nxt].to(torch.int64), torch.full_like(lo, width - 1))
        hi = torch.maximum(hi, lo + 1)  # cdf[hi] >= u
        while bool((hi - lo > 1).any()):
            mid = (lo + hi) // 2
            below = cdf[r + mid] < uu
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        k[todo] = hi.to(torch.int32)
    return k


def poisson_from_uniform(rate_level: torch.Tensor, u: torch.Tensor, c: float,
                         levels: int = _RATE_LEVELS) -> torch.Tensor:
    """Inverse-CDF Poisson draw: smallest k with CDF(k) >= u (guide table + forward steps).

    rate_level: integer-valued tensor in 0..levels, the rate being c * rate_level / levels."""
    return _poisson_draw(rate_level, u, c, levels).to(torch.int64).view(u.shape)


@functools.lru_cache(maxsize=16)
def _shot_output_lut(c: float, kmax: int, device: str) -> torch.Tensor:
    """uint8 output for each draw k: the float kernel's k / c followed by generate's clamp,
    x255, +eps and truncation, evaluated once per k with the same float32 operations."""
    y = torch.arange(kmax, dtype=torch.int64).to(torch.float32) / c
    return y.clamp_(0.0, 1.0).mul_(255.0).add_(TRUNC_EPS).to(torch.uint8).to(torch.device(device))


def shot_noise(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    u = ctx.rng.uniform(0, tuple(x.shape[1:]))
    if ctx.raw is not None:  # uint8 input: rate level = the 8-bit value; output via a k -> uint8 LUT
        k = _poisson_draw(ctx.raw, u, c, 255)
        lut = _shot_output_lut(float(c), _poisson_tables(float(c), 255, str(u.device))[2], str(u.device))
        return lut.index_select(0, k).view(x.shape)
    levels = 255 if ctx.quantized else _RATE_LEVELS  # uint8 input: one row per 8-bit level
    level = torch.round(x * levels).clamp(0, levels)
    k = poisson_from_uniform(level, u, c, levels)
    return k.to(x.dtype) / c
