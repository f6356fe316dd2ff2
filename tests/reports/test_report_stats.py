import math

import pytest
from scipy.stats import binomtest

from reports.stats import WILSON_Z, wilson_interval


@pytest.mark.parametrize("n", [1, 7, 100, 10_000])
def test_wilson_bounds_are_exact_at_0_and_100_percent(n):
    low, high = wilson_interval(0, n)
    assert low == 0.0 and 0 < high < 1
    low, high = wilson_interval(n, n)
    assert high == 1.0 and 0 < low < 1
    # The open bound mirrors the other end, and fractional counts (seed means) behave the same.
    assert wilson_interval(0, n)[1] == pytest.approx(1 - wilson_interval(n, n)[0], abs=1e-15)
    assert wilson_interval(0.0, float(n))[0] == 0.0
    assert wilson_interval(float(n), float(n))[1] == 1.0


def test_wilson_matches_scipy_inside_and_clamps_outside():
    for correct, n in ((1, 10), (7, 10), (380, 500), (9_999, 10_000), (1, 10_000)):
        expected = binomtest(correct, n).proportion_ci(method="wilson")
        assert wilson_interval(correct, n) == pytest.approx((expected.low, expected.high),
                                                            abs=1e-12)
    assert wilson_interval(-1, 10) == wilson_interval(0, 10)
    assert wilson_interval(12, 10) == wilson_interval(10, 10)
    # A fractional count lies between its integer neighbours.
    assert wilson_interval(6, 10)[0] < wilson_interval(6.5, 10)[0] < wilson_interval(7, 10)[0]
    assert WILSON_Z == pytest.approx(1.959963984540054)


@pytest.mark.parametrize("correct, n", [(0, 0), (1, -5), (math.nan, 10), (3, math.nan)])
def test_wilson_is_nan_without_a_sample(correct, n):
    assert all(math.isnan(v) for v in wilson_interval(correct, n))
