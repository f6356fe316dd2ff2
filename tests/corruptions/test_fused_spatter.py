"""The fused spatter kernel (corruptions/ops/fused/spatter.py) equals the torch ops bit for bit."""
import numpy as np
import pytest
import torch

from corruptions.generate import PARAMS, apply_corruption
from corruptions.ops import _spatter
from corruptions.ops._image import gaussian_nearest
from corruptions.ops.fused import spatter as fs


def _both(x, severity, params, seed=3):
    a = apply_corruption(x, "spatter", severity, params=params, seed=seed, engine="torch")
    b = apply_corruption(x, "spatter", severity, params=params, seed=seed, engine="numba")
    return a, b


def _assert_equal(a, b, what):
    diff = (a.int() - b.int()).abs()
    assert torch.equal(a, b), (what, int((diff > 0).sum()), int(diff.max()))


@pytest.mark.parametrize("params", ["cifar10", "imagenet"])
def test_engines_equal_on_cifar_random_and_odd_sizes(params, cifar10_test_npz):
    # many CIFAR images (the torch path takes ~0.1 ms each): rounding corners are rare; 403 is
    # not a multiple of LANES, so the last chamfer group is partial
    x = np.load(cifar10_test_npz)["x"][:403]
    cifar = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(11)
    big = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=g)
    odd = torch.randint(0, 256, (3, 3, 37, 45), dtype=torch.uint8, generator=g)
    for severity in range(1, 6):
        for name, x in (("cifar", cifar), ("224", big), ("37x45", odd)):
            a, b = _both(x, severity, params)
            _assert_equal(a, b, (params, severity, name))


@pytest.mark.parametrize("p", [
    (0.2, 0.05, 1.0, 0.7, 0.5, 0),  # liquid never reaches the threshold: no water, m == 0
    (0.95, 0.02, 1.0, 0.6, 0.5, 0),  # liquid everywhere, nearly flat: few or no edges
    (0.65, 0.3, 0.6, 0.68, 0.5, 0),  # many edges
    (0.95, 0.02, 1.0, 0.6, 1.5, 1),  # mud everywhere
    (0.2, 0.05, 1.0, 0.7, 0.6, 1),  # no mud
])
def test_engines_equal_on_edge_cases(p, monkeypatch):
    monkeypatch.setitem(PARAMS["cifar10"], "spatter", (p,) * 5)
    g = torch.Generator().manual_seed(5)
    for shape in ((9, 3, 32, 32), (2, 3, 8, 11)):
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        a, b = _both(x, 1, "cifar10", seed=9)
        _assert_equal(a, b, (p, shape))


def test_batch_position_does_not_matter():
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=g)
    whole = apply_corruption(x, "spatter", 2, engine="numba", seed=4)
    for i in (0, 9):
        one = apply_corruption(x[i:i + 1], "spatter", 2, engine="numba", seed=4, indices=[i])
        assert torch.equal(one[0], whole[i])


def test_level_floats_are_the_division_generate_does():
    levels = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    want = levels.to(torch.float32).div_(255.0).numpy()
    got = np.arange(256, dtype=np.float32) / np.float32(255.0)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))


def test_chamfer_scans_reach_the_torch_relaxation_fixed_point():
    """Random edge maps of several densities (one empty) side by side in the lanes; some need
    more than one forward/backward pair (float32 sums depend on the step order)."""
    rng = np.random.default_rng(0)
    h, w = 29, 41
    L = fs.LANES
    d = np.full((h + 4, (w + 4) * L), fs._INF, np.float32)
    cb = np.empty(w * L, np.float32)
    for trial in range(6):
        density = np.resize([0.002, 0.01, 0.03, 0.1, 0.0, 0.3, 0.05, 0.02], L)
        maps = rng.random((L, h, w)) < density[:, None, None]
        cand = np.zeros((h + 2, w + 2), np.uint8)
        for k in range(L):
            cand[1:-1, 1:-1] = np.where(maps[k], 2, 0)
            fs._seed_lane(cand, d, k)
        fs._chamfer(d, cb)
        want = _spatter.chamfer_distance(torch.from_numpy(maps[:, None])).clamp_max(20.0).numpy()
        for k in range(L):
            got = np.minimum(d[2:h + 2, 2 * L + k:(w + 2) * L + k:L], np.float32(20))
            assert np.array_equal(got.view(np.int32), want[k, 0].view(np.int32)), (trial, k)


@pytest.mark.parametrize("sigma,shape", [(0.7, (32, 32)), (4.0, (32, 32)), (4.0, (8, 11)),
                                         (1.5, (37, 45))])
def test_gaussian_fixed_order_matches_torch_and_scipy(sigma, shape):
    from scipy.ndimage import gaussian_filter

    a = np.random.default_rng(1).random(shape)
    ref = gaussian_nearest(torch.from_numpy(a)[None, None], sigma)[0, 0].numpy()
    assert np.abs(ref - gaussian_filter(a, sigma, mode="nearest", truncate=4.0)).max() < 1e-12
    taps = fs._half_taps(sigma)
    r = len(taps) - 1
    h, w = shape
    img = a.copy()
    fs._gauss_nearest(img, taps, np.empty(h * (w + 2 * r)), np.empty(h * (w + 2 * r)),
                      np.empty((h + 2 * r) * w))
    assert np.array_equal(img, ref)


def test_equalize_lut_matches_torch_for_every_count_of_the_first_bin():
    """Every h0 (pixels in the lowest occupied bin) of a 32x32 image and some 224x224 ones:
    the float32 scale and round-half-even of _spatter.equalize_hist."""
    rng = np.random.default_rng(3)
    lut = np.empty(21, np.int32)
    for total, h0s in ((1024, range(1, 1025)), (224 * 224, rng.integers(1, 224 * 224, 300))):
        for h0 in h0s:
            lo = int(rng.integers(0, 5))
            vals = np.concatenate([np.full(h0, lo), rng.integers(lo + 1, 21, total - h0)])
            hist = np.bincount(vals, minlength=21).astype(np.int32)
            fs._equalize_lut(hist, total, lut)
            want = _spatter.equalize_hist(torch.from_numpy(vals.astype(np.float64))[None, None])
            assert np.array_equal(lut[vals], want.numpy().ravel().astype(np.int32)), (total, h0)
