"""The numba random numbers equal ImageRNG's bit for bit."""
import numpy as np
import torch

from corruptions.ops import _nbrng as nb
from corruptions.ops._rng import ImageRNG, image_keys, normal_from_bits


def _rng(n=5, seed=7):
    return ImageRNG(image_keys(seed, torch.arange(1000, 1000 + n), 3, 2))


def test_bits_uniform_randint_and_uniform_range_equal_torch():
    rng, numel = _rng(), 999
    keys = nb.keys_array(rng.keys)
    eh = nb.element_hashes(4, numel)
    bits = np.empty(numel, np.int32)
    ref_bits = rng.bits(4, (numel,)).bitwise_right_shift_(8).bitwise_and_(0xFFFFFF).numpy()
    ref_u = rng.uniform(4, (numel,)).numpy()
    ref_i = rng.randint(4, (numel,), -7, 12).numpy()
    ref_r = rng.uniform_range(4, (numel,), -45.0, 45.0, dtype=torch.float64).numpy()
    for n, key in enumerate(keys):
        nb.bits24_into(eh, key, bits)
        assert np.array_equal(bits, ref_bits[n])
        u = np.array([nb.uniform_from_bits24(b) for b in bits], np.float32)
        assert np.array_equal(u, ref_u[n])
        assert [nb.randint_from_bits24(b, -7, 12) for b in bits] == ref_i[n].tolist()
        r = np.array([nb.uniform64_range(b, -45.0, 45.0) for b in bits])
        assert np.array_equal(r, ref_r[n])


def test_normals_equal_torch_and_cover_the_tails():
    rng, numel = _rng(n=4), 4097
    keys = nb.keys_array(rng.keys)
    eh = nb.element_hashes(1, numel)
    table, steps = nb.normal_table_arrays()
    out = np.empty(numel, np.float32)
    ref = rng.normal(1, (numel,)).numpy()
    for n, key in enumerate(keys):
        nb.normals_into(eh, key, table, steps, out)
        assert np.array_equal(out.view(np.int32), ref[n].view(np.int32))
    # every 24-bit value, including both extremes, through the torch formula: symmetric, monotone
    b = torch.arange(1 << 24, dtype=torch.int32)
    z = normal_from_bits(b)
    assert torch.equal(z, -z.flip(0)) and bool((z[1:] >= z[:-1]).all())
    assert 5.29 < z[-1].item() < 5.30  # -Q(2**-24) = 5.2947
    zd = z.double()
    assert abs(zd.var(unbiased=False).item() - 1) < 1e-5 and abs((zd ** 4).mean().item() - 3) < 1e-4


def test_no_writable_cache_location_means_no_disk_cache(monkeypatch):
    real = nb.numba.njit

    def njit(*args, **kw):
        if kw.get("cache"):
            raise RuntimeError("cannot cache function '_cache_probe': no locator available for file")
        return real(*args, **kw)

    assert nb.cache_usable()  # this checkout is writable
    monkeypatch.setattr(nb.numba, "njit", njit)
    assert nb.cache_usable() is False
