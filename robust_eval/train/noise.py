"""Synthetic label noise, with the semantics of the official ConvNorm code (convnorm.md).

- ``symmetric``: ceil(rate*N) labels, chosen uniformly, are redrawn uniformly over ALL classes
  (as the official code), so some keep their class: the true flip rate is rate*(1-1/C).
- ``symmetric_exact``: the same ceil(rate*N) labels always move to a different class.
- ``asymmetric``: CIFAR-10 (C=10) flips truck->automobile, bird->airplane, cat->dog, dog->cat,
  deer->horse, visiting classes 0..9 in order and picking ceil(rate*n) members of the class *as
  it stands then* (official order): dogs made from cats can flip back, so cat ends near
  rate*(1-rate) and dog at rate. CIFAR-100 (C=100): each label moves with probability rate to
  the next class within its block of 5 consecutive class indices (circular), as the official
  transition matrix does.

Everything is drawn from numpy's PCG64 seeded with ``seed``: same inputs, same labels.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import numpy as np

KINDS = ("symmetric", "symmetric_exact", "asymmetric")
# class -> target, in the order the official loop applies them (it walks classes 0..9).
CIFAR10_ASYMMETRIC_MAP = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}
CIFAR100_BLOCK = 5


def validate_noise(kind: str, rate: float, num_classes: int) -> None:
    """Raise ValueError naming the bad field; shared by the trainer and the CLI."""
    if kind not in KINDS:
        raise ValueError(f"unknown label-noise kind {kind!r} (known: {', '.join(KINDS)})")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)):
        raise ValueError(f"noise rate must be a number in [0, 1), got {rate!r}")
    if not (0.0 <= float(rate) < 1.0):  # also rejects NaN
        raise ValueError(f"noise rate must lie in [0, 1), got {rate!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if kind == "asymmetric" and num_classes not in (10, 100):
        raise ValueError(
            f"asymmetric noise is defined for CIFAR-10 (10 classes) and CIFAR-100 (100 classes), "
            f"not num_classes={num_classes}")


def _as_numpy_labels(labels: Any, num_classes: int) -> np.ndarray:
    array = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=True)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"labels span [{array.min()}, {array.max()}] but num_classes={num_classes}: the class "
            f"count does not match the labels")
    return array


def _count(rate: float, n: int) -> int:
    """How many of n the official loop selects: #{i < n : i < rate*n} = ceil(rate*n)."""
    return min(n, math.ceil(round(rate * n, 9)))


def corrupt_labels(labels: Any, kind: str, rate: float, num_classes: int, seed: int):
    """Return a noisy copy of ``labels`` (same container type: torch tensor, numpy array, list)."""
    validate_noise(kind, rate, num_classes)
    clean = _as_numpy_labels(labels, num_classes)
    noisy = clean.copy()
    rng = np.random.default_rng(int(seed))
    rate = float(rate)
    n = clean.size
    if rate > 0 and n:
        if kind in ("symmetric", "symmetric_exact"):
            chosen = rng.permutation(n)[:_count(rate, n)]
            if kind == "symmetric":
                noisy[chosen] = rng.integers(0, num_classes, chosen.size)
            else:  # uniform over the C-1 other classes
                noisy[chosen] = (clean[chosen] + rng.integers(1, num_classes, chosen.size)) \
                    % num_classes
        elif num_classes == 10:
            for source in range(num_classes):
                if source not in CIFAR10_ASYMMETRIC_MAP:
                    continue
                members = np.flatnonzero(noisy == source)
                rng.shuffle(members)
                noisy[members[:_count(rate, members.size)]] = CIFAR10_ASYMMETRIC_MAP[source]
        else:
            move = rng.random(n) < rate
            block_start = clean - clean % CIFAR100_BLOCK
            shifted = block_start + (clean % CIFAR100_BLOCK + 1) % CIFAR100_BLOCK
            noisy = np.where(move, shifted, clean)
    return _like(labels, noisy)


def _like(original: Any, array: np.ndarray):
    if hasattr(original, "detach"):
        import torch

        return torch.as_tensor(array, dtype=torch.int64).to(original.device)
    if isinstance(original, np.ndarray):
        return array
    return array.tolist()


def noise_summary(clean: Any, noisy: Any, num_classes: int) -> Dict[str, Any]:
    """What the noise actually did: flipped indices, realised rate, per-class rates, transitions."""
    clean_np = _as_numpy_labels(clean, num_classes)
    noisy_np = _as_numpy_labels(noisy, num_classes)
    if clean_np.shape != noisy_np.shape:
        raise ValueError(f"clean labels {clean_np.shape} and noisy labels {noisy_np.shape} differ")
    flipped = np.flatnonzero(clean_np != noisy_np)
    per_class = {}
    for c in range(num_classes):
        members = clean_np == c
        if members.any():
            per_class[str(c)] = float((noisy_np[members] != c).mean())
    transitions: Dict[str, int] = {}
    for a, b in zip(clean_np[flipped].tolist(), noisy_np[flipped].tolist()):
        key = f"{a}->{b}"
        transitions[key] = transitions.get(key, 0) + 1
    return {
        "n": int(clean_np.size),
        "num_flipped": int(flipped.size),
        "realised_rate": float(flipped.size / clean_np.size) if clean_np.size else 0.0,
        "flipped_indices": flipped.tolist(),
        "per_class_rate": per_class,
        "transitions": dict(sorted(transitions.items())),
    }


def expected_flip_rate(kind: str, rate: float, num_classes: int) -> float:
    """The flip rate a kind should realise on balanced labels (for reports and checks)."""
    validate_noise(kind, rate, num_classes)
    if kind == "symmetric":
        return rate * (1 - 1 / num_classes)
    if kind == "symmetric_exact":
        return rate
    if num_classes == 100:
        return rate
    # 5 of 10 classes flip at rate, except cat at rate*(1-rate) (see module docstring).
    return (4 * rate + rate * (1 - rate)) / num_classes


__all__: Sequence[str] = ("KINDS", "CIFAR10_ASYMMETRIC_MAP", "corrupt_labels", "noise_summary",
                          "expected_flip_rate", "validate_noise")
