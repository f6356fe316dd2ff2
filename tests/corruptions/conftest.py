"""Shared pieces of the fused-engine tests: the image sets and the byte-equality check."""
import numpy as np
import pytest
import torch

from corruptions.generate import apply_corruption


@pytest.fixture
def engine_batches(cifar10_test_npz):
    """16 real CIFAR-10 test images, 2 random 224-px images and an odd 3 x 37 x 45 batch."""
    g = torch.Generator().manual_seed(12)
    return {
        "cifar": torch.from_numpy(np.load(cifar10_test_npz)["x"][:16]).permute(0, 3, 1, 2).contiguous(),
        "224": torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=g),
        "odd": torch.randint(0, 256, (3, 3, 37, 45), dtype=torch.uint8, generator=g),
    }


def _assert_engines_equal(x, name, severity, params, **kw):
    ref = apply_corruption(x, name, severity, params=params, engine="torch", **kw)
    got = apply_corruption(x, name, severity, params=params, engine="numba", **kw)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    diff = (ref.int() - got.int()).abs()
    assert int(diff.max()) == 0, (name, params, severity, tuple(x.shape), int((diff > 0).sum()))


@pytest.fixture
def assert_engines_equal():
    """assert_engines_equal(x, name, severity, params, **kw): engine numba == engine torch."""
    return _assert_engines_equal
