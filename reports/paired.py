"""Comparing two models' accuracies: paired tests on per-example outcomes, an unpaired fallback.

Convention throughout: A is the reference (baseline), B the candidate, and
    delta = accuracy_B - accuracy_A.
`alternative` names H1: "less" = B is worse (delta < -tolerance), "greater" = B is better
(delta > tolerance), "two-sided" = they differ (tolerance must be 0). `tolerance` is an accuracy
fraction (0.01 = one point), so a regression gate asks "did B drop by more than t?" with
alternative="less", tolerance=t: H0 is delta >= -t.

Methods (each test and interval is a named, published one):
- mcnemar: exact McNemar test (binomial on the discordant pairs). With a tolerance the exact test
  no longer applies; Tango's score test of H0: delta = -t is used instead, the test whose
  inversion is `paired_difference_ci` (p < alpha exactly when the upper bound of the
  (1 - 2 alpha) interval lies below -t). At t = 0 its statistic would be the asymptotic McNemar
  z, (c - b) / sqrt(b + c).
- paired_difference_ci: Tango (1998) asymptotic score interval for the difference of paired
  proportions (Stat Med 17:891-908; restricted MLE as written in Tango's 1999 correspondence,
  Stat Med 18:3511), one of the intervals Fagerland, Lydersen & Laake (2014, Stat Med 33:2850)
  recommend.
- paired_bootstrap: nonparametric bootstrap over examples for an aggregate of many cells.
- holm: Holm (1979) step-down adjusted p-values, plain or weighted (both in that paper).
- unpaired_difference: Newcombe (1998, Stat Med 17:873-890) hybrid score interval ("method 10")
  and the Farrington-Manning (1990) score test, which at tolerance 0 is the pooled two-proportion
  z test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Tuple, Union

import numpy as np
from scipy import optimize, stats

from reports.stats import wilson_interval

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class McNemarResult:
    b: int            # examples A got right and B wrong
    c: int            # examples A got wrong and B right
    n: int
    delta: float      # (c - b) / n
    p_value: float
    alternative: str
    tolerance: float
    method: str       # "exact binomial" or "Tango score"


@dataclass(frozen=True)
class Comparison:
    delta: float
    low: float        # two-sided `confidence` interval on delta
    high: float
    p_value: float    # for `alternative` and `tolerance`
    alternative: str
    tolerance: float
    method: str


def _binary(x, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != ndim or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty {ndim}-D array of per-example outcomes, "
                         f"got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name}: outcomes must be boolean or 0/1, got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        raise ValueError(f"{name}: outcomes must be boolean or 0/1, "
                         f"found {arr[bad].flat[0].item()!r}")
    return arr.astype(bool)


def _pair(a_correct, b_correct) -> Tuple[np.ndarray, np.ndarray]:
    a, b = _binary(a_correct, "a_correct", 1), _binary(b_correct, "b_correct", 1)
    if a.size != b.size:
        raise ValueError(f"a_correct and b_correct differ in length ({a.size} vs {b.size}): "
                         "paired tests need the outcomes of the same examples, aligned")
    return a, b


def _null_delta(alternative: str, tolerance: float) -> float:
    """The H0 boundary for delta."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be an accuracy fraction in [0, 1), got {tolerance!r}")
    if tolerance and alternative == "two-sided":
        raise ValueError("a tolerance needs a one-sided alternative ('less': a drop larger than "
                         "it; 'greater': a gain larger than it)")
    return {"less": -tolerance, "greater": tolerance, "two-sided": 0.0}[alternative]


def _alpha(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    return 1 - confidence


def _z(confidence: float) -> float:
    return float(stats.norm.isf(_alpha(confidence) / 2))


def _normal_p(z: float, alternative: str) -> float:
    if alternative == "less":
        return float(stats.norm.cdf(z))
    if alternative == "greater":
        return float(stats.norm.sf(z))
    return float(min(1.0, 2 * stats.norm.sf(abs(z))))


def _discordant(a: np.ndarray, b: np.ndarray) -> Tuple[int, int]:
    return int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b))


def _tango_z(b: int, c: int, n: int, delta0: float) -> float:
    """Tango's score statistic for H0: delta = delta0 (decreasing in delta0); b, c as in
    McNemarResult. q is the restricted MLE of P(A right, B wrong), a quadratic's root."""
    qa = 2 * n
    qb = -b - c + (2 * n - c + b) * delta0
    qc = -b * delta0 * (1 - delta0)
    q = (-qb + math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa)
    num = c - b - n * delta0
    var = n * (2 * q + delta0 * (1 - delta0))
    if num == 0:
        return 0.0
    return num / math.sqrt(var) if var > 0 else math.copysign(math.inf, num)


