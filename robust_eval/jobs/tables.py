"""Pivot helpers over the long result frame: corruption x severity, accuracy vs eps, accuracy
vs noise rate. Failed cells stay NaN in the pivots (never a number); seeds are averaged."""
from __future__ import annotations

from typing import List, Optional

import pandas as pd

from corruptions.params import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS


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


def mce_table(frame: pd.DataFrame) -> Optional[pd.DataFrame]:
    """ImageNet-C mCE and relative mCE per (model, dataset), normalised by AlexNet's errors
    (corruptions.metrics). Only for ImageNet rows generated with the ImageNet parameters or read
    from ImageNet-C, and only when all 15 x 5 cells are there: a partial sum would not be
    comparable to AlexNet's. None when no group qualifies."""
    from corruptions import metrics

    rows = frame[frame["dataset"].astype(str).str.lower().str.startswith("imagenet")]
    if rows.empty or "corruption" not in set(rows["benchmark"]):
        return None
    records = []
    for (model, dataset), group in rows.groupby(["model", "dataset"], sort=True):
        corr = group[group["benchmark"] == "corruption"]
        if corr.empty or "cifar10" in set(corr["param_set"].astype(str)):
            continue
        record = {"model": model, "dataset": dataset}
        try:
            record["mce"] = float(metrics.mce(group))
        except ValueError as error:  # incomplete grid or failed cells
            record.update(mce=float("nan"), note=str(error))
            records.append(record)
            continue
        clean = group[(group["benchmark"] == "clean") & (group["status"] == "ok")]
        record["relative_mce"] = float(metrics.mce(group, relative=True)) if len(clean) \
            else float("nan")
        record["clean_error"] = float(1 - clean["correct"].sum() / clean["n"].sum()) \
            if len(clean) else float("nan")
        record["mean_corruption_accuracy"] = float(metrics.mean_corruption_accuracy(group))
        records.append(record)
    return pd.DataFrame(records).set_index(["model", "dataset"]) if records else None
