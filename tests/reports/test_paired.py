"""Paired and unpaired comparisons: published values, scipy/statsmodels values, simulations."""
import math

import numpy as np
import pytest
from scipy import optimize, stats

import reports
from reports import paired
from reports.paired import (holm, mcnemar, paired_bootstrap, paired_difference_ci,
                            unpaired_difference)


def table(both, b_only, a_only, neither):
    """Outcome arrays (a, b) from a paired 2x2 table; B is the published "condition 1"."""
    a = np.repeat([True, False, True, False], [both, b_only, a_only, neither])
    b = np.repeat([True, True, False, False], [both, b_only, a_only, neither])
    return a, b


def simulate(rng, n, a_only, b_only, both=0.75):
    """Paired outcomes with the given probabilities of each discordant cell."""
    kind = rng.choice(4, size=n, p=[both, b_only, a_only, 1 - both - a_only - b_only])
    return np.isin(kind, (0, 2)), np.isin(kind, (0, 1))


# --- McNemar -------------------------------------------------------------------------------

@pytest.mark.parametrize("b, c", [(0, 0), (3, 0), (0, 3), (12, 2), (7, 9), (30, 30), (41, 19)])
def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs(b, c):
    a_correct, b_correct = table(50, c, b, 20)
    for alternative, scipy_alternative in (("two-sided", "two-sided"), ("less", "greater"),
                                           ("greater", "less")):
        result = mcnemar(a_correct, b_correct, alternative)
        assert (result.b, result.c, result.n) == (b, c, 70 + b + c)
        assert result.delta == pytest.approx((c - b) / result.n)
        expected = 1.0 if b + c == 0 else binom_p(b, b + c, scipy_alternative)
        assert result.p_value == pytest.approx(expected, rel=1e-12)
        assert result.method == "exact binomial"


def binom_p(k, n, alternative):
    return stats.binomtest(k, n, 0.5, alternative=alternative).pvalue


def test_mcnemar_direction_and_swap_symmetry():
    a, b = table(800, 10, 35, 155)  # B lost 25 examples net: 2.5 points on 1,000
    worse = mcnemar(a, b, "less")
    assert worse.delta == pytest.approx(-0.025) and worse.p_value < 1e-3
    assert mcnemar(a, b, "greater").p_value > 0.99
    assert mcnemar(b, a, "greater").p_value == worse.p_value
    assert mcnemar(a.astype(int), b.astype(float).tolist(), "less") == worse


def test_symmetric_discordance_is_not_significant():
    a, b = table(500, 30, 30, 100)
    assert mcnemar(a, b).p_value == 1.0
    assert mcnemar(a, b, "less").p_value > 0.5
    delta, low, high = paired_difference_ci(a, b)
    assert delta == 0 and low == pytest.approx(-high) and low < 0 < high
    assert paired_bootstrap(a, b, n_resamples=999, seed=3).p_value > 0.5


def test_clear_drop_on_1000_examples_is_significant():
    a, b = simulate(np.random.default_rng(0), 1000, a_only=0.04, b_only=0.015)
    assert -0.03 <= b.mean() - a.mean() <= -0.02
    assert mcnemar(a, b, "less").p_value < 0.01
    assert paired_difference_ci(a, b)[2] < 0
    boot = paired_bootstrap(a, b, n_resamples=2000, seed=0, alternative="less")
    assert boot.p_value < 0.01 and boot.high < 0


def test_mcnemar_tolerance_is_the_inverted_tango_interval():
    a, b = table(800, 10, 45, 145)  # delta = -0.035
    _, _, high90 = paired_difference_ci(a, b, confidence=0.90)
    # H0: delta >= -t is rejected at one-sided 5 % exactly when the 90 % upper bound is below -t.
    at_bound = mcnemar(a, b, "less", tolerance=-high90)
    assert at_bound.method == "Tango score" and at_bound.p_value == pytest.approx(0.05, abs=1e-9)
    p = [mcnemar(a, b, "less", tolerance=t).p_value for t in (0.001, 0.01, 0.02, 0.03, 0.05)]
    assert p == sorted(p) and p[0] < 0.05 < p[-1]
    assert mcnemar(b, a, "greater", tolerance=0.01).p_value == pytest.approx(p[1], rel=1e-12)


# --- Tango's interval ----------------------------------------------------------------------

