"""ConvNorm (faithful, fast) vs conv+BN, one process: ratios of train-step and eval times.

Train step = forward + loss + backward (no optimizer), eval = forward under no_grad in eval mode.
CPU: median wall time (perf_counter); CUDA: median of CUDA-event times; the three variants run
interleaved. Prints a markdown table. GPU goal (batch 512): fast train <= 1.5x BN, eval <= 1.5x.

  PYTHONPATH=. python benchmarks/convnorm_speed.py --device cpu --threads 1
  PYTHONPATH=. python benchmarks/convnorm_speed.py --device cuda --batch 512 --model-batch 512
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch
from torch import nn

from robust_eval.nn import ConvNorm2d

LAYERS = [("64->64, 32x32, s1", 64, 64, 32, 1), ("64->128, 32x32 -> 16x16, s2", 64, 128, 32, 2),
          ("512->512, 4x4, s1", 512, 512, 4, 1)]
VARIANTS = ("bn", "faithful", "fast")


def layer_for(variant: str, cin: int, cout: int, stride: int) -> nn.Module:
    if variant == "bn":
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))
    return ConvNorm2d(cin, cout, 3, stride, 1, mode=variant)


def model_for(variant: str) -> nn.Module:
    """CIFAR ResNet-18 from the model registry when present, else a small own stack."""
    norm = "bn" if variant == "bn" else "convnorm"
    try:
        from robust_eval.models import create_model
        model = create_model("resnet18", norm=norm)
    except (ImportError, KeyError, AttributeError):
        from robust_eval.nn import get_norm
        n = get_norm(norm)
        blocks: List[nn.Module] = []
        for cin, cout, s in [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]:
            blocks += [n.make_conv(cin, cout, 3, s, 1), n.make_norm(cout), nn.ReLU()]
        model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))
    for module in model.modules():
        if isinstance(module, ConvNorm2d):
            module.mode = variant
    return model


def time_once(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def steps_for(module: nn.Module, x: torch.Tensor, phase: str) -> Callable[[], None]:
    def train_step() -> None:
        module.zero_grad(set_to_none=True)
        module(x).float().square().mean().backward()

    def eval_step() -> None:
        with torch.no_grad():
            module(x)

    return train_step if phase == "train" else eval_step


def measure(modules: Dict[str, nn.Module], x: torch.Tensor, device: torch.device, warmup: int,
            iters: int) -> Dict[str, Dict[str, float]]:
    """Median ms per variant and phase; variants interleaved so load changes hit all alike."""
    result: Dict[str, Dict[str, float]] = {v: {} for v in modules}
    for phase in ("train", "eval"):
        steps = {}
        for v, module in modules.items():
            module.train()
            module(x)  # one training step so eval has a running estimate
            module.train(phase == "train")
            steps[v] = steps_for(module, x, phase)
        times: Dict[str, List[float]] = {v: [] for v in modules}
        for rep in range(warmup + iters):
            for v, step in steps.items():
                ms = time_once(step, device)
                if rep >= warmup:
                    times[v].append(ms)
        for v in modules:
            result[v][phase] = statistics.median(times[v])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="single-layer batch")
    parser.add_argument("--model-batch", type=int, default=8, help="ResNet-18 batch")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device={device} threads={args.threads} torch={torch.__version__} "
          f"batch={args.batch} model_batch={args.model_batch}")
    print("| what | BN train ms | faithful train ms (x BN) | fast train ms (x BN) | "
          "BN eval ms | faithful eval ms (x BN) | fast eval ms (x BN) |")
    print("|---|---|---|---|---|---|---|")
    cases = [(name, lambda v, c=(cin, cout, s): layer_for(v, *c),
              (args.batch, cin, size, size)) for name, cin, cout, size, s in LAYERS]
    if not args.skip_model:
        cases.append(("ResNet-18 (CIFAR)", model_for, (args.model_batch, 3, 32, 32)))
    for name, make, shape in cases:
        x = torch.randn(*shape, device=device)
        res = measure({v: make(v).to(device) for v in VARIANTS}, x, device, args.warmup,
                      args.iters)
        cells = []
        for phase in ("train", "eval"):
            base = res["bn"][phase]
            cells.append(f"{base:.2f}")
            for v in ("faithful", "fast"):
                cells.append(f"{res[v][phase]:.2f} ({res[v][phase] / base:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
