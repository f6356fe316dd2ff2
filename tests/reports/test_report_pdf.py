"""The PDF report opens, has the expected pages, and carries names and numbers as text."""
import os
import shutil
import subprocess

import pytest

from reports import build_pdf_report, detail_tables, load_results, summary_table
from reports.plots import all_figures

pypdf = pytest.importorskip("pypdf") if not os.environ.get("CI") else __import__("pypdf")
pytestmark = pytest.mark.slow  # each builds a full report: ~5-8 s on 2 shared cores


def _pages(path):
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


def test_report_pages_and_text(results_dir, tmp_path):
    results = load_results(results_dir)
    path = build_pdf_report(results, tmp_path / "report.pdf")
    reader = pypdf.PdfReader(path)
    pages = _pages(path)
    n_figures = len(all_figures(results.frame))
    n_tables = len(detail_tables(results.frame))
    # headline, one difference heatmap, figures (heatmaps among them), tables, failed, appendix
    assert len(pages) == 1 + 1 + n_figures + n_tables + 1 + 1
    for number, text in enumerate(pages, start=1):
        assert f"page {number}" in text, number
    # page 1: what was evaluated, every model with n and its interval, the difference row
    first = pages[0]
    for needle in ("robust-eval report", "cifar10-small", "resnet18_bn", "resnet18_convnorm",
                   "a" * 12, "b" * 12, "clean %", "(n=2000)", "corruption mean %", "PGD-10 8/255",
                   "resnet18_convnorm - resnet18_bn", "relative (corr./clean)", "Summary",
                   "3 corruptions x 5 severities"):
        assert needle in first, needle
    summary = summary_table(results.frame)
    clean = f"{100 * summary.loc['resnet18_bn', 'clean']:.1f} ["
    assert clean in first
    assert "a" * 64 not in first and "torch: 2.14.1" not in first  # the appendix has them
    titles = [item.title for item in reader.outline]
    assert titles == ["Headline", "Differences from resnet18_bn", "Plots", "Details",
                      "Failed cells", "Appendix: configuration and environment"]
    starts = [reader.get_destination_page_number(item) for item in reader.outline]
    assert starts == sorted(starts) and starts[0] == 0
    assert "minus resnet18_bn" in pages[starts[1]]
    appendix = pages[starts[-1]]
    for needle in ("a" * 64, "b" * 64, "torch: 2.14.1", "code_version: 0.1.0+abc1234",
                   "device: cpu (x86_64)", "cifar10-small"):
        assert needle in appendix, needle
    assert "Failed cells (1)" in pages[starts[-2]] and "CUDA out of memory" in pages[starts[-2]]
    assert "autoattack" in pages[starts[-2]] and "8/255" in pages[starts[-2]]
    sizes = {(round(float(p.mediabox.width)), round(float(p.mediabox.height)))
             for p in reader.pages}
    assert sizes == {(842, 595)}  # A4 landscape in points, every page


def test_report_without_run_json_and_without_failures(results_dir, tmp_path):
    (results_dir / "run.json").unlink()
    results = load_results(results_dir)
    results.frame = results.frame[results.frame["status"] != "failed"]
    pages = _pages(build_pdf_report(results, tmp_path / "r.pdf"))
    assert "unknown" in pages[-1] and "run.json absent" in pages[-1]
    assert "every cell completed" in pages[-2]


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


def test_a_report_of_two_folders_holds_both(results_dir, tmp_path):
    """Two result folders of the same two model names: each becomes FOLDER/MODEL."""
    import robust_eval

    other = tmp_path / "rerun"
    shutil.copytree(results_dir, other)
    path = robust_eval.report([results_dir, other], tmp_path / "both.pdf",
                              reference="rerun/resnet18_bn")[0]
    first = _pages(path)[0]
    for model in ("results/resnet18_bn", "results/resnet18_convnorm", "rerun/resnet18_bn",
                  "rerun/resnet18_convnorm"):
        assert model in first, model
    assert "results/resnet18_bn - rerun/resnet18_bn" in first
    with pytest.raises(ValueError, match="reference model 'nope'"):
        robust_eval.report([results_dir, other], tmp_path / "x.pdf", reference="nope")


def test_headline_says_when_clean_accuracy_confounds(full_frame):
    from reports import ResultSet
    from reports.headline import build_headline

    frame = full_frame.copy()
    worse = (frame["model"] == "resnet18_convnorm") & (frame["benchmark"] == "clean")
    frame.loc[worse, "correct"] = frame.loc[worse, "n"] * 0.80
    frame.loc[worse, "accuracy"] = 0.80
    headline = build_headline(ResultSet(frame=frame, source="t"))
    text = " ".join(headline.sentences)
    assert "differ significantly in clean accuracy" in text and "confounded" in text
    same = build_headline(ResultSet(frame=full_frame, source="t"), reference="resnet18_convnorm")
    assert "confounded" not in " ".join(same.sentences)
    assert list(same.table.index)[0] == "resnet18_convnorm"
    # bold (and *) exactly where compare_models found the difference significant
    starred = {(r, c) for r in same.table.index for c in same.table.columns
               if str(same.table.loc[r, c]).endswith(" *")}
    assert same.bold and same.bold == starred
    assert len(starred) <= int(same.comparison["significant"].sum())
