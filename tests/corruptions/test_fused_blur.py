"""The fused numba blur kernels (corruptions/ops/fused/blur.py) equal the torch ops bit for bit."""
import functools

import numpy as np
import pytest
import torch

from corruptions.generate import apply_corruption
from corruptions.ops import fused

NAMES = ["motion_blur", "glass_blur", "defocus_blur", "gaussian_blur"]


@functools.lru_cache(maxsize=1)
def _image_sets(npz: str):
    g = torch.Generator().manual_seed(5)
    cifar = torch.from_numpy(np.load(npz)["x"][:16]).permute(0, 3, 1, 2).contiguous()
    return {
        "cifar": cifar,
        "random224": torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=g),
        "odd": torch.randint(0, 256, (3, 3, 37, 45), dtype=torch.uint8, generator=g),
        # smaller than the widest kernels and shifts: borders reflect twice, motion taps die
        "tiny": torch.randint(0, 256, (2, 3, 8, 11), dtype=torch.uint8, generator=g),
    }


@pytest.mark.parametrize("params", ["cifar10", "imagenet"])
@pytest.mark.parametrize("name", NAMES)
def test_numba_equals_torch(name, params, cifar10_test_npz):
    assert name in fused.KERNELS
    for label, x in _image_sets(str(cifar10_test_npz)).items():
        for s in range(1, 6):
            want = apply_corruption(x, name, s, params=params, seed=11, engine="torch")
            got = apply_corruption(x, name, s, params=params, seed=11, engine="numba")
            diff = (want.int() - got.int()).abs()
            assert diff.max() == 0, (name, params, s, label, int((diff > 0).sum()))


def test_fused_blur_batch_independent(cifar10_test_npz):
    x = _image_sets(str(cifar10_test_npz))["cifar"][:6]
    for name in NAMES:
        whole = apply_corruption(x, name, 4, params="imagenet", engine="numba")
        parts = torch.cat([apply_corruption(x[i:i + 1], name, 4, params="imagenet", engine="numba",
                                            indices=[i]) for i in range(6)])
        assert torch.equal(whole, parts), name


@pytest.mark.parametrize("sigma", [0.05, 0.4, 1.5])
def test_glass_fixed_order_gaussian_equals_scipy(sigma):
    from scipy.ndimage import gaussian_filter

    from corruptions.ops._image import gaussian_nearest

    a = np.random.default_rng(1).random((2, 3, 37, 45)).astype(np.float32)
    got = gaussian_nearest(torch.from_numpy(a), sigma).numpy()
    want = gaussian_filter(a.astype(np.float64), (0, 0, sigma, sigma), mode="nearest", truncate=4.0)
    assert np.abs(got - want).max() < 1e-6


def test_defocus_fixed_point_disk_is_close_and_fits_int32():
    from corruptions.ops.blur import DEFOCUS_FIXED_BITS, disk_kernel, disk_kernel_fixed
    from corruptions.params import PARAMS

    for params in ("cifar10", "imagenet"):
        for radius, alias in PARAMS[params]["defocus_blur"]:
            k = disk_kernel(float(radius), float(alias)).astype(np.float64)
            fixed = disk_kernel_fixed(float(radius), float(alias))
            assert np.array_equal(fixed, np.round(fixed)) and fixed.min() >= 0
            assert np.abs(fixed * 2.0 ** -DEFOCUS_FIXED_BITS - k).max() <= 2.0 ** -(DEFOCUS_FIXED_BITS + 1)
            assert fixed.sum() * 255 < 2 ** 31  # every partial sum of the fused kernel fits int32
