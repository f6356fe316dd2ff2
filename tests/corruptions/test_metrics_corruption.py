"""Corruption metrics: the AlexNet table literally, and hand-computed examples."""
import math

import numpy as np
import pandas as pd
import pytest

from corruptions import metrics
from corruptions.metrics import (
    ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, ALEXNET_EXTRA_MEAN_ERRORS, BENCHMARK_CORRUPTIONS,
    accuracy_table, category_accuracy, corruption_errors, mce, mean_corruption_accuracy,
    mean_corruption_error,
)


def full_frame(accuracy_of, n=100, **extra):
    """One row per benchmark cell with correct = accuracy_of(c, s) * n."""
    rows = []
    for c in BENCHMARK_CORRUPTIONS:
        for s in range(1, 6):
            rows.append(dict(benchmark="corruption", corruption=c, severity=s, n=n,
                             correct=int(round(accuracy_of(c, s) * n)), **extra))
    return pd.DataFrame(rows)


def test_alexnet_table_literal():
    assert ALEXNET_CLEAN_ERROR == 0.4348
    assert list(ALEXNET_ERRORS) == [
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
        "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
        "elastic_transform", "pixelate", "jpeg_compression"]
    assert ALEXNET_ERRORS["gaussian_noise"] == (0.69528, 0.82542, 0.93554, 0.98138, 0.99452)
    assert ALEXNET_ERRORS["shot_noise"] == (0.71224, 0.85108, 0.93574, 0.98182, 0.99146)
    assert ALEXNET_ERRORS["impulse_noise"] == (0.78374, 0.89808, 0.94870, 0.98720, 0.99548)
    assert ALEXNET_ERRORS["defocus_blur"] == (0.65624, 0.73202, 0.85036, 0.91364, 0.94714)
    assert ALEXNET_ERRORS["glass_blur"] == (0.64308, 0.75054, 0.88806, 0.91622, 0.93344)
    assert ALEXNET_ERRORS["motion_blur"] == (0.58430, 0.70048, 0.82108, 0.89750, 0.92638)
    assert ALEXNET_ERRORS["zoom_blur"] == (0.70008, 0.76992, 0.80784, 0.84198, 0.87198)
    assert ALEXNET_ERRORS["snow"] == (0.71726, 0.88392, 0.86468, 0.91870, 0.94952)
    assert ALEXNET_ERRORS["frost"] == (0.61390, 0.79734, 0.88790, 0.89942, 0.93430)
    assert ALEXNET_ERRORS["fog"] == (0.67474, 0.76050, 0.84378, 0.87260, 0.94500)
    assert ALEXNET_ERRORS["brightness"] == (0.45140, 0.48502, 0.54048, 0.62166, 0.72440)
    assert ALEXNET_ERRORS["contrast"] == (0.64548, 0.76150, 0.88874, 0.97760, 0.99270)
    assert ALEXNET_ERRORS["elastic_transform"] == (0.52596, 0.70116, 0.55686, 0.64076, 0.80554)
    assert ALEXNET_ERRORS["pixelate"] == (0.52218, 0.54620, 0.73728, 0.87092, 0.91262)
    assert ALEXNET_ERRORS["jpeg_compression"] == (0.51002, 0.54718, 0.57294, 0.65458, 0.74778)
    assert ALEXNET_EXTRA_MEAN_ERRORS == {"speckle_noise": 0.845388, "gaussian_blur": 0.787108,
                                         "spatter": 0.717512, "saturate": 0.658248}
    assert metrics.alexnet_table().loc["snow", 3] == 0.86468


def test_alexnet_table_covers_exactly_the_named_corruptions():
    assert tuple(ALEXNET_ERRORS) == metrics.BENCHMARK_CORRUPTIONS
    assert set(metrics.ALEXNET_EXTRA_MEAN_ERRORS) == set(metrics.EXTRA_CORRUPTIONS)
    assert set(metrics.CATEGORIES) == {"noise", "blur", "weather", "digital"}


def test_alexnet_scores_itself():
    frame = full_frame(lambda c, s: 1 - ALEXNET_ERRORS[c][s - 1], n=100_000, dataset="imagenet")
    assert mce(frame) == pytest.approx(1.0, abs=1e-9)
    assert mce(frame, relative=True, clean_error=ALEXNET_CLEAN_ERROR) == pytest.approx(1.0,
                                                                                      abs=1e-9)


