"""scikit-learn digits (1,797 8x8 images, bundled: no download) as 32x32 RGB, for offline demos.

Split: every 5th image (index % 5 == 0) is test (360 images), the rest train (1,437).
"""
from __future__ import annotations

import numpy as np
import torch

from robust_eval.data import DATASETS, LabeledImages


@DATASETS.register("digits")
def load_digits(root=None, split: str = "test", limit=None, size: int = 32) -> LabeledImages:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    index = np.arange(len(pixels))
    keep = index % 5 == 0 if split in ("test", "val") else index % 5 != 0
    pixels, labels = pixels[keep], bunch.target[keep]
    images = torch.from_numpy(pixels)[:, None].repeat(1, 3, 1, 1)  # gray -> RGB
    if size != 8:  # nearest: each pixel becomes a block, values stay exact
        images = torch.nn.functional.interpolate(images.float(), size=(size, size),
                                                 mode="nearest").to(torch.uint8)
    return LabeledImages(images.contiguous(), torch.from_numpy(labels.astype(np.int64)),
                         [str(d) for d in range(10)], "digits", "sklearn.datasets.load_digits")
