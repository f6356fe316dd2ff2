"""`robust-eval evaluate`: load a checkpoint and a dataset, run the requested benchmarks.

Benchmarks come from plug-in modules in robust_eval/evaluate/ (see its __init__), so
`--benchmark clean,fgsm,pgd,corruption` works as soon as each owner's module exists.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import List

from robust_eval.cli import CliError
from robust_eval.cli import parse_device as _device
from robust_eval.cli import positive_int as _positive_int


def register(subparsers) -> None:
    from robust_eval.evaluate import discover_benchmarks

    plugins = discover_benchmarks()
    p = subparsers.add_parser(
        "evaluate", help="evaluate a checkpoint on clean/corrupted/adversarial data",
        description="Evaluate a checkpoint. Flags left out are filled from the checkpoint's "
                    "own metadata (robust-eval format) or inferred from its keys.")
    g = p.add_argument_group("model")
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint file (any supported format)")
    source.add_argument("--robustbench", metavar="NAME",
                        help="a RobustBench zoo model read from --model-dir (e.g. Standard)")
    g.add_argument("--model-dir", default="models",
                   help="RobustBench model_dir: NAME is read from MODEL_DIR/DATASET/THREAT/NAME.pt")
    g.add_argument("--robustbench-threat", default="Linf", help="RobustBench threat model folder")
    from robust_eval.models import list_models

    g.add_argument("--arch", help=f"architecture: {', '.join(list_models())}")
    g.add_argument("--norm", help="norm for archs that take one (bn, convnorm, sn, oni, ocnn)")
    g.add_argument("--num-classes", type=_positive_int)
    g.add_argument("--mean", help="input mean, comma-separated, one per channel")
    g.add_argument("--std", help="input std, comma-separated, one per channel")
    g.add_argument("--model-name", help="name in the result table (default: checkpoint stem)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=True, help="cifar10, cifar100, imagenet or digits")
    g.add_argument("--data-root", help="folder with the dataset (not needed for digits)")
    g.add_argument("--split", default="test", choices=["test", "train", "val"])
    g.add_argument("--download", action="store_true", help="download CIFAR if absent")
    g.add_argument("--limit", type=_positive_int, help="evaluate the first N images only")
    g = p.add_argument_group("run")
    g.add_argument("--benchmark", action="append",
                   help=f"comma-separated, may repeat (default clean); known: "
                        f"{', '.join(plugins.known())}")
    g.add_argument("--batch-size", type=_positive_int, default=256)
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--out", help="write OUT/results.csv (long result schema)")
    for module in plugins.modules.values():
        module.add_arguments(p)
    p.set_defaults(func=run, _plugins=plugins)


def _benchmarks(args) -> List[str]:
    plugins = args._plugins
    given = args.benchmark or ["clean"]
    names = list(dict.fromkeys(b.strip() for flag in given for b in flag.split(",") if b.strip()))
    if not names:
        raise CliError("--benchmark is empty")
    unknown = [b for b in names if b not in plugins.by_name]
    if unknown:
        broken = "".join(f"; module evaluate/{m}.py failed to import ({e})"
                         for m, e in plugins.broken.items())
        raise CliError(f"unknown benchmark(s) {', '.join(unknown)} (known: "
                       f"{', '.join(plugins.known())}){broken}")
    return names


def _stats(text, flag):
    from robust_eval.models import parse_stats

    if text is None:
        return None
    try:
        return parse_stats(text, flag.lstrip("-"))
    except ValueError as error:
        raise CliError(f"{flag}: {error}") from None


def run(args) -> int:
    import warnings

    from robust_eval.checkpoints import CheckpointError, load_checkpoint, load_robustbench
    from robust_eval.data import load_split
    from robust_eval.models import MODELS
    from robust_eval.schema import device_name, to_frame

    benchmarks = _benchmarks(args)
    device = _device(args.device)
    mean, std = _stats(args.mean, "--mean"), _stats(args.std, "--std")
    if (mean is None) != (std is None):
        raise CliError("give --mean and --std together")
    if mean is not None and len(mean) != len(std):
        raise CliError(f"--mean has {len(mean)} values but --std has {len(std)}")
    if args.arch is not None and args.arch not in MODELS:
        raise CliError(f"--arch: {MODELS.unknown_message(args.arch)}")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise CliError(f"--checkpoint: file {args.checkpoint} does not exist")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.robustbench:
                if any(v is not None for v in (args.arch, args.norm, mean, args.num_classes)):
                    raise CliError("--robustbench models define their own arch, norm, classes "
                                   "and normalisation: drop --arch/--norm/--mean/--std/--num-classes")
                model = load_robustbench(args.robustbench, args.model_dir, dataset=args.dataset,
                                         threat_model=args.robustbench_threat, device=device)
            else:
                model = load_checkpoint(args.checkpoint, arch=args.arch, norm=args.norm,
                                        num_classes=args.num_classes, mean=mean, std=std,
                                        device=device)
        except CheckpointError as error:
            raise CliError(str(error)) from None
        except ValueError as error:  # e.g. mean/std count vs the arch's channels
            raise CliError(f"{args.checkpoint}: {error}") from None
    for w in caught:
        if str(w.message) in model.robust_eval_meta.get("warnings", []):  # ours, not libraries'
            print(f"warning: {w.message}", file=sys.stderr)
    meta = model.robust_eval_meta
    if args.download and args.dataset not in ("cifar10", "cifar100"):
        raise CliError(f"--download works for cifar10/cifar100, not {args.dataset}")
    data = load_split(args.dataset, args.data_root, split=args.split, limit=args.limit,
                      **({"download": True} if args.download else {}))
    base = {
        "model": args.model_name or args.robustbench or Path(args.checkpoint).stem,
        "checkpoint_sha256": meta["checkpoint_sha256"], "arch": meta["arch"],
        "norm": meta["norm"], "dataset": args.dataset, "device": device_name(device),
    }
    rows = []
    for name in benchmarks:
        module = args._plugins.by_name[name]
        run_args = argparse.Namespace(**vars(args))
        run_args.benchmark = name  # a module serving several names sees which one to run
        rows += module.run_from_args(model, data, run_args, dict(base), device)
    frame = to_frame(rows)
    print(format_table(frame, meta, data))
    if args.out:
        write_results(frame, Path(args.out))
        print(f"wrote {Path(args.out) / 'results.csv'}")
    return 0


def format_table(frame, meta, data) -> str:
    header = (f"{meta['arch']} (norm {meta['norm']}) sha256 {str(meta['checkpoint_sha256'])[:12]} "
              f"on {data.name} [{data.source}], mean={tuple(meta['mean'])} std={tuple(meta['std'])}")
    columns = [c for c in ("benchmark", "corruption", "severity", "attack", "threat", "eps",
                           "steps", "noise_type", "noise_rate", "metric")
               if c in frame and frame[c].notna().any()]
    view = frame[columns + ["n", "correct"]].astype(object).where(frame[columns + ["n", "correct"]]
                                                                   .notna(), "")
    has_n = frame["n"] > 0
    view["accuracy %"] = [f"{100 * a:.2f}" if ok else "-" for a, ok in zip(frame["accuracy"], has_n)]
    view["95% CI %"] = [f"{100 * lo:.2f}-{100 * hi:.2f}" if ok else "-"
                        for lo, hi, ok in zip(frame["ci_low"], frame["ci_high"], has_n)]
    if "value" in frame and frame["value"].notna().any():  # measurements without n (spectral)
        view["layer"] = [json.loads(p).get("layer", "") if isinstance(p, str) else ""
                         for p in frame.get("params", [None] * len(frame))]
        view["value"] = [f"{v:.4g}" if v == v and v is not None else "" for v in frame["value"]]
    return header + "\n" + view.to_string(index=False)


def write_results(frame, out: Path) -> None:
    """Atomic: a crash never leaves a half-written results.csv behind."""
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".results.", suffix=".csv.tmp")
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out / "results.csv")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
