"""The one long-format result schema (design.md): one row per measured cell."""
from __future__ import annotations

import functools
import hashlib
import math
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pandas as pd

COLUMNS: List[str] = [
    "model", "checkpoint_sha256", "arch", "norm", "dataset", "benchmark", "corruption",
    "severity", "attack", "threat", "eps", "steps", "restarts", "noise_type", "noise_rate",
    "seed", "n", "correct", "accuracy", "ci_low", "ci_high", "seconds", "device",
    "code_version", "created_at",
]
# Extra columns a cell may add (status of failed cells, warnings, metric variants).
OPTIONAL_COLUMNS: List[str] = ["status", "error", "warnings", "metric", "value", "cell_key", "params"]
BENCHMARKS = ("clean", "corruption", "attack", "label_noise", "spectral")
WILSON_Z = 1.959963984540054  # two-sided 95 %


def wilson_interval(correct: int, n: int, z: float = WILSON_Z) -> Tuple[float, float]:
    """Wilson score interval: unlike the normal approximation it stays inside [0, 1] at 0 % or 100 %."""
    if n <= 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, plus the git commit when run from a checkout and a hash of any
    uncommitted change (so results from an edited tree never pass for the commit's).
    Cached: it runs git, and make_row asks for it on every row."""
    from robust_eval import __version__

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    sha = git("rev-parse", "--short", "HEAD")
    if not sha:
        return __version__
    diff = git("diff", "HEAD", "--", ":/robust_eval", ":/attacks", ":/corruptions", ":/reports")
    dirty = f".dirty{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else ""
    return f"{__version__}+{sha}{dirty}"


def make_row(*, correct: int, n: int, **fields: Any) -> Dict[str, Any]:
    """A schema row with accuracy and its Wilson 95 % interval filled in from correct/n."""
    unknown = set(fields) - set(COLUMNS) - set(OPTIONAL_COLUMNS)
    if unknown:
        raise ValueError(f"unknown result column(s): {sorted(unknown)}")
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} must lie in [0, n={n}]")
    row: Dict[str, Any] = {c: None for c in COLUMNS}
    row.update(fields)
    low, high = wilson_interval(correct, n)
    row.update(n=int(n), correct=int(correct), accuracy=(correct / n if n else math.nan),
               ci_low=low, ci_high=high)
    row.setdefault("device", None)
    if row.get("created_at") is None:
        row["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if row.get("code_version") is None:
        row["code_version"] = code_version()
    return row


def to_frame(rows: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with the schema's columns first, in order."""
    frame = pd.DataFrame(list(rows))
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extra]


def validate_frame(frame: pd.DataFrame, source: Optional[str] = None) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        where = f" in {source}" if source else ""
        raise ValueError(f"result table{where} lacks column(s) {missing}")


def device_name(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"
