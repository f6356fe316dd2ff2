"""The picture pages: what the model saw. Reads examples.npz, which the job writes (a few test
images under each corruption at severities 1, 3, 5 and under the job's attacks, with the first
model's predictions)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from reports.stats import eps_label  # noqa: E402


def load_examples(folder) -> Optional[dict]:
    path = Path(folder) / "examples.npz"
    if not path.is_file():
        return None
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def _show(ax, image: np.ndarray, title: str, right: Optional[bool] = None) -> None:
    picture = image.transpose(1, 2, 0)
    ax.imshow(picture if picture.dtype == np.uint8 else np.clip(picture, 0, 1),
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    color = "black" if right is None else ("tab:green" if right else "tab:red")
    ax.set_title(title, fontsize=6, color=color, pad=2)


def _label(examples: dict, index: int) -> str:
    classes = examples.get("classes")
    return str(classes[index]) if classes is not None and index < len(classes) else str(index)


def corruption_figure(examples: dict, page_size, image: int = 0):
    """Columns: the corruptions; rows: severities 1, 3, 5; titles: the prediction (green when
    right, red when wrong)."""
    names, severities = examples["corruptions"], examples["severities"]
    label = int(examples["labels"][image])
    fig, axes = plt.subplots(len(severities) + 1, len(names), figsize=page_size, squeeze=False)
    fig.suptitle(f"What {examples['model']} saw: test image {image} ({_label(examples, label)}) "
                 f"under each corruption ({examples['param_set']} parameters); title = its "
                 f"prediction, green right, red wrong", fontsize=9)
    for col, name in enumerate(names):
        top = axes[0, col]
        if col == 0:
            clean = int(examples["clean_pred"][image])
            _show(top, examples["images"][image], f"clean: {_label(examples, clean)}",
                  clean == label)
        else:
            top.axis("off")
        for row, severity in enumerate(severities, start=1):
            pred = int(examples["corrupted_pred"][col, row - 1, image])
            _show(axes[row, col], examples["corrupted"][col, row - 1, image],
                  _label(examples, pred), pred == label)
        axes[1, col].set_xlabel("")
        axes[len(severities), col].text(0.5, -0.25, name.replace("_", " "), fontsize=6,
                                        ha="center", va="top",
                                        transform=axes[len(severities), col].transAxes)
    for row, severity in enumerate(severities, start=1):
        axes[row, 0].set_ylabel(f"severity {int(severity)}", fontsize=7)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.88, bottom=0.08, wspace=0.15, hspace=0.45)
    return fig


def attack_figure(examples: dict, page_size):
    """Per image: clean, then per attack the adversarial image and its perturbation magnified to
    the full range, titled with the predictions."""
    names, eps_values = examples["attacks"], examples["attack_eps"]
    images = examples["images"].astype(np.float32) / 255
    count = len(images)
    fig, axes = plt.subplots(count, 1 + 2 * len(names), figsize=page_size, squeeze=False)
    fig.suptitle(f"Adversarial examples for {examples['model']}: each attack at its largest eps, "
                 f"perturbation magnified to the full range; title = prediction, green right, "
                 f"red wrong", fontsize=9)
    for i in range(count):
        label = int(examples["labels"][i])
        clean = int(examples["clean_pred"][i])
        _show(axes[i, 0], images[i], f"clean: {_label(examples, clean)}", clean == label)
        for j, (name, eps) in enumerate(zip(names, eps_values)):
            adversarial = examples["adversarial"][j, i]
            pred = int(examples["adversarial_pred"][j, i])
            _show(axes[i, 1 + 2 * j], adversarial,
                  f"{name} {eps_label(float(eps))}: {_label(examples, pred)}", pred == label)
            delta = adversarial - images[i]
            scale = float(np.abs(delta).max()) or 1.0
            _show(axes[i, 2 + 2 * j], 0.5 + delta / (2 * scale),
                  f"perturbation x{0.5 / scale:.0f}")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.03, wspace=0.1, hspace=0.35)
    return fig


def picture_figures(folder, page_size) -> List:
    """(title, figure) for each picture page the folder's examples.npz allows."""
    examples = load_examples(folder)
    if examples is None:
        return []
    figures = []
    if "corrupted" in examples:
        figures.append(("Pictures: corruptions", corruption_figure(examples, page_size)))
    if "adversarial" in examples:
        figures.append(("Pictures: adversarial examples", attack_figure(examples, page_size)))
    return figures