def mcnemar(a_correct, b_correct, alternative: str = "two-sided",
            tolerance: float = 0.0) -> McNemarResult:
    """McNemar's test on two models' per-example outcomes. Without a tolerance: exact, b ~
    Binomial(b + c, 1/2) under H0 ("less": P(X >= b); "greater": P(X <= b); two-sided:
    min(1, 2 * smaller tail)); no discordant pair gives p = 1. With one: Tango's score test."""
    a, b_ = _pair(a_correct, b_correct)
    delta0 = _null_delta(alternative, tolerance)
    b, c = _discordant(a, b_)
    n = a.size
    if tolerance:
        p, method = _normal_p(_tango_z(b, c, n, delta0), alternative), "Tango score"
    else:
        less, greater = stats.binom.sf(b - 1, b + c, 0.5), stats.binom.cdf(b, b + c, 0.5)
        p = {"less": less, "greater": greater,
             "two-sided": min(1.0, 2 * min(less, greater))}[alternative]
        method = "exact binomial"
    return McNemarResult(b=b, c=c, n=n, delta=(c - b) / n, p_value=float(p),
                         alternative=alternative, tolerance=float(tolerance), method=method)


def paired_difference_ci(a_correct, b_correct,
                         confidence: float = 0.95) -> Tuple[float, float, float]:
    """(delta, low, high): Tango's score interval, the deltas whose score test is not rejected."""
    a, b_ = _pair(a_correct, b_correct)
    z = _z(confidence)
    b, c = _discordant(a, b_)
    n = a.size
    delta = (c - b) / n
    score = lambda d: _tango_z(b, c, n, d)  # noqa: E731
    low = -1.0 if score(-1.0) <= z else optimize.brentq(lambda d: score(d) - z, -1.0, delta,
                                                         xtol=1e-12)
    high = 1.0 if score(1.0) >= -z else optimize.brentq(lambda d: score(d) + z, delta, 1.0,
                                                         xtol=1e-12)
    return delta, low, high


def _matrix(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    return _binary(arr[:, None] if arr.ndim == 1 else arr, name, 2).astype(np.float64)


def paired_bootstrap(a_matrix, b_matrix,
                     statistic: Union[str, Callable[[np.ndarray], np.ndarray]] = "mean",
                     n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                     alternative: str = "two-sided", tolerance: float = 0.0) -> Comparison:
    """Bootstrap over examples for an aggregate across cells (e.g. corruption x severity).

    a_matrix, b_matrix: (n_examples, n_cells) 0/1 outcomes on the same examples (1-D = one
    cell). statistic: "mean" (mean over cells of accuracy), or f(acc) -> (r,) taking per-cell
    accuracies of shape (r, n_cells), e.g. the worst cell. Example rows are resampled with
    replacement, the same rows for both models. "mean" only needs each row's mean difference;
    any other statistic weighs the cells by the resampled rows' counts.
    Returns the observed delta, the percentile interval, and a p-value read off the same
    replicates: (1 + replicates on H0's side of the boundary) / (1 + n_resamples), H0's side
    being >= -t for "less" and <= t for "greater"; two-sided: twice the smaller one-sided value,
    capped at 1. A one-sided p falls below alpha about where the (1 - 2 alpha) percentile
    interval stops containing the boundary.
    """
    a, b = _matrix(a_matrix, "a_matrix"), _matrix(b_matrix, "b_matrix")
    if a.shape != b.shape:
        raise ValueError(f"a_matrix and b_matrix differ in shape ({a.shape} vs {b.shape}): "
                         "both models must be scored on the same examples and cells")
    delta0 = _null_delta(alternative, tolerance)
    alpha = _alpha(confidence)
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    n = a.shape[0]
    if statistic == "mean":
        row_delta = (b - a).mean(axis=1)
        delta = float(row_delta.mean())
        replicate = lambda idx: row_delta[idx].mean(axis=1)  # noqa: E731
    elif callable(statistic):
        def aggregate(acc_a, acc_b):
            out = np.asarray(statistic(acc_b), float) - np.asarray(statistic(acc_a), float)
            if out.shape != (len(acc_a),):
                raise ValueError(f"statistic must map per-cell accuracies of shape (r, n_cells) "
                                 f"to shape (r,), got {out.shape}")
            return out

        delta = float(aggregate(a.mean(axis=0)[None], b.mean(axis=0)[None])[0])

        def replicate(idx):
            rows = len(idx)
            counts = np.bincount((idx + n * np.arange(rows)[:, None]).ravel(),
                                 minlength=rows * n).reshape(rows, n).astype(np.float64)
            return aggregate(counts @ a / n, counts @ b / n)
    else:
        raise ValueError(f"statistic must be 'mean' or a callable, got {statistic!r}")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2 ** 22 // n)  # bounds memory; fixed per n, so a seed gives one answer
    reps = np.concatenate([replicate(rng.integers(0, n, size=(min(chunk, n_resamples - s), n)))
                           for s in range(0, n_resamples, chunk)])
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    less = (1 + np.count_nonzero(reps >= delta0)) / (n_resamples + 1)
    greater = (1 + np.count_nonzero(reps <= delta0)) / (n_resamples + 1)
    p = {"less": less, "greater": greater,
         "two-sided": min(1.0, 2 * min(less, greater))}[alternative]
    return Comparison(delta=delta, low=float(low), high=float(high), p_value=float(p),
                      alternative=alternative, tolerance=float(tolerance),
                      method=f"paired bootstrap ({n_resamples} resamples of {n} examples)")


def holm(p_values, weights=None) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values: sorted ascending, the i-th (from 0) of m is multiplied
    by m - i, made monotone by a running maximum, capped at 1. NaN entries stay NaN and do not
    count in m. With `weights` (positive, normalised over the non-NaN entries): Holm's (1979)
    weighted procedure, ordered by p / w, the step's factor being the weight left untested
    over the tested one; equal weights give the plain procedure. The family-wise error stays
    at most alpha; weights spend more of it on the hypotheses that matter most."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values: expected a 1-D sequence, got shape {p.shape}")
    known = ~np.isnan(p)
    values = p[known]
    outside = (values < 0) | (values > 1)
    if outside.any():
        raise ValueError(f"p_values must lie in [0, 1] (or be NaN), "
                         f"got {values[outside][0].item()!r}")
    if weights is None:
        w = np.ones(values.size)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != p.shape or not (w[known] > 0).all() or not np.isfinite(w[known]).all():
            raise ValueError(f"weights: expected {p.size} positive finite values, got {weights!r}")
        w = w[known]
    w = w / w.sum() if w.size else w
    ratio = values / w if w.size else values
    order = np.argsort(ratio, kind="stable")
    left = np.cumsum(w[order][::-1])[::-1]  # weight of the hypotheses not yet rejected
    adjusted = np.empty(values.size)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(ratio[order] * left))
    out = p.copy()
    out[known] = adjusted
    return out


