"""Clean datasets as uint8 tensors: CIFAR-10/100, ImageNet val folders, scikit-learn digits.

Everything returns `LabeledImages` (uint8 N,3,H,W + int64 labels); models take [0,1] floats,
made batch by batch by `batches`, so a 10,000-image set costs 30 MB, not 120 MB.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import torch

from robust_eval.registry import Registry

DATASETS = Registry("dataset")


class DataError(ValueError):
    """Unreadable or missing data; the message names the file or folder."""


@dataclass
class LabeledImages:
    images: torch.Tensor  # uint8, N,3,H,W
    labels: torch.Tensor  # int64, N
    classes: List[str]
    name: str
    source: str = ""  # file or folder read, for provenance
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every loader ends here, so bad data is refused once, naming where it came from."""
        where = self.source or self.name
        if self.images.dim() != 4 or self.images.shape[1] != 3:
            raise DataError(f"{where}: images must be N,3,H,W, got {tuple(self.images.shape)}")
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise DataError(f"{where}: {len(self.images)} images but labels of shape "
                            f"{tuple(self.labels.shape)}")
        if len(self.labels) == 0:
            raise DataError(f"{where}: no examples (0 images)")
        low, high = int(self.labels.min()), int(self.labels.max())
        if low < 0 or high >= len(self.classes):
            raise DataError(f"{where}: labels must lie in 0..{len(self.classes) - 1} "
                            f"({len(self.classes)} classes), got min {low}, max {high}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, limit: Optional[int]) -> "LabeledImages":
        """The first `limit` images (original order), for quick runs."""
        if limit is None:
            return self
        check_limit(limit)
        limit = int(limit)
        return LabeledImages(self.images[:limit], self.labels[:limit], self.classes, self.name,
                             self.source, dict(self.extra))


def check_limit(limit: Optional[int]) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)
                              or limit <= 0):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")


def load_split(dataset: str, root: Union[str, Path, None] = None, split: str = "test",
               limit: Optional[int] = None, **kwargs) -> LabeledImages:
    """Load `split` of `dataset` from `root` (cifar10, cifar100, imagenet, digits)."""
    check_limit(limit)
    if split not in ("train", "test", "val"):
        raise ValueError(f"split must be 'train', 'test' or 'val', got {split!r}")
    loader = DATASETS.get(dataset)
    data = loader(root=root, split=split, limit=limit, **kwargs)
    return data.subset(limit) if limit is not None and len(data) > limit else data


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
            device: Union[str, torch.device, None] = None
            ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float [0,1] images, labels) batches; uint8 input is scaled by 1/255."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        y = labels[start:start + batch_size]
        if device is not None:
            x, y = x.to(device), y.to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        yield x, y


from robust_eval.data import cifar as _cifar  # noqa: E402,F401  (registers cifar10/cifar100)
from robust_eval.data import digits as _digits  # noqa: E402,F401
from robust_eval.data import imagenet as _imagenet  # noqa: E402,F401
from robust_eval.data.cifar import download_cifar  # noqa: E402

__all__ = ["DATASETS", "DataError", "LabeledImages", "batches", "download_cifar", "load_split"]
