"""Input normalisation as part of the model (RobustBench habit: models take [0,1] inputs)."""
from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch
from torch import nn


def parse_stats(values: Union[str, Sequence[float]], what: str = "mean") -> Tuple[float, ...]:
    """'0.5,0.5,0.5' or a sequence -> tuple of finite floats (std must be > 0)."""
    if isinstance(values, str):
        parts = [p.strip() for p in values.split(",") if p.strip()]
        try:
            floats = tuple(float(p) for p in parts)
        except ValueError:
            raise ValueError(f"{what} must be comma-separated numbers, got {values!r}") from None
    else:
        floats = tuple(float(v) for v in values)
    if not floats:
        raise ValueError(f"{what} is empty")
    if not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{what} has a non-finite value: {floats}")
    if what == "std" and any(v <= 0 for v in floats):
        raise ValueError(f"std must be positive, got {floats}")
    return floats


class NormalizedModel(nn.Module):
    """(x - mean) / std, then the wrapped network. mean/std are tuples, not state_dict entries,
    so the wrapped network's keys stay exactly those of the bare arch under `model.`."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        shape = (1, len(self.mean), 1, 1)
        self.register_buffer("_mean", torch.tensor(self.mean).view(shape), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != len(self.mean):
            raise ValueError(f"expected N,{len(self.mean)},H,W input in [0,1], got shape "
                             f"{tuple(x.shape)}")
        return self.model((x - self._mean) / self._std)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"
