"""Pack what the one-call GPU check (benchmarks/gpu_checks.sh) needs into local/gpu (gitignored).

The device machine gets the working tree (64 MiB at most) but not ../shared, and lacks
torchattacks: this writes a CIFAR-10 slice (first --train train and --test test images, the
shared files' format), copies the ResNet-20/56 checkpoints (suite_speed.py,
precision_agreement.py) and downloads the torchattacks wheel, so that one `carry: ["local/gpu"]`
call can run every GPU measurement of docs/performance.md and docs/results.md.

    python benchmarks/gpu_pack.py [--train 10000] [--test 5000]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "cifar10"
CHECKPOINTS = [Path("checkpoints/cifar10_resnet_he2016") / name
               for name in ("resnet20-12fca82f.th", "resnet56-4bfd9763.th")]
PACK = REPO / "local" / "gpu"
LIMIT_MIB = 64


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=10_000)
    ap.add_argument("--test", type=int, default=5_000)
    ap.add_argument("--no-wheels", action="store_true")
    args = ap.parse_args(argv)
    out = PACK / "cifar10"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", args.train), ("test", args.test)):
        with np.load(SHARED / f"{split}.npz") as data:
            x, y = data["x"][:n], data["y"][:n]
        tmp = out / f"{split}.partial.npz"
        np.savez(tmp, x=x, y=y)
        tmp.replace(out / f"{split}.npz")
    for checkpoint in CHECKPOINTS:
        (PACK / checkpoint).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED.parent / checkpoint, PACK / checkpoint)
    if not args.no_wheels:
        wheels = PACK / "wheels"
        wheels.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", str(wheels), "torchattacks==3.5.1"], check=True)
    size = sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file()) / 2 ** 20
    print(f"{PACK}: {size:.1f} MiB (the working tree travels too; {LIMIT_MIB} MiB in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
