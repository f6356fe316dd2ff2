"""Batched, seeded CIFAR-10-C / ImageNet-C corruptions as torch operations (CPU or GPU).

    apply_corruption(images, name, severity, *, params="cifar10", seed=0, indices=None)

images: uint8 NCHW (0..255) or float NCHW in [0, 1], 3 channels; the result has the same dtype,
shape and device. Randomness is counter-based (corruptions/ops/_rng.py): image n's output depends
only on (seed, indices[n], corruption, severity), never on the batch it came in or its position,
and its random draws are the same on every device. uint8 outputs are truncated like the
reference scripts' np.uint8(...). The corruptions themselves are the records of params.py.
"""
from __future__ import annotations

import difflib
from typing import Callable

import torch

from .ops import TRUNC_EPS as _TRUNC_EPS
from .ops import Context
from .ops._rng import ImageRNG, image_keys
from .params import (ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, CATEGORIES, EXTRA_CORRUPTIONS,
                     PARAMS, RECORDS)

# Pixels per chunk: small enough that the elementwise passes stay in cache (2-4x faster than
# 4M-pixel chunks at 32 px), large enough to amortise per-op overhead (128 images at 32 px;
# scaled per corruption by its record's chunk_scale). Chunks never change results.
_CHUNK_PIXELS = 1 << 17
# Both run the torch ops; "auto" stays accepted for callers written when there was a choice.
ENGINES = ("auto", "torch")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in RECORDS:
        close = difflib.get_close_matches(str(name), ALL_CORRUPTIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown corruption {name!r}{hint} Known: {', '.join(ALL_CORRUPTIONS)}")
    return name


def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        try:
            ok = int(severity) == severity and 1 <= int(severity) <= 5 and not isinstance(severity, bool)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    return int(severity)


def _check_params(params: str) -> dict:
    if params not in PARAMS:
        raise ValueError(f"unknown params set {params!r}; choose one of {sorted(PARAMS)}")
    return PARAMS[params]


def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor (NCHW), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[2] < 8 or images.shape[3] < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {tuple(images.shape[2:])}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    if images.numel():
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(f"float images must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return images


def _indices(indices, n: int, device) -> torch.Tensor:
    if indices is None:
        return torch.arange(n, dtype=torch.int64, device=device)
    idx = torch.as_tensor(indices, device=device)
    if idx.ndim != 1 or idx.numel() != n:
        raise ValueError(f"indices must be a 1-D sequence of {n} ints, got shape {tuple(idx.shape)}")
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    if n and int(idx.min()) < 0:
        raise ValueError("indices must be non-negative")
    return idx.to(torch.int64)


def _check_engine(engine) -> None:
    if engine == "numba":
        raise ValueError("engine='numba': the numba engine was removed; use engine='torch' "
                         "(or 'auto'), the torch ops")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def apply_corruption(images: torch.Tensor, name: str, severity: int, *, params: str = "cifar10",
                     seed: int = 0, indices=None, engine: str = "auto") -> torch.Tensor:
    """Corrupt a batch; see the module docstring. Raises ValueError on any bad argument.

    engine: "torch" or "auto" (the same: the torch ops); "numba" raises (that engine was removed)."""
    name = _check_name(name)
    severity = _check_severity(severity)
    table = _check_params(params)
    images = _check_images(images)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _check_engine(engine)
    n, _, h, w = images.shape
    idx = _indices(indices, n, images.device)
    if n == 0:
        return images.clone()
    record = RECORDS[name]
    p = table[name][severity - 1]
    keys = image_keys(seed, idx, record.stream_id, severity)
    quantized = images.dtype == torch.uint8
    chunk = max(1, int(_CHUNK_PIXELS * record.chunk_scale) // (h * w))
    exact64 = quantized and record.float64  # else float32 and a nudge before truncation
    work = torch.float64 if exact64 else torch.float32
    eps = 0.0 if exact64 else _TRUNC_EPS
    outs = []
    for start in range(0, n, chunk):
        part = images[start:start + chunk]
        x = part.to(work).div_(255.0) if quantized else part.to(torch.float32)
        ctx = Context(rng=ImageRNG(keys[start:start + chunk]), quantized=quantized, param_set=params,
                      raw=part if quantized else None)
        y = record.kernel(x, p, ctx)
        if y.dtype == torch.uint8:  # the kernel already produced the final 8-bit output
            outs.append(y)
            continue
        y = y.clamp_(0.0, 1.0)
        if quantized:
            y = y.mul_(255.0)
            if eps:
                y = y.add_(eps)
            y = y.to(torch.uint8)  # y >= 0: the cast truncates like np.uint8
        else:
            y = y.to(images.dtype)
        outs.append(y)
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def corrupt_batch(images: torch.Tensor, name: str, severities=(1, 2, 3, 4, 5), **kwargs):
    """{severity: apply_corruption(images, name, severity, **kwargs)} for several severities."""
    return {s: apply_corruption(images, name, s, **kwargs) for s in severities}


def _make_public(name: str) -> Callable:
    def corruption(images, severity, *, params="cifar10", seed=0, indices=None, engine="auto"):
        return apply_corruption(images, name, severity, params=params, seed=seed, indices=indices,
                                engine=engine)

    corruption.__name__ = corruption.__qualname__ = name
    corruption.__doc__ = f"apply_corruption(images, {name!r}, severity, ...)"
    return corruption


CORRUPTIONS: dict[str, Callable] = {name: _make_public(name) for name in ALL_CORRUPTIONS}

__all__ = ["apply_corruption", "corrupt_batch", "CORRUPTIONS", "ENGINES", "BENCHMARK_CORRUPTIONS",
           "EXTRA_CORRUPTIONS", "ALL_CORRUPTIONS", "CATEGORIES", "PARAMS", "RECORDS"]
