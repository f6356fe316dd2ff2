"""Read a results directory (results.csv / results.parquet / run.json) into a ResultSet.

This leaf knows the result schema only by column names (it never imports the hub), and reads
defensively: a missing optional column becomes NaN, a missing run.json becomes {}.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pandas as pd

from reports.schema import write_atomic  # noqa: F401  (re-exported)

# The columns a table or plot may ask for; absent ones are added as NaN.
SCHEMA_COLUMNS: List[str] = [
    "model", "checkpoint_sha256", "arch", "norm", "dataset", "benchmark", "corruption",
    "severity", "attack", "threat", "eps", "steps", "restarts", "noise_type", "noise_rate",
    "seed", "n", "correct", "accuracy", "ci_low", "ci_high", "seconds", "device",
    "code_version", "created_at", "status", "error", "warnings", "metric", "params",
]
NUMERIC_COLUMNS = ["severity", "eps", "steps", "restarts", "noise_rate", "seed", "n", "correct",
                   "accuracy", "ci_low", "ci_high", "seconds"]
REQUIRED_COLUMNS = ["model", "benchmark"]
# Identify a measured cell. `seed` is deliberately absent: reruns with another seed are the
# same cell. `metric` separates variants of one cell (label noise: best vs last epoch).
CELL_KEY_COLUMNS: List[str] = [
    "model", "dataset", "benchmark", "corruption", "severity", "attack", "threat", "eps",
    "steps", "restarts", "noise_type", "noise_rate", "metric",
]
FAILED = "failed"


@dataclass
class ResultSet:
    frame: pd.DataFrame  # every row, failed cells included
    run: Dict[str, Any] = field(default_factory=dict)  # run.json, {} when absent
    source: str = ""
    notes: List[str] = field(default_factory=list)  # problems met while reading

    @property
    def ok(self) -> pd.DataFrame:
        return ok_rows(self.frame)

    @property
    def failed(self) -> pd.DataFrame:
        return failed_rows(self.frame)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def normalize_frame(frame: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    """Schema columns present, numeric ones numeric, a `status` on every row."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{source} is not a robust-eval result table: it lacks column(s) "
                         f"{missing} (has {list(frame.columns)[:12]})")
    frame = frame.copy()
    for column in SCHEMA_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    # Accuracy from correct/n where a writer left it empty (n > 0 only).
    fill = frame["accuracy"].isna() & (frame["n"] > 0) & frame["correct"].notna()
    frame.loc[fill, "accuracy"] = frame.loc[fill, "correct"] / frame.loc[fill, "n"]
    status = frame["status"].astype(object)
    frame["status"] = [
        (FAILED if not _blank(e) else "ok") if _blank(s) else str(s).strip().lower()
        for s, e in zip(status, frame["error"])
    ]
    frame["model"] = frame["model"].astype(str)
    frame["benchmark"] = frame["benchmark"].astype(str)
    return frame


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] != FAILED]


def failed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == FAILED]


def read_table(path: Path) -> pd.DataFrame:
    """A result table by its suffix; content that is not CSV/parquet is a ValueError naming the
    file (pandas' own errors do not)."""
    if path.suffix not in (".parquet", ".csv", ".txt"):
        raise ValueError(f"{path}: unknown result file type (expected .csv or .parquet)")
    kind = "parquet" if path.suffix == ".parquet" else "CSV"
    try:
        return pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path, low_memory=False)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a CSV file: byte {error.start} is not UTF-8 text "
                         f"(binary or compressed data?)") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is not a CSV file: it is empty (no header row)") from None
    except (pd.errors.ParserError, OSError, ValueError) as error:  # pyarrow's errors included
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a readable {kind} file ({first})") from None


def load_results(path: Union[str, os.PathLike]) -> ResultSet:
    """A results directory (results.parquet preferred, else results.csv; run.json optional) or one
    table file. Raises FileNotFoundError / ValueError naming the path."""
    path = Path(path)
    notes: List[str] = []
    if path.is_dir():
        candidates = [path / "results.parquet", path / "results.csv"]
        table = next((c for c in candidates if c.is_file()), None)
        if table is None:
            raise FileNotFoundError(f"{path} holds no results.csv or results.parquet")
        run_path: Optional[Path] = path / "run.json"
    elif path.is_file():
        table, run_path = path, path.parent / "run.json"
    else:
        raise FileNotFoundError(f"results not found: {path}")
    try:
        frame = read_table(table)
    except ImportError as error:  # parquet without pyarrow: fall back to the CSV beside it
        csv = table.with_suffix(".csv")
        if table.suffix != ".parquet" or not csv.is_file():
            raise ValueError(f"cannot read {table}: {error}") from None
        notes.append(f"{table.name} unreadable ({error}); read {csv.name}")
        frame, table = read_table(csv), csv
    frame = normalize_frame(frame, str(table))
    run: Dict[str, Any] = {}
    if run_path is not None and run_path.is_file():
        try:
            run = json.loads(run_path.read_text())
            if not isinstance(run, dict):
                raise ValueError("top level is not an object")
        except (ValueError, OSError) as error:
            notes.append(f"{run_path.name} unreadable ({error}); run details omitted")
            warnings.warn(f"{run_path}: unreadable run.json ({error})", stacklevel=2)
            run = {}
    elif run_path is not None:
        notes.append("run.json absent: configuration and environment unknown")
    return ResultSet(frame=frame, run=run, source=str(table), notes=notes)


def parse_params(value: Any) -> Dict[str, Any]:
    """The `params` column: a JSON object (string) or a dict; anything else -> {}."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
            return parsed if isinstance(parsed, dict) else {}
        except ValueError:
            return {}
    return {}


