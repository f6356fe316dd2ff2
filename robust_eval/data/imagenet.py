"""ImageNet validation images: Resize 256 + CenterCrop 224, returned as uint8.

Layouts: `root/<wnid>/*.JPEG` (class index = position of the wnid in the sorted list of all
1,000 wnids: needs all 1,000 folders, or a `wnids.txt`/`LOC_synset_mapping.txt` listing them),
or flat files with `root/labels.csv` (columns file, wnid, class_index[, class_name]).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from robust_eval.data import DATASETS, DataError, LabeledImages

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def _class_names() -> List[str]:
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _preprocess(path: Path, resize: int, crop: int) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms import functional as TF

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img = TF.center_crop(TF.resize(img, resize), crop)
            array = np.asarray(img, dtype=np.uint8)
    except Exception as error:
        raise DataError(f"cannot read image {path}: {error}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _wnid_order(root: Path, folders: List[str]) -> List[str]:
    for name in ("wnids.txt", "LOC_synset_mapping.txt"):
        for path in (root / name, root.parent / name):
            if path.is_file():
                return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if len(folders) == 1000:
        return folders
    raise DataError(f"{root} has {len(folders)} wnid folders, not 1000: the class indices are "
                    f"ambiguous; add wnids.txt (all 1000 wnids, in index order) to {root}")


def _listing(root: Path) -> List[Tuple[Path, int]]:
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        with open(labels_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"file", "class_index"} <= set(rows[0]):
            raise DataError(f"{labels_csv} needs columns 'file' and 'class_index'")
        items = []
        for row in rows:
            path = root / row["file"]
            if not path.is_file():
                raise DataError(f"{labels_csv} names {row['file']}, which is missing")
            try:
                items.append((path, int(row["class_index"])))
            except (TypeError, ValueError):
                raise DataError(f"{labels_csv}: class_index {row['class_index']!r} of "
                                f"{row['file']} is not an integer") from None
        return items
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{root} has neither labels.csv nor wnid subfolders")
    order = {wnid: i for i, wnid in enumerate(_wnid_order(root, folders))}
    items = []
    for wnid in folders:
        if wnid not in order:
            raise DataError(f"{root / wnid}: {wnid!r} is not an ImageNet wnid in the index list")
        files = sorted(p for p in (root / wnid).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(p, order[wnid]) for p in files]
    return items


@DATASETS.register("imagenet")
def load_imagenet(root=None, split: str = "val", limit: Optional[int] = None,
                  resize: int = 256, crop: int = 224) -> LabeledImages:
    if root is None:
        raise DataError("imagenet needs a data root (--data-root): the val folder")
    root = Path(root)
    if split == "train":
        raise DataError("imagenet: only the val split is supported for evaluation")
    if (root / "val").is_dir() and not (root / "labels.csv").is_file():
        root = root / "val"
    if not root.is_dir():
        raise DataError(f"imagenet data root {root} does not exist")
    items = _listing(root)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise DataError(f"no images found under {root}")
    images = torch.stack([_preprocess(p, resize, crop) for p, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return LabeledImages(images, labels, _class_names(), "imagenet", str(root),
                         {"files": [p.name for p, _ in items]})
