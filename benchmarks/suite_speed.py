"""The whole battery end to end: the peer pipeline against `robust-eval run`, in one run.

    python benchmarks/suite_speed.py                      # CPU, 2 threads, 300 images
    python benchmarks/suite_speed.py --device cuda --images 2000

Battery (issue 14): the real ResNet-20 (shared checkpoint), the first N CIFAR-10 test images,
clean + the 15 corruptions x 5 severities (ImageNet-C parameters) + FGSM 8/255 + PGD-10
(eps 8/255, alpha 2/255, random start).
- peer: what a user writes today with the field's tools: robustbench.utils.clean_accuracy,
  imagecorruptions.corrupt image by image, torchattacks.FGSM / PGD; fp32, contiguous.
- robust-eval: `robust-eval run` on the same battery as a job config, fp32 and bf16.
- floor: the forward and backward passes the job's cells make, timed alone in a fresh process
  with the same model layout, precision and batch size (the job's model-compute floor).
Every variant runs in its own process, started by this script, so the wall times include
process start and imports. Repeats rotate the order; ratios are per repeat, then the median.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUST_EVAL_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHECKPOINT = "checkpoints/cifar10_resnet_he2016/resnet20-12fca82f.th"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
               "elastic_transform", "pixelate", "jpeg_compression")
EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10


def job_config(images: int, batch: int, device: str) -> str:
    return json.dumps({  # JSON is YAML
        "name": "suite-speed", "seed": 0, "device": device, "batch_size": batch,
        "models": [{"name": "resnet20", "checkpoint": str(SHARED / CHECKPOINT),
                    "arch": "resnet20", "norm": "bn", "num_classes": 10,
                    "mean": MEAN, "std": STD}],
        "datasets": [{"name": "cifar10", "kind": "cifar10", "root": str(SHARED / "cifar10"),
                      "split": "test", "limit": images}],
        "benchmarks": [
            {"type": "clean"},
            {"type": "corruption", "source": "generated", "params": "imagenet",
             "corruptions": list(CORRUPTIONS), "severities": [1, 2, 3, 4, 5]},
            {"type": "attack", "attack": "fgsm", "eps": [EPS]},
            {"type": "attack", "attack": "pgd", "eps": [EPS], "steps": STEPS, "alpha": ALPHA,
             "restarts": 1}]})


# ----------------------------------------------------------------------------- children
def _test_images(n: int):
    """The first n test images (uint8 N,3,H,W) and labels, through the suite's own loader."""
    from robust_eval.data import load_split

    data = load_split("cifar10", str(SHARED / "cifar10"), split="test", limit=n)
    return data.images, data.labels


def _model(device: str, job_layout: bool):
    """The job's own loader (channels_last where it pays) or the plain fp32 contiguous module."""
    from robust_eval.checkpoints import load_checkpoint
    from robust_eval.jobs.cells import load_model

    if job_layout:
        return load_model({"name": "resnet20", "checkpoint": str(SHARED / CHECKPOINT),
                           "arch": "resnet20", "norm": "bn", "num_classes": 10,
                           "mean": MEAN, "std": STD}, device)
    return load_checkpoint(str(SHARED / CHECKPOINT), arch="resnet20", norm="bn",
                           num_classes=10, mean=MEAN, std=STD, device=device).eval()


