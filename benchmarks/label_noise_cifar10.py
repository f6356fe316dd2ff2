"""Label-noise experiment: accuracy vs symmetric noise rate, BN vs ConvNorm, on real CIFAR-10.

The paper's setting (GPU; the official recipe, 120 epochs):
    python benchmarks/label_noise_cifar10.py --device cuda --arch resnet18 \
        --norms bn,convnorm --rates 0,0.4,0.8 --seeds 0 --amp bf16 --channels-last

The small CPU run quoted in docs/results.md:
    python benchmarks/label_noise_cifar10.py --device cpu --threads 1 --arch tiny_cnn \
        --train-limit 5000 --epochs 10 --rates 0,0.4,0.8

Every (arch, norm, rate, seed) cell trains into --cache-dir (reused by its full training spec, and
resumed if killed), then reports clean test accuracy at the best-validation and last epochs.
Writes the long-schema rows to --out (CSV) and prints the accuracy-vs-rate tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--norms", default="bn,convnorm")
    p.add_argument("--noise-type", default="symmetric")
    p.add_argument("--rates", default="0,0.4,0.8")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, help="default: the official 120 (milestones scale)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-limit", type=int, help="first N training images (CPU runs)")
    p.add_argument("--test-limit", type=int)
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int)
    p.add_argument("--cache-dir", default=str(REPO / "local" / "label_noise"))  # gitignored
    p.add_argument("--out", default=str(REPO / "local" / "label_noise_cifar10.csv"))
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available on this machine")
    from robust_eval.data import load_split
    from robust_eval.evaluate.label_noise import label_noise_rows, label_noise_table
    from robust_eval.schema import device_name, to_frame

    train = load_split("cifar10", args.data_root, split="train", limit=args.train_limit)
    test = load_split("cifar10", args.data_root, split="test", limit=args.test_limit)
    recipe = {"batch_size": args.batch_size, "amp": args.amp,
              "channels_last": args.channels_last}
    if args.epochs:
        recipe["epochs"] = args.epochs
    rows, timings = [], []
    for norm in args.norms.split(","):
        for rate in (float(r) for r in args.rates.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                wall, cpu = time.perf_counter(), time.process_time()
                print(f"== {args.arch} {norm} {args.noise_type} {rate:g} seed {seed}", flush=True)
                cell = label_noise_rows(
                    arch=args.arch, norm=norm, noise_type=args.noise_type, noise_rate=rate,
                    seed=seed, dataset="cifar10", cache_dir=args.cache_dir, recipe=recipe,
                    train_data=train, test_data=test, device=args.device,
                    progress=lambda r: print(
                        f"  epoch {r['epoch']}/{r['epochs']} loss {r['train_loss']:.3f} "
                        f"train_acc {r['train_acc']:.3f} val_acc {r.get('val_acc', 0):.3f} "
                        f"({r['seconds']:.1f} s)", flush=True))
                rows += cell
                timings.append({"norm": norm, "rate": rate, "seed": seed,
                                "wall_s": round(time.perf_counter() - wall, 1),
                                "cpu_s": round(time.process_time() - cpu, 1)})
                print(f"   test acc best-val {cell[0]['accuracy']:.4f} "
                      f"last {cell[1]['accuracy']:.4f}  {timings[-1]}", flush=True)
    frame = to_frame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    os.close(fd)
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out)
    for metric in ("best_val_epoch", "last_epoch"):
        print(f"\nclean test accuracy (%) at {metric}, n={len(test)}")
        print(label_noise_table(frame, metric).round(2).to_string())
    print(json.dumps({"device": device_name(args.device), "machine": platform.processor(),
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "train_images": len(train), "test_images": len(test),
                      "timings": timings}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
