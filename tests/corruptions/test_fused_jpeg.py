"""The fused jpeg_compression kernel (corruptions/ops/fused/jpeg.py) equals libjpeg bit for bit."""
import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import generate
from corruptions.generate import apply_corruption
from corruptions.ops import Context
from corruptions.ops.digital import _jpeg_roundtrip_torchvision, jpeg_roundtrip_pil
from corruptions.ops.fused import jpeg as fused_jpeg

_ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
    20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58,
    59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])


@functools.lru_cache(maxsize=1)
def _inputs(path: str) -> tuple[torch.Tensor, ...]:
    cifar = torch.from_numpy(np.load(path)["x"][:16]).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(7)
    big = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=g)
    # natural-looking 224 px content (smooth, so most AC coefficients quantise to zero)
    smooth = torch.nn.functional.interpolate(cifar[:1].float(), size=(224, 224), mode="bilinear")
    smooth = smooth.round().clamp(0, 255).to(torch.uint8)
    odd = torch.randint(0, 256, (3, 3, 37, 45), dtype=torch.uint8, generator=g)
    odd[0, :, :6] = 0  # saturated rows and columns: the clamps of both colour conversions
    odd[1, :, :, -7:] = 255
    return cifar, big, smooth, odd


def _library(x: torch.Tensor, quality: int) -> torch.Tensor:
    out = _jpeg_roundtrip_torchvision(x, quality)
    return out if out is not None else jpeg_roundtrip_pil(x, quality)


def _kernel(x: torch.Tensor, quality: int) -> torch.Tensor:
    ctx = Context(rng=None, quantized=True, param_set="cifar10", raw=x.contiguous())
    return fused_jpeg.jpeg_compression(quality, ctx)


def test_fused_equals_torch(cifar10_test_npz):
    assert generate.fused.KERNELS.get("jpeg_compression") is fused_jpeg.jpeg_compression
    for params in ("cifar10", "imagenet"):
        for severity in range(1, 6):
            for x in _inputs(str(cifar10_test_npz)):
                kw = dict(params=params, engine="torch")
                ref = apply_corruption(x, "jpeg_compression", severity, **kw)
                out = apply_corruption(x, "jpeg_compression", severity, **{**kw, "engine": "numba"})
                assert out.dtype == torch.uint8 and out.shape == x.shape
                bad = int((out != ref).sum())
                assert bad == 0, f"{params} s{severity} {tuple(x.shape)}: {bad} values differ"


def test_every_quality_and_partial_blocks():
    """Qualities 1..100 (quantisers 1..255, the 255 cap of force_baseline), sizes with partial
    8x8 blocks and 16x16 MCUs, and worst cases for the IDCT range limit (0/255 checkerboards)."""
    g = torch.Generator().manual_seed(3)
    checker = ((torch.arange(24)[:, None] + torch.arange(40)) % 2 * 255).to(torch.uint8)
    lines = torch.zeros(3, 29, 33, dtype=torch.uint8)
    lines[:, ::8] = 255
    lines[0, :, ::3] = 255
    images = [torch.stack([checker, 255 - checker, checker])[None], lines[None]]
    images += [torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=g)
               for h, w in ((8, 8), (9, 8), (8, 17), (23, 24), (40, 25))]
    for quality in range(1, 101):
        for x in images:
            out = _kernel(x, quality)
            ref = _library(x, quality)
            assert torch.equal(out, ref), f"q{quality} {tuple(x.shape)}: {int((out != ref).sum())}"


def test_quant_tables_match_the_encoder():
    """Our jpeg_set_quality tables are the ones libjpeg writes into the file (DQT, zigzag)."""
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for quality in range(1, 101):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        data = buf.getvalue()
        tables = {}
        pos = 2
        while data[pos + 1] != 0xDA:  # walk the markers up to start-of-scan
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            if data[pos + 1] == 0xDB:
                seg = data[pos + 4:pos + 2 + length]
                while seg:
                    assert seg[0] >> 4 == 0  # 8-bit entries (force_baseline)
                    natural = np.empty(64, np.int64)
                    natural[_ZIGZAG] = np.frombuffer(seg[1:65], np.uint8)
                    tables[seg[0] & 15] = natural
                    seg = seg[65:]
            pos += 2 + length
        _, mult = fused_jpeg._tables(quality)
        assert np.array_equal(mult[0], tables[0]) and np.array_equal(mult[1], tables[1]), quality


@pytest.mark.parametrize("quality", [1, 7, 50, 100])
def test_reciprocal_quantiser_is_rounded_division(quality):
    """compute_reciprocal + quantize give round-half-up(|x| / (8 q)) for every reachable |x|
    (they are designed to; checks our transcription of them)."""
    div, mult = fused_jpeg._tables(quality)
    x = np.arange(0, 1 << 15, dtype=np.int64)
    for t in range(2):
        for i in range(64):
            recip, corr, shift = (int(v) for v in div[t][:, i])
            d = int(mult[t][i]) * 8
            assert np.array_equal(((x + corr) * recip) >> shift, (x + d // 2) // d)
