"""What every fused kernel shares with generate's uint8 path: the input levels and the final nudge."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .. import TRUNC_EPS

# torch adds the Python float to a float32 tensor in float32
TRUNC_EPS32 = np.float32(TRUNC_EPS)


@functools.lru_cache(maxsize=1)
def level_floats() -> np.ndarray:
    """x = raw / 255 in float32 for the 256 levels, computed as generate computes it."""
    return torch.arange(256, dtype=torch.int32).to(torch.uint8).to(torch.float32).div_(255.0).numpy()
