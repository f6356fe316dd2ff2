"""The `corruption` benchmark of `robust-eval evaluate`: accuracy per (corruption, severity).

Two sources:
- ``generate`` (default): the clean images are corrupted on the fly by corruptions.generate with
  the chosen parameter set (cifar10 = CIFAR-10-C severities, imagenet = ImageNet-C severities) and
  seed; deterministic per (seed, image index, corruption, severity), whatever the batch size.
- a folder in the published layout (CIFAR-10-C / CIFAR-100-C .npy files, or ImageNet-C JPEG
  folders): the first N images of each severity block, N = the clean set's size (--limit). For
  CIFAR-C the published labels must equal the clean test labels (same order), else it refuses.
  For ImageNet-C, RobustBench's fixed 5,000-image list is used, in its order (first N).

Plain entry point for the job runner: `corruption_rows(model, data, ...)`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

BENCHMARK_NAMES = ("corruption",)
DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)
Device = Union[str, torch.device]


def default_params(dataset: str) -> str:
    """ImageNet-C severities for ImageNet data, CIFAR-10-C severities for 32-px sets."""
    return "imagenet" if str(dataset).lower().startswith("imagenet") else "cifar10"


def parse_corruptions(text: Optional[str]) -> List[str]:
    """'all' -> the 19; None / 'benchmark' -> the 15; else a comma list of known names."""
    from corruptions.metrics import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, check_corruption_name

    if text is None or text.strip() in ("", "benchmark"):
        return list(BENCHMARK_CORRUPTIONS)
    if text.strip() == "all":
        return list(ALL_CORRUPTIONS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        check_corruption_name(name)
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions listed twice in {text!r}")
    return names


def parse_severities(text: Optional[str]) -> List[int]:
    """'1-5', '1,3,5', '2' -> sorted unique severities in 1..5."""
    from corruptions.metrics import check_severity

    if text is None or not text.strip():
        return list(DEFAULT_SEVERITIES)
    values = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if low > high:
                    raise ValueError
                values.update(range(low, high + 1))
            else:
                values.add(int(part))
        except ValueError:
            raise ValueError(f"severities {text!r}: expected e.g. 1-5 or 1,3,5") from None
    return sorted(check_severity(v) for v in values)


def add_arguments(parser) -> None:
    g = parser.add_argument_group("corruption benchmark (--benchmark corruption)")
    g.add_argument("--corruptions", default=None,
                   help="comma-separated names, 'benchmark' (the 15, default) or 'all' (19)")
    g.add_argument("--severities", default="1-5", help="e.g. 1-5 (default) or 1,3,5")
    g.add_argument("--corruption-params", choices=["cifar10", "imagenet"], default=None,
                   help="severity parameter set for generated corruptions (default: imagenet "
                        "for ImageNet data, else cifar10); never mix the two")
    g.add_argument("--corruption-source", default="generate",
                   help="'generate' (default) or a folder with published CIFAR-10-C / "
                        "CIFAR-100-C .npy files or ImageNet-C JPEG folders")
    g.add_argument("--corruption-seed", type=int, default=0,
                   help="seed of generated corruptions (default 0)")


# ----------------------------------------------------------------------------- sources
def _generated(data, name: str, severity: int, params: str, seed: int, batch_size: int,
               device: Device) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    from corruptions.generate import apply_corruption

    for start in range(0, len(data.labels), batch_size):
        clean = data.images[start:start + batch_size].to(device)
        indices = torch.arange(start, start + len(clean))
        yield (apply_corruption(clean, name, severity, params=params, seed=seed,
                                indices=indices),
               data.labels[start:start + batch_size])


class _Published:
    """Published files under `folder` for the evaluated dataset."""

    def __init__(self, folder: Path, data, dataset: str):
        from corruptions.datasets import CifarC, find_imagenet_c_dir

        self.n = len(data.labels)
        self.imagenet = dataset.lower().startswith("imagenet")
        if self.imagenet:
            self.root = find_imagenet_c_dir(folder)
            if self.n > 5000:
                raise ValueError(f"ImageNet-C is evaluated on RobustBench's 5,000-image list; "
                                 f"the clean set has {self.n} images (use --limit 5000)")
            self.label = "published:" + self.root.name
            return
        cifar_dataset = dataset if dataset in ("cifar10", "cifar100") else None
        if cifar_dataset is None:
            raise ValueError(f"no published corruption layout for dataset {dataset!r}")
        self.cifar = CifarC(folder, cifar_dataset)
        self.root = self.cifar.root
        self.label = "published:" + self.root.name
        if self.n > self.cifar.n_per_severity:
            raise ValueError(f"{self.root} holds {self.cifar.n_per_severity} images per "
                             f"severity; the clean set has {self.n} (use --limit)")
        published = self.cifar.labels[: self.n]
        clean = data.labels.cpu().long()
        if not torch.equal(published, clean):
            first = int((published != clean).nonzero()[0])
            raise ValueError(f"{self.root}/labels.npy differs from the clean {dataset} test "
                             f"labels at image {first} ({int(published[first])} vs "
                             f"{int(clean[first])}): not the same set or order (use the test "
                             f"split in its original order)")

    def batches(self, name: str, severity: int, batch_size: int
                ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        if not self.imagenet:
            for start in range(0, self.n, batch_size):
                count = min(batch_size, self.n - start)
                yield (self.cifar.images(name, severity, count, start),
                       self.cifar.labels[start:start + count])
            return
        from corruptions.datasets import list_imagenet_c, read_image

        pairs = list_imagenet_c(self.root, name, severity, subset="robustbench", limit=self.n)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            arrays = [read_image(p) for p, _ in chunk]
            if len({a.shape for a in arrays}) != 1:
                raise ValueError(f"images of differing sizes under {self.root}/{name}/{severity}")
            images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            yield images.contiguous(), torch.tensor([y for _, y in chunk], dtype=torch.int64)


# ----------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def _count(model: nn.Module, batches, device: Device, num_classes: Optional[int]
           ) -> Tuple[int, int]:
    correct = total = 0
    for images, labels in batches:
        if images.dtype != torch.uint8:
            raise ValueError(f"corrupted images came back as {images.dtype}, expected uint8")
        x = images.to(device, non_blocking=True).float().div_(255)
        logits = model(x)
        if logits.dim() != 2 or logits.shape[0] != len(labels):
            raise ValueError(f"model returned shape {tuple(logits.shape)} for a batch of "
                             f"{len(labels)}")
        if num_classes is not None and logits.shape[1] != num_classes:
            raise ValueError(f"model predicts {logits.shape[1]} classes but the data has "
                             f"{num_classes}: wrong --num-classes or dataset?")
        correct += int((logits.argmax(1).cpu() == labels.cpu()).sum())
        total += len(labels)
    return correct, total


def corruption_rows(model: nn.Module, data, *, corruptions: Optional[Sequence[str]] = None,
                    severities: Sequence[int] = DEFAULT_SEVERITIES, params: Optional[str] = None,
                    source: Union[str, Path] = "generate", seed: int = 0, batch_size: int = 256,
                    base: Optional[Dict] = None, device: Device = "cpu",
                    progress: bool = False) -> List[Dict]:
    """One schema row per (corruption, severity), benchmark="corruption".

    `data` is a LabeledImages (uint8 N,3,H,W + labels). `params` defaults by dataset;
    `source` is "generate" or a folder in a published layout. Rows carry params ("cifar10",
    "imagenet" or "published:<folder name>") and seed (None for published files).
    """
    from tqdm.auto import tqdm

    from corruptions.metrics import check_severity
    from robust_eval.schema import make_row

    base = dict(base or {})
    dataset = str(base.get("dataset") or getattr(data, "name", ""))
    names = list(corruptions) if corruptions is not None else parse_corruptions(None)
    names = parse_corruptions(",".join(names))
    severities = sorted({check_severity(s) for s in severities})
    if not severities:
        raise ValueError("no severities requested")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(data.labels) == 0:
        raise ValueError("the clean set is empty")
    model.eval()
    num_classes = getattr(data, "num_classes", None)
    generate = isinstance(source, str) and source == "generate"
    if generate:
        params = params or default_params(dataset)
        if params not in ("cifar10", "imagenet"):
            raise ValueError(f"corruption params {params!r}: expected 'cifar10' or 'imagenet'")
        published = None
        label, row_seed = params, seed
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"--corruption-source {folder}: not 'generate' and not a "
                                    f"folder")
        if params is not None:
            raise ValueError("corruption params apply to generated corruptions only; the "
                             f"published files in {folder} have their own")
        published = _Published(folder, data, dataset)
        label, row_seed = published.label, None
    rows = []
    bar = tqdm(total=len(names) * len(severities), desc="corruption cells", unit="cell",
               disable=None if progress else True)  # None: only on a terminal
    for name in names:
        for severity in severities:
            start = time.perf_counter()
            if generate:
                stream = _generated(data, name, severity, params, seed, batch_size, device)
            else:
                stream = published.batches(name, severity, batch_size)
            correct, n = _count(model, stream, device, num_classes)
            fields = dict(base)
            fields.update(benchmark="corruption", corruption=name, severity=severity,
                          seed=row_seed, params=label, seconds=time.perf_counter() - start)
            rows.append(make_row(correct=correct, n=n, **fields))
            bar.update(1)
    bar.close()
    return rows


def run_from_args(model: nn.Module, data, args: argparse.Namespace, base: Dict,
                  device) -> List[Dict]:
    source = getattr(args, "corruption_source", "generate") or "generate"
    return corruption_rows(
        model, data,
        corruptions=parse_corruptions(getattr(args, "corruptions", None)),
        severities=parse_severities(getattr(args, "severities", None)),
        params=getattr(args, "corruption_params", None),
        source=source, seed=getattr(args, "corruption_seed", 0),
        batch_size=getattr(args, "batch_size", 256), base=base, device=device,
        progress=True)
