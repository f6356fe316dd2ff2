"""Fidelity of corruptions.generate against imagecorruptions-imaug (ImageNet parameters, 224 px).

Real images: ../shared/data/imagenet_samples (Resize 256 + CenterCrop 224). Deterministic
corruptions are compared per pixel; random ones by the statistics of the perturbation
d = corrupted - clean (0..255 units): mean and std of d per image, averaged over images, and the
mean absolute perturbation. Prints a markdown table (paste into docs/corruptions.md).

    PYTHONPATH=. python benchmarks/corruption_fidelity.py [--limit 100] [--names a,b]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from corruptions.generate import ALL_CORRUPTIONS, apply_corruption  # noqa: E402

DETERMINISTIC = ("brightness", "contrast", "saturate", "pixelate", "jpeg_compression",
                 "defocus_blur", "gaussian_blur", "zoom_blur")
SHARED = Path(os.environ.get("ROBUST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_imagenet_samples(folder: Path, limit: int) -> np.ndarray:
    """uint8 (N, 224, 224, 3): Resize(256) + CenterCrop(224), bilinear, as ImageNet-C."""
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    files = sorted(p for p in folder.iterdir() if p.suffix.upper() == ".JPEG")[:limit]
    return np.stack([np.asarray(tf(Image.open(f).convert("RGB"))) for f in files])


def reference(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    from imagecorruptions import corrupt

    np.random.seed(seed)
    out = []
    for i, img in enumerate(images):
        kw = {"seed": seed * 100003 + i} if name in ("impulse_noise", "glass_blur") else {}
        out.append(corrupt(img, corruption_name=name, severity=severity, **kw))
    return np.stack(out)


def ours(images: np.ndarray, name: str, severity: int, params: str = "imagenet") -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return apply_corruption(x, name, severity, params=params).permute(0, 2, 3, 1).numpy()


def perturbation_stats(clean: np.ndarray, out: np.ndarray) -> dict[str, float]:
    d = out.astype(np.float64) - clean.astype(np.float64)
    flat = d.reshape(len(d), -1)
    return {"mean": float(flat.mean(1).mean()), "std": float(flat.std(1).mean()),
            "mad": float(np.abs(flat).mean())}


def pixel_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {"max": int(d.max()), "mean": float(d.mean()), "frac>1": float((d > 1).mean()),
            "frac>0": float((d > 0).mean())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--names", default=",".join(ALL_CORRUPTIONS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    images = load_imagenet_samples(SHARED / "imagenet_samples", args.limit)
    print(f"{len(images)} ImageNet sample images, 224 px, ImageNet parameters, torch {torch.__version__}")
    print()
    print("| corruption | sev | kind | ours: mean d | ref: mean d | ours: std d | ref: std d |"
          " ours: mean abs d | ref: mean abs d | per pixel: max abs diff / % values differing |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.names.split(","):
        for s in range(1, 6):
            ref = reference(images, name, s)
            mine = ours(images, name, s)
            a, b = perturbation_stats(images, mine), perturbation_stats(images, ref)
            kind = "det" if name in DETERMINISTIC else "rand"
            pix = ""
            if kind == "det":
                p = pixel_stats(mine, ref)
                pix = f"{p['max']} / {100 * p['frac>0']:.3f} %"
            print(f"| {name} | {s} | {kind} | {a['mean']:.2f} | {b['mean']:.2f} | {a['std']:.2f} | "
                  f"{b['std']:.2f} | {a['mad']:.2f} | {b['mad']:.2f} | {pix} |", flush=True)


if __name__ == "__main__":
    main()
