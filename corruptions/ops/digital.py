"""Digital family (+ the colour ones): contrast, brightness, saturate, pixelate, jpeg, elastic."""
from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import torch
from PIL import Image

from . import Context
from ._image import (border_index, gaussian_filter, hsv_to_rgb, pil_box_resize, pil_box_resize_8bit,
                     rgb_to_hsv)


def contrast(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means).mul_(c).add_(means)


def brightness(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb(h, s, torch.clamp(v + c, 0, 1))


def saturate(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    h, s, v = rgb_to_hsv(x)
    return hsv_to_rgb(h, torch.clamp(s * p[0] + p[1], 0, 1), v)


def pixelate(x: torch.Tensor, c: float, ctx: Context) -> torch.Tensor:
    """PIL BOX down to int(size * c), then BOX back up (Hendrycks' make_cifar_c/make_imagenet_c;
    imagecorruptions upsamples with NEAREST instead)."""
    h, w = x.shape[-2:]
    if ctx.raw is not None:  # uint8 input: stay in 8-bit integers end to end
        small = pil_box_resize_8bit(ctx.raw, int(h * c), int(w * c))
        return pil_box_resize_8bit(small, h, w).to(torch.uint8)
    small = pil_box_resize(x, int(h * c), int(w * c), ctx.quantized)
    return pil_box_resize(small, h, w, ctx.quantized)


def _jpeg_roundtrip_torchvision(u8: torch.Tensor, quality: int):
    """torchvision's libjpeg-turbo round trip of a uint8 NCHW batch (CPU), or None without it.

    Same library and defaults as PIL's save(quality=q) (4:2:0, islow DCT, fancy upsampling):
    bit-identical to the PIL path on CIFAR-10 and random images (tests compare them), ~3.5x
    faster because it skips PIL's Image/BytesIO machinery. Still one libjpeg call per image."""
    codec = _jpeg_codec()
    if codec is None:
        return None
    encode, decode = codec
    try:
        with warnings.catch_warnings():  # torchvision >= 0.29 deprecates its public codecs
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = [decode(encode(image, int(quality))) for image in u8.cpu().contiguous()]
    except RuntimeError:  # torchvision built without its image extension
        return None
    return torch.stack(decoded).to(u8.device)


@functools.lru_cache(maxsize=None)
def _jpeg_codec():
    """(encode, decode) of one CHW uint8 image, or None (the caller falls back to PIL).

    torchvision's image library is loaded on its own where its layout allows: `import
    torchvision` (models, ops, torch._dynamo) costs a job ~2.5 s on a 2-core CPU."""
    try:
        import importlib.util
        import os

        folder = list(importlib.util.find_spec("torchvision").submodule_search_locations)[0]
        library = min(n for n in os.listdir(folder)
                      if n.startswith("image") and n.endswith((".so", ".pyd", ".dylib")))
        torch.ops.load_library(os.path.join(folder, library))
        ops = torch.ops.image
        codec = (lambda image, q: ops.encode_jpeg(image, q),
                 lambda data: ops.decode_jpeg(data, 3, False))  # 3: ImageReadMode.RGB
        codec[1](codec[0](torch.zeros(3, 8, 8, dtype=torch.uint8), 75))  # the signatures fit
        return codec
    except Exception:  # noqa: BLE001 - not installed, or another layout: the public API
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
        except ImportError:
            return None
    return (lambda image, q: encode_jpeg(image, quality=q),
            lambda data: decode_jpeg(data, mode=ImageReadMode.RGB))


def jpeg_roundtrip_pil(u8: torch.Tensor, quality: int) -> torch.Tensor:
    """The reference's PIL JPEG save/open round trip, one image at a time (uint8 NCHW)."""
    arr = u8.permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(arr)
    for i, img in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=int(quality))
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    return torch.from_numpy(out).to(u8.device).permute(0, 3, 1, 2)


def jpeg_compression(x: torch.Tensor, quality: int, ctx: Context) -> torch.Tensor:
    """JPEG encode/decode at `quality` (PIL's settings), inherently one image at a time (CPU)."""
    if ctx.raw is not None:  # uint8 input: the decoded bytes are the output
        out = _jpeg_roundtrip_torchvision(ctx.raw, quality)
        return out if out is not None else jpeg_roundtrip_pil(ctx.raw, quality)
    u8 = torch.floor(x * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
    out = _jpeg_roundtrip_torchvision(u8, quality)
    if out is None:
        out = jpeg_roundtrip_pil(u8, quality)
    return out.to(x.dtype) / 255.0


def _bilinear_reflect(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str):
    """Sample x (N,C,H,W) at float coordinates rows/cols (N,H,W), order 1, border `mode`."""
    n, c, h, w = x.shape
    r0 = torch.floor(rows)
    c0 = torch.floor(cols)
    fr = (rows - r0).unsqueeze(1)
    fc = (cols - c0).unsqueeze(1)
    pad = int(max(rows.abs().max().item() - h, cols.abs().max().item() - w, 0)) + 4 + max(h, w)
    ridx = torch.as_tensor(border_index(h, pad, pad, mode), device=x.device)
    cidx = torch.as_tensor(border_index(w, pad, pad, mode), device=x.device)
    r0 = r0.to(torch.int64).add_(pad).view(-1)
    c0 = c0.to(torch.int64).add_(pad).view(-1)
    # source rows/cols of the 4 taps through the border map (take on a 1-D table: much cheaper
    # than advanced indexing), each looked up once
    rows = [ridx.take(r0).mul_(w), ridx.take(r0 + 1).mul_(w)]
    cols = [cidx.take(c0), cidx.take(c0 + 1)]
    flat = x.reshape(n, c, h * w)

    def tap(i, j):
        idx = (rows[i] + cols[j]).view(n, 1, h * w).expand(n, c, h * w)
        return torch.gather(flat, 2, idx).view(n, c, h, w)

    gc, gr = 1 - fc, 1 - fr
    top = tap(0, 0).mul_(gc).add_(tap(0, 1).mul_(fc))
    bottom = tap(1, 0).mul_(gc).add_(tap(1, 1).mul_(fc))
    return top.mul_(gr).add_(bottom.mul_(fr))


def _affine_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """cv2.getAffineTransform for a batch: (N,3,2) x (N,3,2) -> (N,2,3), float64."""
    ones = torch.ones(src.shape[0], 3, 1, dtype=src.dtype, device=src.device)
    a = torch.cat([src, ones], dim=2)  # N,3,3
    return torch.linalg.solve(a, dst).transpose(1, 2)


def elastic_transform(x: torch.Tensor, p: tuple, ctx: Context) -> torch.Tensor:
    """Hendrycks' elastic: random affine (cv2.warpAffine, BORDER_REFLECT_101), then a smoothed
    random displacement (alpha, sigma), bilinear with scipy 'reflect' borders."""
    alpha, sigma, affine = p
    n, ch, h, w = x.shape
    rng = ctx.rng
    dev = x.device
    centre = torch.tensor([h // 2, w // 2], dtype=torch.float64)
    sq = min(h, w) // 3
    pts1 = torch.stack([centre + sq, torch.stack([centre[0] + sq, centre[1] - sq]), centre - sq])
    pts1 = pts1.to(dev).unsqueeze(0).expand(n, 3, 2)
    shift = rng.uniform_range(0, (3, 2), -affine, affine, dtype=torch.float64).to(torch.float32)
    pts2 = pts1 + shift.to(torch.float64)
    inv = _affine_from_points(pts2, pts1)  # dst -> src, what warpAffine samples
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=dev),
                            torch.arange(w, dtype=torch.float64, device=dev), indexing="ij")
    src_x = inv[:, 0, 0, None, None] * xs + inv[:, 0, 1, None, None] * ys + inv[:, 0, 2, None, None]
    src_y = inv[:, 1, 0, None, None] * xs + inv[:, 1, 1, None, None] * ys + inv[:, 1, 2, None, None]
    warped = _bilinear_reflect(x, src_y.to(x.dtype), src_x.to(x.dtype), "reflect101")

    if alpha == 0:
        return warped
    fields = rng.uniform_range(1, (2, h, w), -1.0, 1.0, dtype=torch.float64)
    fields = gaussian_filter(fields, float(sigma), mode="reflect", truncate=3.0) * alpha
    dx, dy = fields[:, 0].to(x.dtype), fields[:, 1].to(x.dtype)
    grid_y = ys.to(x.dtype).unsqueeze(0) + dy
    grid_x = xs.to(x.dtype).unsqueeze(0) + dx
    return _bilinear_reflect(warped, grid_y, grid_x, "reflect")
