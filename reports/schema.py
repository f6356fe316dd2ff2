"""The one long-format result schema: columns, their types, and how result files are written.

It lives in this leaf because both sides need it: the hub writes rows (robust_eval.schema adds
make_row on top), and reports reads them without importing the hub.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Union

import pandas as pd

COLUMNS: List[str] = [
    "model", "checkpoint_sha256", "arch", "norm", "dataset", "benchmark", "corruption",
    "severity", "attack", "threat", "eps", "steps", "restarts", "noise_type", "noise_rate",
    "seed", "n", "correct", "accuracy", "ci_low", "ci_high", "seconds", "device",
    "code_version", "created_at",
]
# status/error of failed cells; metric/value for variants and measurements without n (spectral);
# param_set: which severity table made a corruption (cifar10, imagenet, or published:<folder>);
# params: every parameter of the cell, always a JSON object; mean/std: the input normalisation
# the model applied ("0.485,0.456,0.406"); fingerprint: a hash of the clean examples (pixels,
# labels, order) the row was measured on: equal fingerprints mean outcomes pair up by example;
# precision: fp32 or bf16 (the model ran under bf16 autocast).
OPTIONAL_COLUMNS: List[str] = ["status", "error", "warnings", "metric", "value", "param_set",
                               "params", "mean", "std", "fingerprint", "cell_key", "precision"]
INTEGER_COLUMNS = ("severity", "steps", "restarts", "seed", "n", "correct")
FLOAT_COLUMNS = ("eps", "noise_rate", "accuracy", "ci_low", "ci_high", "seconds", "value")
STATUSES = ("ok", "failed")
TABLE_FILES = ("results.csv", "results.parquet")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def params_json(value: Any) -> Any:
    """The params column as JSON text of an object (None stays None)."""
    if _blank(value):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=json_default)


def typed_frame(rows: Union[pd.DataFrame, Iterable[Dict[str, Any]]]) -> pd.DataFrame:
    """Rows -> frame with the schema columns first, integers as Int64 (never 3.0), floats as
    float64 (NaN when missing), a status on every row and params as JSON text."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    for column in INTEGER_COLUMNS:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        whole = numbers.dropna()
        if (whole != whole.round()).any():
            raise ValueError(f"column {column!r} holds a non-integer value: "
                             f"{whole[whole != whole.round()].iloc[0]!r}")
        frame[column] = numbers.round().astype("Int64")
    for column in FLOAT_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    if "status" not in frame.columns:
        frame["status"] = "ok"
    frame["status"] = frame["status"].where(frame["status"].notna(), "ok")
    if "params" in frame.columns:
        frame["params"] = frame["params"].map(params_json).astype(object)
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extra].reset_index(drop=True)


@contextlib.contextmanager
def atomic_target(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """A temp path beside `path` for a writer to fill; on success it is fsynced, given the usual
    permissions (0666 less the umask, as open() would; mkstemp's are 0600) and renamed over
    `path`, so a reader sees the old file or the whole new one. On error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_atomic(path: Union[str, os.PathLike], data: Union[bytes, str]) -> Path:
    """Write `data` to `path` atomically (atomic_target)."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _text_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as text: Parquet needs one type per column."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object:
            safe[column] = safe[column].map(
                lambda v: None if _blank(v) else (v if isinstance(v, str)
                                                  else json.dumps(v, default=json_default)))
    return safe


def write_tables(frame: pd.DataFrame, folder: Union[str, os.PathLike]) -> Dict[str, Path]:
    """results.csv and results.parquet, written together from the same frame. Without pyarrow a
    stale results.parquet is removed, so no reader can prefer an older table."""
    folder = Path(folder)
    frame = _text_columns(typed_frame(frame))
    written = {"results_csv": write_atomic(folder / "results.csv", frame.to_csv(index=False))}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        (folder / "results.parquet").unlink(missing_ok=True)
        return written
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    written["results_parquet"] = write_atomic(folder / "results.parquet", buffer.getvalue())
    return written
