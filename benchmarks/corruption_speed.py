"""Throughput of corruptions.generate vs imagecorruptions-imaug at 32 px, same images, same process.

The reference only knows ImageNet parameters, so it is timed at 32 px with those; ours is timed
with both parameter sets (cifar10 = the CIFAR-10-C work, imagenet = like-for-like). Then the time
to build the whole 15 x 5 x 10,000 CIFAR-10-C-style set is extrapolated from --n-set images per
(corruption, severity) cell.

    PYTHONPATH=. python benchmarks/corruption_speed.py [--device cuda] [--n-ref 100] [--n-ours 2000]

Each of --repeats rounds times reference and ours back to back (medians reported); one thread
for torch and the reference's libraries; glibc malloc thresholds raised (see below).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# one thread for the reference's numpy/OpenCV/numba too (set before they load), like torch's
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# glibc malloc mmaps every block above its (dynamic) threshold and unmaps it on free, and
# PyTorch's CPU allocator does not cache, so each MB-sized temporary page-faults anew: measured
# 2.5x slower for shot_noise once a large array is alive. A fixed high threshold keeps freed
# blocks in the heap for both libraries; glibc reads it at start-up, hence the re-exec.
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
if (sys.platform.startswith("linux") and "--system-malloc" not in sys.argv
        and any(os.environ.get(k) != v for k, v in _MALLOC.items())):
    os.environ.update(_MALLOC)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from corruptions.generate import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, apply_corruption  # noqa: E402

SHARED = Path(os.environ.get("ROBUST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(x: torch.Tensor, name: str, params: str, severities, batch: int) -> float:
    """Seconds per image for one pass over the severities (call warm_up first)."""
    device = x.device
    _sync(device)
    t0 = time.perf_counter()
    for s in severities:
        for i in range(0, len(x), batch):
            apply_corruption(x[i:i + batch], name, s, params=params,
                             indices=torch.arange(i, min(i + batch, len(x)), device=device))
    _sync(device)
    return (time.perf_counter() - t0) / (len(x) * len(severities))


def warm_up(x: torch.Tensor, name: str, severities) -> None:
    """Caches, lazy tables, the reference's numba compile."""
    for params in ("cifar10", "imagenet"):
        for s in severities:
            apply_corruption(x[:8], name, s, params=params)


def time_reference(x_np: np.ndarray, name: str, severities) -> float:
    from imagecorruptions import corrupt

    t0 = time.perf_counter()
    for s in severities:
        for img in x_np:
            corrupt(img, corruption_name=name, severity=s)
    return (time.perf_counter() - t0) / (len(x_np) * len(severities))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-ref", type=int, default=50, help="images per severity for the reference")
    ap.add_argument("--n-ours", type=int, default=1000, help="images per severity for ours")
    ap.add_argument("--n-set", type=int, default=1000, help="images per cell for the full-set estimate")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--names", default=",".join(ALL_CORRUPTIONS))
    ap.add_argument("--repeats", type=int, default=3, help="back-to-back repeats (medians)")
    ap.add_argument("--skip-full-set", action="store_true")
    ap.add_argument("--system-malloc", action="store_true", help="keep glibc's default thresholds")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = np.load(SHARED / "cifar10" / "test.npz")["x"]
    x_all = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    sev = (1, 3, 5)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.1f}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {args.threads}, device {device}, "
          f"malloc {'default' if args.system_malloc else 'MALLOC_MMAP_THRESHOLD_=256M'}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"# per-image time at 32 px, severities {sev}; reference on {args.n_ref} images, ours on "
          f"{args.n_ours} (batch {args.batch}); medians of {args.repeats} back-to-back repeats")
    print("| corruption | reference (ImageNet params) | ours, cifar10 params | ours, imagenet params |"
          " speed-up (ref / ours-imagenet) | speed-up (ref / ours-cifar10) |")
    print("|---|---|---|---|---|---|")
    x = x_all[: args.n_ours].to(device)
    for name in args.names.split(","):
        warm_up(x, name, sev)
        if not args.skip_reference:
            from imagecorruptions import corrupt

            corrupt(data[0], corruption_name=name, severity=sev[0])  # numba compile, caches
        # the machine is shared: each repeat times the three back to back, and the table gives
        # medians of the times and of the per-repeat ratios
        ref, oc, oi = [], [], []
        for _ in range(args.repeats):
            ref.append(float("nan") if args.skip_reference else time_reference(data[: args.n_ref], name, sev))
            # best of 2 passes: the first one after the reference re-warms caches and the
            # allocator (a generation run is many batches in a row, i.e. the warm case)
            oc.append(min(time_ours(x, name, "cifar10", sev, args.batch) for _ in range(2)))
            oi.append(min(time_ours(x, name, "imagenet", sev, args.batch) for _ in range(2)))
        med = statistics.median
        ratio_i = med(r / o for r, o in zip(ref, oi))
        ratio_c = med(r / o for r, o in zip(ref, oc))
        print(f"| {name} | {med(ref) * 1e6:.0f} us | {med(oc) * 1e6:.1f} us | {med(oi) * 1e6:.1f} us | "
              f"{ratio_i:.1f}x | {ratio_c:.1f}x |", flush=True)

    if args.skip_full_set:
        return
    # whole CIFAR-10-C-style set: 15 corruptions x 5 severities x 10,000 images, cifar10 params
    # (CPU time too: on a shared machine the wall time also counts other jobs' turns)
    xs = x_all[: args.n_set].to(device)
    wall = cpu = 0.0
    for name in BENCHMARK_CORRUPTIONS:
        for s in range(1, 6):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(0, len(xs), args.batch):
                apply_corruption(xs[i:i + args.batch], name, s, params="cifar10",
                                 indices=torch.arange(i, min(i + args.batch, len(xs)), device=device))
            _sync(device)
            wall += (time.perf_counter() - t0) * (10_000 / len(xs))
            cpu += (time.process_time() - c0) * (10_000 / len(xs))
    measured = "measured on all 10,000" if args.n_set >= 10_000 else f"extrapolated from {args.n_set} per cell"
    print(f"\nFull 15 x 5 x 10,000 CIFAR-10-C-style set (cifar10 params): {wall:.0f} s wall, "
          f"{cpu:.0f} s CPU ({measured}; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
