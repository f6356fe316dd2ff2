"""Result store: one JSON file per finished cell, written atomically, named by the cell key.

Layout of an output folder:
  cells/<key>.json     one record per cell: {format, key, status, rows, error, cell, ...}
  cells/corrupt/       cell files that failed to parse, moved aside (the cell is rerun)
  results.csv/.parquet the long-format table of the current config's cells, rebuilt each run
  run.json             config, models and checkpoint hashes, environment (see runner)
  index.json           the cell behind each slot of the table, and each model name's identity

Why it cannot lose or duplicate rows: a record appears under its final name only through
os.replace of a fully written and fsynced temp file (POSIX rename is atomic), so a reader sees
either no file or a whole one; the tables are rebuilt from the records of the grid's keys, each
key at most once. Writers never share a temp file (pid + random suffix), so any number of
processes may write at once; two writers of the same key write the same cell, last one wins.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import pandas as pd

from reports.outcomes import decode as decode_outcomes
from reports.outcomes import outcomes_frame
from reports.schema import COLUMNS, json_default, typed_frame, write_atomic, write_tables
from reports.stats import wilson_interval

LOG = logging.getLogger("robust_eval.jobs")
RECORD_FORMAT = 1
INDEX_FILE = "index.json"
STATUSES = ("ok", "failed")


class CorruptCellError(ValueError):
    """A cell file exists but is not a whole, valid record."""


class ResultStore:
    def __init__(self, root: Any):
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    # ------------------------------------------------------------------ records
    def cell_path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad cell key {key!r}")
        return self.cells_dir / f"{key}.json"

    def write(self, key: str, *, status: str, rows: Sequence[Dict[str, Any]],
              error: Optional[str] = None, cell: Optional[Dict[str, Any]] = None,
              seconds: Optional[float] = None, outcomes: Optional[Sequence[Any]] = None
              ) -> Path:
        """`outcomes`: per-example outcomes (reports.outcomes records), one per row or None."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if outcomes is not None and len(outcomes) != len(rows):
            raise ValueError(f"{len(outcomes)} outcome records for {len(rows)} rows")
        record = {
            "format": RECORD_FORMAT, "key": key, "status": status, "error": error,
            "seconds": seconds, "finished_at": time.time(), "pid": os.getpid(),
            "rows": [dict(row, cell_key=key) for row in rows], "cell": cell,
            "outcomes": list(outcomes) if outcomes is not None else None,
        }
        path = self.cell_path(key)
        write_atomic(path, json.dumps(record, default=json_default, allow_nan=True))
        return path

    def read(self, key: str) -> Optional[Dict[str, Any]]:
        """The record for `key`, None when absent; CorruptCellError when unreadable."""
        path = self.cell_path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise CorruptCellError(f"cell file {path} cannot be read: {error}") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise CorruptCellError(f"cell file {path} is not valid JSON ({error})") from None
        problem = _check_record(record, key)
        if problem:
            raise CorruptCellError(f"cell file {path}: {problem}")
        return record

    def quarantine(self, key: str) -> Optional[Path]:
        """Move an unreadable cell file aside (kept for inspection) so the cell reruns."""
        path = self.cell_path(key)
        target_dir = self.cells_dir / "corrupt"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{key}.{int(time.time() * 1000)}.json"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return None
        return target

    def status(self, key: str) -> str:
        """'ok', 'failed', 'corrupt' or 'pending'."""
        try:
            record = self.read(key)
        except CorruptCellError:
            return "corrupt"
        return "pending" if record is None else record["status"]

    def keys(self) -> List[str]:
        if not self.cells_dir.is_dir():
            return []
        return sorted(p.stem for p in self.cells_dir.glob("*.json"))

    # ------------------------------------------------------------------ tables
    def rows(self, keys: Iterable[str]) -> List[Dict[str, Any]]:
        """Rows of the given cells, in that order; absent or corrupt cells contribute none."""
        rows: List[Dict[str, Any]] = []
        for key in dict.fromkeys(keys):  # each key once
            try:
                record = self.read(key)
            except CorruptCellError as error:
                LOG.warning("%s", error)
                continue
            if record is not None:
                rows.extend(record["rows"])
        return rows

    def frame(self, keys: Iterable[str]) -> pd.DataFrame:
        return results_frame(self.rows(keys))

    def write_tables(self, keys: Iterable[str]) -> pd.DataFrame:
        """Rebuild results.csv and results.parquet (together) from the records of `keys`.

        Rebuilds are serialised by a lock: every writer stores its cell before it rebuilds, so
        the last rebuild to run sees every cell and no stale table can land after it.
        """
        keys = list(keys)
        self.root.mkdir(parents=True, exist_ok=True)
        with self.locked():
            frame = self.frame(keys)
            write_tables(frame, self.root)
            self._write_outcomes(keys)
        return frame

    def outcomes(self, keys: Iterable[str]) -> Dict[Any, Dict[str, Any]]:
        """{(cell_key, metric): outcome record} of the given cells' rows that have outcomes."""
        found: Dict[Any, Dict[str, Any]] = {}
        for key in dict.fromkeys(keys):
            try:
                record = self.read(key)
            except CorruptCellError:
                continue
            if record is None or not record.get("outcomes"):
                continue
            for row, outcome in zip(record["rows"], record["outcomes"]):
                if outcome is not None:
                    found[(key, row.get("metric") or "")] = outcome
        return found

    def _write_outcomes(self, keys: List[str]) -> None:
        """outcomes.parquet: one row per (cell, example): index, label, prediction."""
        path = self.root / "outcomes.parquet"
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            path.unlink(missing_ok=True)
            return
        import io

        buffer = io.BytesIO()
        outcomes_frame(self.outcomes(keys)).to_parquet(buffer, index=False)
        write_atomic(path, buffer.getvalue())

    @contextlib.contextmanager
    def locked(self):
        with open(self.root / ".tables.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ index
    def read_index(self) -> Dict[str, Any]:
        """index.json: which cell fills each slot of the folder's table, and the identity each
        model name stands for. Absent -> empty."""
        path = self.root / INDEX_FILE
        try:
            index = json.loads(path.read_text())
        except FileNotFoundError:
            return {"models": {}, "slots": {}}
        except (OSError, ValueError) as error:
            raise CorruptCellError(f"{path} is not valid JSON ({error})") from None
        if not isinstance(index, dict) or not isinstance(index.get("models"), dict) \
                or not isinstance(index.get("slots"), dict):
            raise CorruptCellError(f"{path}: expected {{models: {{}}, slots: {{}}}}")
        return index

    def write_index(self, index: Dict[str, Any]) -> None:
        write_atomic(self.root / INDEX_FILE, json.dumps(index, indent=1,  # keeps slot order
                                                        default=json_default) + "\n")


def _check_record(record: Any, key: str) -> Optional[str]:
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("format") != RECORD_FORMAT:
        return f"unknown record format {record.get('format')!r}"
    if record.get("key") != key:
        return f"holds key {record.get('key')!r}, expected {key!r}"
    if record.get("status") not in STATUSES:
        return f"bad status {record.get('status')!r}"
    rows = record.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return "rows is not a list of objects"
    if record["status"] == "ok" and not rows:
        return "status ok but no rows"
    for row in rows:
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            return f"a row lacks column(s) {missing}"
    if record["status"] == "ok":
        return _check_numbers(rows, record.get("outcomes"))
    return None


def _check_numbers(rows: List[Dict[str, Any]], outcomes: Optional[list]) -> Optional[str]:
    """An ok cell's numbers must agree with each other: accuracy and interval with correct/n,
    correct with the per-example outcomes. A file that disagrees is not reused."""
    if outcomes is not None and len(outcomes) != len(rows):
        return f"{len(outcomes)} outcome records for {len(rows)} rows"
    for i, row in enumerate(rows):
        correct, n = row.get("correct"), row.get("n")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (correct, n)) \
                or not 0 <= correct <= n:
            return f"row {i}: correct={correct!r}, n={n!r} are not counts"
        if n == 0:
            continue
        expected = (correct / n, *wilson_interval(correct, n))
        stored = [row.get(k) for k in ("accuracy", "ci_low", "ci_high")]
        if not all(isinstance(v, (int, float)) and abs(v - e) <= 1e-9
                   for v, e in zip(stored, expected)):
            return (f"row {i}: accuracy/interval {stored} disagree with correct/n = "
                    f"{correct}/{n}")
        if outcomes is not None and outcomes[i] is not None:
            try:
                arrays = decode_outcomes(outcomes[i])
            except ValueError as error:
                return f"row {i}: {error}"
            if len(arrays["correct"]) != n or int(arrays["correct"].sum()) != correct:
                return (f"row {i}: per-example outcomes give {int(arrays['correct'].sum())}/"
                        f"{len(arrays['correct'])}, the row says {correct}/{n}")
    return None


def results_frame(rows: Sequence[Dict[str, Any]]) -> pd.DataFrame:
    """Rows -> the typed schema frame."""
    return typed_frame(rows)
