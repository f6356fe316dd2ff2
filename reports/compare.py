"""Model comparisons per cell and per aggregate of cells, for `robust-eval compare`, the
regression gate and the report's summary marks.

Cells match on CELL_KEY_COLUMNS less the model. A comparison is paired when both sides carry
per-example outcomes of the same clean examples (one seed each, equal fingerprint): McNemar's
test and Tango's interval for a cell, a bootstrap over the examples common to all cells for an
aggregate. Otherwise it is unpaired (Newcombe interval, Farrington-Manning test), an aggregate
counted as one cell of its mean n: its cells reuse the same images, so their mean varies no more
than one cell does. The `method` column says which, and why a comparison was unpaired.
Multiple tests are adjusted by Holm's weighted procedure, the aggregates holding half of alpha.

Aggregates, over the cells present on both sides: all corruption cells (mean accuracy), the same
per severity when there are several, and each attack's eps sweep (eps > 0) when it has several.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from reports.results import CELL_KEY_COLUMNS, ResultSet, cell_key, key_part, ok_rows
from reports.stats import eps_label

SLOT_COLUMNS = CELL_KEY_COLUMNS[1:]  # a cell's key less the model
IDENTITY_FIELDS = ("checkpoint_sha256", "arch", "norm", "mean", "std", "n", "fingerprint")
N_RESAMPLES = 10_000
RECORD_COLUMNS = ["model", "reference", "scope", "aggregate", *SLOT_COLUMNS, "cells", "n",
                  "reference_accuracy", "accuracy", "delta", "ci_low", "ci_high", "p_value",
                  "p_adjusted", "significant", "verdict", "method"]
Slot = Tuple[str, ...]


@dataclass
class Cell:
    """One model's measurement of one cell: counts averaged over seeds, the identity it was
    measured with, and per-example correctness when it is one seed with outcomes."""
    key: Tuple[str, ...]
    correct: float
    n: float
    seeds: List[int]
    identity: Dict[str, str]
    correctness: Optional[pd.Series] = None

    @property
    def model(self) -> str:
        return self.key[0]

    @property
    def slot(self) -> Slot:
        return self.key[1:]

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


@dataclass
class Difference:
    """One tested difference, delta = accuracy_b - accuracy_a (fractions)."""
    scope: str  # "cell" or "aggregate"
    fields: Dict[str, str]  # slot columns as key text
    label: str  # the aggregate's name ("" for a cell)
    cells: int
    n: float
    acc_a: float
    acc_b: float
    delta: float
    low: float
    high: float
    p_value: float
    method: str


def cells_from_results(results: ResultSet) -> Dict[Tuple[str, ...], Cell]:
    """Every measured cell of a ResultSet (ok rows with counts), in table order."""
    rows = ok_rows(results.frame)
    rows = rows[(rows["n"] > 0) & rows["correct"].notna()]
    groups: Dict[Tuple[str, ...], List[Dict[str, Any]]] = {}
    for record in rows.to_dict("records"):
        groups.setdefault(cell_key(record), []).append(record)
    cells = {}
    for key, records in groups.items():
        first = records[0]
        n = float(np.mean([r["n"] for r in records]))
        identity = {f: key_part(f, first.get(f)) for f in IDENTITY_FIELDS if f != "n"}
        identity["n"] = f"{n:g}"
        correctness = (results.correctness(first.get("cell_key"), first.get("metric"))
                       if len(records) == 1 else None)
        cells[key] = Cell(key=key, correct=float(np.mean([r["correct"] for r in records])),
                          n=n, seeds=sorted(int(r["seed"]) for r in records
                                            if pd.notna(r.get("seed"))),
                          identity=identity, correctness=correctness)
    return cells


def _unpaired_reason(a: Cell, b: Cell) -> Optional[str]:
    for side, cell in (("reference", a), ("new", b)):
        if cell.correctness is None:
            return (f"{side} has several seeds" if len(cell.seeds) > 1
                    else f"{side} has no per-example outcomes")
    if not a.identity["fingerprint"] or a.identity["fingerprint"] != b.identity["fingerprint"]:
        return "different examples (fingerprint)"
    if len(a.correctness) != len(b.correctness) or \
            not a.correctness.index.sort_values().equals(b.correctness.index.sort_values()):
        return "different example indices"
    return None


def compare_cell(a: Cell, b: Cell, alternative: str = "two-sided", tolerance: float = 0.0,
              confidence: float = 0.95) -> Difference:
    """McNemar (exact; Tango's score test with a tolerance) and Tango's interval when paired,
    else Farrington-Manning and Newcombe."""
    from reports import paired  # scipy: loaded when a comparison runs

    reason = _unpaired_reason(a, b)
    fields = dict(zip(SLOT_COLUMNS, a.slot))
    if reason is None:
        x = a.correctness.sort_index()
        y = b.correctness.reindex(x.index)
        test = paired.mcnemar(x.to_numpy(), y.to_numpy(), alternative, tolerance)
        delta, low, high = paired.paired_difference_ci(x.to_numpy(), y.to_numpy(), confidence)
        method = "paired McNemar" if test.method == "exact binomial" else "paired Tango score"
        return Difference("cell", fields, "", 1, len(x), x.mean(), y.mean(), delta, low,
                          high, test.p_value, method)
    c = paired.unpaired_difference(a.correct, a.n, b.correct, b.n, alternative, tolerance,
                                   confidence)
    return Difference("cell", fields, "", 1, min(a.n, b.n), a.accuracy, b.accuracy, c.delta,
                      c.low, c.high, c.p_value, f"unpaired ({reason})")


def compare_aggregate(pairs: Sequence[Tuple[Cell, Cell]], label: str, fields: Dict[str, str],
                   alternative: str = "two-sided", tolerance: float = 0.0,
                   confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> Difference:
    """The mean accuracy over the pairs' cells: a paired bootstrap over the examples common to
    every cell, else an unpaired test of the means at the cells' mean n."""
    from reports import paired

    acc_a = float(np.mean([a.accuracy for a, _ in pairs]))
    acc_b = float(np.mean([b.accuracy for _, b in pairs]))
    reason = next((r for r in (_unpaired_reason(a, b) for a, b in pairs) if r), None)
    if reason is None:
        common = pairs[0][0].correctness.index
        for a, _ in pairs[1:]:
            common = common.intersection(a.correctness.index)
        common = common.sort_values()
        if len(common) == 0:
            reason = "no example common to all cells"
    if reason is None:
        matrix_a = np.column_stack([a.correctness.reindex(common).to_numpy() for a, _ in pairs])
        matrix_b = np.column_stack([b.correctness.reindex(common).to_numpy() for _, b in pairs])
        r = paired.paired_bootstrap(matrix_a, matrix_b, "mean", n_resamples, seed, confidence,
                                    alternative, tolerance)
        return Difference("aggregate", fields, label, len(pairs), len(common), acc_a, acc_b,
                          r.delta, r.low, r.high, r.p_value, "paired bootstrap")
    n_a = float(np.mean([a.n for a, _ in pairs]))
    n_b = float(np.mean([b.n for _, b in pairs]))
    c = paired.unpaired_difference(acc_a * n_a, n_a, acc_b * n_b, n_b, alternative, tolerance,
                                   confidence)
    return Difference("aggregate", fields, label, len(pairs), min(n_a, n_b), acc_a, acc_b,
                      c.delta, c.low, c.high, c.p_value, f"unpaired ({reason})")


def mean_interval(cells: Sequence[Cell], confidence: float = 0.95,
                  n_resamples: int = N_RESAMPLES, seed: int = 0) -> Tuple[float, float, str]:
    """(low, high, method) for one model's mean accuracy over cells: a bootstrap over the
    examples common to all cells (the bootstrap of acc - 0 is acc's own), else Wilson at the
    cells' mean n."""
    from reports import paired
    from reports.stats import wilson_interval

    vectors = [c.correctness for c in cells]
    if cells and all(v is not None for v in vectors):
        common = vectors[0].index
        for vector in vectors[1:]:
            common = common.intersection(vector.index)
        if len(common):
            matrix = np.column_stack([v.reindex(common.sort_values()).to_numpy()
                                      for v in vectors])
            r = paired.paired_bootstrap(np.zeros_like(matrix), matrix, "mean", n_resamples, seed,
                                        confidence)
            return r.low, r.high, "bootstrap"
    n = float(np.mean([c.n for c in cells]))
    low, high = wilson_interval(float(np.mean([c.accuracy for c in cells])) * n, n)
    return low, high, "Wilson at mean n"


def aggregate_groups(slots: Sequence[Slot]) -> List[Tuple[str, Dict[str, str], List[Slot]]]:
    """(label, shared fields, member slots) of every aggregate the slots allow (>= 2 cells)."""
    at = {c: i for i, c in enumerate(SLOT_COLUMNS)}
    groups = []

    def by(members, columns):
        out: Dict[Tuple[str, ...], List[Slot]] = {}
        for slot in members:
            out.setdefault(tuple(slot[at[c]] for c in columns), []).append(slot)
        return out.items()

    corruption = [s for s in slots if s[at["benchmark"]] == "corruption"]
    for (dataset, metric), members in by(corruption, ("dataset", "metric")):
        severities = sorted({s[at["severity"]] for s in members}, key=lambda v: float(v or 0))
        kinds = len({s[at["corruption"]] for s in members})
        base = {"dataset": dataset, "benchmark": "corruption", "metric": metric}
        if len(members) >= 2:
            levels = (f"severity {severities[0]}" if len(severities) == 1
                      else f"{len(severities)} severities")
            groups.append((f"corruption mean ({kinds} corruptions, {levels})",
                           {**base, "severity": severities[0] if len(severities) == 1 else ""},
                           members))
        for severity in severities if len(severities) > 1 else ():
            level = [s for s in members if s[at["severity"]] == severity]
            if len(level) >= 2:
                groups.append((f"corruption mean, severity {severity} ({len(level)} corruptions)",
                               {**base, "severity": severity}, level))
    attacks = [s for s in slots if s[at["benchmark"]] == "attack" and s[at["eps"]]
               and float(s[at["eps"]]) > 0]
    columns = ("dataset", "attack", "threat", "steps", "restarts", "metric")
    for values, members in by(attacks, columns):
        if len(members) >= 2:
            fields = {**dict(zip(columns, values)), "benchmark": "attack"}
            eps = ", ".join(eps_label(float(s[at["eps"]])) for s in members)
            groups.append((f"{fields['attack']} {fields['threat']} mean over eps {eps}".replace(
                "  ", " "), fields, members))
    return groups


def holm_weights(tests: Sequence[Difference]) -> List[float]:
    """Weights for Holm's weighted procedure: the aggregates share half of alpha and the cells
    the other half (all of it when one kind is absent). An aggregate summarises many cells, so
    a drop spread over them is found without letting every cell dilute it."""
    aggregates = sum(t.scope == "aggregate" for t in tests)
    cells = len(tests) - aggregates
    if not aggregates or not cells:
        return [1.0] * len(tests)
    return [0.5 / aggregates if t.scope == "aggregate" else 0.5 / cells for t in tests]


def compare_sides(a: Dict[Slot, Cell], b: Dict[Slot, Cell], alternative: str = "two-sided",
                  tolerance: float = 0.0, confidence: float = 0.95,
                  n_resamples: int = N_RESAMPLES, seed: int = 0) -> List[Difference]:
    """Every cell present on both sides, then every aggregate of them."""
    common = [slot for slot in a if slot in b]
    tests = [compare_cell(a[s], b[s], alternative, tolerance, confidence) for s in common]
    for label, fields, members in aggregate_groups(common):
        tests.append(compare_aggregate([(a[s], b[s]) for s in members], label, fields, alternative,
                                    tolerance, confidence, n_resamples, seed))
    return tests


def typed_fields(fields: Dict[str, str]) -> Dict[str, Any]:
    """Key text back to JSON values: "" -> None, severity/steps/restarts int, eps/rate float."""
    def typed(column: str, text: str) -> Any:
        if text == "":
            return None
        if column in ("severity", "steps", "restarts"):
            return int(float(text))
        if column in ("eps", "noise_rate"):
            return float(text)
        return text

    return {c: typed(c, fields.get(c, "")) for c in fields}


def as_record(test: Difference, **extra: Any) -> Dict[str, Any]:
    """A Difference as a JSON-ready record: accuracies, delta and interval in percentage points."""
    record = {"scope": test.scope, "aggregate": test.label or None,
              **typed_fields({c: test.fields.get(c, "") for c in SLOT_COLUMNS}),
              "cells": test.cells, "n": float(test.n),
              "reference_accuracy": 100 * test.acc_a, "accuracy": 100 * test.acc_b,
              "delta": 100 * test.delta, "ci_low": 100 * test.low, "ci_high": 100 * test.high,
              "p_value": test.p_value, "method": test.method}
    record.update(extra)
    return record


def model_order(results: ResultSet) -> List[str]:
    return list(dict.fromkeys(ok_rows(results.frame)["model"].astype(str)))


def compare_models(results: ResultSet, reference: str, alpha: float = 0.05,
                   confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> pd.DataFrame:
    """Every other model against `reference`, cell by cell and per aggregate: two-sided tests,
    Holm-adjusted (weighted, holm_weights) across all tests of one model pair. One row per test
    (RECORD_COLUMNS)."""
    from reports import paired

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    cells = cells_from_results(results)
    models = model_order(results)
    if reference not in models:
        raise ValueError(f"reference model {reference!r} is not in {results.source} "
                         f"(models: {', '.join(models) or 'none'})")
    if len(models) < 2:
        raise ValueError(f"{results.source} holds no model besides {reference!r} to compare")
    side = lambda m: {c.slot: c for c in cells.values() if c.model == m}  # noqa: E731
    ref = side(reference)
    records = []
    for model in models:
        if model == reference:
            continue
        tests = compare_sides(ref, side(model), "two-sided", 0.0, confidence, n_resamples, seed)
        adjusted = paired.holm([t.p_value for t in tests], holm_weights(tests)) if tests else []
        for test, p_adj in zip(tests, adjusted):
            significant = bool(p_adj < alpha)
            verdict = ("no significant difference" if not significant
                       else "better" if test.delta > 0 else "worse")
            records.append(as_record(test, model=model, reference=reference,
                                       p_adjusted=float(p_adj), significant=significant,
                                       verdict=verdict))
    return pd.DataFrame(records, columns=RECORD_COLUMNS)


def merge_results(sets: Sequence[ResultSet], names: Sequence[str]) -> ResultSet:
    """Several result folders as one; a model name found in more than one folder becomes
    FOLDER/MODEL in each, so two runs of one model name can be compared."""
    seen: Dict[str, int] = {}
    for results in sets:
        for model in set(ok_rows(results.frame)["model"].astype(str)):
            seen[model] = seen.get(model, 0) + 1
    frames, outcomes, notes = [], [], []
    for results, name in zip(sets, names):
        frame = results.frame.copy()
        frame["model"] = [f"{name}/{m}" if seen.get(m, 0) > 1 else m for m in frame["model"]]
        frames.append(frame)
        if results.outcomes is not None:
            outcomes.append(results.outcomes)
        notes += [f"{name}: {note}" for note in results.notes]
    merged = (pd.concat(outcomes, ignore_index=True).drop_duplicates(
        ["cell_key", "metric", "index"]) if outcomes else None)
    return ResultSet(frame=pd.concat(frames, ignore_index=True), source=", ".join(names),
                     notes=notes, outcomes=merged)


def folder_names(paths: Sequence[str]) -> List[str]:
    """Short names for result folders: the last path part, the whole path where those clash."""
    short = [Path(p).name or str(p) for p in paths]
    return short if len(set(short)) == len(short) else [str(p) for p in paths]


def describe(fields: Dict[str, Any], label: Optional[str] = None) -> str:
    """A cell or aggregate as people write it: "corruption fog s3", "pgd linf eps=8/255"."""
    if isinstance(label, str) and label:
        return label
    get = lambda c: None if pd.isna(fields.get(c)) else fields.get(c)  # noqa: E731
    parts = [str(get("benchmark"))]
    if get("corruption") not in (None, ""):
        parts.append(str(get("corruption")))
    if get("severity") not in (None, ""):
        parts.append(f"s{int(float(get('severity')))}")
    for column in ("attack", "threat"):
        if get(column) not in (None, ""):
            parts.append(str(get(column)))
    if get("eps") not in (None, ""):
        parts.append(f"eps={eps_label(float(get('eps')))}")
    if get("steps") not in (None, "") and float(get("steps")) > 1:
        parts.append(f"{int(float(get('steps')))} steps")
    if get("restarts") not in (None, "") and float(get("restarts")) > 1:
        parts.append(f"{int(float(get('restarts')))} restarts")
    if get("noise_type") not in (None, ""):
        parts.append(str(get("noise_type")))
    if get("noise_rate") not in (None, ""):
        parts.append(f"{float(get('noise_rate')):.0%}")
    if get("metric") not in (None, ""):
        parts.append(str(get("metric")))
    return " ".join(parts)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*header).rstrip(), fmt.format(*["-" * w for w in widths])] + \
        [fmt.format(*map(str, r)).rstrip() for r in rows]


