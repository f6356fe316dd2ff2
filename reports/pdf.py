"""The PDF report: the headline first (what was evaluated, the headline table with intervals
and differences from a reference model, a summary in words), then the differences, plots,
pictures, details, failed cells, and configuration and environment in an appendix.

Drawn with matplotlib (PdfPages) on A4 landscape pages, text embedded as TrueType (Type 42) so
that it can be searched and extracted; pypdf adds the outline (one bookmark per section), which
PdfPages cannot write. Written to a temp file and moved into place.
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

from reports.headline import Headline, build_headline  # noqa: E402
from reports.pictures import picture_figures  # noqa: E402
from reports.plots import all_figures, plot_difference_heatmaps  # noqa: E402
from reports.results import ResultSet, write_atomic  # noqa: E402
from reports.tables import cell_means, detail_tables, failed_table, model_order, plural  # noqa: E402

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
    for column, label in (("device", "device (results)"), ("code_version", "code version (results)"),
                          ("precision", "precision (results)")):
        values = sorted(set(frame[column].dropna().astype(str))) if column in frame else []
        if values:
            lines.append(f"{label}: {', '.join(values)}")
    dates = frame["created_at"].dropna().astype(str)
    if len(dates):
        lines.append(f"measured: {dates.min()} .. {dates.max()}")
    return lines or ["unknown (no run.json environment, no device column)"]


class _Pages:
    """Every page through one place: A4 landscape, a footer with the page number, and the
    sections' first pages for the outline."""

    def __init__(self, pdf: PdfPages, title: str):
        self.pdf, self.title, self.count = pdf, title, 0
        self.sections: List[tuple] = []

    def section(self, name: str) -> None:
        self.sections.append((name, self.count))

    def add(self, fig) -> None:
        fig.set_size_inches(*PAGE)
        self.count += 1
        fig.text(0.97, 0.015, f"page {self.count}", fontsize=8, ha="right", color="0.3")
        fig.text(0.03, 0.015, self.title, fontsize=8, color="0.3")
        self.pdf.savefig(fig)
        plt.close(fig)


def _text_page(pages: _Pages, title: str, sections: Sequence[tuple]) -> None:
    """Sections of (heading, lines), wrapped; continues on further pages when long."""
    wrapped: List[tuple] = []
    for heading, lines in sections:
        wrapped.append(("h", heading))
        for line in lines:
            for piece in textwrap.wrap(str(line), 150) or [""]:
                wrapped.append(("t", piece))
    per_page, page = 42, 0
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
        pages.add(fig)
        page += 1


def _draw_table(ax, table: pd.DataFrame, fontsize: float, bold=(), height: float = 1.35,
                fit: bool = False) -> None:
    """fit: columns share the axes' width by their longest text, the font shrinking to fit."""
    cells = [["" if pd.isna(v) else (f"{v:.2f}" if isinstance(v, float) else str(v))
              for v in row] for row in table.itertuples(index=False)]
    lengths = [max([len(line) for line in str(c).split("\n")] +
                   [len(row[j]) for row in cells]) + 2 for j, c in enumerate(table.columns)]
    widths = [w / sum(lengths) for w in lengths] if fit else None
    drawn = ax.table(cellText=cells, colLabels=list(table.columns), loc="upper center",
                     cellLoc="right", colWidths=widths)
    drawn.auto_set_font_size(False)
    if fit:  # ~0.6 em per character at this size on a page 11.7 in wide
        fontsize = min(fontsize, 0.95 * ax.get_position().width * PAGE[0] * 72
                       / (0.6 * sum(lengths)))
    drawn.set_fontsize(fontsize)
    if not fit:
        drawn.auto_set_column_width(list(range(len(table.columns))))
    drawn.scale(1, height)
    for (row, col), cell in drawn.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_height(cell.get_height() * 1.6)
        elif (row - 1, col) in bold:
            cell.set_text_props(weight="bold")


