"""Regression gate: freeze a run as a baseline, then test a later run against it.

Cells are matched on CELL_KEY_COLUMNS (not the seed, not the checkpoint hash). Every cell and
every aggregate of cells (reports.compare: the corruption mean, per-severity means, an attack's
eps sweep) gets a one-sided test of H0: delta >= -tolerance, delta = new - baseline accuracy:
paired on per-example outcomes when both sides have them for the same examples, unpaired
otherwise. The p-values of everything tested are Holm-adjusted together (weighted: the
aggregates hold half of alpha, the cells the other half); a cell or aggregate REGRESSED when its
adjusted p < alpha, i.e. the drop is significantly larger than the tolerance.
Baseline cells missing or failed in the new run fail too. A changed identity (checkpoint,
arch, norm, input normalisation, n, examples) is a warning, or a failure when strict.
No stored accuracy or interval is used: everything comes from correct/n and the outcomes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from reports.compare import (IDENTITY_FIELDS, N_RESAMPLES, SLOT_COLUMNS, Cell, as_record,
                             cells_from_results, compare_sides, describe, format_p,
                             holm_weights, text_table, typed_fields)
from reports.outcomes import pack_correct, unpack_correct
from reports.results import CELL_KEY_COLUMNS, ResultSet, cell_key, failed_rows

BASELINE_FORMAT = "robust-eval-baseline"
BASELINE_VERSION = 2  # 2: counts, identity and per-example outcomes; no stored intervals
FAILING = ("REGRESSED", "MISSING", "FAILED")


def _number(value: float) -> Any:
    return int(value) if float(value).is_integer() else float(value)


def freeze_baseline(results: ResultSet) -> Dict[str, Any]:
    """A JSON-able baseline: per measured cell its key, counts, identity and per-example
    correctness (packed bits); failed cells are left out, and listed."""
    cells = []
    for key, cell in cells_from_results(results).items():
        cells.append({**dict(zip(CELL_KEY_COLUMNS, key)), "correct": _number(cell.correct),
                      "n": _number(cell.n), "accuracy": cell.accuracy, "seeds": cell.seeds,
                      **{f: cell.identity[f] for f in IDENTITY_FIELDS if f != "n"},
                      "outcomes": (None if cell.correctness is None
                                   else pack_correct(cell.correctness))})
    if not cells:
        raise ValueError(f"{results.source}: no successful cells with counts to freeze")
    failed = [dict(zip(CELL_KEY_COLUMNS, cell_key(r)))
              for r in failed_rows(results.frame).to_dict("records")]
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": results.source, "key_columns": CELL_KEY_COLUMNS,
            "run": {k: results.run.get(k) for k in ("code_version", "created_at", "environment")
                    if k in results.run},
            "cells": cells, "failed_cells": failed}


def read_baseline(path) -> Dict[str, Any]:
    """A baseline file, validated (validate_baseline); errors name the file and the field."""
    try:
        with open(path) as handle:
            baseline = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"baseline not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the baseline ({error})") from None
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    validate_baseline(baseline, str(path))
    return baseline


def _count(cell: Dict[str, Any], name: str, where: str) -> float:
    value = cell.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}.{name} is {value!r}, not a finite number")
    return float(value)


def validate_baseline(baseline: Any, source: str = "baseline") -> None:
    """Refuse anything a gate cannot trust: ValueError naming the source and the field."""
    if not isinstance(baseline, dict) or baseline.get("format") != BASELINE_FORMAT:
        raise ValueError(f"{source}: not a robust-eval baseline (field 'format' must be "
                         f"{BASELINE_FORMAT!r})")
    version = baseline.get("version")
    if version != BASELINE_VERSION:
        old = isinstance(version, int) and version < BASELINE_VERSION
        raise ValueError(f"{source}: baseline version {version!r} "
                         + ("predates per-example outcomes" if old else "is unsupported")
                         + f" (this robust-eval reads version {BASELINE_VERSION}); re-freeze it "
                           f"with `robust-eval baseline RESULTS_DIR -o {source}`")
    if baseline.get("key_columns") != CELL_KEY_COLUMNS:
        raise ValueError(f"{source}: baseline key columns {baseline.get('key_columns')} differ "
                         f"from {CELL_KEY_COLUMNS}; re-freeze the baseline")
    cells = baseline.get("cells")
    if not isinstance(cells, list):
        raise ValueError(f"{source}: field 'cells' must be a list")
    if not cells:
        raise ValueError(f"{source}: field 'cells' is empty: nothing to gate against; re-freeze "
                         f"from a run with results")
    seen = set()
    for i, cell in enumerate(cells):
        where = f"{source}: cells[{i}]"
        if not isinstance(cell, dict):
            raise ValueError(f"{where} must be an object, got {type(cell).__name__}")
        for column in CELL_KEY_COLUMNS + [f for f in IDENTITY_FIELDS if f != "n"]:
            if not isinstance(cell.get(column), str):
                raise ValueError(f"{where}.{column} must be a string (\"\" when blank), got "
                                 f"{cell.get(column)!r}")
        if not cell["model"] or not cell["benchmark"]:
            raise ValueError(f"{where}: fields 'model' and 'benchmark' must not be empty")
        correct, n = _count(cell, "correct", where), _count(cell, "n", where)
        if n <= 0 or not 0 <= correct <= n:
            raise ValueError(f"{where}: correct={correct:g}, n={n:g} are not counts "
                             f"(need 0 <= correct <= n, n > 0)")
        accuracy = _count(cell, "accuracy", where)
        if abs(accuracy - correct / n) > 1e-6:
            raise ValueError(f"{where}.accuracy {accuracy:.6g} disagrees with correct/n = "
                             f"{correct:g}/{n:g}")
        seeds = cell.get("seeds")
        if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
            raise ValueError(f"{where}.seeds must be a list of integers, got {seeds!r}")
        if cell.get("outcomes") is not None:
            try:
                bits = unpack_correct(cell["outcomes"])
            except ValueError as error:
                raise ValueError(f"{where}.outcomes: {error}") from None
            if len(bits) != n or int(bits.sum()) != correct:
                raise ValueError(f"{where}.outcomes hold {int(bits.sum())}/{len(bits)} right, "
                                 f"the cell says {correct:g}/{n:g}")
        key = tuple(cell[c] for c in CELL_KEY_COLUMNS)
        if key in seen:
            raise ValueError(f"{where} repeats the key of an earlier cell")
        seen.add(key)


def baseline_cells(baseline: Dict[str, Any]) -> Dict[Tuple[str, ...], Cell]:
    cells = {}
    for entry in baseline["cells"]:
        key = tuple(entry[c] for c in CELL_KEY_COLUMNS)
        identity = {f: entry[f] for f in IDENTITY_FIELDS if f != "n"}
        identity["n"] = f"{float(entry['n']):g}"
        cells[key] = Cell(key=key, correct=float(entry["correct"]), n=float(entry["n"]),
                          seeds=list(entry["seeds"]), identity=identity,
                          correctness=(None if entry.get("outcomes") is None
                                       else unpack_correct(entry["outcomes"])))
    return cells


@dataclass
class CheckResult:
    table: pd.DataFrame  # one row per test, missing/failed baseline cell and new cell
    identity: List[Dict[str, Any]]  # {model, field, baseline, new, cells}: changed identity
    tolerance_pp: float
    alpha: float
    strict: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.table["status"].isin(FAILING).any()) or (self.strict
                                                                   and bool(self.identity))

    def count(self, status: str) -> int:
        return int((self.table["status"] == status).sum())

    def to_json(self) -> Dict[str, Any]:
        rows = self.table.astype(object).where(self.table.notna(), None)
        return {"verdict": "FAIL" if self.failed else "PASS", "tolerance_pp": self.tolerance_pp,
                "alpha": self.alpha, "strict": self.strict, "identity_changes": self.identity,
                "results": rows.to_dict("records")}


def _identity_changes(pairs: List[Tuple[Cell, Cell]]) -> List[Dict[str, Any]]:
    """Identity fields that differ (both known) between baseline and new cells, grouped."""
    changes: Dict[Tuple[str, str, str, str], int] = {}
    for base, new in pairs:
        for name in IDENTITY_FIELDS:
            old, now = base.identity.get(name, ""), new.identity.get(name, "")
            if old and now and old != now:
                key = (base.model, name, old, now)
                changes[key] = changes.get(key, 0) + 1
    return [{"model": m, "field": f, "baseline": o, "new": n, "cells": k}
            for (m, f, o, n), k in changes.items()]


def check_against_baseline(results: ResultSet, baseline: Dict[str, Any],
                           tolerance_pp: float = 0.0, alpha: float = 0.05, strict: bool = False,
                           n_resamples: int = N_RESAMPLES, seed: int = 0) -> CheckResult:
    if not (tolerance_pp >= 0 and math.isfinite(tolerance_pp)) or tolerance_pp >= 100:
        raise ValueError(f"tolerance must be in [0, 100) percentage points, got {tolerance_pp}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    validate_baseline(baseline)
    base = baseline_cells(baseline)
    new = cells_from_results(results)
    failed_keys = {cell_key(r) for r in failed_rows(results.frame).to_dict("records")}
    records: List[Dict[str, Any]] = []
    tests = []
    for model in dict.fromkeys(k[0] for k in base):
        side = lambda cells: {c.slot: c for c in cells.values() if c.model == model}  # noqa
        tests += [(test, as_record(test, model=model)) for test in compare_sides(
            side(base), side(new), "less", tolerance_pp / 100, n_resamples=n_resamples,
            seed=seed)]
    from reports.paired import holm

    adjusted = (holm([t.p_value for t, _ in tests], holm_weights([t for t, _ in tests]))
                if tests else [])
    for (_, record), p_adj in zip(tests, adjusted):
        record.update(p_adjusted=float(p_adj),
                      status="REGRESSED" if p_adj < alpha else "ok")
        records.append(record)
    for key, cell in base.items():
        if key not in new:
            records.append({**_blank_record(key), "reference_accuracy": 100 * cell.accuracy,
                            "status": "FAILED" if key in failed_keys else "MISSING"})
    for key, cell in new.items():
        if key not in base:
            records.append({**_blank_record(key), "accuracy": 100 * cell.accuracy,
                            "status": "new"})
    identity = _identity_changes([(base[k], new[k]) for k in base if k in new])
    columns = ["status", "model", "scope", "aggregate", *SLOT_COLUMNS, "cells", "n",
               "reference_accuracy", "accuracy", "delta", "ci_low", "ci_high", "p_value",
               "p_adjusted", "method"]
    table = pd.DataFrame(records, columns=columns).rename(
        columns={"reference_accuracy": "baseline_accuracy"})
    return CheckResult(table, identity, tolerance_pp, alpha, strict)


def _blank_record(key: Tuple[str, ...]) -> Dict[str, Any]:
    return {**typed_fields(dict(zip(CELL_KEY_COLUMNS, key))), "scope": "cell"}


def format_check(result: CheckResult, show_all: bool = False, worst: int = 10) -> str:
    """Verdict, rule, method, identity warnings, a deltas summary and the cells that fail the
    gate plus the `worst` largest drops (every test with show_all)."""
    table = result.table
    tested = table[table["status"].isin(["ok", "REGRESSED"])]
    tol = f"{result.tolerance_pp:g} pp"
    verdict = "FAIL" if result.failed else "PASS"
    counts = ", ".join(f"{result.count(s)} {s if s in FAILING else s.lower()}"
                       for s in ("REGRESSED", "MISSING", "FAILED", "ok", "new") if result.count(s))
    cells = int((tested["scope"] == "cell").sum())
    aggregates = len(tested) - cells
    lines = [f"regression check: {verdict} ({cells} cells + {aggregates} "
             f"aggregate{'' if aggregates == 1 else 's'} tested: {counts})",
             f"rule: REGRESSED when the drop is significantly larger than {tol}: one-sided test "
             f"of H0 delta >= {'-' + tol if result.tolerance_pp else '0 pp'}, Holm-adjusted "
             f"p < {result.alpha:g} over {len(tested)} tests (aggregates hold half of alpha)"]
    if len(tested):
        methods = tested["method"].value_counts()
        lines.append("method: " + "; ".join(f"{m}: {k}" for m, k in methods.items()))
    for change in result.identity:
        kind = "FAILURE (--strict)" if result.strict else "warning"
        lines.append(f"{kind}: {change['model']}: {change['field']} changed "
                     f"{_short(change['baseline'])} -> {_short(change['new'])} "
                     f"({change['cells']} cells)")
    down = tested[tested["delta"] < 0]
    up = tested[tested["delta"] > 0]
    lines.append(f"deltas: {len(down)} down ({int((down['status'] == 'REGRESSED').sum())} "
                 f"significantly beyond {tol}), {len(up)} up, "
                 f"{len(tested) - len(down) - len(up)} unchanged")
    shown = table if show_all else pd.concat([
        table[table["status"].isin(FAILING)],
        tested[tested["status"] == "ok"].sort_values("delta", kind="stable").head(worst)])
    if shown.empty:
        return "\n".join(lines) + "\n"
    order = {"REGRESSED": 0, "MISSING": 1, "FAILED": 2, "ok": 3, "new": 4}
    shown = shown.assign(_o=shown["status"].map(order)).sort_values(["_o", "delta"],
                                                                     kind="stable")
    body = []
    for _, r in shown.iterrows():
        measured = pd.notna(r["delta"])
        body.append([r["status"], r["model"], describe(r.to_dict(), r["aggregate"]),
                     _pct(r["baseline_accuracy"]), _pct(r["accuracy"]),
                     f"{r['delta']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
                     if measured else "-",
                     format_p(r["p_adjusted"]), "-" if not measured else
                     ("unpaired" if str(r["method"]).startswith("unpaired") else r["method"])])
    lines += [""] + text_table(["status", "model", "cell", "baseline %", "new %",
                                "delta pp [95% CI]", "p (Holm)", "method"], body)
    unpaired = tested[tested["method"].astype(str).str.startswith("unpaired")]
    if len(unpaired):
        lines.append(f"unpaired: {len(unpaired)} of {len(tested)} tests, "
                     + "; ".join(sorted(set(unpaired["method"]))))
    return "\n".join(lines) + "\n"


def _pct(value: Optional[float]) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.2f}"


def _short(value: str) -> str:
    return value[:12] if len(value) == 64 else value