def format_p(p: float) -> str:
    return "-" if p is None or pd.isna(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def format_comparison(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Per model pair: a verdict line, the methods used, and the tests worst first."""
    if table.empty:
        return "no cell measured by both the reference and another model\n"
    lines = []
    for (model, reference), rows in table.groupby(["model", "reference"], sort=False):
        worse = int((rows["verdict"] == "worse").sum())
        better = int((rows["verdict"] == "better").sum())
        cells = int((rows["scope"] == "cell").sum())
        aggregates = len(rows) - cells
        lines.append(f"{model} vs {reference}: {cells} cells + {aggregates} "
                     f"aggregate{'' if aggregates == 1 else 's'}; "
                     f"{worse} significantly worse, {better} significantly better "
                     f"(two-sided, weighted Holm-adjusted p < {alpha:g} over {len(rows)} tests)")
        methods = rows["method"].value_counts()
        lines.append("method: " + "; ".join(f"{m}: {k}" for m, k in methods.items()))
        body = []
        for _, r in rows.sort_values("delta", kind="stable").iterrows():
            body.append([r["verdict"], describe(r.to_dict(), r["aggregate"]),
                         f"{r['reference_accuracy']:.2f}", f"{r['accuracy']:.2f}",
                         f"{r['delta']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]",
                         format_p(r["p_value"]), format_p(r["p_adjusted"]),
                         "unpaired" if str(r["method"]).startswith("unpaired") else r["method"]])
        lines += text_table(["verdict", "cell", f"{reference} %", f"{model} %",
                             "delta pp [95% CI]", "p", "p (Holm)", "method"], body)
        unpaired = rows[rows["method"].str.startswith("unpaired")]
        if len(unpaired):
            lines.append(f"unpaired: {len(unpaired)} of {len(rows)} tests, "
                         + "; ".join(sorted(set(unpaired["method"]))))
        lines.append("")
    return "\n".join(lines)