def _table_pages(pages: _Pages, title: str, table: pd.DataFrame,
                 notes: Optional[Dict[str, str]] = None, index: bool = True) -> None:
    table = table.reset_index() if index else table
    table.columns = [str(c) for c in table.columns]
    chunks = [table.iloc[i:i + ROWS_PER_PAGE] for i in range(0, len(table), ROWS_PER_PAGE)] \
        or [table]
    for number, chunk in enumerate(chunks):
        fig = plt.figure(figsize=PAGE)
        suffix = f" ({number + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        fig.text(0.05, 0.94, title + suffix, fontsize=14, weight="bold")
        ax = fig.add_axes((0.04, 0.2 if notes else 0.05, 0.92, 0.85 if not notes else 0.7))
        ax.axis("off")
        if len(chunk):
            _draw_table(ax, chunk, 8 if len(table.columns) <= 10 else 6)
        else:
            ax.text(0.0, 0.9, "(empty)", fontsize=10)
        if notes:
            y = 0.16
            for name, text in notes.items():
                fig.text(0.05, y, f"{name}: {text}", fontsize=8)
                y -= 0.022
        pages.add(fig)


def _evaluated_lines(results: ResultSet) -> List[str]:
    """Models (arch, norm, checkpoint short hash), datasets and n, from the rows themselves so
    that a merged report describes every folder."""
    frame = results.frame[results.frame["status"] != "failed"]
    lines = []
    for model in model_order(frame):
        rows = frame[frame["model"] == model]
        values = lambda c: ", ".join(sorted(set(rows[c].dropna().astype(str)))) or "-"  # noqa
        shas = sorted(set(rows["checkpoint_sha256"].dropna().astype(str)))
        lines.append(f"{model}: {values('arch')}, norm {values('norm')}, checkpoint "
                     f"{', '.join(s[:12] for s in shas) or '-'}")
    cells = cell_means(frame)
    for dataset, rows in cells.groupby("dataset", sort=False):
        parts = []
        clean = rows[rows["benchmark"] == "clean"]
        if len(clean):
            parts.append(f"clean n={int(clean['n'].max())}")
        corruption = rows[rows["benchmark"] == "corruption"]
        if len(corruption):
            parts.append(f"{plural(corruption['corruption'].nunique(), 'corruption')} x "
                         f"{plural(corruption['severity'].nunique(), 'severity', 'severities')}"
                         f" (n={int(corruption['n'].max())})")
        attacks = rows[rows["benchmark"] == "attack"]
        if len(attacks):
            low, high = int(attacks["n"].min()), int(attacks["n"].max())
            parts.append(f"{plural(attacks['attack'].nunique(), 'attack')} "
                         f"(n={low if low == high else f'{low}-{high}'})")
        noise = rows[rows["benchmark"] == "label_noise"]
        if len(noise):
            parts.append(f"label noise at {plural(noise['noise_rate'].nunique(), 'rate')}")
        lines.append(f"dataset {dataset}: " + "; ".join(parts))
    return lines


def _headline_page(pages: _Pages, title: str, results: ResultSet, headline: Headline) -> None:
    fig = plt.figure(figsize=PAGE)
    fig.text(0.04, 0.94, title, fontsize=18, weight="bold")
    y = 0.895
    config = results.run.get("config")
    name = results.run.get("name") or (config.get("name") if isinstance(config, dict) else None)
    facts = [f"results: {name or results.source}"] + _evaluated_lines(results)
    for line in facts:
        fig.text(0.04, y, line, fontsize=10)
        y -= 0.03
    rows = len(headline.table) + 1
    height = 0.055 * rows + 0.04
    ax = fig.add_axes((0.02, y - height, 0.96, height))
    ax.axis("off")
    table = headline.table.reset_index()
    table.columns = [str(c).replace(" % (", " %\n(") for c in table.columns]
    bold = {(list(headline.table.index).index(r), list(headline.table.columns).index(c) + 1)
            for r, c in headline.bold}
    _draw_table(ax, table, 9, bold, height=1.8, fit=True)
    y -= height + 0.04
    fig.text(0.04, y, "Summary", fontsize=12, weight="bold")
    y -= 0.03
    for sentence in headline.sentences:
        for piece in textwrap.wrap(sentence, 150):
            fig.text(0.05, y, piece, fontsize=10)
            y -= 0.028
    y -= 0.01
    for note in headline.notes:
        for piece in textwrap.wrap(note, 175):
            fig.text(0.04, y, piece, fontsize=8, color="0.25")
            y -= 0.022
    pages.add(fig)


