"""The report's first page: the headline table (per model, each summary column with its n and
95 % interval, the difference from a reference model with its Holm-adjusted significance from
reports.compare) and a few sentences saying what the differences mean."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from reports.compare import SLOT_COLUMNS, cells_from_results, compare_models, format_p, \
    mean_interval
from reports.results import ResultSet, key_part
from reports.stats import eps_label
from reports.tables import attack_title, cell_means, plural, summary_table


@dataclass
class Headline:
    reference: str
    table: pd.DataFrame  # strings; rows: models, then "MODEL - REFERENCE" difference rows
    bold: set = field(default_factory=set)  # (row, column) of significant differences
    sentences: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    comparison: Optional[pd.DataFrame] = None  # compare_models' rows, None with one model
    mce: Optional[pd.DataFrame] = None  # ratio table, apart from the percentages


def _slot_text(record: Dict) -> Tuple[str, ...]:
    return tuple(key_part(c, record.get(c)) for c in SLOT_COLUMNS)


def _difference_row(comparison: pd.DataFrame, model: str, slots: Sequence[Tuple[str, ...]]):
    """compare_models' test behind one summary column: the cell itself, or the overall
    corruption mean for a column averaging several corruption cells."""
    rows = comparison[comparison["model"] == model]
    if len(slots) == 1:
        for record in rows[rows["scope"] == "cell"].to_dict("records"):
            if _slot_text(record) == slots[0]:
                return record
        return None
    overall = rows[(rows["scope"] == "aggregate") & (rows["benchmark"] == "corruption")
                   & rows["aggregate"].astype(str).str.startswith("corruption mean (")]
    return overall.iloc[0].to_dict() if len(overall) else None


def _column_title(column: str, cells: pd.DataFrame, keys: List[Tuple[str, ...]]) -> str:
    """The column as a reader names it, with its unit and n: "PGD-10 8/255 % (n=100)"."""
    rows = cells[[k in keys for k in cells["key"]]]
    n = sorted({int(v) for v in rows["n"]})
    n_text = "n=" + ("/".join(map(str, n)) if len(n) <= 2 else f"{n[0]}-{n[-1]}")
    first = rows.iloc[0]
    if first["benchmark"] == "attack":
        name = f"{attack_title(first['attack'], first['steps'], first['params'])} " \
               f"{eps_label(first['eps'])}"
    elif first["benchmark"] == "corruption":
        name = "corruption mean"
        n_text += f", {plural(len(rows) // max(rows['model'].nunique(), 1), 'cell')}"
    else:
        name = column
    return f"{name} % ({n_text})"


def build_headline(results: ResultSet, reference: Optional[str] = None, alpha: float = 0.05,
                   corruption_reference=None, seed: int = 0) -> Headline:
    """The headline of `results`; `reference` defaults to the first model."""
    frame = results.frame
    summary = summary_table(frame, corruption_reference)
    models = list(summary.index)
    if reference is None:
        reference = models[0] if models else ""
    elif reference not in models:
        raise ValueError(f"reference model {reference!r} is not in {results.source} "
                         f"(models: {', '.join(models) or 'none'})")
    comparison = compare_models(results, reference, alpha) if len(models) > 1 else None
    cells = cell_means(frame)
    cells["key"] = [tuple(key_part(c, r.get(c)) for c in ("model",) + tuple(SLOT_COLUMNS))
                    for r in cells.to_dict("records")]
    by_key = cells_from_results(results)
    members: Dict[str, Dict[str, list]] = summary.attrs.get("cells", {})
    columns = [c for c in summary.columns if c != "mCE"]
    titles = {c: _column_title(c, cells, [k for keys in members[c].values() for k in keys])
              for c in columns}
    order = [m for m in models if m == reference] + [m for m in models if m != reference]
    shown: Dict[str, Dict[str, str]] = {m: {} for m in order}
    bold = set()
    found: Dict[Tuple[str, str], Dict] = {}
    for column in columns:
        for model in order:
            value, keys = summary.loc[model, column], members[column].get(model, [])
            if pd.isna(value) or not keys:
                shown[model][titles[column]] = "-"
                continue
            if len(keys) == 1:
                row = cells[[k == keys[0] for k in cells["key"]]].iloc[0]
                low, high = row["ci_low"], row["ci_high"]
            else:
                low, high, _ = mean_interval([by_key[k] for k in keys if k in by_key], seed=seed)
            shown[model][titles[column]] = f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
            if comparison is not None and model != reference:
                ref_keys = members[column].get(reference, [])
                slots = [k[1:] for k in keys if k[1:] in {r[1:] for r in ref_keys}]
                test = _difference_row(comparison, model, slots) if slots else None
                if test is not None:
                    found[(model, column)] = test
    relative = "clean" in summary and "corruption" in summary
    if relative:
        for model in order:
            ratio = summary.loc[model, "corruption"] / summary.loc[model, "clean"]
            shown[model]["relative (corr./clean)"] = "-" if pd.isna(ratio) else f"{ratio:.3f}"
    rows = {m: shown[m] for m in order}
    for model in order[1:]:
        label = f"{model} - {reference}"
        rows[label] = {}
        for column in columns:
            test = found.get((model, column))
            if test is None:
                rows[label][titles[column]] = "-"
                continue
            text = (f"{test['delta']:+.1f} [{test['ci_low']:+.1f}, {test['ci_high']:+.1f}] "
                    f"p={format_p(test['p_adjusted'])}")
            if test["significant"]:
                text += " *"
                bold.add((label, titles[column]))
            rows[label][titles[column]] = text
        if relative:
            a = summary.loc[model, "corruption"] / summary.loc[model, "clean"]
            b = summary.loc[reference, "corruption"] / summary.loc[reference, "clean"]
            rows[label]["relative (corr./clean)"] = "-" if pd.isna(a - b) else f"{a - b:+.3f}"
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    headline = Headline(reference=reference, table=table, bold=bold, comparison=comparison)
    headline.sentences = _sentences(headline, summary, found, order, alpha)
    headline.notes = _chance_notes(frame) + _notes(headline, comparison, relative, alpha)
    if "mCE" in summary:
        headline.mce = summary[["mCE"]].rename(columns={"mCE": "mCE (ratio, AlexNet = 1)"})
    return headline


def _verdict(test: Dict, better: str, worse: str) -> str:
    interval = f"{test['delta']:+.1f} points [{test['ci_low']:+.1f}, {test['ci_high']:+.1f}]"
    if not test["significant"]:
        return f"no significant difference ({interval})"
    return f"significantly {better if test['delta'] > 0 else worse} ({interval})"


def _sentences(headline: Headline, summary: pd.DataFrame, found: Dict, order: List[str],
               alpha: float) -> List[str]:
    ref, comparison = headline.reference, headline.comparison
    if comparison is None:
        return [f"One model ({ref}): nothing to compare."]
    out = []
    for model in order[1:]:
        rows = comparison[comparison["model"] == model]
        clean = found.get((model, "clean"))
        if clean is not None and clean["significant"]:
            out.append(f"{model} and {ref} differ significantly in clean accuracy "
                       f"({clean['delta']:+.1f} points): their robustness differences are "
                       f"confounded by it; the relative column divides it out.")
        elif clean is not None:
            out.append(f"Clean accuracy: {model} vs {ref}, {_verdict(clean, 'higher', 'lower')}.")
        corr = rows[(rows["scope"] == "cell") & (rows["benchmark"] == "corruption")]
        if len(corr):
            severities = sorted({int(s) for s in corr["severity"].dropna()})
            unit = ("corruption" if len(severities) == 1 else "corruption x severity cell")
            many = "corruptions" if len(severities) == 1 else "corruption x severity cells"
            at = f" at severity {severities[0]}" if len(severities) == 1 else ""
            better = int((corr["verdict"] == "better").sum())
            worse = int((corr["verdict"] == "worse").sum())
            total = plural(len(corr), unit, many)
            mean = found.get((model, "corruption"))
            text = (f"Per corruption{at}: {model} is significantly more robust than {ref} on "
                    f"{better} of {total} and less robust on {worse}")
            if mean is not None:
                text += f"; corruption mean: {_verdict(mean, 'higher', 'lower')}"
            out.append(text + ".")
        for column in summary.columns:
            test = found.get((model, column))
            if column in ("clean", "corruption", "mCE") or test is None:
                continue
            name = _attack_name(summary, column) or column
            out.append(f"{name}: {model} vs {ref}, {_verdict(test, 'more robust', 'less robust')}.")
    return out


def _attack_name(summary: pd.DataFrame, column: str) -> Optional[str]:
    note = summary.attrs.get("notes", {}).get(column, "")
    if note.startswith("robust accuracy under "):
        name = note[len("robust accuracy under "):]
        return name.replace(", eps=", " at ").replace(" (linf)", "")
    return None


def _chance_notes(frame: pd.DataFrame) -> List[str]:
    """A clean accuracy no better than chance (the run flags it in `warnings`) leads the notes."""
    if "warnings" not in frame.columns:
        return []
    clean = frame[(frame["benchmark"] == "clean") & frame["warnings"].astype(str).str.contains(
        "not above chance", regex=False)]
    return [f"WARNING {model}: {text}" for model, text in
            zip(clean["model"], clean["warnings"].astype(str))]


def _notes(headline: Headline, comparison, relative: bool, alpha: float) -> List[str]:
    notes = ["[a, b]: 95 % interval, not adjusted for multiple tests (Wilson for one cell; "
             "bootstrap over examples for a mean over cells)."]
    if comparison is not None:
        methods = sorted({("paired" if str(m).startswith("paired") else "unpaired")
                          for m in comparison["method"]})
        notes.append(f"'MODEL - {headline.reference}' rows: the difference in points [95 % interval], p Holm-adjusted over "
                     f"all of that pair's cell and aggregate tests ({' and '.join(methods)}); "
                     f"* and bold: significant at {alpha:g}. Nothing else is marked.")
    if relative:
        notes.append("relative: corruption mean / clean accuracy, robustness with the clean "
                     "accuracy divided out (its difference is not tested).")
    return notes


__all__ = ["Headline", "build_headline"]
