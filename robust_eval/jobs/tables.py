"""Pivot helpers over the long result frame: corruption x severity, accuracy vs eps, accuracy
vs noise rate. Failed cells stay NaN in the pivots (never a number); seeds are averaged."""
from __future__ import annotations

from typing import List, Optional

import pandas as pd

from robust_eval.jobs.config import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS


def _rows(frame: pd.DataFrame, benchmark: str, model: Optional[str]) -> pd.DataFrame:
    rows = frame[frame["benchmark"] == benchmark]
    if model is not None:
        rows = rows[rows["model"] == model]
    return rows


def _pivot(rows: pd.DataFrame, index: List[str], columns: List[str], value: str
           ) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame()
    rows = rows.copy()
    rows[value] = pd.to_numeric(rows[value], errors="coerce")
    # groupby keeps only observed combinations, and a failed cell stays a NaN entry
    means = rows.groupby(index + columns, dropna=False, sort=True)[value].mean()
    return means.unstack(columns)


def corruption_table(frame: pd.DataFrame, model: Optional[str] = None,
                     value: str = "accuracy") -> pd.DataFrame:
    """Rows (model, dataset, corruption) in benchmark order, columns severity 1..5, plus mean."""
    rows = _rows(frame, "corruption", model)
    table = _pivot(rows, ["model", "dataset", "corruption"], ["severity"], value)
    if table.empty:
        return table
    table.columns = [int(c) for c in table.columns]
    order = {name: i for i, name in enumerate(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)}
    table = table.sort_index(key=lambda idx: idx.map(lambda v: order.get(v, len(order)))
                             if idx.name == "corruption" else idx)
    table["mean"] = table.mean(axis=1, skipna=False)
    return table


def eps_table(frame: pd.DataFrame, model: Optional[str] = None,
              value: str = "accuracy") -> pd.DataFrame:
    """Rows (attack, threat, steps, eps), one column per (model, dataset)."""
    rows = _rows(frame, "attack", model)
    return _pivot(rows, ["attack", "threat", "steps", "eps"], ["model", "dataset"], value)


def noise_table(frame: pd.DataFrame, model: Optional[str] = None,
                value: str = "accuracy") -> pd.DataFrame:
    """Rows (noise_type, noise_rate), one column per (model, dataset); mean over seeds."""
    rows = _rows(frame, "label_noise", model)
    index = ["noise_type", "noise_rate"]
    if "metric" in rows.columns and rows["metric"].notna().any():
        rows = rows.assign(metric=rows["metric"].fillna(""))
        index = ["metric"] + index  # e.g. best-epoch vs last-epoch accuracy, kept apart
    return _pivot(rows, index, ["model", "dataset"], value)
