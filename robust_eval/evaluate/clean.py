"""Clean top-1 accuracy: the `clean` benchmark of `robust-eval evaluate`.

Plain entry point for the job runner: `run_clean(model, data, base, batch_size=, device=)`.
"""
from __future__ import annotations

import time
from typing import Dict, List, Tuple, Union

import torch
from torch import nn

BENCHMARK_NAMES = ("clean",)


def add_arguments(parser) -> None:
    """clean needs no flags of its own (--batch-size, --limit are the command's)."""


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


def run_from_args(model: nn.Module, data, args, base: Dict, device) -> List[Dict]:
    return run_clean(model, data, base, batch_size=args.batch_size, device=device)
