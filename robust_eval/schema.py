"""The result schema as the hub uses it: reports.schema (columns, types, file writing) plus
make_row, which fills accuracy and its interval from correct/n in one place."""
from __future__ import annotations

import functools
import hashlib
import math
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import pandas as pd

from reports.schema import COLUMNS, OPTIONAL_COLUMNS, params_json, typed_frame
from reports.stats import wilson_interval

BENCHMARKS = ("clean", "corruption", "attack", "label_noise", "spectral")


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


def make_row(*, correct: Optional[int], n: Optional[int], **fields: Any) -> Dict[str, Any]:
    """A schema row, ok or failed, built the same way: accuracy and its Wilson 95 % interval come
    from correct/n here and nowhere else. A failed row (status="failed") has no counts and NaN
    accuracy, never a number."""
    unknown = set(fields) - set(COLUMNS) - set(OPTIONAL_COLUMNS)
    if unknown:
        raise ValueError(f"unknown result column(s): {sorted(unknown)}")
    row: Dict[str, Any] = {c: None for c in COLUMNS}
    row.update(fields)
    if row.get("status") == "failed":
        row.update(n=None, correct=None, accuracy=math.nan, ci_low=math.nan, ci_high=math.nan)
    else:
        if isinstance(correct, bool) or isinstance(n, bool) or not all(
                isinstance(v, int) or (hasattr(v, "item") and float(v) == int(v))
                for v in (correct, n)):
            raise ValueError(f"correct and n must be integers, got {correct!r} and {n!r}")
        correct, n = int(correct), int(n)
        if not 0 <= correct <= n:
            raise ValueError(f"correct={correct} must lie in [0, n={n}]")
        low, high = wilson_interval(correct, n)
        row.update(n=n, correct=correct, accuracy=(correct / n if n else math.nan),
                   ci_low=low, ci_high=high, status="ok")
    row["params"] = params_json(row.get("params"))
    if row.get("created_at") is None:
        row["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if row.get("code_version") is None:
        row["code_version"] = code_version()
    return row


def to_frame(rows: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """Rows -> the typed schema frame (reports.schema.typed_frame)."""
    return typed_frame(rows)


def device_name(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"
