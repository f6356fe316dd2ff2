"""The PDF report: title page, summary table, plots, detailed tables, failed cells.

Drawn with matplotlib only (PdfPages), text embedded as TrueType (Type 42) so that it can be
searched and extracted. Written to a temp file and moved into place.
"""
from __future__ import annotations

import io
import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from reports.pictures import picture_figures  # noqa: E402
from reports.plots import all_figures  # noqa: E402
from reports.results import ResultSet, write_atomic  # noqa: E402
from reports.tables import (detail_tables, failed_table, formatted_summary,  # noqa: E402
                            model_order, summary_table)

PAGE = (11.69, 8.27)  # A4 landscape, inches
ROWS_PER_PAGE = 26


def _flatten(obj: Any, prefix: str = "") -> List[str]:
    if isinstance(obj, dict):
        lines = []
        for key, value in obj.items():
            lines += _flatten(value, f"{prefix}{key}." if isinstance(value, dict) else
                              f"{prefix}{key}")
        return lines
    if isinstance(obj, list) and obj and all(isinstance(v, (str, int, float)) for v in obj):
        return [f"{prefix}: {', '.join(map(str, obj))}"]
    if isinstance(obj, list):
        return [f"{prefix}[{i}]: {json.dumps(v, default=str)}" for i, v in enumerate(obj)]
    return [f"{prefix.rstrip('.')}: {obj}"]


def _models_lines(results: ResultSet) -> List[str]:
    """Models with arch, norm and checkpoint hash: run.json's list when present, else the frame's."""
    lines = []
    listed = results.run.get("models")
    if isinstance(listed, list) and listed:
        for entry in listed:
            if isinstance(entry, dict):
                name = entry.get("name") or entry.get("model") or "?"
                sha = entry.get("checkpoint_sha256") or entry.get("sha256") or "-"
                rest = {k: v for k, v in entry.items()
                        if k not in ("name", "model", "checkpoint_sha256", "sha256")}
                extra = ", ".join(f"{k}={v}" for k, v in rest.items()
                                  if v is not None and not isinstance(v, dict))
                lines.append(f"{name}  sha256 {sha}  {extra}")
            else:
                lines.append(str(entry))
        return lines
    frame = results.frame
    for model in model_order(frame):
        rows = frame[frame["model"] == model]
        shas = sorted(set(rows["checkpoint_sha256"].dropna().astype(str))) or ["-"]
        arch = ", ".join(sorted(set(rows["arch"].dropna().astype(str)))) or "-"
        norm = ", ".join(sorted(set(rows["norm"].dropna().astype(str)))) or "-"
        lines.append(f"{model}  arch={arch}  norm={norm}  sha256 {', '.join(shas)}")
    return lines


def _environment_lines(results: ResultSet) -> List[str]:
    env = results.run.get("environment")
    lines = _flatten(env) if isinstance(env, dict) else []
    frame = results.frame
    for column, label in (("device", "device (results)"), ("code_version", "code version (results)")):
        values = sorted(set(frame[column].dropna().astype(str)))
        if values:
            lines.append(f"{label}: {', '.join(values)}")
    dates = frame["created_at"].dropna().astype(str)
    if len(dates):
        lines.append(f"measured: {dates.min()} .. {dates.max()}")
    return lines or ["unknown (no run.json environment, no device column)"]


def _text_page(pdf: PdfPages, title: str, sections: Sequence[tuple]) -> None:
    """Sections of (heading, lines), wrapped; continues on further pages when long."""
    wrapped: List[tuple] = []
    for heading, lines in sections:
        wrapped.append(("h", heading))
        for line in lines:
            for piece in textwrap.wrap(str(line), 150) or [""]:
                wrapped.append(("t", piece))
    per_page, page = 44, 0
    while wrapped or page == 0:
        chunk, wrapped = wrapped[:per_page], wrapped[per_page:]
        fig = plt.figure(figsize=PAGE)
        fig.text(0.05, 0.94, title if page == 0 else f"{title} (continued)", fontsize=18,
                 weight="bold")
        y = 0.89
        for kind, text in chunk:
            if kind == "h":
                y -= 0.008
                fig.text(0.05, y, text, fontsize=11, weight="bold")
            else:
                fig.text(0.07, y, text, fontsize=8, family="monospace")
            y -= 0.0185
        pdf.savefig(fig)
        plt.close(fig)
        page += 1


