"""apply_corruption: dtypes, shapes, determinism per image, errors, and the exact helpers."""
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from corruptions.generate import (ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, CORRUPTIONS,
                                  EXTRA_CORRUPTIONS, apply_corruption)
from corruptions.ops._rng import ImageRNG, image_keys, mix32, mix32_int, normal_from_bits
from corruptions.ops.blur import glass_shuffle
from corruptions.ops.noise import poisson_from_uniform


def _images(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images with structure so blurs and edges do something
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    img = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return (img * 255).round().to(torch.uint8)


@functools.lru_cache(maxsize=1)
def _first_test_images(path: str) -> torch.Tensor:
    return torch.from_numpy(np.load(path)["x"][:6]).permute(0, 3, 1, 2).contiguous()


@pytest.fixture
def cifar_images(cifar10_test_npz):
    """Six real CIFAR-10 test images (the conftest rule: skip only outside CI when absent)."""
    return _first_test_images(str(cifar10_test_npz)).clone()


def test_lists_and_registry():
    assert len(BENCHMARK_CORRUPTIONS) == 15 and len(EXTRA_CORRUPTIONS) == 4
    assert list(CORRUPTIONS) == list(ALL_CORRUPTIONS)
    x = _images(2)
    assert torch.equal(CORRUPTIONS["contrast"](x, 2), apply_corruption(x, "contrast", 2))


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_every_corruption_every_severity_cifar(name, cifar_images):
    x = cifar_images[:3]
    changes = []
    for s in range(1, 6):
        y = apply_corruption(x, name, s, params="cifar10")
        assert y.dtype == torch.uint8 and y.shape == x.shape
        changes.append((y.float() - x.float()).abs().mean().item())
    # every corruption changes the image at the top severity
    assert changes[-1] > 0.5, (name, changes)


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_batch_size_order_and_indices_do_not_matter(name, cifar_images):
    x = cifar_images
    full = apply_corruption(x, name, 3, seed=7)
    # same images in another order, with their global indices
    perm = torch.tensor([4, 1, 5, 0, 3, 2])
    shuffled = apply_corruption(x[perm], name, 3, seed=7, indices=perm)
    assert torch.equal(shuffled, full[perm])
    # one at a time
    single = torch.cat([apply_corruption(x[i:i + 1], name, 3, seed=7, indices=[i]) for i in range(2)])
    assert torch.equal(single, full[:2])


@pytest.mark.parametrize("name", ["gaussian_noise", "glass_blur", "frost", "fog", "elastic_transform",
                                  "snow", "motion_blur", "spatter"])
def test_seed_and_index_change_random_corruptions(name, cifar_images):
    x = cifar_images[:2]
    a = apply_corruption(x, name, 5, seed=0)
    assert not torch.equal(a, apply_corruption(x, name, 5, seed=1))
    assert torch.equal(a, apply_corruption(x, name, 5, seed=0))
    same_image_twice = apply_corruption(x[[0, 0]], name, 5, seed=0, indices=[0, 1])
    assert not torch.equal(same_image_twice[0], same_image_twice[1])


@pytest.mark.parametrize("name", ["gaussian_noise", "defocus_blur", "snow", "saturate", "pixelate"])
def test_float_input_matches_uint8_path(name, cifar_images):
    x = cifar_images[:3]
    y8 = apply_corruption(x, name, 2)
    yf = apply_corruption(x.float() / 255, name, 2)
    assert yf.dtype == torch.float32 and 0 <= yf.min() and yf.max() <= 1
    # the float result, truncated like the uint8 path, differs by at most one level
    diff = (torch.floor(yf * 255 + 2e-3) - y8.float()).abs()
    assert diff.max() <= 1
    if name != "pixelate":  # uint8 pixelate rounds between PIL's two passes, float does not
        assert (diff > 0).float().mean() < 0.01
    assert apply_corruption(x.double() / 255, name, 2).dtype == torch.float64


def test_other_sizes_and_imagenet_params():
    x = _images(2, size=48)
    for name in ALL_CORRUPTIONS:
        y = apply_corruption(x, name, 1, params="imagenet")
        assert y.shape == x.shape


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(2, 32, 32, 3, dtype=torch.uint8), r"\(N, 3, H, W\)"),
    (torch.zeros(3, 32, 32, dtype=torch.uint8), r"\(N, 3, H, W\)"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int32), "dtype"),
    (torch.full((1, 3, 32, 32), 1.5), r"\[0, 1\]"),
    (torch.full((1, 3, 32, 32), -0.1), r"\[0, 1\]"),
    (torch.full((1, 3, 32, 32), float("nan")), r"\[0, 1\]"),
    (np.zeros((1, 3, 32, 32), dtype=np.uint8), "torch.Tensor"),
])
def test_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        apply_corruption(bad, "contrast", 1)


