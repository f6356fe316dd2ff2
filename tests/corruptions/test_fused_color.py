"""The fused brightness / saturate / contrast / pixelate kernels equal the torch ops bit for bit."""
import numpy as np
import pytest
import torch

from corruptions.generate import PARAMS, apply_corruption
from corruptions.ops import Context
from corruptions.ops._rng import ImageRNG
from corruptions.ops.fused import KERNELS, color

NAMES = ("brightness", "saturate", "contrast", "pixelate")


def _batches(npz):
    g = torch.Generator().manual_seed(123)
    cifar = torch.from_numpy(np.load(npz)["x"][:16]).permute(0, 3, 1, 2).contiguous()
    # few distinct levels: ties between channels (HSV sectors), greys, 0 and 255, flat images
    levels = torch.tensor([0, 1, 2, 127, 128, 253, 254, 255], dtype=torch.uint8)
    ties = levels[torch.randint(0, 8, (4, 3, 24, 40), generator=g)]
    ties[0] = 77  # one flat grey image: contrast's mean equals every value
    ties[1, :, :8] = ties[1, :1, :8]  # grey rows
    return {
        "cifar": cifar,
        "random224": torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=g),
        "odd": torch.randint(0, 256, (3, 3, 37, 45), dtype=torch.uint8, generator=g),
        "ties": ties,  # 24 x 40: pixelate's 8-aligned path on a non-square image
        "h_odd": torch.randint(0, 256, (2, 3, 36, 40), dtype=torch.uint8, generator=g),
    }


@pytest.mark.parametrize("name", NAMES)
def test_numba_equals_torch(name, cifar10_test_npz):
    assert KERNELS[name] is color.KERNELS[name]
    for label, x in _batches(cifar10_test_npz).items():
        for params in ("cifar10", "imagenet"):
            for s in range(1, 6):
                want = apply_corruption(x, name, s, params=params, engine="torch", indices=range(len(x)))
                got = apply_corruption(x, name, s, params=params, engine="numba", indices=range(len(x)))
                assert got.dtype == torch.uint8 and got.shape == x.shape
                diff = (got.int() - want.int()).abs()
                assert torch.equal(got, want), (name, label, params, s, int((diff > 0).sum()))


@pytest.mark.parametrize("name", NAMES)
def test_kernel_runs_and_does_not_fall_back(name):
    # the engine test above would also pass if a kernel returned None (torch fallback)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    ctx = Context(rng=ImageRNG(torch.zeros(2, dtype=torch.int32)), quantized=True,
                  param_set="cifar10", raw=x)
    out = color.KERNELS[name](PARAMS["cifar10"][name][4], ctx)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and out.shape == x.shape
    assert not torch.equal(out, x)


def test_pixelate_both_paths_agree_with_torch_on_odd_widths():
    # _pixelate8 needs H and W multiples of 8; every other size takes _pixelate_any
    g = torch.Generator().manual_seed(9)
    for h, w in ((16, 20), (20, 16), (8, 8), (9, 64), (64, 9)):
        x = torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8, generator=g)
        for s in range(1, 6):
            for params in ("cifar10", "imagenet"):
                want = apply_corruption(x, "pixelate", s, params=params, engine="torch")
                got = apply_corruption(x, "pixelate", s, params=params, engine="numba")
                assert torch.equal(got, want), (h, w, s, params)


def test_contrast_torch_mean_is_the_exact_integer_mean():
    # the uint8 path's channel mean is sum(u8) / (255 * H * W) rounded once, so both engines
    # can reproduce it; it stays within an ulp of the float64 mean of x = u8 / 255
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    exact = x.double().sum(dim=(2, 3)) / (255.0 * 32 * 32)
    approx = (x.double() / 255.0).mean(dim=(2, 3))
    assert torch.allclose(exact, approx, rtol=1e-13, atol=0)
    c = PARAMS["cifar10"]["contrast"][2]
    want = ((x.double() / 255.0 - exact[..., None, None]) * c + exact[..., None, None])
    want = (want.clamp(0, 1) * 255.0).to(torch.uint8)
    assert torch.equal(apply_corruption(x, "contrast", 3, engine="torch"), want)
    assert torch.equal(apply_corruption(x, "contrast", 3, engine="numba"), want)