@pytest.mark.parametrize("counts, published, decimals", [
    ((1, 1, 7, 12), (-0.517, -0.026), 3),     # Fagerland, Lydersen & Laake 2014, Table II
    ((53, 16, 8, 9), (-0.020, 0.207), 3),     # Agresti & Min 2005
    ((7, 25, 2, 68), (0.139, 0.321), 3),      # Chang et al. 2024
    ((8, 3, 1, 2), (-0.1670, 0.4327), 4),     # Tang, Li & Tang 2010
])
def test_tango_interval_matches_published_values(counts, published, decimals):
    """counts = (both right, B only, A only, neither); the papers' p1 - p2 is B - A."""
    delta, low, high = paired_difference_ci(*table(*counts))
    both, b_only, a_only, neither = counts
    assert delta == pytest.approx((b_only - a_only) / sum(counts))
    assert (round(low, decimals), round(high, decimals)) == published


def test_tango_interval_at_the_edges():
    assert paired_difference_ci([1] * 5, [0] * 5)[:2] == (-1.0, -1.0)
    assert paired_difference_ci([0] * 5, [1] * 5)[::2] == (1.0, 1.0)
    delta, low, high = paired_difference_ci([1] * 5, [1] * 5)
    assert delta == 0 and -1 < low < 0 < high < 1 and low == pytest.approx(-high)


def test_tango_interval_coverage_by_simulation():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(300):
        a, b = simulate(rng, 200, a_only=0.08, b_only=0.04, both=0.7)
        _, low, high = paired_difference_ci(a, b)
        covered += low <= -0.04 <= high
    assert 0.92 <= covered / 300 <= 0.98


# --- bootstrap over examples ---------------------------------------------------------------

def cells(rng, n, acc_a, acc_b):
    """(n, cells) outcomes sharing each example's difficulty across cells and models."""
    difficulty = 0.6 * rng.standard_normal((n, 1)) + 0.8 * rng.standard_normal((n, len(acc_a)))
    u = stats.norm.cdf(difficulty)
    return u < acc_a, u < acc_b


def test_bootstrap_covers_the_true_aggregate_difference():
    rng = np.random.default_rng(5)
    acc_a = np.linspace(0.9, 0.3, 15)
    acc_b = acc_a - np.linspace(0.0, 0.04, 15)
    truth = float(np.mean(acc_b - acc_a))
    covered = 0
    for seed in range(100):
        result = paired_bootstrap(*cells(rng, 1000, acc_a, acc_b), n_resamples=1000, seed=seed)
        covered += result.low <= truth <= result.high
    assert 0.88 <= covered / 100 <= 1.0


def test_bootstrap_on_one_cell_agrees_with_the_analytical_interval():
    a, b = simulate(np.random.default_rng(2), 2000, a_only=0.05, b_only=0.03)
    delta, low, high = paired_difference_ci(a, b)
    boot = paired_bootstrap(a, b, n_resamples=4000, seed=1)
    assert boot.delta == pytest.approx(delta, abs=1e-15)
    assert (boot.low, boot.high) == pytest.approx((low, high), abs=0.002)
    assert boot == paired_bootstrap(a[:, None], b[:, None], n_resamples=4000, seed=1)


def test_bootstrap_statistic_callable_and_worst_cell():
    rng = np.random.default_rng(9)
    acc = np.linspace(0.5, 0.9, 15)
    a, _ = cells(rng, 3000, acc, acc)
    b = a.copy()
    b[:, 0] &= rng.random(3000) > 0.1  # B loses 10 % of its right answers in the hardest cell
    mean = paired_bootstrap(a, b, n_resamples=500, seed=4)
    via_callable = paired_bootstrap(a, b, statistic=lambda acc: acc.mean(axis=1),
                                    n_resamples=500, seed=4)
    assert (via_callable.delta, via_callable.low, via_callable.high) == pytest.approx(
        (mean.delta, mean.low, mean.high), abs=1e-12)
    assert via_callable.p_value == mean.p_value
    worst = paired_bootstrap(a, b, statistic=lambda acc: acc.min(axis=1), n_resamples=500,
                             seed=4, alternative="less")
    assert worst.delta == pytest.approx(b.mean(axis=0).min() - a.mean(axis=0).min())
    assert worst.delta < -0.04 and worst.high < 0 and worst.p_value < 0.01
    assert abs(mean.delta) < 0.005


def test_bootstrap_tolerance_and_seed():
    rng = np.random.default_rng(3)
    acc_a = np.linspace(0.9, 0.4, 75)
    a, b = cells(rng, 2000, acc_a, acc_a - 0.02)
    small = paired_bootstrap(a, b, n_resamples=2000, seed=0, alternative="less", tolerance=0.005)
    large = paired_bootstrap(a, b, n_resamples=2000, seed=0, alternative="less", tolerance=0.05)
    assert small.p_value < 0.01 < 0.5 < large.p_value
    assert small.low < small.delta < small.high < -0.005
    again = paired_bootstrap(a, b, n_resamples=2000, seed=0, alternative="less", tolerance=0.005)
    assert again == small
    assert paired_bootstrap(a, b, n_resamples=2000, seed=1).low != small.low