def _table_pages(pdf: PdfPages, title: str, table: pd.DataFrame,
                 notes: Optional[Dict[str, str]] = None, index: bool = True) -> None:
    table = table.reset_index() if index else table
    table.columns = [str(c) for c in table.columns]
    cells = [["" if pd.isna(v) else (f"{v:.2f}" if isinstance(v, float) else str(v))
              for v in row] for row in table.itertuples(index=False)]
    chunks = [cells[i:i + ROWS_PER_PAGE] for i in range(0, len(cells), ROWS_PER_PAGE)] or [[]]
    for number, chunk in enumerate(chunks):
        fig = plt.figure(figsize=PAGE)
        suffix = f" ({number + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        fig.text(0.05, 0.94, title + suffix, fontsize=14, weight="bold")
        ax = fig.add_axes((0.04, 0.2 if notes else 0.05, 0.92, 0.85 if not notes else 0.7))
        ax.axis("off")
        if chunk:
            drawn = ax.table(cellText=chunk, colLabels=list(table.columns), loc="upper center",
                             cellLoc="right")
            drawn.auto_set_font_size(False)
            drawn.set_fontsize(8 if len(table.columns) <= 10 else 6)
            drawn.auto_set_column_width(list(range(len(table.columns))))
            drawn.scale(1, 1.3)
        else:
            ax.text(0.0, 0.9, "(empty)", fontsize=10)
        if notes:
            y = 0.16
            for name, text in notes.items():
                fig.text(0.05, y, f"{name}: {text}", fontsize=8)
                y -= 0.022
        pdf.savefig(fig)
        plt.close(fig)


def build_pdf_report(results: ResultSet, path, title: str = "robust-eval report",
                     corruption_reference: Optional[Dict[str, Sequence[float]]] = None) -> Path:
    """Write the report to `path` (atomically) and return it."""
    frame = results.frame
    summary = summary_table(frame, corruption_reference)
    config = results.run.get("config")
    run_facts = [f"{key}: {results.run[key]}" for key in
                 ("name", "config_file", "code_version", "date", "executor", "cells", "seconds")
                 if results.run.get(key) is not None]
    sections = [
        ("Results", run_facts + [f"source: {results.source}",
                     f"report written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
                     f"rows: {len(frame)} ({int((frame['status'] == 'failed').sum())} failed)"]),
        ("Models (checkpoint sha256)", _models_lines(results)),
        ("Environment", _environment_lines(results)),
        ("Configuration", _flatten(config) if isinstance(config, dict) else
         [str(config) if config is not None else "unknown (run.json absent or without config)"]),
    ]
    if results.notes:
        sections.append(("Notes", results.notes))
    buffer = io.BytesIO()
    with plt.rc_context({"pdf.fonttype": 42}), PdfPages(buffer) as pdf:
        _text_page(pdf, title, sections)
        _table_pages(pdf, "Summary (top-1 accuracy, %)", formatted_summary(summary),
                     summary.attrs.get("notes"))
        for _, fig in all_figures(frame):
            pdf.savefig(fig)
            plt.close(fig)
        for _, fig in picture_figures(Path(results.source).parent, PAGE):
            pdf.savefig(fig)
            plt.close(fig)
        for name, table in detail_tables(frame).items():
            _table_pages(pdf, name.capitalize(), table.round(2))
        failed = failed_table(frame)
        if failed.empty:
            _text_page(pdf, "Failed cells", [("None", ["every cell completed"])])
        else:
            _table_pages(pdf, f"Failed cells ({len(failed)})", failed.fillna("").astype(str),
                         index=False)
        info = pdf.infodict()
        info["Title"] = title
        info["Subject"] = f"robust-eval results from {results.source}"
    write_atomic(path, buffer.getvalue())
    return Path(path)
