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


@functools.lru_cache(maxsize=8)
def _poisson_tables(c: float, device: str):
    """Exact Poisson CDF rows for rates c * j / _RATE_LEVELS, and a guide table for inversion."""
    lam = np.arange(_RATE_LEVELS + 1, dtype=np.float64) * (c / _RATE_LEVELS)
    kmax = int(math.ceil(c + 12 * math.sqrt(c) + 20))
    k = np.arange(kmax + 1, dtype=np.float64)
    from scipy.special import gammaln

    with np.errstate(divide="ignore", invalid="ignore"):
        logp = k[None, :] * np.log(lam[:, None]) - lam[:, None] - gammaln(k + 1)[None, :]
    logp[0] = -np.inf
    logp[0, 0] = 0.0
    cdf = np.cumsum(np.exp(logp), axis=1)
    cdf /= cdf[:, -1:]  # tail mass beyond kmax (< 1e-20) folded into the last entries
    cdf[:, -1] = 2.0  # guarantee termination
    guides = 2048
    grid = np.arange(guides, dtype=np.float64) / guides
    cdf_t = torch.from_numpy(cdf)
    guide = torch.searchsorted(cdf_t, torch.from_numpy(grid).expand(len(cdf), guides).contiguous())
    dev = torch.device(device)
    return cdf_t.reshape(-1).to(dev), guide.reshape(-1).to(dev), kmax + 1, guides


def poisson_from_uniform(rate_level: torch.Tensor, u: torch.Tensor, c: float) -> torch.Tensor:
    """Inverse-CDF Poisson draw: smallest k with CDF(k) >= u (guide table + forward steps)."""
    cdf, guide, width, guides = _poisson_tables(float(c), str(u.device))
    row = rate_level.to(torch.int64) * width
    k = guide[rate_level.to(torch.int64) * guides + (u * guides).to(torch.int64).clamp_max(guides - 1)]
    uu = u.to(torch.float64)
    below = cdf[row + k] < uu
    k = k + below.to(torch.int64)  # one full step settles almost every draw
    todo = torch.nonzero((cdf[row + k] < uu).flatten()).flatten()
    kf, rf, uf = k.flatten(), row.flatten(), uu.flatten()
    while todo.numel():  # the few draws in wide guide bins (far tails)
        kf[todo] += 1
        todo = todo[cdf[rf[todo] + kf[todo]] < uf[todo]]
    return kf.view_as(k)


def shot_noise(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    level = torch.round(x * _RATE_LEVELS).clamp(0, _RATE_LEVELS)
    u = ctx.rng.uniform(0, tuple(x.shape[1:]))
    k = poisson_from_uniform(level, u, c)
    return k.to(x.dtype) / c
