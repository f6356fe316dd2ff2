"""Label-noise statistics on 50k balanced labels (CIFAR-10 sized) and bad input."""
import math

import numpy as np
import pytest
import torch

from robust_eval.train.noise import (CIFAR10_ASYMMETRIC_MAP, corrupt_labels, expected_flip_rate,
                                     noise_summary)

N = 50_000


def balanced(num_classes, n=N):
    return np.repeat(np.arange(num_classes), n // num_classes)


def binomial_tol(p, n, sigmas=5):
    return sigmas * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1 / n


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.8])
def test_symmetric_redraws_over_all_classes(rate):
    clean = balanced(10)
    noisy = corrupt_labels(clean, "symmetric", rate, 10, seed=1)
    flipped = noisy != clean
    # Official semantics: a fraction rate is redrawn over ALL 10 classes -> 0.9*rate really flip.
    assert abs(flipped.mean() - rate * 0.9) < binomial_tol(rate * 0.9, N)
    assert expected_flip_rate("symmetric", rate, 10) == pytest.approx(rate * 0.9)
    # The flipped-to classes are uniform over the 9 others: each transition ~ flips/90.
    counts = np.zeros((10, 10))
    np.add.at(counts, (clean[flipped], noisy[flipped]), 1)
    off = counts[~np.eye(10, dtype=bool)]
    expected = flipped.sum() / 90
    assert np.all(np.abs(off - expected) < 6 * math.sqrt(expected))


@pytest.mark.parametrize("rate", [0.3, 0.8])
def test_symmetric_exact_always_changes_class(rate):
    clean = balanced(10)
    noisy = corrupt_labels(clean, "symmetric_exact", rate, 10, seed=2)
    assert (noisy != clean).sum() == math.ceil(rate * N)  # every chosen label changes
    cifar100 = balanced(100)
    noisy100 = corrupt_labels(cifar100, "symmetric_exact", rate, 100, seed=2)
    assert (noisy100 != cifar100).mean() == pytest.approx(rate, abs=1 / N)


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_asymmetric_cifar10_pairs_and_sequential_rates(rate):
    clean = balanced(10)
    noisy = corrupt_labels(clean, "asymmetric", rate, 10, seed=3)
    summary = noise_summary(clean, noisy, 10)
    allowed = {f"{a}->{b}" for a, b in CIFAR10_ASYMMETRIC_MAP.items()}
    assert set(summary["transitions"]) == allowed  # only the five official pairs
    per_class = summary["per_class_rate"]
    for untouched in (0, 1, 6, 7, 8):
        assert per_class[str(untouched)] == 0.0
    for cls in ("9", "2", "4"):  # truck, bird, deer: exactly ceil(rate*5000) each
        assert per_class[cls] == pytest.approx(rate, abs=1 / 5000)
    # cat->dog happens first; dogs (incl. former cats) then flip to cat: cat ends near rate(1-rate).
    assert abs(per_class["5"] - rate) < binomial_tol(rate, 5000)
    assert abs(per_class["3"] - rate * (1 - rate)) < binomial_tol(rate * (1 - rate), 5000)
    assert summary["realised_rate"] == pytest.approx(
        expected_flip_rate("asymmetric", rate, 10), abs=binomial_tol(rate, N))


def test_asymmetric_cifar100_circular_within_blocks_of_five():
    clean = balanced(100)
    rate = 0.4
    noisy = corrupt_labels(clean, "asymmetric", rate, 100, seed=4)
    moved = noisy != clean
    assert abs(moved.mean() - rate) < binomial_tol(rate, N)
    assert np.all(noisy[moved] // 5 == clean[moved] // 5)  # never leaves its block
    assert np.all(noisy[moved] == clean[moved] // 5 * 5 + (clean[moved] % 5 + 1) % 5)
    assert set(noisy[clean == 4]) == {4, 0}  # the block wraps around


def test_reproducible_and_seed_dependent_and_type_preserving():
    clean = torch.as_tensor(balanced(10, 5000))
    a = corrupt_labels(clean, "symmetric", 0.5, 10, seed=7)
    b = corrupt_labels(clean, "symmetric", 0.5, 10, seed=7)
    c = corrupt_labels(clean, "symmetric", 0.5, 10, seed=8)
    assert isinstance(a, torch.Tensor) and a.dtype == torch.int64
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(clean, torch.as_tensor(balanced(10, 5000)))  # input left alone
    assert isinstance(corrupt_labels([0, 1, 2], "symmetric", 0.5, 3, seed=0), list)
    for kind in ("symmetric_exact", "asymmetric"):
        assert np.array_equal(corrupt_labels(clean.numpy(), kind, 0.3, 10, 5),
                              corrupt_labels(clean.numpy(), kind, 0.3, 10, 5))
        assert not np.array_equal(corrupt_labels(clean.numpy(), kind, 0.3, 10, 5),
                                  corrupt_labels(clean.numpy(), kind, 0.3, 10, 6))
    assert np.array_equal(corrupt_labels(clean.numpy(), "symmetric", 0.0, 10, 1), clean.numpy())


@pytest.mark.parametrize("kwargs, message", [
    (dict(rate=1.0), r"\[0, 1\)"),
    (dict(rate=-0.1), r"\[0, 1\)"),
    (dict(rate=float("nan")), r"\[0, 1\)"),
    (dict(kind="pairflip"), "unknown label-noise kind 'pairflip'"),
    (dict(num_classes=5), "class count does not match"),
    (dict(kind="asymmetric", num_classes=20), "asymmetric noise is defined"),
    (dict(num_classes=1), "num_classes must be an integer >= 2"),
])
def test_bad_input_is_rejected_clearly(kwargs, message):
    args = dict(labels=balanced(10, 100), kind="symmetric", rate=0.2, num_classes=10, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        corrupt_labels(**args)


def test_float_labels_rejected():
    with pytest.raises(ValueError, match="integers"):
        corrupt_labels(np.array([0.0, 1.0]), "symmetric", 0.2, 2, seed=0)
