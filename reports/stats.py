"""Interval arithmetic the tables and the regression gate share."""
from __future__ import annotations

import math
from typing import Tuple

WILSON_Z = 1.959963984540054  # two-sided 95 %, the same as the hub's schema


def wilson_interval(correct: float, n: float, z: float = WILSON_Z) -> Tuple[float, float]:
    """Wilson score interval; `correct` may be fractional (a mean over seeds). NaN when n <= 0.
    The bound at 0 % (or 100 %) is exactly 0 (or 1): centre - half cancels there only up to
    rounding."""
    if not n or n <= 0 or math.isnan(n) or math.isnan(correct):
        return (math.nan, math.nan)
    p = min(max(correct / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if p == 0.0 else max(0.0, centre - half)
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return (low, high)


def eps_label(eps: float) -> str:
    """8/255-style label when eps is a whole number of 255ths (the usual pixel budgets)."""
    if eps is None or (isinstance(eps, float) and math.isnan(eps)):
        return ""
    scaled = eps * 255
    if eps > 0 and abs(scaled - round(scaled)) < 1e-6:
        return f"{int(round(scaled))}/255"
    return f"{eps:g}"
