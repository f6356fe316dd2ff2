"""Summary / detail tables and their Markdown and LaTeX exports."""
import math

import numpy as np
import pytest

from reports import (cell_means, detail_tables, formatted_summary, spectral_rows, summary_table,
                     to_latex, to_markdown)
from reports.results import normalize_frame
from reports.stats import eps_label, wilson_interval
from robust_eval.schema import make_row, to_frame


def test_summary_matches_the_cells(full_frame):
    frame = normalize_frame(full_frame)
    summary = summary_table(frame)
    assert list(summary.index) == ["resnet18_bn", "resnet18_convnorm"]
    assert list(summary.columns) == ["clean", "corruption", "fgsm 8/255", "pgd 8/255",
                                     "label noise symmetric 40%", "label noise asymmetric 40%"]
    bn = frame[frame["model"] == "resnet18_bn"]
    clean = bn[bn["benchmark"] == "clean"]["accuracy"].iloc[0]
    assert summary.loc["resnet18_bn", "clean"] == pytest.approx(clean)
    corr = bn[bn["benchmark"] == "corruption"]["accuracy"]
    assert len(corr) == 15
    assert summary.loc["resnet18_bn", "corruption"] == pytest.approx(corr.mean())
    pgd = bn[(bn["attack"] == "pgd") & ((bn["eps"] - 8 / 255).abs() < 1e-9)]["accuracy"]
    assert summary.loc["resnet18_bn", "pgd 8/255"] == pytest.approx(pgd.iloc[0])
    last = bn[(bn["noise_type"] == "symmetric") & (bn["noise_rate"] == 0.4) &
              (bn["metric"] == "last_epoch")]["accuracy"]
    assert summary.loc["resnet18_bn", "label noise symmetric 40%"] == pytest.approx(last.iloc[0])
    assert "autoattack" not in " ".join(summary.columns)  # only a failed cell
    assert "metric last" in summary.attrs["notes"]["label noise symmetric 40%"]


def test_label_noise_prefers_the_last_epoch_metric():
    rows = [make_row(correct=c, n=100, model="m", benchmark="label_noise", noise_type="symmetric",
                     noise_rate=0.4, metric=m) for c, m in ((70, "best_val_epoch"),
                                                            (60, "last_epoch"))]
    summary = summary_table(normalize_frame(to_frame(rows)))
    assert summary.loc["m", "label noise symmetric 40%"] == pytest.approx(0.6)


def test_headline_eps_falls_back_to_largest():
    rows = [make_row(correct=c, n=100, model="m", benchmark="attack", attack="pgd",
                     threat="linf", eps=e, steps=10) for c, e in ((50, 2 / 255), (30, 4 / 255))]
    assert list(summary_table(normalize_frame(to_frame(rows))).columns) == ["pgd 4/255"]


def test_seeds_are_averaged_with_a_one_run_interval():
    rows = [make_row(correct=c, n=200, model="m", benchmark="corruption", corruption="fog",
                     severity=3, seed=s) for s, c in ((0, 100), (1, 120))]
    cells = cell_means(normalize_frame(to_frame(rows)))
    assert len(cells) == 1
    cell = cells.iloc[0]
    assert cell["accuracy"] == pytest.approx(0.55) and cell["seeds"] == 2
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(wilson_interval(110, 200))


def test_mce_with_a_reference():
    rows = [make_row(correct=c, n=100, model="m", benchmark="corruption", corruption="fog",
                     severity=s) for s, c in ((1, 80), (2, 60))]
    summary = summary_table(normalize_frame(to_frame(rows)), {"fog": [0.5, 0.8, 0.9, 0.9, 0.9]})
    assert summary.loc["m", "mCE"] == pytest.approx((0.2 + 0.4) / (0.5 + 0.8))
    assert formatted_summary(summary).loc["m", "mCE"] == f"{0.6 / 1.3:.3f}"


def test_detail_tables_and_spectral_rows(full_frame):
    frame = normalize_frame(full_frame)
    tables = detail_tables(frame)
    corr = tables["corruption accuracy (%) - resnet18_bn"]
    assert list(corr.columns) == ["s1", "s2", "s3", "s4", "s5", "mean"]
    assert list(corr.index) == ["gaussian_noise", "defocus_blur", "fog"]
    attack = tables["robust accuracy (%) vs eps"]
    assert list(attack.columns) == ["0", "2/255", "4/255", "8/255"]
    spectral = spectral_rows(frame)
    assert len(spectral) == 20
    row = spectral[(spectral["model"] == "resnet18_bn") & (spectral["layer"] == "conv1") &
                   (spectral["metric"] == "spectral_norm")]
    assert row["value"].iloc[0] == pytest.approx(2.5)


