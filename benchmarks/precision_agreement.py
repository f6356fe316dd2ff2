"""Do channels_last and bf16 change the numbers? Agreement with the fp32 contiguous path.

    python benchmarks/precision_agreement.py                      # both parts, ResNet-20 and -56
    python benchmarks/precision_agreement.py --models resnet20 --severities 3   # a slow CPU
    python benchmarks/precision_agreement.py --device cuda

1. layout (fp32): top-1 predictions of the real ResNet-20/56 on all 10,000 CIFAR-10 test images
   from the contiguous module and from the job's loader (channels_last where it pays): share of
   identical predictions and the largest logit difference.
2. precision: the same job config run in fp32 and in bf16 (`robust-eval run --precision`), first
   --images test images: clean, each corruption at --severities, PGD-10 at eps 1/255 and 2/255
   (native engine: bf16 gradient steps, fp32 predictions). Per cell the share of identical
   per-example predictions and the accuracy delta, read from the two runs' outcomes.parquet.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUST_EVAL_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHECKPOINTS = {"resnet20": "checkpoints/cifar10_resnet_he2016/resnet20-12fca82f.th",
               "resnet56": "checkpoints/cifar10_resnet_he2016/resnet56-4bfd9763.th"}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def model_spec(name: str) -> dict:
    return {"name": name, "checkpoint": str(SHARED / CHECKPOINTS[name]), "arch": name,
            "norm": "bn", "num_classes": 10, "mean": MEAN, "std": STD}


def layout_agreement(names, device: str, batch: int) -> list:
    import torch

    from robust_eval.checkpoints import load_checkpoint
    from robust_eval.data import load_split
    from robust_eval.jobs.cells import load_model

    data = load_split("cifar10", str(SHARED / "cifar10"), split="test")
    rows = []
    for name in names:
        spec = model_spec(name)
        plain = load_checkpoint(spec["checkpoint"], arch=name, norm="bn", num_classes=10,
                                mean=MEAN, std=STD, device=device).eval()
        job = load_model(spec, device)
        layout = "channels_last" if next(job.parameters()).is_contiguous(
            memory_format=torch.channels_last) else "contiguous"
        same, largest = 0, 0.0
        with torch.inference_mode():
            for start in range(0, len(data.labels), batch):
                x = data.images[start:start + batch].to(device).float().div(255)
                a, b = plain(x), job(x)  # the job feeds contiguous batches, as here
                same += int((a.argmax(1) == b.argmax(1)).sum())
                largest = max(largest, float((a - b).abs().max()))
        rows.append({"model": name, "job layout": layout, "images": len(data.labels),
                     "identical predictions": same, "max |logit diff|": largest})
        print(f"layout {name}: {layout}, {same}/{len(data.labels)} identical, "
              f"max |logit diff| {largest:.2e}", flush=True)
    return rows


BENCHMARKS = ("clean", "corruption", "pgd")


def job_config(names, images: int, severities, batch: int, device: str,
               benchmarks=BENCHMARKS) -> dict:
    every = {"clean": {"type": "clean"},
             "corruption": {"type": "corruption", "source": "generated", "params": "cifar10",
                            "corruptions": "benchmark", "severities": list(severities)},
             "pgd": {"type": "attack", "attack": "pgd", "eps": [1 / 255, 2 / 255], "steps": 10,
                     "restarts": 1}}
    return {"name": "precision-agreement", "seed": 0, "device": device, "batch_size": batch,
            "models": [model_spec(n) for n in names],
            "datasets": [{"name": "cifar10", "kind": "cifar10",
                          "root": str(SHARED / "cifar10"), "split": "test", "limit": images}],
            "benchmarks": [every[name] for name in benchmarks]}


def precision_agreement(names, images: int, severities, batch: int, device: str,
                        out: Path, benchmarks=BENCHMARKS) -> list:
    import pandas as pd

    from robust_eval.jobs import run_job

    config = out / "agreement.yaml"
    config.write_text(json.dumps(job_config(names, images, severities, batch, device,
                                            benchmarks)))
    tables = {}
    for precision in ("fp32", "bf16"):
        began = time.perf_counter()
        summary = run_job(config, out / precision, precision=precision, progress=False,
                          echo=lambda line: None)
        if summary.exit_code:
            raise SystemExit(f"the {precision} run failed: {summary.failed[0].label()}")
        frame = pd.read_csv(out / precision / "results.csv")
        outcomes = pd.read_parquet(out / precision / "outcomes.parquet")
        tables[precision] = (frame, outcomes)
        print(f"{precision} run: {time.perf_counter() - began:.0f} s", flush=True)
    keys = ["model", "benchmark", "corruption", "severity", "attack", "eps"]
    rows = []
    fp32, bf16 = (t[0].assign(**{k: t[0][k].astype(str) for k in keys}) for t in
                  (tables["fp32"], tables["bf16"]))
    merged = fp32.merge(bf16, on=keys, suffixes=("_fp32", "_bf16"))
    for _, row in merged.iterrows():
        a = tables["fp32"][1].query("cell_key == @row.cell_key_fp32").set_index("index")
        b = tables["bf16"][1].query("cell_key == @row.cell_key_bf16").set_index("index")
        same = int((a["pred"] == b["pred"].reindex(a.index)).sum())
        what = {"clean": "clean", "corruption": f"{row.corruption} s{row.severity}",
                "attack": f"pgd eps {float(row.eps) * 255:.0f}/255"}[row.benchmark]
        rows.append({"model": row.model, "benchmark": row.benchmark, "what": what,
                     "n": int(row.n_fp32), "identical": same,
                     "accuracy fp32": float(row.accuracy_fp32),
                     "accuracy bf16": float(row.accuracy_bf16),
                     "delta points": 100 * (float(row.accuracy_bf16)
                                            - float(row.accuracy_fp32))})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--severities", default="1,2,3,4,5")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--parts", default="layout,precision")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS),
                        help="of the precision part (default: clean,corruption,pgd)")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)

    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in CHECKPOINTS]
    if unknown:
        raise SystemExit(f"--models: no checkpoint for {unknown}; choose from {list(CHECKPOINTS)}")
    severities = [int(s) for s in args.severities.split(",")]
    result = {}
    if "layout" in args.parts:
        result["layout"] = layout_agreement(names, args.device, args.batch)
    if "precision" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            benchmarks = [b for b in args.benchmarks.split(",") if b]
            unknown = sorted(set(benchmarks) - set(BENCHMARKS))
            if unknown:
                raise SystemExit(f"--benchmarks: unknown {unknown}; choose from {BENCHMARKS}")
            rows = precision_agreement(names, args.images, severities, args.batch, args.device,
                                       Path(tmp), benchmarks)
        result["precision"] = rows
        print("| model | benchmark | cells | identical predictions | accuracy delta, points "
              "(bf16 - fp32): mean, largest |.| |")
        print("|---|---|---|---|---|")
        import pandas as pd

        frame = pd.DataFrame(rows)
        frame["kind"] = frame["what"].where(frame.benchmark != "corruption", "corruption")
        for (model, kind), group in frame.groupby(["model", "kind"], sort=False):
            share = group.identical.sum() / group.n.sum()
            print(f"| {model} | {kind} | {len(group)} | {share:.2%} "
                  f"({group.identical.sum()}/{group.n.sum()}) | "
                  f"{group['delta points'].mean():+.2f}, {group['delta points'].abs().max():.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