# --- type I error under no change ----------------------------------------------------------

def test_one_sided_tests_hold_their_level_under_no_change():
    """200 datasets without a real drop: each one-sided 5 % test rejects at most 5 % plus three
    binomial standard deviations (19 of 200)."""
    limit = 200 * 0.05 + 3 * math.sqrt(200 * 0.05 * 0.95)
    rejected = {"exact": 0, "tango": 0, "bootstrap": 0, "unpaired": 0}
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        a, b = simulate(rng, 500, a_only=0.05, b_only=0.05)
        rejected["exact"] += mcnemar(a, b, "less").p_value < 0.05
        rejected["bootstrap"] += paired_bootstrap(a, b, n_resamples=999, seed=seed,
                                                  alternative="less").p_value < 0.05
        # At the tolerance boundary: the true drop is exactly t = 2 points.
        a, b = simulate(rng, 500, a_only=0.06, b_only=0.04)
        rejected["tango"] += mcnemar(a, b, "less", tolerance=0.02).p_value < 0.05
        correct = rng.binomial(500, 0.8, size=2)
        rejected["unpaired"] += unpaired_difference(correct[0], 500, correct[1], 500,
                                                    alternative="less").p_value < 0.05
    assert all(count <= limit for count in rejected.values()), rejected
    assert sum(rejected.values()) > 0  # the tests do reject sometimes: they are not inert


# --- Holm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("p, expected", [
    # statsmodels.stats.multitest.multipletests(p, method="holm")[1]
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.021, 0.001, 0.017, 0.041, 0.005, 0.036, 0.042, 0.023, 0.07, 0.1],
     [0.147, 0.01, 0.136, 0.18, 0.045, 0.18, 0.18, 0.147, 0.18, 0.18]),
    ([0.5, 0.5, 0.01, 0.9, 0.2], [1.0, 1.0, 0.05, 1.0, 0.8]),
    ([], []),
])
def test_holm_known_values(p, expected):
    assert holm(p).tolist() == pytest.approx(expected, abs=1e-12)


def test_weighted_holm():
    p = [0.004, 0.02, 0.03]
    # ratios p/w = 0.008, 0.08, 0.12; weight left 1, 0.5, 0.25 -> 0.008, 0.04, 0.03 -> monotone
    assert holm(p, [0.5, 0.25, 0.25]).tolist() == pytest.approx([0.008, 0.04, 0.04])
    assert holm(p).tolist() == pytest.approx([0.012, 0.04, 0.04])
    assert holm(p, [2, 2, 2]).tolist() == pytest.approx(holm(p).tolist())
    # NaN is left out and its weight with it: 0.9 / 0.1 -> 0.01 / 0.9, then max(., 0.04 * 1)
    adjusted = holm([0.01, math.nan, 0.04], [9, 5, 1])
    assert adjusted.tolist()[::2] == pytest.approx([0.01 / 0.9, 0.04])
    with pytest.raises(ValueError, match="weights"):
        holm(p, [1, 0, 1])


def test_holm_nan_passes_through_and_order_is_kept():
    adjusted = holm([0.01, math.nan, 0.04, 0.02])
    assert math.isnan(adjusted[1])
    assert adjusted[[0, 2, 3]].tolist() == pytest.approx([0.03, 0.04, 0.04])
    p = np.random.default_rng(0).random(50) ** 3
    adjusted = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0) and np.all(adjusted >= p) and adjusted.max() <= 1


# --- unpaired ------------------------------------------------------------------------------

@pytest.mark.parametrize("k1, n1, k2, n2, low, high", [
    # Newcombe (1998) Stat Med 17:873-890, Table II, method 10: p1 - p2
    (56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062), (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775), (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0000), (10, 10, 0, 10, 0.6075, 1.0000),
])
def test_unpaired_interval_matches_newcombe_table(k1, n1, k2, n2, low, high):
    result = unpaired_difference(k2, n2, k1, n1)  # B = Newcombe's group 1
    assert result.delta == pytest.approx(k1 / n1 - k2 / n2)
    assert (round(result.low, 4), round(result.high, 4)) == (low, high)


