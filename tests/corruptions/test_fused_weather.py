"""The fused snow kernel (ops/fused/weather.py) equals the torch ops bit for bit."""
import numpy as np
import pytest
import torch

from corruptions.ops.fused import KERNELS
from corruptions.ops.fused import weather

NAME = "snow"


def test_registered():
    assert KERNELS[NAME] is weather.snow


@pytest.mark.parametrize("params", ["cifar10", "imagenet"])
def test_numba_equals_torch_every_severity(engine_batches, assert_engines_equal, params):
    batches = engine_batches
    for severity in range(1, 6):
        for x in batches.values():
            assert_engines_equal(x, NAME, severity, params)
    assert_engines_equal(batches["cifar"], NAME, 4, params, seed=5, indices=range(9000, 9016))


def test_several_torch_chunks(assert_engines_equal):
    """6 images at 224 px are two torch chunks (5 + 1): the kernel's one-call batch still agrees."""
    x = torch.randint(0, 256, (6, 3, 224, 224), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(3))
    assert_engines_equal(x, NAME, 5, "imagenet")


def test_motion_shifts_do_not_depend_on_batch_layout():
    """The kernel takes the blur shifts from torch's sin/cos/hypot on the whole batch; the torch
    path evaluates them per chunk: they must not depend on an angle's position or batch size."""
    from corruptions.ops._rng import ImageRNG, image_keys

    angle = ImageRNG(image_keys(0, torch.arange(4099), 7, 3)).uniform_range(
        1, (), -135.0, -45.0, dtype=torch.float64)
    whole = weather.motion_shifts(angle, 14, 12.0, 224, 224)
    for start, stop in ((0, 1), (3, 8), (13, 45), (4000, 4099)):
        part = weather.motion_shifts(angle[start:stop], 14, 12.0, 224, 224)
        for a, b in zip(whole[:3], part[:3]):
            assert np.array_equal(a[start:stop], b)