def peer(args) -> dict:
    """The peer pipeline; prints its parts (s)."""
    parts, began = {}, time.perf_counter()
    import numpy as np
    import torch

    from robust_eval._compat import install_autoattack_alias

    install_autoattack_alias()  # robustbench 1.1.1 imports `autoattack` (ecosystem notes)
    import torchattacks
    from imagecorruptions import corrupt
    from robustbench.utils import clean_accuracy

    parts["imports"] = time.perf_counter() - began
    began = time.perf_counter()
    device = torch.device(args.device)
    model = _model(args.device, job_layout=False)
    images, y = _test_images(args.images)
    x = images.float().div(255)
    images = images.permute(0, 2, 3, 1).numpy()  # imagecorruptions takes HWC arrays
    parts["load"] = time.perf_counter() - began

    began = time.perf_counter()
    accuracy = {"clean": clean_accuracy(model, x, y, batch_size=args.batch, device=device)}
    parts["clean"] = time.perf_counter() - began
    generation = inference = 0.0
    for name in CORRUPTIONS:
        for severity in range(1, 6):
            began = time.perf_counter()
            corrupted = np.stack([np.uint8(corrupt(image, corruption_name=name,
                                                   severity=severity)) for image in images])
            xc = torch.from_numpy(corrupted).permute(0, 3, 1, 2).float().div(255)
            generation += time.perf_counter() - began
            began = time.perf_counter()
            accuracy[f"{name} s{severity}"] = clean_accuracy(model, xc, y, batch_size=args.batch,
                                                             device=device)
            inference += time.perf_counter() - began
    parts["corruption generation"], parts["corruption inference"] = generation, inference
    for label, attack in (("fgsm", torchattacks.FGSM(model, eps=EPS)),
                          ("pgd", torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS,
                                                   random_start=True))):
        began = time.perf_counter()
        correct = 0
        for start in range(0, len(x), args.batch):
            xb, yb = x[start:start + args.batch].to(device), y[start:start + args.batch].to(device)
            adversarial = attack(xb, yb)
            with torch.no_grad():
                correct += int((model(adversarial).argmax(1) == yb).sum())
        accuracy[label] = correct / len(x)
        parts[label] = time.perf_counter() - began
    return {"parts": parts, "accuracy": accuracy}


def floor(args) -> dict:
    """The passes the job's cells make, alone: clean + 75 corrupted forwards; per attack cell
    an fp32 clean fwd+bwd (clean predictions and gradient-masking checks), the attack's
    fwd+bwd steps in the job's precision and an fp32 forward of the adversarial images (the
    reported predictions); the PGD cell also runs FGSM as its reference (attacks.sweep)."""
    import torch
    import torch.nn.functional as F

    device = torch.device(args.device)
    model = _model(args.device, job_layout=True)
    x, y = _test_images(args.images)
    y = y.to(device)
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    bf16 = args.precision == "bf16"

    def batches():
        for start in range(0, len(x), args.batch):
            xb = x[start:start + args.batch].to(device).float().div(255)
            yield xb.contiguous(memory_format=layout), y[start:start + args.batch]

    def forwards(times: int, autocast: bool):
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16,
                                                    enabled=autocast):
            for _ in range(times):
                for xb, _ in batches():
                    model(xb).argmax(1).cpu()

    def gradients(times: int, autocast: bool):
        for xb, yb in batches():
            for _ in range(times):
                xb = xb.detach().requires_grad_(True)
                with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
                    loss = F.cross_entropy(model(xb).float(), yb)
                torch.autograd.grad(loss, xb)

    if args.compile:  # inductor; freezing folds the weights in (inference graphs only)
        import torch._inductor.config as inductor

        inductor.freezing = True
        model = torch.compile(model)
    parts = {}
    began = time.perf_counter()
    forwards(1, bf16)  # the job's first cell pays this too (and compilation, when compiled)
    parts["warm-up"] = time.perf_counter() - began
    for label, work in (("clean", lambda: forwards(1, bf16)),
                        ("corruption", lambda: forwards(len(CORRUPTIONS) * 5, bf16)),
                        ("fgsm", lambda: (gradients(1, False), gradients(1, bf16),
                                          forwards(1, False))),
                        ("pgd", lambda: (gradients(1, False), gradients(STEPS + 1, bf16),
                                         forwards(2, False)))):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        parts[label] = time.perf_counter() - began
    return {"parts": parts, "channels_last": channels_last}


def _job_parts(folder: Path) -> dict:
    """`robust-eval run` is the whole job; its cells' own seconds split it into parts."""
    import pandas as pd

    frame = pd.read_csv(folder / "results.csv")
    parts = {kind: float(frame.loc[frame.benchmark == kind, "seconds"].sum())
             for kind in ("clean", "corruption")}
    for attack in ("fgsm", "pgd"):
        parts[attack] = float(frame.loc[frame.attack == attack, "seconds"].sum())
    accuracy = {"clean": float(frame.loc[frame.benchmark == "clean", "accuracy"].iloc[0]),
                "corruption mean": float(frame.loc[frame.benchmark == "corruption",
                                                   "accuracy"].mean())}
    for attack in ("fgsm", "pgd"):
        accuracy[attack] = float(frame.loc[frame.attack == attack, "accuracy"].iloc[0])
    return {"parts": parts, "accuracy": accuracy}