def test_hand_computed_example():
    # accuracy 0.8 everywhere except gaussian_noise: 0.5 at severities 1..5.
    frame = full_frame(lambda c, s: 0.5 if c == "gaussian_noise" else 0.8, dataset="imagenet")
    assert mean_corruption_accuracy(frame) == pytest.approx((5 * 0.5 + 70 * 0.8) / 75)
    assert mean_corruption_error(frame) == pytest.approx(1 - (5 * 0.5 + 70 * 0.8) / 75)
    ce = corruption_errors(frame)
    # CE_gaussian = 5 * 0.5 / (0.69528 + 0.82542 + 0.93554 + 0.98138 + 0.99452) = 2.5 / 4.43214
    assert ce.loc[0, "gaussian_noise"] == pytest.approx(2.5 / 4.43214)
    assert ce.loc[0, "brightness"] == pytest.approx(1.0 / (0.45140 + 0.48502 + 0.54048
                                                           + 0.62166 + 0.72440))
    expected = np.mean([(2.5 if c == "gaussian_noise" else 1.0) / sum(ALEXNET_ERRORS[c])
                        for c in BENCHMARK_CORRUPTIONS])
    assert mce(frame) == pytest.approx(expected)
    # relative: clean error 0.1 -> numerator sum_s (E - 0.1)
    rel = corruption_errors(frame, relative=True, clean_error=0.1)
    assert rel.loc[0, "gaussian_noise"] == pytest.approx(
        (5 * 0.5 - 5 * 0.1) / (4.43214 - 5 * 0.4348))
    cats = category_accuracy(frame)
    assert cats.loc[0, "noise"] == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert cats.loc[0, "digital"] == pytest.approx(0.8)


def test_relative_mce_reads_clean_rows():
    frame = full_frame(lambda c, s: 0.6, dataset="imagenet")
    clean = pd.DataFrame([dict(benchmark="clean", corruption=None, severity=None, n=50,
                               correct=45, dataset="imagenet")])
    both = pd.concat([frame, clean], ignore_index=True)
    assert mce(both, relative=True) == pytest.approx(
        mce(frame, relative=True, clean_error=0.1))
    with pytest.raises(ValueError, match="clean error"):
        mce(frame, relative=True)


def test_missing_cells_raise_unless_allowed():
    frame = full_frame(lambda c, s: 0.7)
    partial = frame[~((frame.corruption == "fog") & (frame.severity == 5))]
    with pytest.raises(ValueError, match=r"1 of 75 corruption cells missing.*fog@5"):
        mean_corruption_accuracy(partial)
    assert mean_corruption_accuracy(partial, allow_missing=True) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="missing"):
        mce(partial.assign(dataset="imagenet"))


def test_pooling_and_grouping():
    a = full_frame(lambda c, s: 0.5, model="a")
    b = full_frame(lambda c, s: 0.9, model="b")
    both = pd.concat([a, b], ignore_index=True)
    with pytest.raises(ValueError, match="mixes 2 values of 'model'"):
        mean_corruption_accuracy(both)
    by_model = mean_corruption_accuracy(both, by="model")
    assert by_model["a"] == pytest.approx(0.5) and by_model["b"] == pytest.approx(0.9)
    clean = pd.DataFrame([dict(benchmark="clean", model="a", n=10, correct=9),
                          dict(benchmark="clean", model="b", n=10, correct=8)])
    with_clean = pd.concat([both, clean], ignore_index=True).assign(dataset="imagenet")
    rel = mce(with_clean, by="model", relative=True)
    assert rel["a"] == pytest.approx(mce(with_clean[with_clean.model == "a"], relative=True))
    assert rel["b"] == pytest.approx(mce(b.assign(dataset="imagenet"), relative=True,
                                         clean_error=0.2))
    assert list(metrics.summary(both, by="model").model) == ["a", "b"]
    # a cell repeated (two runs of the same model) pools correct / n
    extra = pd.DataFrame([dict(benchmark="corruption", corruption="fog", severity=1, n=300,
                               correct=300, model="a")])
    table = accuracy_table(pd.concat([a, extra]))
    row = table[(table.corruption == "fog") & (table.severity == 1)].iloc[0]
    assert (row.n, row.correct, row.accuracy) == (400, 350, 350 / 400)


def test_extras_and_other_benchmarks_ignored():
    frame = full_frame(lambda c, s: 0.7)
    noise = pd.DataFrame([dict(benchmark="corruption", corruption="spatter", severity=1, n=10,
                               correct=0),
                          dict(benchmark="attack", corruption=None, severity=None, n=10,
                               correct=0)])
    assert mean_corruption_accuracy(pd.concat([frame, noise])) == pytest.approx(0.7)


def test_accuracy_only_frames():
    frame = full_frame(lambda c, s: 0.25).drop(columns=["correct", "n"])
    frame["accuracy"] = 0.25
    assert mean_corruption_accuracy(frame) == pytest.approx(0.25)
    frame.loc[0, "accuracy"] = 25.0  # percent by mistake
    with pytest.raises(ValueError, match=r"fractions in \[0, 1\]"):
        mean_corruption_accuracy(frame)


def test_mce_guards_against_cifar():
    frame = full_frame(lambda c, s: 0.7, dataset="cifar10")
    with pytest.raises(ValueError, match="AlexNet"):
        mce(frame)
    assert math.isfinite(mce(frame, allow_non_imagenet=True))
    with pytest.raises(ValueError, match="CIFAR parameter set"):
        mce(full_frame(lambda c, s: 0.7, dataset="imagenet", param_set="cifar10"))


def test_bad_names_and_severities():
    with pytest.raises(ValueError, match="did you mean 'gaussian_noise'"):
        metrics.check_corruption_name("gausian_noise")
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="outside 1..5"):
            metrics.check_severity(bad)
    with pytest.raises(ValueError, match="did you mean 'frost'"):
        mean_corruption_accuracy(full_frame(lambda c, s: 0.7), corruptions=["frots"])
