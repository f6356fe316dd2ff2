"""reports: tables, plots, the PDF report, the regression gate and paired model comparisons.

A leaf: it reads result DataFrames (the long schema, reports/schema.py) and never imports robust_eval,
attacks or corruptions.
"""
from reports.compare import compare_models, format_comparison
from reports.export import to_latex, to_markdown
from reports.regression import (CheckResult, check_against_baseline, format_check,
                                freeze_baseline, read_baseline)
from reports.results import CELL_KEY_COLUMNS, ResultSet, load_results, normalize_frame
from reports.tables import (cell_means, detail_tables, formatted_summary, spectral_rows,
                            summary_table)

_PAIRED = ("holm", "mcnemar", "paired_bootstrap", "paired_difference_ci", "unpaired_difference")
__all__ = [
    "CELL_KEY_COLUMNS", "CheckResult", "ResultSet", "cell_means", "check_against_baseline",
    "compare_models", "detail_tables", "format_check", "format_comparison", "formatted_summary",
    "freeze_baseline", "load_results", "normalize_frame", "read_baseline", "spectral_rows",
    "summary_table", "to_latex", "to_markdown", "build_pdf_report", "all_figures", "save_all",
    *_PAIRED,
]


def __getattr__(name):  # plots, PDF (matplotlib) and paired (scipy.stats) load only when asked
    if name == "build_pdf_report":
        from reports.pdf import build_pdf_report
        return build_pdf_report
    if name in ("all_figures", "save_all"):
        from reports import plots
        return getattr(plots, name)
    if name in _PAIRED:
        from reports import paired
        return getattr(paired, name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
