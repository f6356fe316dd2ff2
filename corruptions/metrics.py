"""Corruption metrics on result frames (pure pandas/numpy).

Input: a long-format frame with columns ``corruption``, ``severity`` and either ``correct`` + ``n``
(preferred: cells are pooled exactly) or ``accuracy``. Rows whose ``benchmark`` is not
"corruption" are ignored when that column exists. Accuracies and errors are fractions in [0, 1].

Definitions (Hendrycks & Dietterich 2019; RobustBench 1.1.1):
- corruption accuracy: unweighted mean of the 15 x 5 (corruption, severity) accuracies;
- mean corruption error (unnormalised, CIFAR papers): 1 - corruption accuracy;
- CE_c = sum_s E(f,s,c) / sum_s E(AlexNet,s,c); mCE = mean of CE_c over the 15;
- relCE_c = sum_s (E(f,s,c) - E(f,clean)) / sum_s (E(AlexNet,s,c) - E(AlexNet,clean)).
"""
from __future__ import annotations

import difflib
from typing import Dict, Iterable, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .params import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
from .params import CATEGORIES as _ALL_CATEGORIES

SEVERITIES: Tuple[int, ...] = (1, 2, 3, 4, 5)

# AlexNet top-1 error on ImageNet-C, severities 1..5 (Hendrycks & Dietterich 2019, as in
# github.com/hendrycks/robustness ImageNet-C/test.py). Keys are the 15 benchmark corruptions in
# the paper's order.
ALEXNET_ERRORS: Dict[str, Tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}
# Only the per-corruption averages over the 5 severities are published for the extras.
ALEXNET_EXTRA_MEAN_ERRORS: Dict[str, float] = {
    "speckle_noise": 0.845388, "gaussian_blur": 0.787108, "spatter": 0.717512,
    "saturate": 0.658248,
}
ALEXNET_CLEAN_ERROR = 0.4348

# Metrics use the 4 categories of the benchmark; the extra corruptions are not a category here.
CATEGORIES: Dict[str, Tuple[str, ...]] = {
    name: members for name, members in _ALL_CATEGORIES.items() if name != "extra"}

# Columns that identify what was evaluated: cells differing in these must never be pooled.
_IDENTITY_COLUMNS = ("model", "checkpoint_sha256", "dataset", "param_set")

By = Union[str, Sequence[str], None]


def check_corruption_name(name: str, known: Iterable[str] = ALL_CORRUPTIONS) -> str:
    """Return `name` if known, else raise ValueError suggesting the closest known name."""
    known = list(known)
    if name in known:
        return name
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown corruption {name!r}{hint} (known: {', '.join(known)})")


def check_severity(severity: object) -> int:
    """Severities are the integers 1..5."""
    if isinstance(severity, (bool, np.bool_)) or not isinstance(severity, (int, np.integer)) \
            or not 1 <= int(severity) <= 5:
        raise ValueError(f"severity {severity!r} is outside 1..5")
    return int(severity)


def _by_list(by: By) -> list:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def accuracy_table(frame: pd.DataFrame, by: By = None) -> pd.DataFrame:
    """Accuracy per (by..., corruption, severity), one row per cell.

    Repeated cells (e.g. several evaluation runs) are pooled by summing correct and n. Rows that
    differ in model/checkpoint/dataset/params but are not separated by `by` raise ValueError.
    """
    keys = _by_list(by)
    missing = [c for c in keys + ["corruption", "severity"] if c not in frame.columns]
    if missing:
        raise ValueError(f"result frame lacks column(s) {missing}")
    data = frame
    if "benchmark" in data.columns:
        data = data[data["benchmark"] == "corruption"]
    if "status" in data.columns:  # failed cells carry no measurement
        data = data[data["status"].isna() | (data["status"] == "ok")]
    if data.empty:
        raise ValueError("result frame has no corruption rows")
    data = data.copy()
    data["severity"] = data["severity"].astype(int)
    for column in _IDENTITY_COLUMNS:
        if column in data.columns and column not in keys:
            distinct = data[column].dropna().unique()
            if len(distinct) > 1:
                raise ValueError(
                    f"result frame mixes {len(distinct)} values of {column!r} "
                    f"({', '.join(map(str, distinct[:4]))}); pass by={column!r} or filter first")
    groups = keys + ["corruption", "severity"]
    if {"correct", "n"} <= set(data.columns) and data["n"].notna().all():
        table = data.groupby(groups, sort=True)[["correct", "n"]].sum().reset_index()
        if (table["n"] <= 0).any():
            raise ValueError("a corruption cell has n = 0")
        table["accuracy"] = table["correct"] / table["n"]
    elif "accuracy" in data.columns:
        table = data.groupby(groups, sort=True)["accuracy"].mean().reset_index()
    else:
        raise ValueError("result frame needs columns correct and n, or accuracy")
    if ((table["accuracy"] < 0) | (table["accuracy"] > 1)).any():
        raise ValueError("accuracies must be fractions in [0, 1]")
    return table