def test_unpaired_test_is_the_pooled_z_test_without_tolerance():
    ka, na, kb, nb = 412, 500, 371, 480
    pooled = (ka + kb) / (na + nb)
    z = (kb / nb - ka / na) / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    assert unpaired_difference(ka, na, kb, nb).p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert unpaired_difference(ka, na, kb, nb, "less").p_value == pytest.approx(stats.norm.cdf(z))
    assert unpaired_difference(ka, na, kb, nb, "greater").p_value == pytest.approx(
        stats.norm.sf(z))


@pytest.mark.parametrize("ka, na, kb, nb, alternative, t", [
    (48, 80, 56, 70, "greater", 0.1), (55, 120, 40, 100, "less", 0.05),
    (9, 60, 3, 50, "less", 0.2), (95, 100, 90, 100, "less", 0.02),
    (800.5, 1000, 770.25, 1000, "less", 0.01),  # fractional: means over seeds
])
def test_unpaired_tolerance_uses_the_restricted_mle(ka, na, kb, nb, alternative, t):
    """Farrington-Manning: the variance at the maximum likelihood under delta = boundary, here
    found numerically instead of by the closed-form cubic."""
    s0 = -t if alternative == "less" else t

    def negative_loglik(pa):
        pb = pa + s0
        return -(ka * np.log(pa) + (na - ka) * np.log(1 - pa)
                 + kb * np.log(pb) + (nb - kb) * np.log(1 - pb))

    lo, hi = max(0.0, -s0), min(1.0, 1 - s0)
    pa = optimize.minimize_scalar(negative_loglik, bounds=(lo + 1e-12, hi - 1e-12),
                                  method="bounded", options={"xatol": 1e-12}).x
    pb = pa + s0
    z = (kb / nb - ka / na - s0) / math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    expected = stats.norm.cdf(z) if alternative == "less" else stats.norm.sf(z)
    result = unpaired_difference(ka, na, kb, nb, alternative, tolerance=t)
    assert result.p_value == pytest.approx(expected, rel=1e-6)


# --- input validation ----------------------------------------------------------------------

@pytest.mark.parametrize("a, b, message", [
    ([1, 0, 1], [1, 0], "differ in length"),
    ([], [], "non-empty 1-D"),
    ([[1, 0]], [[1, 0]], "non-empty 1-D"),
    ([1, 2, 0], [1, 0, 0], "boolean or 0/1, found 2"),
    ([1.0, math.nan], [1, 0], "boolean or 0/1, found nan"),
    (["yes", "no"], [1, 0], "dtype <U3"),
])
def test_paired_inputs_are_validated(a, b, message):
    for call in (mcnemar, paired_difference_ci):
        with pytest.raises(ValueError, match=message):
            call(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(alternative="smaller"), "alternative must be one of"),
    (dict(alternative="two-sided", tolerance=0.01), "needs a one-sided alternative"),
    (dict(alternative="less", tolerance=-0.01), "tolerance must be"),
    (dict(alternative="less", tolerance=math.nan), "tolerance must be"),
])
def test_alternative_and_tolerance_are_validated(kwargs, message):
    a, b = table(5, 1, 2, 2)
    with pytest.raises(ValueError, match=message):
        mcnemar(a, b, **kwargs)
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, n_resamples=10, **kwargs)
    with pytest.raises(ValueError, match=message):
        unpaired_difference(5, 10, 6, 10, **kwargs)


def test_other_arguments_are_validated():
    a, b = table(5, 1, 2, 2)
    with pytest.raises(ValueError, match="confidence must lie in"):
        paired_difference_ci(a, b, confidence=95)
    with pytest.raises(ValueError, match="differ in shape"):
        paired_bootstrap(np.ones((10, 3)), np.ones((10, 2)))
    with pytest.raises(ValueError, match="n_resamples must be"):
        paired_bootstrap(a, b, n_resamples=0)
    with pytest.raises(ValueError, match="statistic must be"):
        paired_bootstrap(a, b, statistic="median")
    with pytest.raises(ValueError, match=r"to shape \(r,\)"):
        paired_bootstrap(a, b, statistic=lambda acc: acc)
    with pytest.raises(ValueError, match="correct_b=11"):
        unpaired_difference(5, 10, 11, 10)
    with pytest.raises(ValueError, match="n_a=0"):
        unpaired_difference(0, 0, 1, 10)
    with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
        holm([0.2, 1.5])
    with pytest.raises(ValueError, match="1-D"):
        holm([[0.1, 0.2]])


def test_exported_from_the_package():
    for name in ("holm", "mcnemar", "paired_bootstrap", "paired_difference_ci",
                 "unpaired_difference"):
        assert name in reports.__all__ and getattr(reports, name) is getattr(paired, name)
