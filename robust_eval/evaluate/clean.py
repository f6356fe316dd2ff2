"""Clean top-1 accuracy: the `clean` benchmark type, and `count_correct`, which every accuracy
in the suite (clean and corrupted images) goes through."""
from __future__ import annotations

import time
from typing import Dict, List, Tuple, Union

import torch
from torch import nn

from robust_eval.evaluate import Benchmark, register_benchmark


@torch.inference_mode()
def count_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  batch_size: int = 256, device: Union[str, torch.device] = "cpu",
                  num_classes: int = None) -> Tuple[int, int]:
    """(correct, n) of top-1 predictions; uint8 images are scaled to [0,1] batch by batch."""
    from robust_eval.data import batches

    model.eval()
    correct = 0
    for x, y in batches(images, labels, batch_size, device=device):
        logits = model(x)
        if logits.dim() != 2 or logits.shape[0] != len(y):
            raise ValueError(f"model returned shape {tuple(logits.shape)} for a batch of {len(y)}")
        if num_classes is not None and logits.shape[1] != num_classes:
            raise ValueError(f"model predicts {logits.shape[1]} classes but the data has "
                             f"{num_classes}: wrong --num-classes or dataset?")
        correct += int((logits.argmax(1) == y).sum())
    return correct, int(len(labels))


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
        correct, n = count_correct(ctx.model(), data.images, data.labels, ctx.batch_size,
                                   ctx.device, num_classes=data.num_classes)
        return [{"correct": correct, "n": n}]
