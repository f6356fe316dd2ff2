"""Power and false-alarm rate of the regression gate, simulated on real outcome vectors.

Outcomes: ResNet-56 (He et al. 2016, ../shared) on the first 1,000 CIFAR-10 test images, clean +
the 15 corruptions at severity 3, evaluated twice (corruption seeds 0 and 1; benchmarks/
gate_swap.py's folders, evaluated here when missing). A replicate draws n examples with
replacement (all 16 cells of an example together), swaps the two runs' outcomes of each drawn
example with probability 1/2 (so the true difference is exactly zero while the run-to-run
disagreement stays real), redraws a share `churn` of the new side's outcomes at the cell's
accuracy (0: the same weights rerun; 0.3: about the disagreement of another network, ResNet-20
vs ResNet-56 disagree on 15 % of examples per cell), then turns round(drop * n) right answers of
the new side wrong in every cell: a model that lost `drop` points everywhere. Both rules then
judge baseline vs new:
- gate: `robust-eval check`'s rule (reports.compare / reports.regression): one-sided paired
  tests of every cell and of the corruption mean against the tolerance, weighted Holm, alpha 0.05;
- interval rule (before): a cell regressed when new Wilson CI high + tolerance < baseline low.
A rate is the share of replicates in which the rule raised an alarm (any cell or aggregate).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/gate_power.py [--reps 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def outcome_matrix(folder: Path):
    """(slots, n_examples x 16 bool matrix) of a result folder, cells in table order."""
    from reports.compare import cells_from_results
    from reports.results import load_results

    cells = list(cells_from_results(load_results(folder)).values())
    return ([c.slot for c in cells],
            np.column_stack([c.correctness.sort_index().to_numpy() for c in cells]))


def gate_alarm(slots, base, new, tolerance, n_resamples, seed):
    """(any alarm, aggregate alarm) of the gate's rule on two outcome matrices."""
    from reports.compare import Cell, compare_sides, holm_weights
    from reports.paired import holm

    index = pd.RangeIndex(len(base))

    def side(matrix):
        return {s: Cell(("m", *s), float(col.sum()), len(col), [0], {"fingerprint": "f"},
                        pd.Series(col, index=index)) for s, col in zip(slots, matrix.T)}

    tests = compare_sides(side(base), side(new), "less", tolerance / 100,
                          n_resamples=n_resamples, seed=seed)
    alarm = holm([t.p_value for t in tests], holm_weights(tests)) < 0.05
    return bool(alarm.any()), bool(any(a for a, t in zip(alarm, tests) if t.scope == "aggregate"))


def interval_alarm(base, new, tolerance):
    from reports.stats import wilson_interval

    n = len(base)
    return any(wilson_interval(b, n)[1] + tolerance / 100 < wilson_interval(a, n)[0]
               for a, b in zip(base.sum(0), new.sum(0)))


def replicate(rng, base, rerun, n, drop, churn):
    rows = rng.integers(0, len(base), n)
    a, b = base[rows].copy(), rerun[rows].copy()
    swap = rng.random(n) < 0.5
    a[swap], b[swap] = b[swap], a[swap].copy()
    redraw = rng.random(b.shape) < churn
    b[redraw] = (rng.random(b.shape) < b.mean(0))[redraw]
    k = int(round(drop / 100 * n))
    for j in range(b.shape[1]):
        right = np.flatnonzero(b[:, j])
        b[rng.choice(right, size=min(k, len(right)), replace=False), j] = False
    return a, b


def main(argv=None) -> int:
    import torch

    from gate_swap import card, corruption_names, evaluate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200, help="replicates per condition")
    ap.add_argument("--sizes", default="500,1000,10000")
    ap.add_argument("--drops", default="0,0.5,1,2,3", help="true drops, points")
    ap.add_argument("--tolerances", default="0,1", help="gate tolerances, points")
    ap.add_argument("--churns", default="0,0.3", help="shares of outcomes redrawn")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--work", type=Path, default=REPO / "local" / "gate_swap")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = corruption_names()
    slots, base = outcome_matrix(evaluate(args.work / "resnet56-seed0", "resnet56", 0, 1000,
                                          names))
    rerun_slots, rerun = outcome_matrix(evaluate(args.work / "resnet56-seed1", "resnet56", 1,
                                                 1000, names))
    assert slots == rerun_slots
    disagree = (base != rerun).mean(0)
    print(f"# gate power, {date.today()}, {card()}, 1 "
          f"thread; ResNet-56 outcomes, {base.shape[0]} images x {base.shape[1]} cells; runs "
          f"with corruption seeds 0 and 1 disagree on {100 * disagree.mean():.2f} % of "
          f"examples per cell (max {100 * disagree.max():.1f} %); {args.reps} replicates per "
          f"row, bootstrap {args.resamples} resamples\n")
    print("| churn | tolerance (pp) | n | true drop (pp) | gate: alarm | gate: corruption mean "
          "regressed | interval rule: alarm |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for churn in (float(c) for c in args.churns.split(",")):
        for tolerance in (float(t) for t in args.tolerances.split(",")):
            for n in (int(v) for v in args.sizes.split(",")):
                for drop in (float(d) for d in args.drops.split(",")):
                    gate = aggregate = old = 0
                    for r in range(args.reps):
                        a, b = replicate(rng, base, rerun, n, drop, churn)
                        alarm, agg = gate_alarm(slots, a, b, tolerance, args.resamples, r)
                        gate, aggregate = gate + alarm, aggregate + agg
                        old += interval_alarm(a, b, tolerance)
                    rate = lambda k: f"{100 * k / args.reps:.1f} %"  # noqa: E731
                    print(f"| {churn:g} | {tolerance:g} | {n:,} | {drop:g} | {rate(gate)} | "
                          f"{rate(aggregate)} | {rate(old)} |", flush=True)
    print()
    for churn in (float(c) for c in args.churns.split(",")):
        pairs = [replicate(rng, base, rerun, 1000, 0.0, churn) for _ in range(20)]
        print(f"churn {churn:g}: baseline and new disagree on "
              f"{100 * np.mean([(a != b).mean() for a, b in pairs]):.1f} % of examples per cell")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
