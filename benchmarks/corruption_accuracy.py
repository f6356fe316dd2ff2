"""Effect of our implementation choices on a model's accuracy: ResNet-20 (He 2016, ../shared) on the
first 1,000 real CIFAR-10 test images.

imagecorruptions only has ImageNet parameters, so the like-for-like comparison runs both
implementations with ImageNet parameters on the 32 px images (the reference accepts >= 32 px):
columns `ours@imagenet` vs `ref@imagenet`. `ours@cifar10` is our CIFAR-10-C-parameter result
(no reference implementation with those parameters exists to compare with; nothing re-implemented).

    PYTHONPATH=. python benchmarks/corruption_accuracy.py [--n 1000] [--out table.md]
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
from corruptions.generate import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, apply_corruption  # noqa: E402

SHARED = Path(os.environ.get("ROBUST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))


@torch.inference_mode()
def accuracy(model, images_u8: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    for i in range(0, len(images_u8), 500):
        logits = model(images_u8[i:i + 500].float() / 255.0)
        correct += int((logits.argmax(1) == labels[i:i + 500]).sum())
    return 100.0 * correct / len(images_u8)


def reference(images_hwc: np.ndarray, name: str, severity: int) -> torch.Tensor:
    from imagecorruptions import corrupt

    np.random.seed(severity)
    out = [corrupt(im, corruption_name=name, severity=severity,
                   **({"seed": 1000 * severity + i} if name in ("impulse_noise", "glass_blur") else {}))
           for i, im in enumerate(images_hwc)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def main(argv=None) -> None:
    from robust_eval.checkpoints import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--names", default=",".join(ALL_CORRUPTIONS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ck = SHARED / "checkpoints" / "cifar10_resnet_he2016" / "resnet20-12fca82f.th"
    model = load_checkpoint(ck, arch="resnet20", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    model.eval()
    data = np.load(SHARED / "cifar10" / "test.npz")
    x_hwc, y = data["x"][: args.n], torch.from_numpy(data["y"][: args.n]).long()
    x = torch.from_numpy(x_hwc).permute(0, 3, 1, 2).contiguous()
    print(f"ResNet-20 (resnet20-12fca82f.th), first {args.n} CIFAR-10 test images, "
          f"clean accuracy {accuracy(model, x, y):.1f} %")
    print()
    print("| corruption | sev | ours@cifar10 | ours@imagenet | ref@imagenet | ours - ref (imagenet) |")
    print("|---|---|---|---|---|---|")
    for name in args.names.split(","):
        for s in range(1, 6):
            a_c = accuracy(model, apply_corruption(x, name, s, params="cifar10"), y)
            a_i = accuracy(model, apply_corruption(x, name, s, params="imagenet"), y)
            a_r = accuracy(model, reference(x_hwc, name, s), y)
            mark = "" if name in BENCHMARK_CORRUPTIONS else " (extra)"
            print(f"| {name}{mark} | {s} | {a_c:.1f} | {a_i:.1f} | {a_r:.1f} | {a_i - a_r:+.1f} |", flush=True)


if __name__ == "__main__":
    main()
