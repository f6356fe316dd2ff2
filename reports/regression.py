"""Regression gate: freeze a run as a baseline, then compare a later run cell by cell.

Cells are matched on CELL_KEY_COLUMNS (model name, dataset, benchmark, corruption, severity,
attack, threat, eps, steps, restarts, noise type/rate, metric) -- not the seed, and not the
checkpoint hash, so a rerun with another seed or a retrained checkpoint of the same model compares.

Rule: a cell REGRESSED when   new.ci_high + tolerance < baseline.ci_low
(both Wilson 95 % intervals; seeds averaged as in `tables.cell_means`). The two intervals must be
separated by more than the tolerance, so a drop inside sampling noise never alarms; a model that
really lost robustness falls clear below. A baseline cell absent from, or failed in, the new run
is MISSING and also fails the gate; cells new in the run are listed, not judged.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Tuple

import pandas as pd

from reports.results import CELL_KEY_COLUMNS, ResultSet, failed_rows
from reports.stats import eps_label
from reports.tables import cell_means

BASELINE_FORMAT = "robust-eval-baseline"
BASELINE_VERSION = 1
FLOAT_KEYS = {"severity", "eps", "steps", "restarts", "noise_rate"}


def _key_part(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return ""
    if column in FLOAT_KEYS:
        try:
            return f"{float(value):.9g}"
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def cell_key(record: Dict[str, Any]) -> Tuple[str, ...]:
    return tuple(_key_part(c, record.get(c)) for c in CELL_KEY_COLUMNS)


def _cells_by_key(frame: pd.DataFrame) -> Dict[Tuple[str, ...], Dict[str, Any]]:
    out = {}
    for record in cell_means(frame).to_dict("records"):
        out[cell_key(record)] = record
    return out


def freeze_baseline(results: ResultSet) -> Dict[str, Any]:
    """A JSON-able baseline: one entry per measured cell (failed cells are left out, and listed)."""
    cells = []
    for key, record in _cells_by_key(results.frame).items():
        if not (record["ci_low"] <= record["accuracy"] <= record["ci_high"]):
            # No n to build an interval from: freeze the point value (the gate is then strict).
            record["ci_low"] = record["ci_high"] = record["accuracy"]
        cells.append({**dict(zip(CELL_KEY_COLUMNS, key)),
                      "accuracy": float(record["accuracy"]), "ci_low": float(record["ci_low"]),
                      "ci_high": float(record["ci_high"]), "n": float(record["n"]),
                      "seeds": int(record["seeds"]),
                      "checkpoint_sha256": _key_part("", record.get("checkpoint_sha256"))})
    if not cells:
        raise ValueError(f"{results.source}: no successful cells with an accuracy to freeze")
    failed = [dict(zip(CELL_KEY_COLUMNS, cell_key(r)))
              for r in failed_rows(results.frame).to_dict("records")]
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": results.source, "key_columns": CELL_KEY_COLUMNS,
            "run": {k: results.run.get(k) for k in ("code_version", "created_at", "environment")
                    if k in results.run},
            "cells": cells, "failed_cells": failed}


def read_baseline(path) -> Dict[str, Any]:
    try:
        with open(path) as handle:
            baseline = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"baseline not found: {path}") from None
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(baseline, dict) or baseline.get("format") != BASELINE_FORMAT:
        raise ValueError(f"{path}: not a robust-eval baseline (field 'format' must be "
                         f"{BASELINE_FORMAT!r})")
    if baseline.get("version") != BASELINE_VERSION:
        raise ValueError(f"{path}: baseline version {baseline.get('version')!r} unsupported "
                         f"(this robust-eval reads version {BASELINE_VERSION})")
    if baseline.get("key_columns") != CELL_KEY_COLUMNS:
        raise ValueError(f"{path}: baseline key columns {baseline.get('key_columns')} differ from "
                         f"{CELL_KEY_COLUMNS}; re-freeze the baseline")
    if not isinstance(baseline.get("cells"), list):
        raise ValueError(f"{path}: field 'cells' must be a list")
    return baseline


@dataclass
class CheckResult:
    table: pd.DataFrame  # one row per baseline or new cell, column `status`
    tolerance_pp: float

    @property
    def failed(self) -> bool:
        return bool(self.table["status"].isin(["REGRESSED", "MISSING", "FAILED"]).any())

    def count(self, status: str) -> int:
        return int((self.table["status"] == status).sum())


def check_against_baseline(results: ResultSet, baseline: Dict[str, Any],
                           tolerance_pp: float = 0.0) -> CheckResult:
    if tolerance_pp < 0 or math.isnan(tolerance_pp):
        raise ValueError(f"tolerance must be >= 0 percentage points, got {tolerance_pp}")
    tol = tolerance_pp / 100
    new = _cells_by_key(results.frame)
    failed_keys = {cell_key(r) for r in failed_rows(results.frame).to_dict("records")}
    rows: List[Dict[str, Any]] = []
    seen = set()
    for base in baseline["cells"]:
        key = cell_key(base)
        seen.add(key)
        row = {**dict(zip(CELL_KEY_COLUMNS, key)), "base_acc": base["accuracy"],
               "base_low": base["ci_low"], "base_high": base["ci_high"]}
        cell = new.get(key)
        if cell is None:
            row.update(new_acc=math.nan, new_low=math.nan, new_high=math.nan, delta_pp=math.nan,
                       status="FAILED" if key in failed_keys else "MISSING")
        else:
            row.update(new_acc=cell["accuracy"], new_low=cell["ci_low"],
                       new_high=cell["ci_high"],
                       delta_pp=100 * (cell["accuracy"] - base["accuracy"]))
            if cell["ci_high"] + tol < base["ci_low"]:
                row["status"] = "REGRESSED"
            elif cell["ci_low"] - tol > base["ci_high"]:
                row["status"] = "improved"
            else:
                row["status"] = "ok"
        rows.append(row)
    for key, cell in new.items():
        if key not in seen:
            rows.append({**dict(zip(CELL_KEY_COLUMNS, key)), "base_acc": math.nan,
                         "base_low": math.nan, "base_high": math.nan,
                         "new_acc": cell["accuracy"], "new_low": cell["ci_low"],
                         "new_high": cell["ci_high"], "delta_pp": math.nan, "status": "new"})
    return CheckResult(pd.DataFrame(rows), tolerance_pp)


def _interval(acc: float, low: float, high: float) -> str:
    if acc is None or pd.isna(acc):
        return "-"
    return f"{100 * acc:6.2f} [{100 * low:6.2f}, {100 * high:6.2f}]"


def format_check(result: CheckResult, show_all: bool = False) -> str:
    """A plain-text table of the cells that fail the gate (all cells with show_all)."""
    table = result.table
    shown = table if show_all else table[table["status"].isin(["REGRESSED", "MISSING", "FAILED"])]
    counts = ", ".join(f"{result.count(s)} {s.lower()}"
                       for s in ("ok", "improved", "REGRESSED", "MISSING", "FAILED", "new")
                       if result.count(s))
    verdict = "FAIL" if result.failed else "PASS"
    rule = (f"rule: regressed when new CI high + {result.tolerance_pp:g} pp < baseline CI low "
            "(Wilson 95 %)")
    lines = [f"regression check: {verdict} ({len(table)} cells: {counts})", rule]
    if shown.empty:
        return "\n".join(lines) + "\n"
    key_columns = [c for c in CELL_KEY_COLUMNS if (shown[c] != "").any()]
    display = []
    for _, row in shown.iterrows():
        cell = " ".join(f"{c}={eps_label(float(row[c])) if c == 'eps' else row[c]}"
                        for c in key_columns if c != "model" and row[c] != "")
        display.append([row["status"], row["model"], cell,
                        _interval(row["base_acc"], row["base_low"], row["base_high"]),
                        _interval(row["new_acc"], row["new_low"], row["new_high"]),
                        "-" if pd.isna(row["delta_pp"]) else f"{row['delta_pp']:+.2f}"])
    header = ["status", "model", "cell", "baseline % [95% CI]", "new % [95% CI]", "delta pp"]
    widths = [max(len(str(r[i])) for r in display + [header]) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines += ["", fmt.format(*header).rstrip(), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r).rstrip() for r in display]
    return "\n".join(lines) + "\n"
