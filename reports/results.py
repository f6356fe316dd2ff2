"""Read a results directory (results.csv / results.parquet / outcomes.parquet / run.json).

This leaf knows the result schema only by column names (it never imports the hub). It reads
defensively (a missing optional column becomes NaN, a missing run.json {}) but trusts no derived
number: accuracy and its interval are recomputed from correct/n, a row whose stored accuracy
disagrees is refused, and so are a CSV and a Parquet table that disagree with each other, or
per-example outcomes that disagree with their row.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from reports.schema import write_atomic  # noqa: F401  (re-exported)
from reports.stats import wilson_interval

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
FLOAT_KEYS = {"severity", "eps", "steps", "restarts", "noise_rate"}


OUTCOMES_FILE = "outcomes.parquet"
# What must agree between results.csv and results.parquet when both are present.
AGREEMENT_COLUMNS = ["cell_key", *CELL_KEY_COLUMNS, "seed", "status", "correct", "n"]


@dataclass
class ResultSet:
    frame: pd.DataFrame  # every row, failed cells included
    run: Dict[str, Any] = field(default_factory=dict)  # run.json, {} when absent
    source: str = ""
    notes: List[str] = field(default_factory=list)  # problems met while reading
    # outcomes.parquet (cell_key, metric, index, label, pred, clean_pred, correct); None if absent
    outcomes: Optional[pd.DataFrame] = None
    _vectors: Optional[Dict[Tuple[str, str], pd.Series]] = field(default=None, repr=False)

    def correctness(self, cell_key: Any, metric: Any = "") -> Optional[pd.Series]:
        """A row's per-example correctness (bool, indexed by example index), None without."""
        if self.outcomes is None or _blank(cell_key):
            return None
        if self._vectors is None:
            self._vectors = {(str(k), str(m)): g.set_index("index")["correct"].astype(bool)
                             for (k, m), g in self.outcomes.groupby(["cell_key", "metric"],
                                                                    sort=False)}
        return self._vectors.get((str(cell_key), "" if _blank(metric) else str(metric)))

    @property
    def ok(self) -> pd.DataFrame:
        return ok_rows(self.frame)

    @property
    def failed(self) -> pd.DataFrame:
        return failed_rows(self.frame)


