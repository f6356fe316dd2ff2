"""Plots: right data on the lines, one colour per model everywhere, files in three formats."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reports import plots  # noqa: E402
from reports.results import normalize_frame  # noqa: E402


@pytest.fixture(scope="module")
def frame():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from conftest import _rows  # the same builder as the full_frame fixture
    finally:
        sys.path.pop(0)
    from robust_eval.schema import to_frame

    return normalize_frame(to_frame(_rows(np.random.default_rng(0))))


def _lines(fig):
    return {line.get_label(): line for ax in fig.axes for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_severity_plot_data_and_labels(frame):
    fig = plots.plot_accuracy_vs_severity(frame)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("corruption severity") and "(%)" in ax.get_ylabel()
    line = _lines(fig)["resnet18_bn"]
    bn = frame[(frame["model"] == "resnet18_bn")]
    corr = bn[bn["benchmark"] == "corruption"]
    expected = [100 * bn[bn["benchmark"] == "clean"]["accuracy"].iloc[0]] + \
        list(100 * corr.groupby("severity")["accuracy"].mean())
    np.testing.assert_allclose(line.get_ydata(), expected)
    np.testing.assert_allclose(line.get_xdata(), [0, 1, 2, 3, 4, 5])
    assert ax.collections, "confidence band missing"
    plt.close(fig)


def test_one_colour_per_model_across_plots(frame):
    figures = dict(plots.all_figures(frame))
    assert set(figures) == {"accuracy_vs_severity", "robust_accuracy_vs_eps", "label_noise",
                            "spectral_norm", "corruption_heatmap_resnet18_bn",
                            "corruption_heatmap_resnet18_convnorm"}
    seen = {}
    for stem in ("accuracy_vs_severity", "robust_accuracy_vs_eps", "label_noise",
                 "spectral_norm"):
        for label, line in _lines(figures[stem]).items():
            model = label.split(":")[0].split(" (")[0]
            seen.setdefault(model, set()).add(tuple(np.round(matplotlib.colors.to_rgba(
                line.get_color()), 4)))
    assert set(seen) == {"resnet18_bn", "resnet18_convnorm"}
    assert all(len(colours) == 1 for colours in seen.values())
    assert seen["resnet18_bn"] != seen["resnet18_convnorm"]
    eps_fig = figures["robust_accuracy_vs_eps"]
    assert [ax.get_title() for ax in eps_fig.axes] == ["fgsm (linf)", "pgd (linf, 10 steps)"]
    np.testing.assert_allclose(_lines(eps_fig)["resnet18_bn"].get_xdata(), [0, 2, 4, 8])
    spectral = figures["spectral_norm"].axes[0]
    assert spectral.get_yscale() == "log" and "spectral norm" in spectral.get_ylabel()
    figures["spectral_norm"].canvas.draw()
    low, high = spectral.get_ylim()
    labels = [t.get_text() for t in spectral.get_yticklabels()
              if low <= t.get_position()[1] <= high and t.get_text()]
    assert len(labels) >= 2, "the log axis has no readable tick labels"
    heat = figures["corruption_heatmap_resnet18_bn"].axes[0]
    assert heat.images[0].get_array().shape == (3, 5)
    for fig in figures.values():
        plt.close(fig)


def test_missing_benchmarks_give_no_figure(frame):
    clean_only = frame[frame["benchmark"] == "clean"]
    assert plots.plot_accuracy_vs_severity(clean_only) is None
    assert plots.plot_robust_accuracy_vs_eps(clean_only) is None
    assert plots.plot_label_noise(clean_only) is None
    assert plots.plot_spectral_norms(clean_only) is None
    assert plots.all_figures(clean_only) == []


def test_save_formats_and_not_blank(frame, tmp_path):
    fig = plots.plot_label_noise(frame)
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
    for fmt, head in magic.items():
        path = plots.save_figure(fig, tmp_path / f"noise.{fmt}")
        assert path.read_bytes()[:len(head)] == head
    pixels = matplotlib.image.imread(tmp_path / "noise.png")
    assert pixels.std() > 0.05  # drawn, not an empty canvas
    with pytest.raises(ValueError, match="plot format"):
        plots.save_figure(fig, tmp_path / "noise.jpg")
    plt.close(fig)
    assert not list(tmp_path.glob(".noise*"))  # no temp files left behind