def _outline(data: bytes, sections: Sequence[tuple], info: Dict[str, str]) -> bytes:
    """One bookmark per section (pypdf: PdfPages writes no outline)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for name, page in sections:
        writer.add_outline_item(title=name, page_number=page)
    writer.page_mode = "/UseOutlines"
    writer.add_metadata({f"/{k}": v for k, v in info.items()})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def build_pdf_report(results: ResultSet, path, title: str = "robust-eval report",
                     corruption_reference: Optional[Dict[str, Sequence[float]]] = None,
                     reference: Optional[str] = None,
                     picture_folders: Optional[Sequence] = None) -> Path:
    """Write the report to `path` (atomically) and return it. `reference`: the model the others
    are compared with (default the first); `picture_folders`: where examples.npz may be
    (default the results' own folder)."""
    frame = results.frame
    headline = build_headline(results, reference, corruption_reference=corruption_reference)
    config = results.run.get("config")
    run_facts = [f"{key}: {results.run[key]}" for key in
                 ("name", "config_file", "code_version", "date", "executor", "cells", "seconds")
                 if results.run.get(key) is not None]
    appendix = [
        ("Results", run_facts + [f"source: {results.source}",
                     f"report written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
                     f"rows: {len(frame)} ({int((frame['status'] == 'failed').sum())} failed)"]),
        ("Models (checkpoint sha256)", _models_lines(results)),
        ("Environment", _environment_lines(results)),
        ("Configuration", _flatten(config) if isinstance(config, dict) else
         [str(config) if config is not None else "unknown (run.json absent or without config)"]),
    ]
    if results.notes:
        appendix.append(("Notes", results.notes))
    figures = all_figures(frame)
    heatmaps = [f for stem, f in figures if stem.startswith("corruption_heatmap_")]
    plots = [f for stem, f in figures if not stem.startswith("corruption_heatmap_")]
    folders = picture_folders if picture_folders is not None else [Path(results.source).parent]
    pictures = [fig for folder in folders for _, fig in picture_figures(folder, PAGE)]
    buffer = io.BytesIO()
    with plt.rc_context({"pdf.fonttype": 42}), PdfPages(buffer) as pdf:
        pages = _Pages(pdf, title)
        pages.section("Headline")
        _headline_page(pages, title, results, headline)
        if headline.comparison is not None:
            differences = plot_difference_heatmaps(headline.comparison)
            if differences:
                pages.section(f"Differences from {headline.reference}")
                for _, fig in differences:
                    pages.add(fig)
        if plots:
            pages.section("Plots")
            for fig in plots:
                pages.add(fig)
        if pictures:
            pages.section("Pictures")
            for fig in pictures:
                pages.add(fig)
        pages.section("Details")
        for fig in heatmaps:
            pages.add(fig)
        if headline.mce is not None:
            _table_pages(pages, "Mean corruption error (ratio, not %)", headline.mce.round(3))
        for name, table in detail_tables(frame).items():
            _table_pages(pages, name.capitalize(), table.round(2))
        failed = failed_table(frame)
        pages.section("Failed cells")
        if failed.empty:
            _text_page(pages, "Failed cells", [("None", ["every cell completed"])])
        else:
            _table_pages(pages, f"Failed cells ({len(failed)})", failed.fillna("").astype(str),
                         index=False)
        pages.section("Appendix: configuration and environment")
        _text_page(pages, "Appendix: configuration and environment", appendix)
    info = {"Title": title, "Subject": f"robust-eval results from {results.source}"}
    write_atomic(path, _outline(buffer.getvalue(), pages.sections, info))
    return Path(path)
