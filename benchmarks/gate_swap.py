"""Swap test of the regression gate on real CIFAR-10 (docs/ci.md).

Baseline: ResNet-56 (He et al. 2016, ../shared) under the model name `resnet`, the first --n
test images, clean + the 15 benchmark corruptions at severity 3 (generated, corruption seed 0).
Then, under the same model name:
- ResNet-20's weights (the swap): `robust-eval check --tolerance 1` must exit 1 and name the
  corruption aggregate;
- ResNet-56 again with corruption seeds 1..--reruns: every check must exit 0.
`robust-eval compare` on the pair must call the corruption aggregate significantly worse.
Result folders go to --work and are reused when complete (evaluation is nearly all the time).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/gate_swap.py [--n 1000] [--reruns 20]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("ROBUST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))
CHECKPOINTS = {"resnet56": "resnet56-4bfd9763.th", "resnet20": "resnet20-12fca82f.th"}
MEAN, STD = ".485,.456,.406", ".229,.224,.225"


def card() -> str:
    """The CPU's model name (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.machine()


def corruption_names():
    from corruptions.metrics import BENCHMARK_CORRUPTIONS

    return list(BENCHMARK_CORRUPTIONS)


def evaluate(out: Path, arch: str, seed: int, n: int, corruptions, name: str = "resnet") -> Path:
    """`robust-eval evaluate --out` of one He-2016 checkpoint under `name`; a folder that already
    holds every cell (and its outcomes) is reused."""
    import pandas as pd

    from robust_eval.cli import main

    expected = 1 + len(corruptions)
    if (out / "results.csv").is_file() and (out / "outcomes.parquet").is_file():
        done = pd.read_csv(out / "results.csv")
        if (done["status"] == "ok").sum() == expected and (done["n"] == n).all():
            return out
    checkpoint = SHARED / "checkpoints" / "cifar10_resnet_he2016" / CHECKPOINTS[arch]
    start = time.perf_counter()
    rc = main(["evaluate", "--checkpoint", str(checkpoint), "--arch", arch, "--mean", MEAN,
               "--std", STD, "--model-name", name, "--dataset", "cifar10",
               "--data-root", str(SHARED / "cifar10"), "--limit", str(n),
               "--benchmark", "clean,corruption", "--corruptions", ",".join(corruptions),
               "--severities", "3", "--corruption-seed", str(seed), "--out", str(out),
               "--no-progress"])
    if rc != 0:
        raise SystemExit(f"evaluate {arch} seed {seed} into {out} exited {rc}")
    print(f"evaluated {arch} seed {seed} -> {out} ({time.perf_counter() - start:.0f} s)",
          flush=True)
    return out


def folders(work: Path, n: int, reruns: int, corruptions):
    """(baseline, swap, [reruns]) result folders, evaluated where missing."""
    base = evaluate(work / "resnet56-seed0", "resnet56", 0, n, corruptions)
    swap = evaluate(work / "resnet20-seed0", "resnet20", 0, n, corruptions)
    again = [evaluate(work / f"resnet56-seed{s}", "resnet56", s, n, corruptions)
             for s in range(1, reruns + 1)]
    return base, swap, again


def old_rule_flags(base: Path, new: Path, tolerance_pp: float) -> int:
    """Cells the former rule (new Wilson CI high + tolerance < baseline CI low) would flag."""
    from reports.compare import cells_from_results
    from reports.results import load_results
    from reports.stats import wilson_interval

    a, b = cells_from_results(load_results(base)), cells_from_results(load_results(new))
    return sum(wilson_interval(b[k].correct, b[k].n)[1] + tolerance_pp / 100
               < wilson_interval(a[k].correct, a[k].n)[0] for k in a if k in b)


def quiet(argv):
    """(exit code, JSON written by --json) of a robust-eval command, its text swallowed."""
    from robust_eval.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = main([str(a) for a in argv] + ["--json", str(out)])
        return rc, json.loads(out.read_text()) if out.is_file() else None


def main(argv=None) -> int:
    import torch

    from robust_eval.cli import main as cli

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="first N CIFAR-10 test images")
    ap.add_argument("--reruns", type=int, default=20, help="ResNet-56 reruns, seeds 1..R")
    ap.add_argument("--tolerance", type=float, default=1.0, help="gate tolerance, points")
    ap.add_argument("--work", type=Path, default=REPO / "local" / "gate_swap")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = corruption_names()
    base, swap, again = folders(args.work, args.n, args.reruns, names)
    baseline = args.work / "baseline.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["baseline", str(base), "-o", str(baseline)]) == 0
    print(f"# gate swap test, {date.today()}, {card()}, "
          f"{args.threads} thread(s); CIFAR-10 test images 0..{args.n - 1}, clean + "
          f"{len(names)} corruptions at severity 3; --tolerance {args.tolerance:g}\n")
    tol = ["--tolerance", f"{args.tolerance:g}"]
    print(f"$ robust-eval check {swap.name} --baseline baseline.json {' '.join(tol)}")
    swap_rc = cli(["check", str(swap), "--baseline", str(baseline), *tol])
    print(f"exit {swap_rc}\n")
    print(f"former rule (new CI high + tol < baseline CI low) flags "
          f"{old_rule_flags(base, swap, 0)} of {1 + len(names)} cells at tolerance 0, "
          f"{old_rule_flags(base, swap, args.tolerance)} at {args.tolerance:g}\n")
    reference = f"{base.name}/resnet"
    print(f"$ robust-eval compare {base.name} {swap.name} --reference {reference}")
    cli(["compare", str(base), str(swap), "--reference", reference])
    print(f"ResNet-56 reruns (corruption seeds 1..{args.reruns}) against the seed-0 baseline:")
    alarms = 0
    for folder, seed in zip(again, range(1, args.reruns + 1)):
        rc, report = quiet(["check", folder, "--baseline", baseline, *tol])
        tests = [r for r in report["results"] if r["status"] in ("ok", "REGRESSED")]
        worst = min(tests, key=lambda r: r["delta"])
        least = min(r["p_adjusted"] for r in tests)
        alarms += rc != 0
        print(f"  seed {seed:2d}: exit {rc}; worst delta {worst['delta']:+.2f} pp "
              f"({worst['aggregate'] or worst['corruption'] or worst['benchmark']}), "
              f"smallest adjusted p {least:.3f}")
    aggregate = "corruption mean" in "".join(
        r["aggregate"] or "" for r in quiet(["check", swap, "--baseline", baseline, *tol])[1][
            "results"] if r["status"] == "REGRESSED")
    ok = swap_rc == 1 and aggregate and alarms == 0
    print(f"\nswap caught: {swap_rc == 1} (corruption aggregate regressed: {aggregate}); "
          f"false alarms in {args.reruns} reruns: {alarms} -> {'OK' if ok else 'NOT OK'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