def test_bad_name_suggests_closest():
    with pytest.raises(ValueError, match=r"unknown corruption 'gausian_noise'.*did you mean 'gaussian_noise'"):
        apply_corruption(_images(1), "gausian_noise", 1)
    with pytest.raises(ValueError, match="unknown corruption 'zzz'"):
        apply_corruption(_images(1), "zzz", 1)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.5, "3", None, True])
def test_bad_severity(severity):
    with pytest.raises(ValueError, match="severity"):
        apply_corruption(_images(1), "contrast", severity)


def test_bad_params_and_indices():
    with pytest.raises(ValueError, match="unknown params set 'cifar100'"):
        apply_corruption(_images(1), "contrast", 1, params="cifar100")
    with pytest.raises(ValueError, match="indices"):
        apply_corruption(_images(2), "contrast", 1, indices=[0])
    with pytest.raises(ValueError, match="seed"):
        apply_corruption(_images(2), "contrast", 1, seed=-3)


def test_engine_argument(cifar_images):
    x = cifar_images[:2]
    want = apply_corruption(x, "gaussian_noise", 3)
    for engine in ("auto", "torch"):  # both are the torch ops
        assert torch.equal(apply_corruption(x, "gaussian_noise", 3, engine=engine), want)
    with pytest.raises(ValueError, match="numba engine was removed"):
        apply_corruption(x, "gaussian_noise", 3, engine="numba")
    with pytest.raises(ValueError, match="unknown engine 'fast'"):
        apply_corruption(x, "fog", 1, engine="fast")


def test_empty_batch():
    x = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    assert apply_corruption(x, "fog", 1).shape == x.shape


# ---- exact helpers --------------------------------------------------------------------------
def test_int32_hash_matches_python_reference():
    vals = [0, 1, 2, 12345, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 0xDEADBEEF, 0x9E3779B9]
    t = torch.tensor([v - 2 ** 32 if v >= 2 ** 31 else v for v in vals], dtype=torch.int32)
    assert [int(v) & 0xFFFFFFFF for v in mix32(t)] == [mix32_int(v) for v in vals]


def test_uniform_and_normal_statistics():
    rng = ImageRNG(image_keys(0, torch.arange(64), 0, 1))
    u = rng.uniform(0, (4096,))
    assert 0 < u.min() and u.max() <= 1
    assert abs(u.mean().item() - 0.5) < 0.002 and abs(u.var().item() - 1 / 12) < 0.001
    z = rng.normal(1, (4096,))
    assert abs(z.mean().item()) < 0.005 and abs(z.std().item() - 1) < 0.005
    assert abs((z.abs() > 1.96).float().mean().item() - 0.05) < 0.003
    # neighbouring images and elements are uncorrelated
    assert abs(torch.corrcoef(torch.stack([z[0], z[1]]))[0, 1].item()) < 0.05
    assert abs(torch.corrcoef(torch.stack([z[:, :-1].flatten(), z[:, 1:].flatten()]))[0, 1]) < 0.01
    # element 0 (and every element) of different streams are independent
    firsts = torch.stack([rng.uniform(s, (1,))[:, 0] for s in range(8)])
    assert torch.unique(firsts).numel() == firsts.numel()
    a, b = rng.normal(2, (4096,)), rng.normal(3, (4096,))
    assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) < 0.01


def test_normals_on_every_24_bit_input():
    """The inverse CDF on all 2**24 inputs: close to scipy's quantile, symmetric, monotone, and
    the same bits wherever an element sits (a strided view runs torch's non-vector loop)."""
    from scipy.special import ndtri

    b = torch.arange(1 << 24, dtype=torch.int32)
    z = normal_from_bits(b)
    assert torch.equal(z, -z.flip(0)) and bool((z[1:] >= z[:-1]).all())
    want = ndtri((np.arange(1 << 24) + 0.5) / 2 ** 24)
    assert np.abs(z.double().numpy() - want).max() < 1e-6
    spaced = torch.zeros(2 << 24)  # erfinv through the strided (non-vector) loop
    spaced[::2] = b.to(torch.float32).mul_(2.0 ** -23).add_(2.0 ** -24 - 1.0)
    assert torch.equal(spaced[::2].erfinv().mul_(math.sqrt(2.0)), z)
    assert torch.equal(torch.cat([normal_from_bits(b[i:i + 7]) for i in range(0, 700, 7)]), z[:700])