def _grid(table: pd.DataFrame, keys: list, corruptions: Sequence[str],
          severities: Sequence[int], allow_missing: bool) -> pd.DataFrame:
    """The requested cells only; raise when one is missing unless allowed."""
    for name in corruptions:
        check_corruption_name(name)
    severities = [check_severity(s) for s in severities]
    sub = table[table["corruption"].isin(corruptions) & table["severity"].isin(severities)]
    groups = [g for _, g in sub.groupby(keys)] if keys else [sub]
    if sub.empty:
        raise ValueError(f"none of the requested {len(corruptions)} x {len(severities)} "
                         f"corruption cells is present")
    if not allow_missing:
        wanted = {(c, s) for c in corruptions for s in severities}
        for group in groups:
            have = set(zip(group["corruption"], group["severity"].astype(int)))
            lacking = sorted(wanted - have)
            if lacking:
                where = ""
                if keys:
                    where = " for " + ", ".join(f"{k}={group[k].iloc[0]}" for k in keys)
                shown = ", ".join(f"{c}@{s}" for c, s in lacking[:6])
                more = f" and {len(lacking) - 6} more" if len(lacking) > 6 else ""
                raise ValueError(
                    f"{len(lacking)} of {len(wanted)} corruption cells missing{where}: "
                    f"{shown}{more} (pass allow_missing=True to average what is present)")
    return sub


def _finish(values: pd.Series, keys: list):
    return float(values.iloc[0]) if not keys else values


def mean_corruption_accuracy(frame: pd.DataFrame, *, by: By = None,
                             corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
                             severities: Sequence[int] = SEVERITIES,
                             allow_missing: bool = False):
    """RobustBench's corruption accuracy: unweighted mean over the 15 x 5 cells.

    Returns a float, or a Series indexed by `by`. Missing cells raise unless allow_missing.
    """
    keys = _by_list(by)
    sub = _grid(accuracy_table(frame, keys), keys, corruptions, severities, allow_missing)
    if keys:
        return sub.groupby(keys)["accuracy"].mean()
    return float(sub["accuracy"].mean())


def mean_corruption_error(frame: pd.DataFrame, **kwargs):
    """Unnormalised mean corruption error, 1 - mean corruption accuracy (CIFAR papers)."""
    return 1 - mean_corruption_accuracy(frame, **kwargs)


def category_accuracy(frame: pd.DataFrame, *, by: By = None,
                      allow_missing: bool = False) -> pd.DataFrame:
    """Mean accuracy per category (noise, blur, weather, digital)."""
    keys = _by_list(by)
    table = accuracy_table(frame, keys)
    out = {}
    for category, names in CATEGORIES.items():
        sub = _grid(table, keys, names, SEVERITIES, allow_missing)
        out[category] = sub.groupby(keys)["accuracy"].mean() if keys else sub["accuracy"].mean()
    return pd.DataFrame(out) if keys else pd.DataFrame([out])


def _clean_error(frame: pd.DataFrame, keys: list, clean_error) -> pd.Series:
    """Clean error per group: given, or read from the frame's benchmark == 'clean' rows."""
    if clean_error is not None:
        if isinstance(clean_error, pd.Series):
            return clean_error
        value = float(clean_error)
        if not 0 <= value <= 1:
            raise ValueError(f"clean_error {value} must be a fraction in [0, 1]")
        return value
    if "benchmark" not in frame.columns:
        raise ValueError("relative mCE needs the clean error: pass clean_error= or include "
                         "benchmark == 'clean' rows")
    clean = frame[frame["benchmark"] == "clean"]
    if clean.empty:
        raise ValueError("relative mCE needs the clean error: the frame has no clean rows "
                         "(pass clean_error=)")
    if {"correct", "n"} <= set(clean.columns):
        pooled = clean.groupby(keys)[["correct", "n"]].sum() if keys \
            else clean[["correct", "n"]].sum()
        return 1 - pooled["correct"] / pooled["n"]
    acc = clean.groupby(keys)["accuracy"].mean() if keys else clean["accuracy"].mean()
    return 1 - acc


