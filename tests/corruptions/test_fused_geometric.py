"""The fused elastic_transform kernel (ops/fused/geometric.py) equals the torch ops bit for bit."""
import numpy as np
import pytest
import torch

from corruptions.ops.fused import KERNELS
from corruptions.ops.fused import geometric

NAME = "elastic_transform"


def test_registered():
    assert KERNELS[NAME] is geometric.elastic_transform


@pytest.mark.parametrize("params", ["cifar10", "imagenet"])
def test_numba_equals_torch_every_severity(engine_batches, assert_engines_equal, params):
    batches = engine_batches
    for severity in range(1, 6):
        for x in batches.values():
            assert_engines_equal(x, NAME, severity, params)
    # another seed and global indices: other draws, same agreement
    assert_engines_equal(batches["cifar"], NAME, 5, params, seed=3, indices=range(500, 516))


def test_modulo_border_path_equals_torch(engine_batches, assert_engines_equal, monkeypatch):
    """Coordinates beyond the border tables take the modulo path: force it for every image."""
    monkeypatch.setattr(geometric, "_margins", lambda h, w, alpha: (np.int32(0), np.int32(0)))
    batches = engine_batches
    for params, severity in (("cifar10", 1), ("cifar10", 2), ("imagenet", 1), ("imagenet", 5)):
        assert_engines_equal(batches["cifar"][:4], NAME, severity, params)
        assert_engines_equal(batches["odd"], NAME, severity, params)


def test_field_smoothing_is_exact_in_any_order():
    """The torch GEMMs' result is order-free (what lets the kernel's banded loops equal it): a
    plain reversed-order float64 sum over the same rounded matrices gives the same bits."""
    from corruptions.ops._rng import ImageRNG, image_keys
    from corruptions.ops.digital import (_FIELD_BITS_H, _FIELD_BITS_MID, _FIELD_BITS_W,
                                         _field_filter_matrix, _smooth_fields)

    for h, w, sigma in ((32, 32, 170.8), (37, 45, 1.92), (64, 48, 6.4)):
        rng = ImageRNG(image_keys(0, torch.arange(3), 12, 2))
        f = rng.uniform_range(1, (2, h, w), -1.0, 1.0, dtype=torch.float64)
        got = _smooth_fields(f, sigma).numpy()
        mw = _field_filter_matrix(w, sigma, _FIELD_BITS_W)
        mh = _field_filter_matrix(h, sigma, _FIELD_BITS_H)
        fn = f.numpy()
        t = np.zeros_like(fn)
        for j in reversed(range(w)):
            t += fn[..., j:j + 1] * mw[:, j]
        t = np.floor(t * 2.0 ** _FIELD_BITS_MID + 0.5) * 2.0 ** -_FIELD_BITS_MID
        ref = np.zeros_like(fn)
        for r in reversed(range(h)):
            ref += mh[:, r][:, None] * t[..., r:r + 1, :]
        assert np.array_equal(got, ref)
        # and it is scipy's filter to ~1e-8
        from corruptions.ops._image import gaussian_filter
        assert np.abs(got - gaussian_filter(f, sigma, "reflect", 3.0).numpy()).max() < 1e-7