def test_poisson_draws_have_poisson_moments():
    c = 60.0
    for level_frac, lam in [(0.05, 3.0), (0.5, 30.0)]:
        level = torch.full((200_000,), level_frac * 1020.0)
        u = ImageRNG(image_keys(3, torch.arange(1), 1, 1)).uniform(0, (200_000,))[0]
        k = poisson_from_uniform(level, u, c).double()
        assert abs(k.mean().item() - lam) < 4 * math.sqrt(lam / 200_000) + 1e-9
        assert abs(k.var().item() / lam - 1) < 0.02
        if lam == 3.0:  # P(K=0) = e^-3
            assert abs((k == 0).double().mean().item() - math.exp(-3)) < 0.003


def _glass_sequential(img, offsets, delta):
    """The reference's raster loop with copy (not swap) semantics, on numpy (H, W, C)."""
    x = img.copy()
    h, w = x.shape[:2]
    for it in range(offsets.shape[0]):
        s = 0
        for hh in range(h - delta, delta, -1):
            for ww in range(w - delta, delta, -1):
                dx, dy = offsets[it, s]
                s += 1
                x[hh, ww], x[hh + dy, ww + dx] = x[hh + dy, ww + dx], x[hh, ww]
    return x


@pytest.mark.parametrize("delta,iters,size", [(1, 2, 12), (2, 1, 13), (4, 2, 17)])
def test_glass_wavefronts_equal_the_sequential_loop(delta, iters, size):
    rng = np.random.default_rng(delta)
    img = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    steps = (size - 2 * delta) ** 2
    offsets = rng.integers(-delta, delta, (iters, steps, 2))
    want = _glass_sequential(img, offsets, delta)
    got = glass_shuffle(torch.from_numpy(img).permute(2, 0, 1)[None].double(),
                        torch.from_numpy(offsets)[None], delta)
    assert np.array_equal(got[0].permute(1, 2, 0).numpy().astype(np.uint8), want)


@pytest.mark.parametrize("c,levels", [(500.0, 255), (3.0, 255), (60.0, 1020)])
def test_poisson_inversion_equals_plain_search(c, levels):
    """Guide table + bisection == the smallest k with CDF(k) >= u, for every rate level."""
    from corruptions.ops.noise import _poisson_tables

    cdf, _, width, _ = _poisson_tables(c, levels, "cpu")
    g = torch.Generator().manual_seed(0)
    lv = torch.randint(0, levels + 1, (50_000,), generator=g)
    u = torch.rand(50_000, generator=g).clamp_min(2 ** -24)
    u[:50] = 1.0
    u[50:100] = 2 ** -24
    got = poisson_from_uniform(lv.float(), u, c, levels)
    rows = cdf.view(levels + 1, width)[lv]
    want = torch.searchsorted(rows, u.unsqueeze(1)).squeeze(1)
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["shot_noise", "glass_blur", "frost", "spatter", "jpeg_compression"])
def test_internal_chunking_does_not_change_results(name, cifar_images, monkeypatch):
    import corruptions.generate as gen

    whole = apply_corruption(cifar_images, name, 4, seed=3)
    monkeypatch.setattr(gen, "_CHUNK_PIXELS", 2 * 32 * 32)  # two images per chunk (four where _CHUNK_SCALE doubles it)
    assert torch.equal(apply_corruption(cifar_images, name, 4, seed=3), whole)


@pytest.mark.parametrize("n,sigma,mode,truncate", [(32, 0.7, "nearest", 4.0), (224, 6.0, "nearest", 4.0),
                                                   (224, 170.8, "reflect", 3.0), (32, 6.4, "reflect", 3.0)])
