"""Plots of a result frame (matplotlib, Agg). Each function returns a Figure, or None when the
frame has no rows for it. One colour per model across all plots (`model_colors`); shaded bands
are 95 % intervals where the data has them.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from reports.results import write_atomic  # noqa: E402
from reports.tables import cell_means, model_order, spectral_rows  # noqa: E402

FORMATS = ("png", "svg", "pdf")


def model_colors(models: Sequence[str]) -> Dict[str, Tuple[float, ...]]:
    """A fixed colour per model, by position in `models` (pass every model of the report)."""
    palette = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    return {m: palette(i % palette.N) for i, m in enumerate(models)}


def _colors(frame: pd.DataFrame, colors: Optional[Dict]) -> Dict:
    return colors if colors is not None else model_colors(model_order(frame))


def _band(ax, x, low, high, color) -> None:
    low, high = np.asarray(low, float), np.asarray(high, float)
    if np.isfinite(low).any() and np.isfinite(high).any():
        ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)


def plot_accuracy_vs_severity(frame: pd.DataFrame, colors: Optional[Dict] = None) -> Optional[Figure]:
    """Mean accuracy over corruptions per severity (severity 0 = clean, when measured)."""
    cells = cell_means(frame)
    corr = cells[cells["benchmark"] == "corruption"]
    if corr.empty:
        return None
    colors = _colors(frame, colors)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for model in model_order(frame):
        group = corr[corr["model"] == model]
        if group.empty:
            continue
        by_sev = group.groupby("severity")[["accuracy", "ci_low", "ci_high"]].mean().sort_index()
        clean = cells[(cells["benchmark"] == "clean") & (cells["model"] == model)]
        if not clean.empty:
            row = clean[["accuracy", "ci_low", "ci_high"]].mean()
            by_sev = pd.concat([pd.DataFrame([row], index=[0.0]), by_sev])
        x = by_sev.index.to_numpy(float)
        ax.plot(x, 100 * by_sev["accuracy"], marker="o", color=colors[model], label=model)
        _band(ax, x, 100 * by_sev["ci_low"], 100 * by_sev["ci_high"], colors[model])
    k = corr["corruption"].nunique()
    _finish(ax, "corruption severity (0 = clean)", "top-1 accuracy (%)",
            f"Accuracy vs severity (mean over {k} corruption{'s' if k != 1 else ''})")
    ax.set_xticks(sorted(set(ax.get_xticks()) & set(range(0, 6))) or [1, 2, 3, 4, 5])
    ax.legend(title="model", fontsize="small")
    ax.text(0.99, 0.01, "band: mean of per-cell 95% CIs", transform=ax.transAxes,
            ha="right", va="bottom", fontsize="x-small", color="0.4")
    return fig


def plot_corruption_heatmaps(frame: pd.DataFrame) -> List[Tuple[str, Figure]]:
    """One heatmap (corruption x severity, accuracy %) per model, on a shared colour scale."""
    cells = cell_means(frame)
    corr = cells[cells["benchmark"] == "corruption"]
    figures = []
    if corr.empty:
        return figures
    vmin, vmax = 100 * corr["accuracy"].min(), 100 * corr["accuracy"].max()
    order = list(dict.fromkeys(corr["corruption"]))
    for model in model_order(frame):
        group = corr[corr["model"] == model]
        if group.empty:
            continue
        pivot = (100 * group.pivot_table(index="corruption", columns="severity",
                                         values="accuracy", aggfunc="mean")).reindex(
            [c for c in order if c in set(group["corruption"])])
        fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(pivot) + 1.8), layout="constrained")
        image = ax.imshow(pivot.to_numpy(float), aspect="auto", cmap="viridis",
                          vmin=vmin, vmax=vmax)
        ax.set_xticks(range(pivot.shape[1]), [str(int(c)) for c in pivot.columns])
        ax.set_yticks(range(pivot.shape[0]), list(pivot.index))
        for (i, j), value in np.ndenumerate(pivot.to_numpy(float)):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if value < (vmin + vmax) / 2 else "black")
        ax.set_xlabel("severity")
        ax.set_ylabel("corruption")
        ax.set_title(f"Corruption accuracy (%) - {model}")
        fig.colorbar(image, ax=ax, label="top-1 accuracy (%)")
        figures.append((model, fig))
    return figures


def plot_robust_accuracy_vs_eps(frame: pd.DataFrame, colors: Optional[Dict] = None) -> Optional[Figure]:
    """One panel per (attack, threat); eps in 1/255 units for L-inf."""
    cells = cell_means(frame)
    attacks = cells[cells["benchmark"] == "attack"]
    if attacks.empty:
        return None
    colors = _colors(frame, colors)
    panels = list(attacks.groupby(["attack", "threat"], dropna=False, sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0),
                             layout="constrained", squeeze=False)
    for ax, ((attack, threat), group) in zip(axes[0], panels):
        linf = str(threat) == "linf"
        steps = group["steps"].max()
        if pd.notna(steps):
            group = group[group["steps"] == steps]
        for model in model_order(frame):
            rows = group[group["model"] == model].groupby("eps")[
                ["accuracy", "ci_low", "ci_high"]].mean().sort_index()
            if rows.empty:
                continue
            x = rows.index.to_numpy(float) * (255 if linf else 1)
            ax.plot(x, 100 * rows["accuracy"], marker="o", color=colors[model], label=model)
            _band(ax, x, 100 * rows["ci_low"], 100 * rows["ci_high"], colors[model])
        detail = f", {int(steps)} steps" if pd.notna(steps) and steps > 1 else ""
        ax.set_xticks(sorted(group["eps"].dropna().unique() * (255 if linf else 1)))
        _finish(ax, "eps (x 1/255, L-inf)" if linf else f"eps ({threat} norm)",
                "robust accuracy (%)", f"{attack} ({threat}{detail})")
        ax.set_ylim(bottom=0)
        ax.legend(title="model", fontsize="small")
    return fig


def plot_label_noise(frame: pd.DataFrame, colors: Optional[Dict] = None) -> Optional[Figure]:
    """One panel per noise type; solid = last epoch, dashed = best epoch when both exist."""
    cells = cell_means(frame)
    noise = cells[cells["benchmark"] == "label_noise"]
    if noise.empty:
        return None
    colors = _colors(frame, colors)
    panels = list(noise.groupby(noise["noise_type"].fillna("label noise"), sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0),
                             layout="constrained", squeeze=False)
    for ax, (noise_type, group) in zip(axes[0], panels):
        metrics = list(dict.fromkeys(group["metric"].fillna("")))
        for model in model_order(frame):
            for metric in metrics:
                rows = group[(group["model"] == model) & (group["metric"].fillna("") == metric)]
                rows = rows.groupby("noise_rate")[["accuracy", "ci_low", "ci_high"]].mean()
                if rows.empty:
                    continue
                x = 100 * rows.index.to_numpy(float)
                label = f"{model} ({metric})" if metric else model
                ax.plot(x, 100 * rows["accuracy"], marker="o", color=colors[model],
                        linestyle="--" if metric.startswith("best") else "-", label=label)
                _band(ax, x, 100 * rows["ci_low"], 100 * rows["ci_high"], colors[model])
        ax.set_xticks(sorted(100 * group["noise_rate"].dropna().unique()))
        _finish(ax, "label-noise rate (% of training labels)", "test accuracy (%)",
                f"{noise_type} label noise")
        ax.legend(fontsize="small")
    return fig


def plot_spectral_norms(frame: pd.DataFrame, colors: Optional[Dict] = None) -> Optional[Figure]:
    """Per-layer spectral norm (log scale); solid = conv operator, dashed = with its norm layer."""
    rows = spectral_rows(frame)
    if rows.empty:
        return None
    colors = _colors(frame, colors)
    layers = (rows.drop_duplicates("layer_index").sort_values("layer_index")
              .set_index("layer_index")["layer"])
    fig, ax = plt.subplots(figsize=(max(6.4, 0.32 * len(layers) + 2), 4.6), layout="constrained")
    metrics = list(dict.fromkeys(rows["metric"]))
    styles = ["-", "--", ":", "-."]
    for model in model_order(frame):
        for m_index, metric in enumerate(metrics):
            sel = rows[(rows["model"] == model) & (rows["metric"] == metric)].sort_values(
                "layer_index")
            if sel.empty:
                continue
            ax.plot(sel["layer_index"], sel["value"], marker="o", markersize=3,
                    color=colors[model], linestyle=styles[m_index % len(styles)],
                    label=f"{model}: {metric}")
    ax.set_yscale("log")
    # Norms often span less than a decade: label 1-1.5-2-3-5-7 steps, in plain numbers.
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(list(layers.index), list(layers), rotation=70, fontsize=7)
    _finish(ax, "layer", "spectral norm (largest singular value)",
            "Per-layer spectral norm (circular padding, exact FFT method)")
    ax.legend(fontsize="small")
    return fig


def plot_difference_heatmaps(comparison: pd.DataFrame) -> List[Tuple[str, Figure]]:
    """Per model: corruption x severity, accuracy minus the reference's in points, from
    reports.compare.compare_models' cell rows; a box and "*" mark a significant difference
    (Holm-adjusted). One symmetric colour scale for all models."""
    cells = comparison[(comparison["scope"] == "cell")
                       & (comparison["benchmark"] == "corruption")] if len(comparison) else \
        comparison
    figures: List[Tuple[str, Figure]] = []
    if cells.empty:
        return figures
    limit = max(float(cells["delta"].abs().max()), 1.0)
    order = list(dict.fromkeys(cells["corruption"]))
    for (model, reference), group in cells.groupby(["model", "reference"], sort=False):
        delta = group.pivot_table(index="corruption", columns="severity", values="delta",
                                  aggfunc="mean").reindex([c for c in order
                                                           if c in set(group["corruption"])])
        marked = group.pivot_table(index="corruption", columns="severity", values="significant",
                                   aggfunc="max").reindex(delta.index)[delta.columns]
        fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(delta) + 1.8), layout="constrained")
        image = ax.imshow(delta.to_numpy(float), aspect="auto", cmap="RdBu", vmin=-limit,
                          vmax=limit)
        ax.set_xticks(range(delta.shape[1]), [str(int(c)) for c in delta.columns])
        ax.set_yticks(range(delta.shape[0]), list(delta.index))
        for (i, j), value in np.ndenumerate(delta.to_numpy(float)):
            if not np.isfinite(value):
                continue
            significant = bool(marked.iloc[i, j]) if pd.notna(marked.iloc[i, j]) else False
            ax.text(j, i, f"{value:+.1f}{'*' if significant else ''}", ha="center",
                    va="center", fontsize=7, weight="bold" if significant else "normal",
                    color="white" if abs(value) > 0.6 * limit else "black")
            if significant:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5,
                                           edgecolor="black"))
        ax.set_xlabel("severity")
        ax.set_ylabel("corruption")
        ax.set_title(f"{model} minus {reference}: corruption accuracy (points);\n"
                     f"boxed * = significant (paired, Holm-adjusted)", fontsize=10)
        fig.colorbar(image, ax=ax, label=f"accuracy difference (points, + = {model} better)")
        figures.append((str(model), fig))
    return figures


def all_figures(frame: pd.DataFrame) -> List[Tuple[str, Figure]]:
    """(file stem, figure) for every plot the frame supports, with consistent model colours."""
    colors = model_colors(model_order(frame))
    figures: List[Tuple[str, Figure]] = []
    for stem, make in (("accuracy_vs_severity", plot_accuracy_vs_severity),
                       ("robust_accuracy_vs_eps", plot_robust_accuracy_vs_eps),
                       ("label_noise", plot_label_noise),
                       ("spectral_norm", plot_spectral_norms)):
        fig = make(frame, colors)
        if fig is not None:
            figures.append((stem, fig))
    for model, fig in plot_corruption_heatmaps(frame):
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model)
        figures.append((f"corruption_heatmap_{safe}", fig))
    return figures


def save_figure(fig: Figure, path, dpi: int = 150) -> Path:
    """Save as PNG, SVG or PDF by suffix, atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: plot format must be one of {FORMATS}, got {fmt!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    write_atomic(path, buffer.getvalue())
    return path


def save_all(frame: pd.DataFrame, out_dir, formats: Sequence[str] = ("png",)) -> List[Path]:
    paths = []
    for stem, fig in all_figures(frame):
        for fmt in formats:
            paths.append(save_figure(fig, Path(out_dir) / f"{stem}.{fmt}"))
        plt.close(fig)
    return paths