def test_markdown_and_latex_exports(full_frame):
    summary = summary_table(normalize_frame(full_frame))
    shown = formatted_summary(summary)
    markdown = to_markdown(shown, summary.attrs["notes"])
    lines = markdown.splitlines()
    assert lines[0].startswith("| model") and "clean (%)" in lines[0]
    assert set(lines[1]) <= set("|:- ")
    assert lines[2].startswith("| resnet18_bn ") and shown.iloc[0, 0] in lines[2]
    assert "- **clean**:" in markdown
    latex = to_latex(shown, caption="Top-1 (%)", label="tab:x")
    assert r"resnet18\_convnorm" in latex and r"clean (\%)" in latex
    assert r"\textbf" not in latex and "**" not in markdown.split("\n\n")[0]  # no claims
    assert latex.count(r"\\") == 3  # header + two models


def test_marks_claim_only_significant_differences(outcomes):
    from reports.tables import summary_marks

    make, flip = outcomes
    rng = np.random.default_rng(0)
    clean = rng.random(1000) < 0.9
    corr = {c: rng.random(1000) < 0.7 for c in ("fog", "snow", "frost")}

    def model(name, lost, gained=0):
        cells = [({"model": name, "benchmark": "clean"}, clean)]
        return cells + [({"model": name, "benchmark": "corruption", "corruption": c,
                          "severity": 3}, flip(flip(v, lost, seed=i), gained, 9 + i, to=True))
                        for i, (c, v) in enumerate(corr.items())]

    results = make(model("a", 0) + model("b", 50) + model("c", 12, 10))
    summary = summary_table(results.frame)
    marks = summary_marks(results, summary)
    assert marks.reference == "a"
    assert marks.significant == {("b", "clean"): False, ("b", "corruption"): True,
                                 ("c", "clean"): False, ("c", "corruption"): False}
    assert marks.best == set()  # a is not significantly better than c
    shown = formatted_summary(summary, marks=marks)
    low, high = marks.intervals[("b", "corruption")]
    assert low < summary.loc["b", "corruption"] < high and ("b", "clean") not in marks.intervals
    assert shown.loc["b", "corruption (%)"] == (f"{100 * summary.loc['b', 'corruption']:.2f} "
                                                f"[{100 * low:.2f}, {100 * high:.2f}]*")
    assert not shown.loc["c", "corruption (%)"].endswith("*")
    assert "**" not in to_markdown(shown).split("\n\n")[0]
    two = make(model("a", 0) + model("b", 50))
    marks = summary_marks(two, summary_table(two.frame))
    assert marks.best == {("a", "corruption")}
    shown = formatted_summary(summary_table(two.frame), marks=marks)
    assert r"\textbf{" + shown.loc["a", "corruption (%)"] + "}" in to_latex(shown)
    assert "differs from a (two-sided, Holm-adjusted p < 0.05 over the columns; paired" in \
        to_markdown(shown, shown.attrs["notes"])


def test_eps_label():
    assert eps_label(8 / 255) == "8/255" and eps_label(0.5) == "0.5" and eps_label(math.nan) == ""


def test_attack_details_in_eps_order_and_named_as_papers_do():
    base = dict(model="m", checkpoint_sha256="c" * 64, arch="resnet20", norm="bn",
                dataset="cifar10", benchmark="attack", threat="linf", seed=0)
    rows = [make_row(correct=50, n=100, attack="pgd", eps=e / 255, steps=10, restarts=1,
                     **base) for e in (2, 8, 1)]
    rows.append(make_row(correct=40, n=100, attack="autoattack", eps=8 / 255, restarts=1,
                         params={"attack": "autoattack", "eps": 8 / 255, "version": "custom",
                                 "parts": ["apgd-ce"], "n_iter": 10}, **base))
    frame = normalize_frame(to_frame(rows))
    table = detail_tables(frame)["robust accuracy (%) vs eps"]
    assert list(table.columns) == ["1/255", "2/255", "8/255"]
    labels = [label for _, label in table.index]
    assert labels == ["PGD-10 (linf)", "AutoAttack (custom: apgd-ce, n_iter 10) (linf)"]
    summary = summary_table(frame)
    assert "AutoAttack (custom: apgd-ce, n_iter 10)" in summary.attrs["notes"]["autoattack 8/255"]
    assert "steps" not in summary.attrs["notes"]["autoattack 8/255"]


def test_plain_plurals():
    from reports.tables import plural

    assert plural(1, "corruption") == "1 corruption"
    assert plural(15, "corruption") == "15 corruptions"
    assert plural(5, "severity", "severities") == "5 severities"
