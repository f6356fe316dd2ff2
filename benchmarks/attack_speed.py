"""PGD-10 speed: the native engine against torchattacks, same process, same model, same batch.

    PYTHONPATH=. python benchmarks/attack_speed.py                 # cuda if present, else cpu
    PYTHONPATH=. python benchmarks/attack_speed.py --device cpu --arch resnet20 --batch 32

Reports images/s, the ratio to torchattacks.PGD (the goal on an H100/H200 with CIFAR ResNet-18
at batch 512: >= 1.8x, using bf16 + channels_last + torch.compile) and the ratio to 10 x one
forward+backward pass to the input in the same precision (goal: within 15 %). Timings are
interleaved in rotating order; median and minimum are reported, so a busy machine slows all
variants alike.
The native numbers include every input check the library makes; torchattacks runs bare.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import date
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def run(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - began
    return run


def forward_backward(model, images, labels, amp: bool, channels_last: bool) -> None:
    x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
    x = x.detach().requires_grad_(True)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    torch.autograd.grad(F.cross_entropy(logits.float(), labels), x)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default=None, help="default resnet18 on cuda, resnet20 on cpu")
    parser.add_argument("--batch", type=int, default=None, help="default 512 cuda, 32 cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="default 20 cuda, 5 cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile variants")
    args = parser.parse_args(argv)

    import torchattacks

    from attacks import PGD
    from robust_eval.models import create_model

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    arch = args.arch or ("resnet18" if cuda else "resnet20")
    batch = args.batch or (512 if cuda else 32)
    repeats = args.repeats or (20 if cuda else 5)
    torch.manual_seed(0)
    model = create_model(arch, norm="bn").to(device).eval()
    images = torch.rand(batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    eps, alpha, steps = 8 / 255, 2 / 255, args.steps

    variants: Dict[str, Callable[[], object]] = {
        "torchattacks.PGD fp32": lambda: torchattacks.PGD(
            model, eps=eps, alpha=alpha, steps=steps)(images, labels),
        "native fp32": lambda: PGD(model, eps=eps, alpha=alpha, steps=steps)(images, labels),
        "fwd+bwd fp32": lambda: forward_backward(model, images, labels, False, False),
    }
    if cuda:
        bf16 = PGD(model, eps=eps, alpha=alpha, steps=steps, amp="bf16", channels_last=True)
        variants["native bf16+cl"] = lambda: bf16(images, labels)
        variants["fwd+bwd bf16+cl"] = lambda: forward_backward(model, images, labels, True, True)
        if not args.no_compile:
            compiled = PGD(model, eps=eps, alpha=alpha, steps=steps, amp="bf16",
                           channels_last=True, compile=True)
            variants["native bf16+cl+compile"] = lambda: compiled(images, labels)
    run = timer(device)
    for fn in variants.values():  # warm-up (cudnn autotune, compile)
        for _ in range(2 if cuda else 1):
            run(fn)
    times: Dict[str, List[float]] = {name: [] for name in variants}
    order = list(variants)
    for repeat in range(repeats):  # rotate the order so no variant always runs first
        for name in order[repeat % len(order):] + order[:repeat % len(order)]:
            times[name].append(run(variants[name]))
    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}

    where = torch.cuda.get_device_name(device) if cuda else \
        f"CPU {platform.processor() or platform.machine()}, {args.threads} thread(s)"
    print(f"# PGD-{steps} eps 8/255, {arch} (BN, random weights), batch {batch}, {where}, "
          f"torch {torch.__version__}, {date.today().isoformat()}, {repeats} interleaved runs")
    print("| variant | median ms | min ms | images/s (median) | vs torchattacks (median, min) "
          "| / 10 x fwd+bwd (median) |")
    print("|---|---|---|---|---|---|")
    for name, seconds in median.items():
        if name.startswith("fwd+bwd"):
            print(f"| {name} | {seconds * 1e3:.2f} | {best[name] * 1e3:.2f} | "
                  f"{batch / seconds:,.0f} | | |")
            continue
        reference = median["fwd+bwd bf16+cl" if "bf16" in name else "fwd+bwd fp32"] * steps
        print(f"| {name} | {seconds * 1e3:.1f} | {best[name] * 1e3:.1f} | {batch / seconds:,.0f} "
              f"| {median['torchattacks.PGD fp32'] / seconds:.2f}x, "
              f"{best['torchattacks.PGD fp32'] / best[name]:.2f}x | {seconds / reference:.2f} |")
    if not cuda:
        print("\nGPU goal (H100/H200, resnet18, batch 512: >= 1.8x torchattacks, within 15 % of "
              "10 x fwd+bwd): not measured here -- no GPU in this run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
