"""The fused noise kernels (corruptions/ops/fused/noise.py) equal the torch ops bit for bit."""
import functools

import numpy as np
import pytest
import torch

from corruptions import generate
from corruptions.generate import apply_corruption
from corruptions.ops import _nbrng
from corruptions.ops._rng import ImageRNG
from corruptions.ops.fused import noise as fused_noise
from corruptions.ops.noise import _poisson_tables

NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


@functools.lru_cache(maxsize=1)
def _inputs(path: str) -> tuple[torch.Tensor, ...]:
    cifar = torch.from_numpy(np.load(path)["x"][:16]).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(5)
    big = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=g)
    odd = torch.randint(0, 256, (3, 3, 37, 45), dtype=torch.uint8, generator=g)
    odd[0, :, :5] = 0  # saturated regions: the clamps and the Poisson rate 0
    odd[1, :, :5] = 255
    return cifar, big, odd


@pytest.mark.parametrize("name", NAMES)
def test_fused_equals_torch(name, cifar10_test_npz):
    assert name in generate.fused.KERNELS
    for params in ("cifar10", "imagenet"):
        for severity in range(1, 6):
            for x in _inputs(str(cifar10_test_npz)):
                ref = apply_corruption(x, name, severity, params=params, seed=11, engine="torch")
                out = apply_corruption(x, name, severity, params=params, seed=11, engine="numba")
                assert out.dtype == torch.uint8 and out.shape == x.shape
                bad = int((out != ref).sum())
                where = f"{name} {params} s{severity} {tuple(x.shape)}"
                assert bad == 0, f"{where}: {bad} pixels differ"
    # the same images under other global indices draw other noise, in both engines alike
    x = _inputs(str(cifar10_test_npz))[0][:4]
    a = apply_corruption(x, name, 3, indices=[9, 8, 7, 6], engine="numba")
    assert torch.equal(a, apply_corruption(x, name, 3, indices=[9, 8, 7, 6], engine="torch"))
    assert not torch.equal(a, apply_corruption(x, name, 3, engine="numba"))


def _inverse_mix32(y: np.ndarray) -> np.ndarray:
    """The hash input h with mix32(h) = y (lowbias32 is a bijection), as int32."""
    y = y.astype(np.uint32)
    y ^= y >> np.uint32(16)
    y *= np.uint32(pow(0x846CA68B, -1, 1 << 32))
    y ^= (y >> np.uint32(15)) ^ (y >> np.uint32(30))
    y *= np.uint32(pow(0x7FEB352D, -1, 1 << 32))
    y ^= y >> np.uint32(16)
    return y.view(np.int32)


def _run_chosen_bits(monkeypatch, name, params, severity, levels, bits):
    """Both engines on one image whose element e has value levels[e] and draws the 24 random bits
    bits[e]: the torch ops through an ImageRNG that returns them, the fused kernel through element
    hashes that hash to them (key 0)."""
    count = len(bits)
    w = 256
    h = max(8, -(-count // (3 * w)))
    pad = 3 * h * w - count
    levels = np.concatenate([levels, np.full(pad, levels[-1])]).astype(np.uint8)
    hashed = np.concatenate([bits, np.full(pad, bits[-1])]).astype(np.int64) << 8
    element_hashes = _inverse_mix32(hashed)
    check = np.empty(3 * h * w, np.int32)
    _nbrng.bits24_into(element_hashes, np.int32(0), check)
    assert np.array_equal(check[:count], bits)

    class ChosenBits(ImageRNG):
        def bits(self, stream, shape):
            assert stream == 0 and int(np.prod(shape)) == hashed.size
            row = torch.from_numpy(hashed.astype(np.uint32).view(np.int32).copy())
            return row.expand(len(self), -1).reshape(len(self), *shape).clone()

    monkeypatch.setattr(generate, "ImageRNG", ChosenBits)
    monkeypatch.setattr(fused_noise, "element_hashes", lambda stream, numel: element_hashes)
    monkeypatch.setattr(fused_noise, "keys_array", lambda keys: np.zeros(len(keys), np.int32))
    x = torch.from_numpy(levels).view(1, 3, h, w)
    ref = apply_corruption(x, name, severity, params=params, engine="torch").reshape(-1)[:count]
    out = apply_corruption(x, name, severity, params=params, engine="numba").reshape(-1)[:count]
    monkeypatch.undo()
    return ref, out


def test_every_normal_draw(monkeypatch):
    """All 2**24 bit patterns, at every input level, through gaussian and speckle noise."""
    bits = np.arange(1 << 24, dtype=np.int64)
    levels = (bits * 7919) % 256  # every level meets the whole range of draws
    cases = (("gaussian_noise", "imagenet", 5), ("speckle_noise", "cifar10", 1))
    for name, params, severity in cases:
        ref, out = _run_chosen_bits(monkeypatch, name, params, severity, levels, bits)
        bad = np.flatnonzero((out != ref).numpy())
        assert bad.size == 0, (name, bits[bad[:5]], levels[bad[:5]], ref[bad[:5]], out[bad[:5]])


@pytest.mark.parametrize("params,severity", [("cifar10", 1), ("cifar10", 3), ("imagenet", 5)])
def test_shot_noise_at_every_cdf_boundary(monkeypatch, params, severity):
    """The bits on both sides of every step of every level's Poisson CDF (where an off-by-one in
    the inverse-CDF draw would show)."""
    c = generate.PARAMS[params]["shot_noise"][severity - 1]
    cdf, _, width, _ = _poisson_tables(float(c), 255, "cpu")
    cdf = cdf.numpy().reshape(256, width).astype(np.float64)
    level, _ = np.nonzero(cdf < 1.0)
    edge = np.floor(cdf[cdf < 1.0] * 2.0 ** 24).astype(np.int64)
    levels = np.concatenate([level, level, level, np.arange(256), np.arange(256)])
    bits = np.concatenate([edge - 1, edge, edge + 1, np.zeros(256), np.full(256, (1 << 24) - 1)])
    keep = (bits >= 0) & (bits < 1 << 24)
    ref, out = _run_chosen_bits(monkeypatch, "shot_noise", params, severity, levels[keep],
                                bits[keep])
    assert torch.equal(out, ref)
    assert len(set(ref.tolist())) >= 4  # several outputs (c = 3 has 0, 85, 170, 255 only)


def test_impulse_noise_at_its_thresholds(monkeypatch):
    for params in ("cifar10", "imagenet"):
        for severity in range(1, 6):
            amount = generate.PARAMS[params]["impulse_noise"][severity - 1]
            edges = [int(np.float32(t) * 2.0 ** 24) + d
                     for t in (amount, amount / 2) for d in range(-2, 3)]
            bits = np.array(edges + [0, (1 << 24) - 1] * 2, np.int64)
            levels = np.arange(bits.size) * 37 % 256
            ref, out = _run_chosen_bits(monkeypatch, "impulse_noise", params, severity, levels,
                                        bits)
            assert torch.equal(out, ref)
            assert {0, 255} <= set(ref.tolist())