def test_gaussian_filter_equals_scipy(n, sigma, mode, truncate):
    from scipy.ndimage import gaussian_filter as scipy_gaussian
    from corruptions.ops._image import gaussian_filter

    a = np.random.default_rng(0).random((n, n))
    got = gaussian_filter(torch.from_numpy(a)[None, None], sigma, mode, truncate)[0, 0].numpy()
    assert np.abs(got - scipy_gaussian(a, sigma, mode=mode, truncate=truncate)).max() < 1e-12


def test_non_contiguous_and_half_inputs(cifar_images):
    hwc = cifar_images.permute(0, 2, 3, 1).contiguous()
    view = hwc.permute(0, 3, 1, 2)  # NCHW view of HWC memory, as from a numpy array
    for name in ("glass_blur", "elastic_transform", "pixelate", "fog"):
        assert torch.equal(apply_corruption(view, name, 2), apply_corruption(cifar_images, name, 2))
    half = apply_corruption(cifar_images.half() / 255, "snow", 2)
    assert half.dtype == torch.float16 and half.shape == cifar_images.shape


def test_jpeg_torchvision_round_trip_equals_pil(cifar_images):
    """The batched torchvision path must give PIL's bytes exactly (same libjpeg settings)."""
    from corruptions.ops.digital import _jpeg_roundtrip_torchvision, jpeg_roundtrip_pil

    odd = torch.randint(0, 256, (2, 3, 37, 50), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for images in (cifar_images, odd):
        for quality in (80, 40, 7):
            got = _jpeg_roundtrip_torchvision(images, quality)
            assert got is not None and torch.equal(got, jpeg_roundtrip_pil(images, quality)), quality


def test_jpeg_through_torchvision_io_when_its_library_cannot_be_loaded(cifar_images, monkeypatch):
    """Another torchvision layout falls back to torchvision.io, with the same bytes."""
    import importlib.util

    from corruptions.ops import digital

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    digital._jpeg_codec.cache_clear()
    try:
        got = digital._jpeg_roundtrip_torchvision(cifar_images[:8], 40)
    finally:
        monkeypatch.undo()
        digital._jpeg_codec.cache_clear()
    assert got is not None and torch.equal(got, digital.jpeg_roundtrip_pil(cifar_images[:8], 40))


def test_jpeg_codec_loads_without_importing_torchvision():
    """The JPEG corruption must not pay torchvision's ~2.5 s import in every job; its bytes
    still equal PIL's."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from corruptions.ops.digital import _jpeg_roundtrip_torchvision, jpeg_roundtrip_pil\n"
            "x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)\n"
            "got = _jpeg_roundtrip_torchvision(x, 30)\n"
            "assert got is not None and torch.equal(got, jpeg_roundtrip_pil(x, 30))\n"
            "assert 'torchvision' not in sys.modules, 'torchvision was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", ["shot_noise", "impulse_noise", "jpeg_compression", "pixelate"])
@pytest.mark.parametrize("params", ["cifar10", "imagenet"])
def test_uint8_fast_paths_equal_the_float_pipeline(name, params, cifar_images):
    """Kernels that return bytes directly for uint8 input (lookup tables, bit thresholds) must equal
    the generic path: float kernel, then clamp, x255, +eps and truncation."""
    from corruptions.ops import TRUNC_EPS, Context
    from corruptions.params import PARAMS, RECORDS

    for severity in (1, 3, 5):
        fast = apply_corruption(cifar_images, name, severity, params=params, seed=5)
        keys = image_keys(5, torch.arange(len(cifar_images)), RECORDS[name].stream_id, severity)
        ctx = Context(rng=ImageRNG(keys), quantized=True, param_set=params)
        y = RECORDS[name].kernel(cifar_images.float() / 255.0, PARAMS[params][name][severity - 1], ctx)
        slow = y.clamp(0, 1).mul(255.0).add(TRUNC_EPS).to(torch.uint8)
        assert torch.equal(fast, slow), (name, severity)


@pytest.mark.parametrize("low,high", [(0, 5), (-4, 4), (-1, 1), (0, 1), (3, 1000)])
def test_integer_randint_equals_its_float64_definition(low, high):
    rng = ImageRNG(image_keys(2, torch.arange(3), 4, 2))
    u = rng.uniform(7, (40_000,), dtype=torch.float64)
    span = high - low
    want = (low + torch.clamp(torch.floor((u - 2.0 ** -25) * span), 0, span - 1)).to(torch.int64)
    got = rng.randint(7, (40_000,), low, high)
    assert torch.equal(got, want) and int(got.min()) >= low and int(got.max()) < high
