"""Clean top-1 accuracy: the `clean` benchmark type, and `count_correct`, which every accuracy
in the suite (clean and corrupted images) goes through."""
from __future__ import annotations

import time
from typing import Dict, List, Tuple, Union

import torch
from torch import nn

from robust_eval.evaluate import Benchmark, register_benchmark


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
            device: Union[str, torch.device] = "cpu", num_classes: int = None,
            progress=None) -> torch.Tensor:
    """Top-1 predictions (int64, on the CPU) of every image; uint8 images are scaled to [0,1]
    batch by batch. Every accuracy of clean and corrupted images is a sum over these."""
    from robust_eval.data import batches

    model.eval()
    predictions = []
    dummy = torch.zeros(len(images), dtype=torch.int64)
    for x, _ in batches(images, dummy, batch_size, device=device):
        logits = model(x)
        if logits.dim() != 2 or logits.shape[0] != len(x):
            raise ValueError(f"model returned shape {tuple(logits.shape)} for a batch of {len(x)}")
        if num_classes is not None and logits.shape[1] != num_classes:
            raise ValueError(f"model predicts {logits.shape[1]} classes but the data has "
                             f"{num_classes}: wrong --num-classes or dataset?")
        predictions.append(logits.argmax(1).cpu())
        if progress is not None:
            progress(len(x))
    return torch.cat(predictions) if predictions else dummy


def count_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  batch_size: int = 256, device: Union[str, torch.device] = "cpu",
                  num_classes: int = None) -> Tuple[int, int]:
    """(correct, n) of top-1 predictions."""
    predictions = predict(model, images, batch_size, device, num_classes)
    return int((predictions == labels.cpu()).sum()), int(len(labels))


def outcome_measurement(predictions: torch.Tensor, labels: torch.Tensor, **extra) -> Dict:
    """A measurement with its per-example outcomes (dataset index, label, prediction)."""
    labels = labels.cpu()
    return {"correct": int((predictions == labels).sum()), "n": int(len(labels)),
            "outcomes": {"label": labels, "pred": predictions}, **extra}


def run_clean(model: nn.Module, data, base: Dict, batch_size: int = 256,
              device: Union[str, torch.device] = "cpu") -> List[Dict]:
    from robust_eval.schema import make_row

    start = time.perf_counter()
    correct, n = count_correct(model, data.images, data.labels, batch_size, device,
                               num_classes=data.num_classes)
    fields = dict(base)
    fields.update(benchmark="clean", seconds=time.perf_counter() - start)
    return [make_row(correct=correct, n=n, **fields)]


@register_benchmark
class Clean(Benchmark):
    name = "clean"
    help = "top-1 accuracy on the clean images"

    def run(self, cell, ctx) -> List[Dict]:
        data = ctx.data()
        with ctx.bar(len(data), "clean images") as bar:
            predictions = predict(ctx.model(), data.images, ctx.batch_size, ctx.device,
                                  num_classes=data.num_classes, progress=bar.update)
        measurement = outcome_measurement(predictions, data.labels)
        note = chance_warning(measurement["correct"], measurement["n"], data.num_classes)
        if note:
            measurement["warnings"] = note
        return [measurement]


def chance_warning(correct: int, n: int, num_classes: int) -> str:
    """A clean accuracy no better than guessing usually means wrong weights or preprocessing."""
    from reports.stats import wilson_interval

    if not n or not num_classes:
        return ""
    chance = 1 / num_classes
    low, _ = wilson_interval(correct, n)
    if low > chance:
        return ""
    return (f"clean accuracy {correct}/{n} is not above chance ({chance:.0%} for "
            f"{num_classes} classes): wrong weights or preprocessing (mean/std)?")
