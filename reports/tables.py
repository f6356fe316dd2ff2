"""Tables: every table is a view of the long result frame.

Rows of one cell measured with several seeds are averaged first (`cell_means`); the headline
summary then picks, per benchmark, the cells a paper would quote (see `summary_table`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import pandas as pd

from reports.results import CELL_KEY_COLUMNS, ResultSet, cell_key, ok_rows, parse_params
from reports.stats import eps_label, wilson_interval

HEADLINE_EPS = {"linf": 8 / 255, "l2": 0.5}  # the budgets CIFAR papers quote


def model_order(frame: pd.DataFrame) -> List[str]:
    """Models in order of first appearance (the order the run config listed them)."""
    return list(dict.fromkeys(frame["model"].astype(str)))


def plural(count: float, word: str, many: Optional[str] = None) -> str:
    """"1 corruption", "15 corruptions", "5 severities"."""
    count = int(count) if float(count).is_integer() else count
    return f"{count} {word if count == 1 else (many or word + 's')}"


def attack_title(attack: str, steps: float = None, params: Any = None) -> str:
    """How papers name an attack: the row's own label when it has one, "AutoAttack (standard)",
    "AutoAttack (custom: apgd-ce, n_iter 10)", "PGD-10", "FGSM"."""
    params = parse_params(params)
    if params.get("label"):
        return str(params["label"])
    if attack == "autoattack":
        version = params.get("version") or "standard"
        parts = params.get("parts") or params.get("attacks")
        details = [", ".join(parts) if isinstance(parts, (list, tuple)) else str(parts or "")]
        if params.get("n_iter"):
            details.append(f"n_iter {params['n_iter']}")
        details = [d for d in details if d]
        return f"AutoAttack ({version}{': ' + ', '.join(details) if details else ''})"
    name = str(attack).upper()
    return f"{name}-{int(steps)}" if steps is not None and pd.notna(steps) and steps > 1 else name


def cell_means(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell key: accuracy averaged over seeds, with a 95 % interval.

    The interval of a multi-seed cell is Wilson's at one run's n: the seeds re-draw noise on the
    same images, so pooling their counts would overstate the evidence.
    """
    rows = ok_rows(frame)
    rows = rows[rows["accuracy"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=CELL_KEY_COLUMNS + ["accuracy", "ci_low", "ci_high", "n",
                                                        "correct", "seeds", "seed_std", "params"])
    out = []
    for key, group in rows.groupby(CELL_KEY_COLUMNS, dropna=False, sort=False):
        record = dict(zip(CELL_KEY_COLUMNS, key))
        n, correct = group["n"].mean(), group["correct"].mean()
        record.update(accuracy=group["accuracy"].mean(), n=n, correct=correct,
                      seeds=len(group), seed_std=group["accuracy"].std(ddof=1),
                      checkpoint_sha256=group["checkpoint_sha256"].iloc[0],
                      arch=group["arch"].iloc[0], norm=group["norm"].iloc[0],
                      params=group["params"].iloc[0])
        if len(group) == 1 and pd.notna(group["ci_low"].iloc[0]):
            record.update(ci_low=group["ci_low"].iloc[0], ci_high=group["ci_high"].iloc[0])
        else:
            record["ci_low"], record["ci_high"] = wilson_interval(correct, n)
        out.append(record)
    return pd.DataFrame(out)


def _pick_eps(cells: pd.DataFrame, threat: str) -> float:
    eps_values = sorted(e for e in cells["eps"].dropna().unique() if e > 0)
    if not eps_values:
        return math.nan
    target = HEADLINE_EPS.get(str(threat))
    for e in eps_values:
        if target is not None and abs(e - target) < 1e-6:
            return e
    return eps_values[-1]


def _label_noise_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Label-noise cells of one metric: the last epoch ("last", "last_epoch") when present, as it
    involves no model selection on held-out labels; else the first metric in sorted order."""
    noise = cells[cells["benchmark"] == "label_noise"]
    metrics = sorted(set(noise["metric"].dropna().astype(str)))
    if not metrics:
        return noise
    chosen = next((m for m in metrics if m.startswith("last")), metrics[0])
    return noise[noise["metric"].astype(str) == chosen]


def summary_table(frame: pd.DataFrame,
                  corruption_reference: Optional[Dict[str, Sequence[float]]] = None) -> pd.DataFrame:
    """Headline numbers per model, as fractions in [0, 1] (NaN where not measured).

    Columns: clean; corruption = unweighted mean accuracy over every (corruption, severity) cell;
    mCE when `corruption_reference` (corruption -> 5 reference errors, e.g. AlexNet's) is given;
    one column per (attack, threat) at 8/255 (linf) or 0.5 (l2) when measured, else the largest
    eps, at the most steps/restarts; one column per label-noise type at its highest rate.
    `attrs["notes"]` says what each column is, `attrs["cells"]` which cells (keys) it averages,
    per model.
    """
    cells = cell_means(frame)
    models = model_order(frame)
    table = pd.DataFrame(index=pd.Index(models, name="model"))
    notes: Dict[str, str] = {}
    members: Dict[str, Dict[str, List[Tuple[str, ...]]]] = {}
    table.attrs["notes"], table.attrs["cells"] = notes, members
    if cells.empty:
        return table

    def record(column: str, group: pd.DataFrame) -> None:
        members[column] = {}
        for row in group.to_dict("records"):
            members[column].setdefault(str(row["model"]), []).append(cell_key(row))

    clean = cells[cells["benchmark"] == "clean"]
    if not clean.empty:
        table["clean"] = clean.groupby("model")["accuracy"].mean()
        record("clean", clean)
        notes["clean"] = "top-1 accuracy on the clean test set"

    corruption = cells[cells["benchmark"] == "corruption"]
    if not corruption.empty:
        table["corruption"] = corruption.groupby("model")["accuracy"].mean()
        record("corruption", corruption)
        k = corruption["corruption"].nunique()
        s = corruption["severity"].nunique()
        notes["corruption"] = (f"mean accuracy over {plural(k, 'corruption')} x "
                               f"{plural(s, 'severity', 'severities')}; "
                               f"mean corruption error = 1 - this")
        if corruption_reference:
            table["mCE"] = pd.Series({m: mean_corruption_error(g, corruption_reference)
                                      for m, g in corruption.groupby("model")})
            notes["mCE"] = "mean over corruptions of sum_s err / sum_s reference err (ratio)"

    attacks = cells[cells["benchmark"] == "attack"]
    for (attack, threat), group in attacks.groupby(["attack", "threat"], dropna=False, sort=False):
        eps = _pick_eps(group, threat)
        if math.isnan(eps):
            continue
        group = group[(group["eps"] - eps).abs() < 1e-9]
        steps = group["steps"].max()
        if pd.notna(steps):
            group = group[group["steps"] == steps]
        restarts = group["restarts"].max()
        if pd.notna(restarts):
            group = group[group["restarts"] == restarts]
        name = f"{attack} {eps_label(eps)}"
        table[name] = group.groupby("model")["accuracy"].mean()
        record(name, group)
        title = attack_title(attack, steps, group["params"].iloc[0])
        notes[name] = f"robust accuracy under {title} ({threat}), eps={eps_label(eps)}"

    noise = _label_noise_cells(cells)
    for noise_type, group in noise.groupby("noise_type", dropna=False, sort=False):
        rate = group["noise_rate"].max()
        group = group[group["noise_rate"] == rate]
        label = "" if pd.isna(noise_type) else f"{noise_type} "
        name = f"label noise {label}{rate:.0%}"
        table[name] = group.groupby("model")["accuracy"].mean()
        record(name, group)
        metric = group["metric"].dropna()
        which = f" (metric {metric.iloc[0]})" if len(metric) else ""
        notes[name] = f"test accuracy after training with {label}label noise at {rate:.0%}{which}"
    return table


@dataclass
class SummaryMarks:
    """What the summary may claim: differences from the reference that are significant (Holm
    over the columns of each model pair), values significantly better than every other model's
    (Holm over that column's comparisons), and 95 % intervals of the aggregate columns."""
    reference: str
    alpha: float
    significant: Dict[Tuple[str, str], bool] = field(default_factory=dict)
    best: Set[Tuple[str, str]] = field(default_factory=set)
    intervals: Dict[Tuple[str, str], Tuple[float, float]] = field(default_factory=dict)
    methods: Set[str] = field(default_factory=set)


def summary_marks(results: ResultSet, summary: pd.DataFrame, reference: Optional[str] = None,
                  alpha: float = 0.05, seed: int = 0) -> SummaryMarks:
    """Statistics behind the summary's marks (reports.compare: paired on per-example outcomes
    where both models have them for the same examples, else unpaired). `reference` defaults to
    the first model."""
    from reports.compare import (cells_from_results, compare_aggregate, compare_cell,
                                 mean_interval)
    from reports.paired import holm

    cells = cells_from_results(results)
    columns = summary.attrs.get("cells", {})
    models = list(summary.index)
    reference = reference if reference is not None else (models[0] if models else "")
    marks = SummaryMarks(reference=reference, alpha=alpha)

    def test(column: str, a: str, b: str):
        mine = {cells[k].slot: cells[k] for k in columns[column].get(a, []) if k in cells}
        other = {cells[k].slot: cells[k] for k in columns[column].get(b, []) if k in cells}
        pairs = [(mine[s], other[s]) for s in mine if s in other]
        if not pairs:
            return None
        result = (compare_cell(*pairs[0]) if len(pairs) == 1 else
                  compare_aggregate(pairs, column, {}, seed=seed))
        marks.methods.add(result.method)
        return result

    for model in models:
        if model == reference:
            continue
        found = {c: test(c, reference, model) for c in columns}
        found = {c: t for c, t in found.items() if t is not None}
        for column, p_adj in zip(found, holm([t.p_value for t in found.values()])):
            marks.significant[(model, column)] = bool(p_adj < alpha)
    for column, per_model in columns.items():
        values = summary[column].dropna() if column in summary else pd.Series(dtype=float)
        if len(values) < 2:
            continue
        top = values.idxmax()
        tests = [test(column, other, top) for other in values.index if other != top]
        if all(t is not None for t in tests):
            adjusted = holm([t.p_value for t in tests])
            if all(p < alpha and t.delta > 0 for p, t in zip(adjusted, tests)):
                marks.best.add((top, column))
        for model, keys in per_model.items():
            if len(keys) > 1:
                marks.intervals[(model, column)] = mean_interval(
                    [cells[k] for k in keys if k in cells], seed=seed)[:2]
    return marks


def mean_corruption_error(cells: pd.DataFrame, reference: Dict[str, Sequence[float]]) -> float:
    """ImageNet-C mCE: mean over corruptions of sum_s E(f,s,c) / sum_s E(ref,s,c)."""
    ratios = []
    for name, group in cells.groupby("corruption"):
        ref = reference.get(str(name))
        if ref is None:
            continue
        errs = {int(s): 1 - a for s, a in zip(group["severity"], group["accuracy"])}
        sev = [s for s in range(1, len(ref) + 1) if s in errs]
        if not sev:
            continue
        ratios.append(sum(errs[s] for s in sev) / sum(ref[s - 1] for s in sev))
    return float(np.mean(ratios)) if ratios else math.nan


def format_percent(value: float, digits: int = 2) -> str:
    return "-" if value is None or pd.isna(value) else f"{100 * value:.{digits}f}"


def formatted_summary(summary: pd.DataFrame, digits: int = 2,
                      marks: Optional[SummaryMarks] = None) -> pd.DataFrame:
    """Strings for display: accuracies in %, mCE as a ratio. With `marks`: aggregate columns
    carry their 95 % interval, a "*" flags a significant difference from the reference model,
    and attrs["bold"] lists the (row, column) values significantly better than all others (the
    exporters bold those and nothing else). attrs["notes"] explains the marks."""
    out = pd.DataFrame(index=summary.index)
    bold = set()
    for column in summary.columns:
        if column == "mCE":
            out["mCE"] = [("-" if pd.isna(v) else f"{v:.3f}") for v in summary[column]]
            continue
        label = f"{column} (%)"
        texts = []
        for model, value in summary[column].items():
            text = format_percent(value, digits)
            if marks is not None and text != "-":
                interval = marks.intervals.get((model, column))
                if interval is not None:
                    text += f" [{100 * interval[0]:.{digits}f}, {100 * interval[1]:.{digits}f}]"
                if marks.significant.get((model, column)):
                    text += "*"
                if (model, column) in marks.best:
                    bold.add((model, label))
            texts.append(text)
        out[label] = texts
    notes = dict(summary.attrs.get("notes", {}))
    if marks is not None:
        paired = any(m.startswith("paired") for m in marks.methods)
        paired_note = "; paired on per-example outcomes where available" if paired else ""
        notes["significance"] = (f"a * marks a value that differs from {marks.reference} "
                                 f"(two-sided, Holm-adjusted p < {marks.alpha:g} over the "
                                 f"columns{paired_note}); unmarked differences are within "
                                 f"sampling noise")
        if marks.intervals:
            notes["intervals"] = ("[a, b] is the 95 % interval of a mean over cells: bootstrap "
                                  "over examples, or Wilson at the mean n without per-example "
                                  "outcomes")
        notes["bold"] = ("a value significantly better than every other model's "
                         "(Holm-adjusted); nothing is bold otherwise")
    out.attrs["notes"], out.attrs["bold"] = notes, bold
    return out


def detail_tables(frame: pd.DataFrame) -> Dict[str, pd.DataFrame]:
    """One pivot per benchmark: rows = model (+ variant), columns = the swept parameter, % values."""
    cells = cell_means(frame)
    tables: Dict[str, pd.DataFrame] = {}
    if cells.empty:
        return tables
    pct = cells.assign(accuracy=100 * cells["accuracy"])
    corruption = pct[pct["benchmark"] == "corruption"]
    if not corruption.empty:
        for model, group in corruption.groupby("model", sort=False):
            pivot = group.pivot_table(index="corruption", columns="severity", values="accuracy",
                                      aggfunc="mean", sort=False)
            pivot.columns = [f"s{int(c)}" for c in pivot.columns]
            pivot["mean"] = pivot.mean(axis=1)
            tables[f"corruption accuracy (%) - {model}"] = pivot
    attacks = pct[pct["benchmark"] == "attack"]
    if not attacks.empty:
        attacks = attacks.assign(attack_label=[
            f"{attack_title(a, s, p)} ({t})" for a, t, s, p in
            zip(attacks["attack"], attacks["threat"], attacks["steps"], attacks["params"])])
        pivot = attacks.pivot_table(index=["model", "attack_label"], columns="eps",
                                    values="accuracy", aggfunc="mean", sort=False)
        pivot = pivot[sorted(pivot.columns)]  # eps in numerical order, not first appearance
        pivot.columns = [eps_label(c) for c in pivot.columns]
        tables["robust accuracy (%) vs eps"] = pivot
    noise = pct[pct["benchmark"] == "label_noise"]
    if not noise.empty:
        noise = noise.assign(metric=noise["metric"].fillna("-"),
                             noise_type=noise["noise_type"].fillna("-"))
        pivot = noise.pivot_table(index=["model", "noise_type", "metric"], columns="noise_rate",
                                  values="accuracy", aggfunc="mean", sort=False)
        pivot.columns = [f"{c:.0%}" for c in pivot.columns]
        tables["label-noise accuracy (%) vs noise rate"] = pivot
    spectral = spectral_rows(frame)
    if not spectral.empty:
        pivot = spectral.pivot_table(index=["layer_index", "layer"], columns=["model", "metric"],
                                     values="value", aggfunc="mean")
        pivot.columns = [f"{m} {k}" for m, k in pivot.columns]
        tables["spectral norm per layer"] = pivot.reset_index(level=0, drop=True)
    return tables


def spectral_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """benchmark=spectral rows flattened: model, metric, layer, layer_index, value.

    The spectral cell stores the layer and its value in the JSON `params` column (a `value`
    column, when a writer has one, wins)."""
    rows = ok_rows(frame)
    rows = rows[rows["benchmark"] == "spectral"]
    out = []
    for _, row in rows.iterrows():
        params = parse_params(row.get("params"))
        value = row.get("value") if "value" in rows.columns else None
        if value is None or pd.isna(value):
            value = params.get("value")
        if value is None or params.get("layer") is None:
            continue
        out.append({"model": row["model"], "metric": row.get("metric") or "spectral_norm",
                    "layer": str(params["layer"]),
                    "layer_index": int(params.get("layer_index", len(out))),
                    "layer_type": params.get("layer_type", ""), "value": float(value)})
    return pd.DataFrame(out, columns=["model", "metric", "layer", "layer_index", "layer_type",
                                      "value"])


def failed_table(frame: pd.DataFrame) -> pd.DataFrame:
    from reports.results import failed_rows

    failed = failed_rows(frame)
    keep = [c for c in CELL_KEY_COLUMNS + ["seed", "error"]
            if c in failed.columns and failed[c].notna().any()]
    table = failed[keep].reset_index(drop=True)
    if "eps" in table.columns:
        table["eps"] = [eps_label(e) for e in table["eps"]]
    if "error" in table.columns:  # the first line, shortened: tracebacks do not fit a table
        table["error"] = [str(e).strip().splitlines()[0][:120] if pd.notna(e) else ""
                          for e in table["error"]]
    return table
