"""Markdown and LaTeX renderings of a (formatted, string-valued) table; no extra dependencies."""
from __future__ import annotations

from typing import Dict, List, Optional

import pandas as pd

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def _rows(table: pd.DataFrame) -> List[List[str]]:
    index_name = table.index.name or ""
    header = [str(index_name)] + [str(c) for c in table.columns]
    body = [[str(i)] + ["" if pd.isna(v) else str(v) for v in row]
            for i, row in zip(table.index, table.itertuples(index=False))]
    return [header] + body


def _bold_cells(table: pd.DataFrame) -> set:
    """(row i, column j) positions in _rows() to bold: table.attrs["bold"] (row label, column)."""
    columns = [str(c) for c in table.columns]
    rows = [str(i) for i in table.index]
    return {(rows.index(str(r)) + 1, columns.index(str(c)) + 1)
            for r, c in table.attrs.get("bold", ()) if str(r) in rows and str(c) in columns}


def to_markdown(table: pd.DataFrame, notes: Optional[Dict[str, str]] = None) -> str:
    """A pipe table; values in table.attrs["bold"] in bold (nothing else is)."""
    rows = _rows(table)
    for i, j in _bold_cells(table):
        rows[i][j] = f"**{rows[i][j]}**"
    escape = [[cell.replace("|", r"\|") for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in escape) for i in range(len(escape[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(escape[0], widths)) + " |",
             "|" + "|".join([":" + "-" * (widths[0] + 1)] +
                            ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
              for row in escape[1:]]
    if notes:
        lines.append("")
        lines += [f"- **{name}**: {text}" for name, text in notes.items()]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); values in table.attrs["bold"] (those
    significantly better than every other, see tables.summary_marks) in bold, nothing else."""
    rows = _rows(table)
    bold = _bold_cells(table)
    lines = [r"\begin{table}[t]", r"\centering",
             r"\begin{tabular}{l" + "r" * (len(rows[0]) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in rows[0]) + r" \\", r"\midrule"]
    for i, row in enumerate(rows[1:], start=1):
        cells = [r"\textbf{" + latex_escape(c) + "}" if (i, j) in bold else latex_escape(c)
                 for j, c in enumerate(row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