# ----------------------------------------------------------------------------- parent
def _environment(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("CI", None)
    return env


def _child(args, role: str, extra=()) -> dict:
    command = [sys.executable, __file__, "--role", role, "--images", str(args.images),
               "--batch", str(args.batch), "--device", args.device, "--threads",
               str(args.threads), *extra]
    began = time.perf_counter()
    done = subprocess.run(command, env=_environment(args.threads), capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"{role} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def _job(args, precision: str, config: Path, work: Path) -> dict:
    out = work / f"job-{precision}-{time.perf_counter_ns()}"
    script = Path(sys.executable).with_name("robust-eval")  # what a user types
    launcher = [str(script)] if script.is_file() else [
        sys.executable, "-c", "import sys; from robust_eval.cli import main; sys.exit(main())"]
    command = [*launcher, "run", str(config), "--out", str(out),
               "--precision", precision, "--no-progress", "--device", args.device]
    began = time.perf_counter()
    done = subprocess.run(command, env=_environment(args.threads), capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"robust-eval run failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-3000:]}")
    return {**_job_parts(out), "wall": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer pipeline")
    parser.add_argument("--compile", action="store_true",
                        help="add the floor through torch.compile (compile time included)")
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--role", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role:
        import torch

        torch.set_num_threads(args.threads if args.device == "cpu" else torch.get_num_threads())
        role = {"peer": peer, "floor": floor}[args.role]
        print(json.dumps(role(args)))
        return 0

    if not (SHARED / CHECKPOINT).is_file():
        raise SystemExit(f"needs the real ResNet-20 checkpoint at {SHARED / CHECKPOINT}")
    precisions = [p for p in args.precisions.split(",") if p]
    variants = ([] if args.no_peer else ["peer"]) + [f"job {p}" for p in precisions] + \
        [f"floor {p}" for p in precisions] + \
        ([f"compiled-floor {p}" for p in precisions] if args.compile else [])
    runs = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = work / "battery.yaml"
        config.write_text(job_config(args.images, args.batch, args.device))
        for repeat in range(args.repeats):
            order = variants[repeat % len(variants):] + variants[:repeat % len(variants)]
            for variant in order:
                kind, _, precision = variant.partition(" ")
                if kind == "peer":
                    result = _child(args, "peer")
                elif kind == "job":
                    result = _job(args, precision, config, work)
                else:
                    result = _child(args, "floor", ["--precision", precision] +
                                    (["--compile"] if kind == "compiled-floor" else []))
                runs[variant].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {variant}: {result['wall']:.1f} s wall; "
                      + ", ".join(f"{k} {v:.2f}" for k, v in result["parts"].items()),
                      flush=True)

    def median(variant, key=lambda r: r["wall"]):
        return statistics.median(key(r) for r in runs[variant])

    card = _card(args.device)
    print(f"\n{card}; {args.images} images, batch {args.batch}, {args.threads} threads, "
          f"{args.repeats} repeat(s), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("| variant | wall s (median) | parts s (median) |")
    print("|---|---|---|")
    for variant in variants:
        parts = runs[variant][0]["parts"]
        text = ", ".join(f"{k} {median(variant, lambda r, k=k: r['parts'][k]):.2f}"
                         for k in parts)
        print(f"| {variant} | {median(variant):.1f} | {text} |")
    ratios = {}
    for precision in precisions:
        job, floor_ = runs[f"job {precision}"], runs[f"floor {precision}"]
        if "peer" in runs:
            ratios[f"peer / job {precision}"] = statistics.median(
                p["wall"] / j["wall"] for p, j in zip(runs["peer"], job))
        ratios[f"job {precision} / its floor (wall)"] = statistics.median(
            j["wall"] / sum(f["parts"].values()) for j, f in zip(job, floor_))
        ratios[f"job {precision} cells / its floor"] = statistics.median(
            sum(j["parts"].values()) / sum(f["parts"].values()) for j, f in zip(job, floor_))
        if args.compile:
            ratios[f"floor {precision} / compiled floor (compile included)"] = statistics.median(
                sum(f["parts"].values()) / sum(c["parts"].values())
                for f, c in zip(floor_, runs[f"compiled-floor {precision}"]))
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    for variant in variants:
        if "accuracy" in runs[variant][0]:
            print(f"accuracy, {variant}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in runs[variant][0]["accuracy"].items()
                if " s" not in k))
    if args.json:
        Path(args.json).write_text(json.dumps({"card": card, "args": vars(args), "runs": runs,
                                               "ratios": ratios}, indent=1))
    return 0


def _card(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"CPU {model}, {os.cpu_count()} cores, torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
