"""Shared image helpers: padding modes of scipy/OpenCV, separable filters, PIL box resampling,
scipy-style zoom, HSV round trips. All act on float NCHW (or N1HW) tensors."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F


def border_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source index for positions -lo .. n+hi-1 under a border mode.

    'nearest' (scipy nearest / OpenCV REPLICATE), 'reflect' (scipy reflect = d c b a | a b c d),
    'reflect101' (OpenCV default = d c b | a b c d).
    """
    i = np.arange(-lo, n + hi)
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "reflect":
        period = 2 * n
        i = np.mod(i, period)
        return np.where(i >= n, period - 1 - i, i)
    if mode == "reflect101":
        if n == 1:
            return np.zeros_like(i)
        period = 2 * n - 2
        i = np.mod(i, period)
        return np.where(i >= n, period - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


def left_matmul(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """m @ x over the last two dims as ONE GEMM (broadcast m @ x would run a small GEMM per image)."""
    return (x.transpose(-1, -2) @ m.T).transpose(-1, -2)


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    rows = torch.as_tensor(border_index(h, top, bottom, mode), device=x.device)
    cols = torch.as_tensor(border_index(w, left, right, mode), device=x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


@functools.lru_cache(maxsize=64)
def gaussian_taps(sigma: float, truncate: float = 4.0) -> tuple[float, ...]:
    """scipy.ndimage.gaussian_filter1d weights (radius = int(truncate * sigma + 0.5))."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return tuple((w / w.sum()).tolist())


def separable_filter(x: torch.Tensor, taps_v, taps_h, mode: str) -> torch.Tensor:
    """Correlate each channel with taps_v along H and taps_h along W under a border mode."""
    n, c, h, w = x.shape
    kv, kh = len(taps_v) // 2, len(taps_h) // 2
    y = x.reshape(n * c, 1, h, w)
    y = pad2d(y, kv, kv, kh, kh, mode)
    wv = torch.tensor(taps_v, dtype=x.dtype, device=x.device).view(1, 1, -1, 1)
    wh = torch.tensor(taps_h, dtype=x.dtype, device=x.device).view(1, 1, 1, -1)
    y = F.conv2d(F.conv2d(y, wh), wv)
    return y.reshape(n, c, h, w)


@functools.lru_cache(maxsize=64)
def filter_matrix(n: int, taps: tuple[float, ...], mode: str) -> np.ndarray:
    """The 1-D correlation with `taps` under a border mode as an (n, n) matrix (borders folded in)."""
    r = len(taps) // 2
    src = border_index(n, r, r, mode)
    m = np.zeros((n, n))
    rows = np.repeat(np.arange(n), len(taps))
    cols = np.stack([src[i:i + len(taps)] for i in range(n)]).reshape(-1)
    np.add.at(m, (rows, cols), np.tile(np.asarray(taps), n))
    return m


def _axis_matrices(x: torch.Tensor, taps_v, taps_h, mode: str):
    h, w = x.shape[-2:]
    mh = torch.as_tensor(filter_matrix(h, tuple(taps_v), mode), dtype=x.dtype, device=x.device)
    mw = torch.as_tensor(filter_matrix(w, tuple(taps_h), mode), dtype=x.dtype, device=x.device)
    return mh, mw


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0):
    """skimage.filters.gaussian / scipy gaussian_filter over H and W (channels independent).

    Runs as two dense matrix products with the borders folded into the matrices: one GEMM per
    axis is far faster on CPU than a one-channel conv2d, and handles any kernel width (the
    elastic fields' sigma reaches 170 px, wider than the image)."""
    if sigma <= 0:
        return x
    taps = gaussian_taps(float(sigma), float(truncate))
    mh, mw = _axis_matrices(x, taps, taps, mode)
    return left_matmul(mh, x @ mw.T)


def filter2d(x: torch.Tensor, kernel: np.ndarray, mode: str = "reflect101") -> torch.Tensor:
    """cv2.filter2D (correlation, centred anchor) per channel: one GEMM per distinct kernel row
    plus row shifts, after cropping the kernel's all-zero border (e.g. the CIFAR disks are 17x17
    arrays with a 5x5 support)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    kh, kw = kernel.shape
    nz_r = np.flatnonzero(np.abs(kernel).sum(1))
    nz_c = np.flatnonzero(np.abs(kernel).sum(0))
    if len(nz_r) == 0:
        return torch.zeros_like(x)
    ry = max(kh // 2 - nz_r[0], nz_r[-1] - kh // 2)
    rx = max(kw // 2 - nz_c[0], nz_c[-1] - kw // 2)
    kernel = kernel[kh // 2 - ry:kh // 2 + ry + 1, kw // 2 - rx:kw // 2 + rx + 1]
    h, w = x.shape[-2:]
    rows_all = border_index(h, ry, ry, mode)
    # (S_i x) M_i^T == S_i (x M_i^T) row for row (a row shift only picks rows): one GEMM per
    # DISTINCT kernel row (symmetric kernels: about half), its border rows added once, and every
    # kernel row's shift is a view of that padded product, summed in the original order
    rows_t = torch.as_tensor(rows_all, device=x.device)
    padded: dict[tuple, torch.Tensor] = {}
    out = None
    for i, taps in enumerate(kernel):
        if not taps.any():
            continue
        key = tuple(taps.tolist())
        if key not in padded:
            mw = torch.as_tensor(filter_matrix(w, key, mode), dtype=x.dtype, device=x.device)
            padded[key] = (x @ mw.T).index_select(-2, rows_t)  # ..., H + 2ry, W
        term = padded[key][..., i:i + h, :]
        out = term.clone(memory_format=torch.contiguous_format) if out is None else out.add_(term)
    return out


# ---- PIL resampling (BOX) as matrices -------------------------------------------------------
@functools.lru_cache(maxsize=64)
def pil_box_matrix(in_size: int, out_size: int) -> np.ndarray:
    """PIL's precompute_coeffs for the BOX filter: out = M @ in along one axis."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        ws = [1.0 if -0.5 < (x - center + 0.5) / filterscale <= 0.5 else 0.0
              for x in range(xmin, xmax)]
        total = sum(ws)
        if total:
            m[xx, xmin:xmax] = np.asarray(ws) / total
    return m


@functools.lru_cache(maxsize=64)
def _sparse_rows(in_size: int, out_size: int, fixed_point: bool):
    """pil_box_matrix as (index, weight) pairs per output pixel, padded to the widest support."""
    m = pil_box_matrix(in_size, out_size)
    if fixed_point:
        m = np.floor(0.5 + m * (1 << 22)) * (m > 0)
    support = int((m != 0).sum(1).max())
    idx = np.zeros((out_size, support), dtype=np.int64)
    wts = np.zeros((out_size, support))
    for o in range(out_size):
        nz = np.flatnonzero(m[o])
        idx[o, :len(nz)] = nz
        wts[o, :len(nz)] = m[o, nz]
    return idx, wts


def _resample_axis(x: torch.Tensor, dim: int, in_size: int, out_size: int, fixed_point: bool):
    idx, wts = _sparse_rows(in_size, out_size, fixed_point)
    shape = [1] * x.ndim
    shape[dim] = out_size
    out = None
    for j in range(idx.shape[1]):
        i = torch.as_tensor(idx[:, j], device=x.device)
        w = torch.as_tensor(wts[:, j], device=x.device).to(x.dtype).view(shape)
        term = x.index_select(dim, i) * w
        out = term if out is None else out + term
    return out


def pil_box_resize(x: torch.Tensor, out_h: int, out_w: int, round_8bit: bool) -> torch.Tensor:
    """PIL Image.resize(..., BOX): horizontal pass then vertical, as sparse per-axis sums.

    round_8bit: emulate PIL's 8-bit path exactly in integers: coefficients in 22-bit fixed point
    (int(0.5 + w * 2**22)), + 2**21, >> 22 and clip after each pass."""
    h, w = x.shape[-2:]
    if not round_8bit:
        y = x if out_w == w else _resample_axis(x, -1, w, out_w, False)
        return y if out_h == h else _resample_axis(y, -2, h, out_h, False)
    return pil_box_resize_8bit(torch.round(x * 255.0).to(torch.int32), out_h, out_w).to(x.dtype).div_(255.0)


def pil_box_resize_8bit(x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """PIL's 8-bit BOX resize on integer 0..255 NCHW values; returns int32."""
    h, w = x.shape[-2:]
    # int32 suffices: sum(w) = 2**22 (+ rounding), so every sum is <= 255 * 2**22 + 2**21 < 2**31.
    # Both passes select whole rows (dim -2, contiguous memcpy) of a transposed copy: a gather
    # along the last dim is several times slower.
    y = x.to(torch.int32).transpose(-1, -2).contiguous()  # N,C,W,H
    half = 1 << 21
    for horizontal, n_in, n_out in ((True, w, out_w), (False, h, out_h)):
        if n_out != n_in:
            acc = None
            for i, wt in _fixed_point_taps(n_in, n_out, str(x.device)):
                term = y.index_select(-2, i).mul_(wt)
                acc = term if acc is None else acc.add_(term)
            y = acc.add_(half).bitwise_right_shift_(22).clamp_(0, 255)
        if horizontal:
            y = y.transpose(-1, -2).contiguous()  # N,C,H,W'
    return y


@functools.lru_cache(maxsize=64)
def _fixed_point_taps(in_size: int, out_size: int, device: str):
    """PIL's 22-bit fixed-point BOX taps per axis as (index, int32 weight of shape (out, 1))."""
    idx, wts = _sparse_rows(in_size, out_size, True)
    dev = torch.device(device)
    return tuple((torch.as_tensor(idx[:, j], device=dev),
                  torch.as_tensor(wts[:, j].astype(np.int32), device=dev).view(out_size, 1))
                 for j in range(idx.shape[1]))


# ---- scipy.ndimage.zoom(order=1) crop-and-zoom (clipped_zoom of the reference) -------------
def _zoom_axis_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear interpolation with scipy's grid_mode=False mapping o -> o * (in-1)/(out-1)."""
    m = np.zeros((n_out, n_in))
    if n_out == 1 or n_in == 1:
        m[:, 0] = 1.0
        return m
    pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    i1 = np.clip(i0 + 1, 0, n_in - 1)
    f = pos - i0
    m[np.arange(n_out), i0] += 1 - f
    m[np.arange(n_out), i1] += f
    return m


@functools.lru_cache(maxsize=256)
def clipped_zoom_matrix(n: int, zoom: float, trim: str) -> np.ndarray:
    """One axis of clipped_zoom: centre-crop ceil(n/zoom), zoom (order 1), keep n pixels.

    trim='centre' (Hendrycks' scripts) or 'start' (imagecorruptions keeps the first n)."""
    ch = int(np.ceil(n / float(zoom)))
    top = (n - ch) // 2
    n_out = int(round(ch * zoom))
    m = _zoom_axis_matrix(ch, n_out)
    start = (n_out - n) // 2 if trim == "centre" else 0
    start = max(start, 0)
    full = np.zeros((n, n))
    rows = m[start:start + n]
    full[: rows.shape[0], top:top + ch] = rows
    return full


def clipped_zoom(x: torch.Tensor, zoom: float, trim: str = "centre") -> torch.Tensor:
    h, w = x.shape[-2:]
    mh = torch.as_tensor(clipped_zoom_matrix(h, float(zoom), trim), dtype=x.dtype, device=x.device)
    mw = torch.as_tensor(clipped_zoom_matrix(w, float(zoom), trim), dtype=x.dtype, device=x.device)
    return left_matmul(mh, x @ mw.T)


# ---- HSV (skimage.color formulas) --------------------------------------------------------------
def rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    lo, v = torch.aminmax(x, dim=1)
    delta = v - lo
    grey = delta == 0
    safe = torch.where(grey, 1.0, delta)
    s = torch.where(grey, 0.0, delta / torch.where(v == 0, 1.0, v))
    # the sector's numerator and offset first (b == v wins over g == v over r == v, as in
    # skimage), then ONE division: offset + num / safe, with offset 0 for red exactly as before
    bv, gv = b == v, g == v
    num = torch.where(bv, r - g, torch.where(gv, b - r, g - b))
    offset = torch.where(bv, 4.0, torch.where(gv, 2.0, torch.zeros_like(v)))  # x's dtype
    h = torch.remainder(offset.add_(num.div_(safe)).div_(6.0), 1.0)
    return h.masked_fill_(grey, 0.0), s, v


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    hi = torch.remainder(hi, 6)  # integer-valued floats 0..5
    # sector hi picks R, G, B among v, p, q, t (skimage.color.hsv2rgb's table): masks and where
    # chains copy the chosen values exactly, without stacking all 6 x 3 candidate planes
    sector = [hi == k for k in range(6)]
    out = torch.empty((v.shape[0], 3, *v.shape[1:]), dtype=v.dtype, device=v.device)
    torch.where(sector[0] | sector[5], v, torch.where(sector[1], q, torch.where(sector[4], t, p)), out=out[:, 0])
    torch.where(sector[1] | sector[2], v, torch.where(sector[0], t, torch.where(sector[3], q, p)), out=out[:, 1])
    torch.where(sector[3] | sector[4], v, torch.where(sector[2], t, torch.where(sector[5], q, p)), out=out[:, 2])
    return out


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """cv2.COLOR_RGB2GRAY weights, N1HW."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def gather_shifted(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[n, :, y, x] = x[n, :, clamp(y - dy[n]), clamp(x - dx[n])] (edge-replicating shift)."""
    n, c, h, w = x.shape
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    yy = (ys.view(1, h) - dy.view(n, 1)).clamp(0, h - 1)
    xx = (xs.view(1, w) - dx.view(n, 1)).clamp(0, w - 1)
    flat = (yy.unsqueeze(2) * w + xx.unsqueeze(1)).view(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(x.reshape(n, c, h * w), 2, flat).view(n, c, h, w)


def next_power_of_2(v: int) -> int:
    return 1 if v <= 1 else 2 ** math.ceil(math.log2(v))