def _blank(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return isinstance(value, str) and value == ""


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
    status = frame["status"].astype(object)
    frame["status"] = [
        (FAILED if not _blank(e) else "ok") if _blank(s) else str(s).strip().lower()
        for s, e in zip(status, frame["error"])
    ]
    _recompute_accuracy(frame, source)
    frame["model"] = frame["model"].astype(str)
    frame["benchmark"] = frame["benchmark"].astype(str)
    return precision_in_model(frame)


def precision_in_model(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows measured in another precision than fp32 name it in their model ("resnet20 (bf16)"):
    they are another measurement, never pooled with the fp32 rows of the same model."""
    if "precision" not in frame.columns:
        return frame
    other = [not _blank(p) and str(p) != "fp32" and not str(m).endswith(f" ({p})")
             for m, p in zip(frame["model"], frame["precision"])]  # a named frame stays as it is
    if any(other):
        frame = frame.copy()
        frame.loc[other, "model"] = [f"{model} ({precision})" for model, precision in
                                     zip(frame.loc[other, "model"], frame.loc[other, "precision"])]
    return frame


def _describe(row: pd.Series) -> str:
    parts = [f"{c}={row[c]:g}" if isinstance(row[c], (float, np.floating)) else f"{c}={row[c]}"
             for c in ("model", "benchmark", "corruption", "severity", "attack", "eps",
                       "noise_rate", "metric", "seed") if c in row.index and not _blank(row[c])]
    return " ".join(parts)


def _recompute_accuracy(frame: pd.DataFrame, source: str) -> None:
    """accuracy = correct/n and its Wilson interval, in place, wherever the counts are known
    (n > 0); stored intervals are never used. An ok row with n but no valid count, or whose
    stored accuracy disagrees, is refused."""
    measured = (frame["status"] != FAILED) & (frame["n"] > 0)
    broken = measured & ~frame["correct"].between(0, frame["n"])
    if broken.any():
        i = int(np.flatnonzero(broken.to_numpy())[0])
        row = frame.iloc[i]
        raise ValueError(f"{source}: row {i} ({_describe(row)}) has n={row['n']:g} but "
                         f"correct={float(row['correct']):g}, not a count in [0, n]")
    counted = (frame["n"] > 0) & frame["correct"].notna()
    computed = frame["correct"] / frame["n"]
    bad = counted & frame["accuracy"].notna() & ((frame["accuracy"] - computed).abs() > 1e-6)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        row = frame.iloc[i]
        raise ValueError(f"{source}: row {i} ({_describe(row)}) stores accuracy "
                         f"{row['accuracy']:.6g} but correct/n = {row['correct']:g}/{row['n']:g} "
                         f"= {computed.iloc[i]:.6g}; refusing an edited or inconsistent table")
    frame["accuracy"] = frame["accuracy"].where(~counted, computed)
    bounds = [wilson_interval(c, n) if ok else (math.nan, math.nan)
              for c, n, ok in zip(frame["correct"], frame["n"], counted)]
    frame["ci_low"] = [b[0] for b in bounds]
    frame["ci_high"] = [b[1] for b in bounds]


def key_part(column: str, value: Any) -> str:
    """One key column as text that survives CSV, Parquet and JSON ("" when blank)."""
    if _blank(value):
        return ""
    if column in FLOAT_KEYS:
        try:
            return f"{float(value):.9g}"
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def cell_key(record: Dict[str, Any]) -> Tuple[str, ...]:
    """A cell's identity across runs: CELL_KEY_COLUMNS as text (seed excluded)."""
    return tuple(key_part(c, record.get(c)) for c in CELL_KEY_COLUMNS)


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


def _read(table: Path, notes: List[str]) -> Tuple[pd.DataFrame, Path]:
    try:
        return read_table(table), table
    except ImportError as error:  # parquet without pyarrow: fall back to the CSV beside it
        csv = table.with_suffix(".csv")
        if table.suffix != ".parquet" or not csv.is_file():
            raise ValueError(f"cannot read {table}: {error}") from None
        notes.append(f"{table.name} unreadable ({error}); read {csv.name}")
        return _read(csv, notes)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as error:
        raise ValueError(f"cannot read result table {table}: {error}") from None


def _canonical(frame: pd.DataFrame) -> List[Tuple[str, ...]]:
    """Rows as sorted tuples of (column=value) text, so a CSV and a Parquet copy compare equal."""
    def text(value: Any) -> str:
        if isinstance(value, (int, float, np.integer, np.floating)):
            return f"{float(value):.9g}"
        return str(value)

    columns = [c for c in AGREEMENT_COLUMNS if c in frame.columns]
    return sorted(tuple(f"{c}={text(v)}" for c, v in zip(columns, row) if not _blank(v))
                  for row in frame[columns].itertuples(index=False))


def _agree(csv_path: Path, csv: pd.DataFrame, parquet_path: Path, parquet: pd.DataFrame) -> None:
    if len(csv) != len(parquet):
        raise ValueError(f"{csv_path} ({len(csv)} rows) and {parquet_path} ({len(parquet)} rows) "
                         f"disagree; one of them is stale: rerun or remove the wrong one")
    a, b = _canonical(csv), _canonical(parquet)
    if a != b:
        row = next(x for x in a if x not in set(b))
        raise ValueError(f"{csv_path} and {parquet_path} disagree: {csv_path.name} holds "
                         f"({' '.join(row)}) which {parquet_path.name} lacks; one of them is "
                         f"stale: rerun or remove the wrong one")


def _read_outcomes(path: Path, frame: pd.DataFrame, table: Path,
                   notes: List[str]) -> Optional[pd.DataFrame]:
    """outcomes.parquet, checked against the rows: each row's outcomes must count n examples of
    which `correct` are right. Outcomes of cells absent from the table are dropped."""
    try:
        outcomes = pd.read_parquet(path)
    except ImportError as error:
        notes.append(f"{path.name} unreadable ({error}): comparisons will be unpaired")
        return None
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    missing = [c for c in ("cell_key", "metric", "index", "correct") if c not in outcomes.columns]
    if missing:
        raise ValueError(f"{path}: not a per-example outcome table (lacks {missing})")
    outcomes = outcomes.assign(cell_key=outcomes["cell_key"].astype(str),
                               metric=outcomes["metric"].fillna("").astype(str),
                               correct=outcomes["correct"].astype(bool))
    rows = ok_rows(frame)
    rows = rows[rows["cell_key"].notna() & (rows["n"] > 0)] if "cell_key" in rows else rows[:0]
    counts = {(str(k), "" if _blank(m) else str(m)): (c, n)
              for k, m, c, n in zip(rows["cell_key"], rows["metric"], rows["correct"], rows["n"])}
    groups = outcomes.groupby(["cell_key", "metric"], sort=False)
    stats = groups.agg(examples=("index", "size"), unique=("index", "nunique"),
                       right=("correct", "sum"))
    for (key, metric), got in stats.iterrows():
        if (key, metric) not in counts:
            continue
        correct, n = counts[(key, metric)]
        if got["unique"] != got["examples"] or got["examples"] != n or got["right"] != correct:
            raise ValueError(
                f"{path}: cell {key}{' metric ' + metric if metric else ''} has outcomes for "
                f"{got['examples']} examples ({got['unique']} distinct), {got['right']} right, "
                f"but {table.name} says {correct:g}/{n:g}; the folder mixes runs")
    orphans = ~pd.MultiIndex.from_frame(outcomes[["cell_key", "metric"]]).isin(list(counts))
    if orphans.any():
        notes.append(f"{path.name}: outcomes of {outcomes[orphans]['cell_key'].nunique()} "
                     f"cell(s) absent from {table.name} ignored")
        outcomes = outcomes[~orphans]
    return outcomes.reset_index(drop=True)


def load_results(path: Union[str, os.PathLike]) -> ResultSet:
    """A results directory or one table file, with run.json and outcomes.parquet beside it when
    present. A folder holding both results.csv and results.parquet must hold the same rows in
    both. Raises FileNotFoundError / ValueError naming the path."""
    path = Path(path)
    notes: List[str] = []
    if path.is_dir():
        csv, parquet = path / "results.csv", path / "results.parquet"
        if not csv.is_file() and not parquet.is_file():
            raise FileNotFoundError(f"{path} holds no results.csv or results.parquet")
        folder = path
    elif path.is_file():
        csv = parquet = path
        folder = path.parent
    else:
        raise FileNotFoundError(f"results not found: {path}")
    if parquet.is_file() and parquet.suffix == ".parquet":
        frame, table = _read(parquet, notes)
    else:
        frame, table = _read(csv, notes)
    frame = normalize_frame(frame, str(table))
    if path.is_dir() and table == parquet and csv.is_file():
        _agree(csv, normalize_frame(_read(csv, [])[0], str(csv)), parquet, frame)
    run_path = folder / "run.json"
    run: Dict[str, Any] = {}
    if run_path.is_file():
        try:
            run = json.loads(run_path.read_text())
            if not isinstance(run, dict):
                raise ValueError("top level is not an object")
        except (ValueError, OSError) as error:
            notes.append(f"{run_path.name} unreadable ({error}); run details omitted")
            warnings.warn(f"{run_path}: unreadable run.json ({error})", stacklevel=2)
            run = {}
    else:
        notes.append("run.json absent: configuration and environment unknown")
    outcomes_path = folder / OUTCOMES_FILE
    outcomes = (_read_outcomes(outcomes_path, frame, table, notes)
                if outcomes_path.is_file() else None)
    return ResultSet(frame=frame, run=run, source=str(table), notes=notes, outcomes=outcomes)


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


