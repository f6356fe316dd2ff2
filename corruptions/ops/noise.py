"""Noise family: gaussian, shot (Poisson), impulse (salt & pepper), speckle."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from . import Context

# float inputs put the Poisson rate on a grid of c/1020 (4 steps per 8-bit level); uint8 inputs
# land on it exactly
_RATE_LEVELS = 255 * 4


def gaussian_noise(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    return x + c * ctx.rng.normal(0, tuple(x.shape[1:]))


def speckle_noise(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    return x + x * (c * ctx.rng.normal(0, tuple(x.shape[1:])))


def impulse_noise(x: torch.Tensor, amount: float, ctx: Context) -> torch.Tensor:
    """skimage random_noise(mode='s&p'): each value flips w.p. amount, to 1 or 0 with p=1/2."""
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


def poisson_from_uniform(rate_level: torch.Tensor, u: torch.Tensor, c: float,
                         levels: int = _RATE_LEVELS) -> torch.Tensor:
    """Inverse-CDF Poisson draw: smallest k with CDF(k) >= u (guide table + forward steps).

    rate_level: integer-valued tensor in 0..levels, the rate being c * rate_level / levels."""
    cdf, guide, width, guides = _poisson_tables(float(c), int(levels), str(u.device))
    lv = rate_level.to(torch.int64)
    row = lv * width
    j = (u * guides).to(torch.int64).clamp_max(guides - 1)
    k = guide[lv * guides + j].to(torch.int64)
    k = k + (cdf[row + k] < u).to(torch.int64)  # one full step settles almost every draw
    kf = k.flatten()
    todo = torch.nonzero(cdf[row.flatten() + kf] < u.flatten()).flatten()
    if todo.numel():  # draws in wide guide bins (the far tails): bisect up to the next bin's start
        r, uu, jj = row.flatten()[todo], u.flatten()[todo], j.flatten()[todo]
        lo = kf[todo]  # cdf[lo] < u
        nxt = (lv.flatten()[todo] * guides + jj + 1).clamp_max(guide.numel() - 1)
        hi = torch.where(jj + 1 < guides, guide[nxt].to(torch.int64), torch.full_like(lo, width - 1))
        hi = torch.maximum(hi, lo + 1)  # cdf[hi] >= u
        while bool((hi - lo > 1).any()):
            mid = (lo + hi) // 2
            below = cdf[r + mid] < uu
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        kf[todo] = hi
    return kf.view_as(k)


def shot_noise(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    levels = 255 if ctx.quantized else _RATE_LEVELS  # uint8 input: one row per 8-bit level
    level = torch.round(x * levels).clamp(0, levels)
    u = ctx.rng.uniform(0, tuple(x.shape[1:]))
    k = poisson_from_uniform(level, u, c, levels)
    return k.to(x.dtype) / c