def corruption_errors(frame: pd.DataFrame, *, by: By = None, relative: bool = False,
                      clean_error=None, allow_non_imagenet: bool = False) -> pd.DataFrame:
    """CE_c (or relative CE_c) per benchmark corruption, normalised by AlexNet.

    All 15 x 5 cells are required: a partial sum over severities is not comparable to AlexNet's.
    """
    keys = _by_list(by)
    if "dataset" in frame.columns and not allow_non_imagenet:
        datasets = {str(d) for d in frame["dataset"].dropna().unique()}
        foreign = sorted(d for d in datasets if not d.lower().startswith("imagenet"))
        if foreign:
            raise ValueError(f"mCE is normalised by AlexNet's ImageNet-C errors; the frame holds "
                             f"dataset(s) {foreign} (pass allow_non_imagenet=True to force)")
    if "param_set" in frame.columns:
        rows = frame if "benchmark" not in frame.columns \
            else frame[frame["benchmark"] == "corruption"]
        if "cifar10" in {str(p) for p in rows["param_set"].dropna().unique()}:
            raise ValueError("mCE needs ImageNet-C severities; these cells used the CIFAR "
                             "parameter set (param_set='cifar10')")
    sub = _grid(accuracy_table(frame, keys), keys, BENCHMARK_CORRUPTIONS, SEVERITIES, False)
    sub = sub.copy()
    sub["error"] = 1 - sub["accuracy"]
    sub["alexnet_error"] = [ALEXNET_ERRORS[c][s - 1]
                            for c, s in zip(sub["corruption"], sub["severity"])]
    if relative:
        clean = _clean_error(frame, keys, clean_error)
        if keys:
            idx = pd.MultiIndex.from_frame(sub[keys]) if len(keys) > 1 else sub[keys[0]]
            sub["clean_error"] = clean.reindex(idx).to_numpy() if isinstance(clean, pd.Series) \
                else clean
            if sub["clean_error"].isna().any():
                raise ValueError("clean error missing for some group of the frame")
        else:
            sub["clean_error"] = float(clean)
        sub["error"] = sub["error"] - sub["clean_error"]
        sub["alexnet_error"] = sub["alexnet_error"] - ALEXNET_CLEAN_ERROR
    sums = sub.groupby(keys + ["corruption"])[["error", "alexnet_error"]].sum()
    sums["ce"] = sums["error"] / sums["alexnet_error"]
    if keys:
        out = sums["ce"].unstack("corruption")
    else:
        out = sums["ce"].to_frame().T.reset_index(drop=True)
        out.columns.name = "corruption"
    return out[list(BENCHMARK_CORRUPTIONS)]


def mce(frame: pd.DataFrame, *, by: By = None, relative: bool = False, clean_error=None,
        allow_non_imagenet: bool = False):
    """ImageNet-C mCE (or relative mCE) as a fraction (the paper prints x100)."""
    keys = _by_list(by)
    ces = corruption_errors(frame, by=keys, relative=relative, clean_error=clean_error,
                            allow_non_imagenet=allow_non_imagenet)
    values = ces.mean(axis=1)
    return _finish(values, keys)


def summary(frame: pd.DataFrame, *, by: By = None, allow_missing: bool = False) -> pd.DataFrame:
    """Mean corruption accuracy and error plus the per-category means, one row per group."""
    keys = _by_list(by)
    acc = mean_corruption_accuracy(frame, by=keys, allow_missing=allow_missing)
    cats = category_accuracy(frame, by=keys, allow_missing=allow_missing)
    if keys:
        out = cats.copy()
        out.insert(0, "mean_corruption_accuracy", acc)
        out.insert(1, "mean_corruption_error", 1 - acc)
        return out.reset_index()
    out = cats.copy()
    out.insert(0, "mean_corruption_accuracy", acc)
    out.insert(1, "mean_corruption_error", 1 - acc)
    return out


def alexnet_table() -> pd.DataFrame:
    """AlexNet's ImageNet-C errors as a corruption x severity frame."""
    return pd.DataFrame(ALEXNET_ERRORS, index=list(SEVERITIES)).T.rename_axis(
        index="corruption", columns="severity")
