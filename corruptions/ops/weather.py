"""Weather family: snow, frost, fog, brightness lives in digital.py (HSV), spatter."""
from __future__ import annotations

import functools
import importlib.resources

import numpy as np
import torch
import torch.nn.functional as F

from . import Context
from ._image import clipped_zoom, gaussian_filter, next_power_of_2, rgb_to_gray
from .blur import motion_blur_layer

# The textures Hendrycks' scripts draw from (frost1..5; frost6 is imagecorruptions' addition).
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


# ---- frost -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def frost_textures(param_set: str) -> tuple[torch.Tensor, ...]:
    """The five frost textures (RGB float [0,1], 3HW), read from the installed imagecorruptions
    package: x0.2-scaled with cv2 INTER_LINEAR for CIFAR parameters (as make_cifar_c.py),
    full size for ImageNet parameters (as make_imagenet_c.py)."""
    try:
        import cv2
        textures = importlib.resources.files("imagecorruptions") / "frost"
    except ImportError as error:
        raise ImportError(
            "frost needs the frost textures shipped by imagecorruptions-imaug "
            "(pip install imagecorruptions-imaug, a dependency of robust-eval)") from error
    out = []
    for name in FROST_FILES:
        with importlib.resources.as_file(textures / name) as path:
            bgr = cv2.imread(str(path))
        if bgr is None:
            raise FileNotFoundError(f"frost texture {path} is missing or unreadable")
        if param_set == "cifar10":
            bgr = cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        out.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)
    return tuple(out)


def _fit_texture(tex: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Upscale a texture that is not larger than the image (imagecorruptions' rule, x1.1)."""
    th, tw = tex.shape[-2:]
    if th > h and tw > w:
        return tex
    s = max(h / th, w / tw) * 1.1
    size = (int(np.ceil(th * s)), int(np.ceil(tw * s)))
    return F.interpolate(tex[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1)


def frost(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    n, c, h, w = x.shape
    rng = ctx.rng
    which = rng.randint(0, (), 0, 5)
    u = rng.uniform(1, (2,), dtype=torch.float64)
    layer = torch.empty_like(x)
    for t, tex in enumerate(frost_textures(ctx.param_set)):
        sel = torch.nonzero(which == t).flatten()
        if sel.numel() == 0:
            continue
        tex = _fit_texture(tex, h, w).to(x.device, x.dtype)
        th, tw = tex.shape[-2:]
        # numpy randint(0, th - h) draws from [0, th - h - 1]
        y0 = torch.floor((u[sel, 0] - 2.0 ** -25) * (th - h)).to(torch.int64)
        x0 = torch.floor((u[sel, 1] - 2.0 ** -25) * (tw - w)).to(torch.int64)
        rows = (y0.view(-1, 1) + torch.arange(h, device=x.device)).view(-1, 1, h, 1)
        cols = (x0.view(-1, 1) + torch.arange(w, device=x.device)).view(-1, 1, 1, w)
        chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
        layer[sel] = tex[chan, rows, cols]
    return p[0] * x + p[1] * layer


# ---- fog ---------------------------------------------------------------------------------------
def plasma_fractal(rng, stream: int, mapsize: int, wibbledecay: float, device) -> torch.Tensor:
    """Diamond-square height map per image (the reference's plasma_fractal), in [0, 1]."""
    n = len(rng)
    m = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=device)
    step = mapsize
    wibble = 100.0
    s = stream
    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        sq = corner + torch.roll(corner, -1, 1)
        sq = sq + torch.roll(sq, -1, 2)
        m[:, half::step, half::step] = sq / 4 + wibble * rng.uniform_range(
            s, tuple(sq.shape[1:]), -wibble, wibble, dtype=torch.float64)
        s += 1
        dr = m[:, half::step, half::step]
        ul = m[:, 0::step, 0::step]
        lt = dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2)
        m[:, 0::step, half::step] = lt / 4 + wibble * rng.uniform_range(
            s, tuple(lt.shape[1:]), -wibble, wibble, dtype=torch.float64)
        s += 1
        tt = dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1)
        m[:, half::step, 0::step] = tt / 4 + wibble * rng.uniform_range(
            s, tuple(tt.shape[1:]), -wibble, wibble, dtype=torch.float64)
        s += 1
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


def fog(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    n, c, h, w = x.shape
    size = next_power_of_2(max(h, w))
    plasma = plasma_fractal(ctx.rng, 0, size, float(p[1]), x.device)[:, :h, :w].to(x.dtype)
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    y = x + p[0] * plasma.unsqueeze(1)
    return y * max_val / (max_val + p[0])


# ---- snow --------------------------------------------------------------------------------------
def snow(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    n, c, h, w = x.shape
    rng = ctx.rng
    layer = p[0] + p[1] * rng.normal(0, (1, h, w))
    layer = clipped_zoom(layer.to(x.dtype), float(p[2]), "centre")
    layer = torch.where(layer < p[3], torch.zeros_like(layer), layer).clamp(0, 1)
    if ctx.param_set == "cifar10":  # make_cifar_c.py hands ImageMagick an 8-bit PNG
        layer = torch.floor(layer * 255.0) / 255.0
    angle = rng.uniform_range(1, (), -135.0, -45.0, dtype=torch.float64)
    layer = motion_blur_layer(layer, int(p[4]), float(p[5]), angle)
    layer = torch.round(layer * 255.0) / 255.0
    gray = rgb_to_gray(x)
    y = p[6] * x + (1 - p[6]) * torch.maximum(x, gray * 1.5 + 0.5)
    return y + layer + torch.flip(layer, dims=(2, 3))


# ---- spatter -----------------------------------------------------------------------------------
def spatter(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    loc, scale, sigma, threshold, intensity, mode = p
    n, c, h, w = x.shape
    liquid = loc + scale * ctx.rng.normal(0, (1, h, w)).to(torch.float64)
    liquid = gaussian_filter(liquid, float(sigma), "nearest")
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mode == 0:
        from ._spatter import water_mask

        m = water_mask(liquid, float(intensity)).to(x.dtype)
        color = torch.tensor([175 / 255.0, 238 / 255.0, 238 / 255.0], dtype=x.dtype, device=x.device)
        return x + m * color.view(1, 3, 1, 1)
    mask = (liquid > threshold).to(torch.float64)
    mask = gaussian_filter(mask, float(intensity), "nearest")
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask).to(x.dtype)
    color = torch.tensor([63 / 255.0, 42 / 255.0, 20 / 255.0], dtype=x.dtype, device=x.device)
    return x * (1 - mask) + color.view(1, 3, 1, 1) * mask