def _farrington_manning_z(x1: float, n1: float, x2: float, n2: float, s0: float) -> float:
    """Score statistic for H0: p1 - p2 = s0, variance at the restricted MLE (closed form of
    Farrington & Manning 1990, Stat Med 9:1447); s0 = 0 gives the pooled proportion."""
    p1, p2 = x1 / n1, x2 / n2
    if s0 == 0:
        r1 = r2 = (x1 + x2) / (n1 + n2)
    else:
        theta = n2 / n1
        a = 1 + theta
        b = -(1 + theta + p1 + theta * p2 + s0 * (theta + 2))
        c = s0 * s0 + s0 * (2 * p1 + theta + 1) + p1 + theta * p2
        d = -p1 * s0 * (1 + s0)
        v = b ** 3 / (27 * a ** 3) - b * c / (6 * a * a) + d / (2 * a)
        u = math.copysign(math.sqrt(max(b * b / (9 * a * a) - c / (3 * a), 0.0)), v)
        w = (math.pi + math.acos(min(1.0, max(-1.0, v / u ** 3)))) / 3 if u else math.pi / 2
        r1 = min(max(2 * u * math.cos(w) - b / (3 * a), max(0.0, s0)), min(1.0, 1 + s0))
        r2 = r1 - s0
    num = p1 - p2 - s0
    var = r1 * (1 - r1) / n1 + r2 * (1 - r2) / n2
    if num == 0:
        return 0.0
    return num / math.sqrt(var) if var > 0 else math.copysign(math.inf, num)


def unpaired_difference(correct_a: float, n_a: float, correct_b: float, n_b: float,
                        alternative: str = "two-sided", tolerance: float = 0.0,
                        confidence: float = 0.95) -> Comparison:
    """For two sides scored on different examples: delta = correct_b/n_b - correct_a/n_a with
    Newcombe's hybrid score interval (Wilson bounds of each side combined, method 10) and the
    Farrington-Manning score test of H0 at the boundary (-t, t, or 0). Counts may be fractional
    (means over seeds)."""
    for side, correct, n in (("a", correct_a, n_a), ("b", correct_b, n_b)):
        if not (n > 0 and 0 <= correct <= n):
            raise ValueError(f"correct_{side}={correct!r} must lie in [0, n_{side}] with "
                             f"n_{side}={n!r} > 0")
    delta0 = _null_delta(alternative, tolerance)
    z = _z(confidence)
    pa, pb = correct_a / n_a, correct_b / n_b
    la, ua = wilson_interval(correct_a, n_a, z)
    lb, ub = wilson_interval(correct_b, n_b, z)
    delta = pb - pa
    low = delta - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = delta + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    p = _normal_p(_farrington_manning_z(correct_b, n_b, correct_a, n_a, delta0), alternative)
    return Comparison(delta=delta, low=low, high=high, p_value=p, alternative=alternative,
                      tolerance=float(tolerance),
                      method="Newcombe hybrid score interval, Farrington-Manning score test")
