"""The PDF report opens, has the expected pages, and carries names and numbers as text."""
import os
import shutil
import subprocess

import pytest

from reports import build_pdf_report, detail_tables, formatted_summary, load_results, summary_table
from reports.plots import all_figures

pypdf = pytest.importorskip("pypdf") if not os.environ.get("CI") else __import__("pypdf")
pytestmark = pytest.mark.slow  # each builds a full report: ~5-8 s on 2 shared cores


def _pages(path):
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


def test_report_pages_and_text(results_dir, tmp_path):
    results = load_results(results_dir)
    path = build_pdf_report(results, tmp_path / "report.pdf")
    pages = _pages(path)
    n_figures = len(all_figures(results.frame))
    n_tables = len(detail_tables(results.frame))
    assert len(pages) == 1 + 1 + n_figures + n_tables + 1  # title, summary, ..., failed cells
    title = pages[0]
    for needle in ("robust-eval report", "resnet18_bn", "a" * 64, "b" * 64, "torch: 2.14.1",
                   "code_version: 0.1.0+abc1234", "device: cpu (x86_64)", "cifar10-small"):
        assert needle in title, needle
    summary = pages[1]
    shown = formatted_summary(summary_table(results.frame))
    for model, row in shown.iterrows():
        assert model in summary
        for value in row:
            assert value in summary
    assert "pgd 8/255" in summary
    assert "Accuracy vs severity" in pages[2]
    assert "Failed cells (1)" in pages[-1] and "CUDA out of memory" in pages[-1]
    assert "autoattack" in pages[-1] and "8/255" in pages[-1]


def test_report_without_run_json_and_without_failures(results_dir, tmp_path):
    (results_dir / "run.json").unlink()
    results = load_results(results_dir)
    results.frame = results.frame[results.frame["status"] != "failed"]
    pages = _pages(build_pdf_report(results, tmp_path / "r.pdf"))
    assert "unknown" in pages[0] and "run.json absent" in pages[0]
    assert "every cell completed" in pages[-1]


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler's pdftoppm not installed")
def test_rendered_pages_are_not_blank(results_dir, tmp_path):
    import matplotlib.image

    path = build_pdf_report(load_results(results_dir), tmp_path / "report.pdf")
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(path), str(tmp_path / "page")],
                   check=True)
    images = sorted(tmp_path.glob("page*.png"))
    assert len(images) == len(_pages(path))
    for image in images:
        assert matplotlib.image.imread(image).std() > 0.01, image.name
