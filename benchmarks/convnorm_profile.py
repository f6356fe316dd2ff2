"""Where ConvNorm's time goes: torch.profiler over train steps of single layers.

Usage: PYTHONPATH=. python benchmarks/convnorm_profile.py [--mode faithful|fast] [--batch 32]
       [--threads 1] [--device cpu|cuda] [--rows 12]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from robust_eval.nn import ConvNorm2d

LAYERS = {"64->64 32x32 s1": (64, 64, 32, 1), "64->128 32x32 s2": (64, 128, 32, 2),
          "512->512 4x4 s1": (512, 512, 4, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default="faithful", choices=["faithful", "fast"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--eval", action="store_true", help="profile eval forwards instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for name, (cin, cout, size, stride) in LAYERS.items():
        layer = ConvNorm2d(cin, cout, 3, stride, 1, mode=args.mode).to(device)
        x = torch.randn(args.batch, cin, size, size, device=device, requires_grad=not args.eval)

        def step():
            if args.eval:
                with torch.no_grad():
                    layer(x)
            else:
                layer(x).square().mean().backward()

        layer.train()
        step()
        if args.eval:
            layer.eval()
        for _ in range(2):
            step()
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\n=== {name}, {args.mode}, {'eval' if args.eval else 'train'}, batch {args.batch}")
        print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))


if __name__ == "__main__":
    main()
