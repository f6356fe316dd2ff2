"""Fast ConvNorm: exact rewrites of the faithful steps (docs/performance.md, "ConvNorm layer").

1. V from the kernel's autocorrelation (Wiener-Khinchin): sum_i |w_hat[o,i,f]|^2 is the DFT of
   R[o] = sum_i w[o,i] (x) w[o,i], a (2k-1)^2 array. A per-filter Gram matrix (k^2 x k^2, one
   bmm) gives R, a small real cosine transform gives the energy on the grid:
   O(C_out C_in k^4 + C_out k^2 G) instead of C_out C_in FFTs of the whole grid (which cost
   more than the data FFTs below batch ~C_in). Float64, so no cancellation issue.
2. 1x1 kernels: one conv with L2-normalised filters at the layer's stride (no stride-1 work).
3. Only the kept outputs are synthesised: the inverse DFT is two small dense matrices that fold
   in the crop and the stride (no full irfft2 and no crop/subsample copies; its backward is two
   matmuls). The forward conv still runs at stride 1: V acts on every frequency of that grid.
All of it is linear algebra on the same quantities, so values and gradients equal faithful mode
up to rounding (tests: float64 <= 1e-6, fp32 <= 1e-4).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

_MATRIX_CACHE: Dict[tuple, Tuple[Tensor, ...]] = {}
_MATRIX_CACHE_MAX = 256


def _cached(key: tuple, build):
    hit = _MATRIX_CACHE.get(key)
    if hit is None:
        if len(_MATRIX_CACHE) >= _MATRIX_CACHE_MAX:
            _MATRIX_CACHE.clear()
        # Built under inference_mode they would be inference tensors, unusable by a later
        # backward (an attack after a clean pass in the same process).
        with torch.inference_mode(False):
            hit = _MATRIX_CACHE[key] = build()
    return hit


def _energy_matrices(k: int, grid: Tuple[int, int], device) -> Tuple[Tensor, Tensor, Tensor,
                                                                          Tensor]:
    """cos/sin of 2 pi f d / G for shifts d = -(k-1)..k-1, rows f of the rfft2 layout (float64)."""
    def build():
        gh, gw = grid
        shifts = torch.arange(-(k - 1), k, dtype=torch.float64)
        fh = torch.arange(gh, dtype=torch.float64)
        fw = torch.arange(gw // 2 + 1, dtype=torch.float64)
        th = 2 * math.pi * torch.outer(fh, shifts) / gh
        tw = 2 * math.pi * torch.outer(fw, shifts) / gw
        return tuple(m.to(device) for m in (th.cos(), th.sin(), tw.cos(), tw.sin()))
    return _cached(("energy", k, grid, str(device)), build)


def _shift_matrix(k: int, device) -> Tensor:
    """P[(p, q), d]: 1 where kernel taps p, q (flattened k x k) differ by the 2-D shift d = q - p."""
    def build():
        taps = torch.stack(torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"),
                           -1).reshape(-1, 2)
        diff = (taps[None, :, :] - taps[:, None, :]) + (k - 1)  # (k^2, k^2, 2), q - p
        flat = (diff[..., 0] * (2 * k - 1) + diff[..., 1]).reshape(-1)
        mat = torch.zeros(k ** 4, (2 * k - 1) ** 2, dtype=torch.float64)
        mat[torch.arange(k ** 4), flat] = 1.0
        return (mat.to(device),)
    return _cached(("shift", k, str(device)), build)[0]


def spectral_energy_fast(weight: Tensor, grid: Tuple[int, int]) -> Tensor:
    """Same as convnorm.spectral_energy (rfft2 layout), via the autocorrelation, in float64."""
    o, i, k, _ = weight.shape
    w = weight.detach().to(torch.float64).reshape(o, i, k * k)
    gram = torch.bmm(w.transpose(1, 2), w)  # (o, k^2, k^2): sum_i w[o,i,p] w[o,i,q]
    # R[o, d] = sum_i sum_u w[o,i,u] w[o,i,u+d], shifts d in [-(k-1), k-1]^2
    auto = (gram.reshape(o, k ** 4) @ _shift_matrix(k, weight.device)).reshape(
        o, 2 * k - 1, 2 * k - 1)
    ch, sh, cw, sw = _energy_matrices(k, grid, weight.device)
    # R is symmetric (R[-d] = R[d]), so its DFT is real: Re(e^{-i th} R e^{-i tw}^T).
    return ch @ auto @ cw.t() - sh @ auto @ sw.t()


def compute_V_fast(layer, grid: Tuple[int, int]) -> Tensor:
    with torch.no_grad():
        w = layer.weight.detach()
        out_dtype = torch.float32 if w.dtype in (torch.float16, torch.bfloat16) else w.dtype
        if layer.is_pointwise:
            energy = w.to(torch.float64).square().sum(dim=(1, 2, 3)).reshape(-1, 1, 1)
        else:
            energy = spectral_energy_fast(w, grid)
        if layer.eps > 0:
            energy = energy.clamp_min(layer.eps)
        return energy.rsqrt().to(out_dtype)


def _synthesis_matrices(grid: Tuple[int, int], crop: Tuple[int, int], stride: Tuple[int, int],
                        device, dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """Inverse-DFT rows for the kept outputs only: y[c + s m] of irfft2 on `grid`.

    Returns A_h (M_h, G_h) complex (1/G_h folded in), and C_w, S_w (F_w, M_w) real so that
    y = Re(A_h Z) @ C_w + Im(A_h Z) @ S_w reproduces irfft2 (the imaginary parts of the DC and
    Nyquist columns drop out as in irfft).
    """
    def build():
        gh, gw = grid
        fw_count = gw // 2 + 1
        rows = crop[0] + stride[0] * torch.arange(len(range(crop[0], gh - crop[0], stride[0])),
                                                  dtype=torch.float64)
        cols = crop[1] + stride[1] * torch.arange(len(range(crop[1], gw - crop[1], stride[1])),
                                                  dtype=torch.float64)
        fh = torch.arange(gh, dtype=torch.float64)
        th = 2 * math.pi * torch.outer(rows, fh) / gh
        a_h = torch.polar(torch.full_like(th, 1.0 / gh), th)
        fw = torch.arange(fw_count, dtype=torch.float64)
        weight = torch.full((fw_count,), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        if gw % 2 == 0:
            weight[-1] = 1.0
        tw = 2 * math.pi * torch.outer(fw, cols) / gw
        c_w = weight[:, None] * tw.cos() / gw
        s_w = -weight[:, None] * tw.sin() / gw
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        return (a_h.to(device=device, dtype=complex_dtype), c_w.to(device=device, dtype=dtype),
                s_w.to(device=device, dtype=dtype))
    return _cached(("synth", grid, crop, stride, str(device), dtype), build)


def forward_fast(layer, x: Tensor) -> Tensor:
    k = layer.kernel_size[0]
    grid = layer.grid_for(*x.shape[-2:])
    V = layer.current_V(grid)
    if layer.is_pointwise:
        w = layer.weight * V.to(layer.weight.dtype).reshape(-1, 1, 1, 1)
        return F.conv2d(x, w, None, layer.stride, 0)
    y = F.conv2d(x, layer.weight, None, 1, k - 1)
    out_dtype = y.dtype
    if y.dtype in (torch.float16, torch.bfloat16):
        y = y.float()
    z = torch.fft.rfft2(y) * V.to(y.dtype)
    a_h, c_w, s_w = _synthesis_matrices(grid, layer._crop(), layer.stride, y.device, y.dtype)
    t = torch.matmul(a_h, z)
    return (torch.matmul(t.real, c_w) + torch.matmul(t.imag, s_w)).to(out_dtype)

