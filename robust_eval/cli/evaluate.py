"""`robust-eval evaluate`: one model, one dataset, the requested benchmarks, as a one-model job.

The flags become the same job config a YAML file would give (robust_eval.evaluate turns each
benchmark's flags into its config options), and the job runs through the same runner and store
as `robust-eval run`: with --out it resumes, adds to the folder's table, and refuses to mix two
checkpoints under one model name.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, List

from robust_eval.cli import CliError, command_help
from robust_eval.cli import positive_int as _positive_int


def register(subparsers) -> None:
    from robust_eval.evaluate import BENCHMARKS, cli_names

    names = cli_names()
    p = subparsers.add_parser(
        "evaluate", help=command_help("evaluate"),
        description="Evaluate a checkpoint. Flags left out are filled from the checkpoint's "
                    "own metadata (robust-eval format) or inferred from its keys. Exit code 0: "
                    "every cell ok; 1: some cell failed; 2: bad arguments.")
    g = p.add_argument_group("model")
    source = g.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint file (any supported format)")
    source.add_argument("--robustbench", metavar="NAME",
                        help="a RobustBench zoo model read from --model-dir (e.g. Standard)")
    g.add_argument("--model-dir", default="models",
                   help="RobustBench model_dir: NAME is read from MODEL_DIR/DATASET/THREAT/NAME.pt")
    g.add_argument("--robustbench-threat", default="Linf", help="RobustBench threat model folder")
    g.add_argument("--arch", help="architecture: robust_eval.models.list_models(), or an "
                                  "importable factory package.module:callable")
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
                        f"{', '.join(names)}")
    g.add_argument("--batch-size", type=_positive_int, default=256)
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32 (default), or bf16: the model runs under bf16 autocast (attacks: "
                        "their gradient steps); faster on a GPU or a CPU with AVX-512 BF16/AMX")
    g.add_argument("--out", help="result folder: cells/, results.csv/.parquet, run.json "
                                 "(resumable; several models may share it)")
    g.add_argument("--replace", action="store_true",
                   help="in --out, replace the results of a model name that stood for another "
                        "checkpoint")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    for type_name in BENCHMARKS:
        BENCHMARKS.get(type_name).add_arguments(p)
    p.set_defaults(func=run)


def _benchmark_names(args) -> List[str]:
    from robust_eval.evaluate import cli_names

    known = cli_names()
    given = args.benchmark or ["clean"]
    names = list(dict.fromkeys(b.strip() for flag in given for b in flag.split(",") if b.strip()))
    if not names:
        raise CliError("--benchmark is empty")
    unknown = [b for b in names if b not in known]
    if unknown:
        raise CliError(f"unknown benchmark(s) {', '.join(unknown)} (known: "
                       f"{', '.join(known)})")
    return names


def _stats(text, flag):
    from robust_eval.models import parse_stats

    if text is None:
        return None
    try:
        return parse_stats(text, flag.lstrip("-"))
    except ValueError as error:
        raise CliError(f"{flag}: {error}") from None


def job_from_args(args) -> Dict:
    """The job config (as a YAML mapping) these flags describe."""
    from robust_eval.evaluate import cli_names
    from robust_eval.models import get_model_spec

    mean, std = _stats(args.mean, "--mean"), _stats(args.std, "--std")
    if (mean is None) != (std is None):
        raise CliError("give --mean and --std together")
    if mean is not None and len(mean) != len(std):
        raise CliError(f"--mean has {len(mean)} values but --std has {len(std)}")
    if mean is not None and len(mean) not in (1, 3):
        raise CliError(f"--mean/--std have {len(mean)} values; the models take 3 input "
                       f"channels (give 3 values, or 1 for all)")
    if args.arch is not None:
        try:
            get_model_spec(args.arch)
        except (KeyError, ValueError) as error:
            raise CliError(f"--arch: {error}") from None
    model: Dict = {}
    if args.robustbench:
        from robust_eval.checkpoints import CheckpointError, robustbench_entry, robustbench_path

        if any(v is not None for v in (args.arch, args.norm, mean, args.num_classes)):
            raise CliError("--robustbench models define their own arch, norm, classes and "
                           "normalisation: drop --arch/--norm/--mean/--std/--num-classes")
        try:
            zoo_dataset, threat, _ = robustbench_entry(args.robustbench, args.dataset,
                                                       args.robustbench_threat)
        except CheckpointError as error:
            raise CliError(f"--robustbench: {error}") from None
        expected = robustbench_path(args.robustbench, args.model_dir, zoo_dataset, threat)
        if not expected.is_file():
            raise CliError(f"--robustbench {args.robustbench}: {expected} does not exist "
                           f"(download it with `robust-eval zoo download {args.robustbench} "
                           f"--dataset {zoo_dataset} --threat {threat} "
                           f"--model-dir {args.model_dir}`)")
        model.update(name=args.model_name or args.robustbench, robustbench=args.robustbench,
                     threat_model=threat, zoo_dataset=zoo_dataset,
                     model_dir=str(Path(args.model_dir).resolve()))
    else:
        path = Path(args.checkpoint)
        if path.is_dir():
            raise CliError(f"--checkpoint: {path} is a directory, not a checkpoint file")
        if not path.is_file():
            raise CliError(f"--checkpoint: file {path} does not exist")
        model.update(name=args.model_name or path.stem, checkpoint=str(path.resolve()))
        for key in ("arch", "norm", "num_classes"):
            if getattr(args, key) is not None:
                model[key] = getattr(args, key)
        if mean is not None:
            model.update(mean=list(mean), std=list(std))
    dataset: Dict = {"name": args.dataset, "kind": args.dataset, "split": args.split}
    if args.data_root and not Path(args.data_root).exists() and not args.download:
        raise CliError(f"--data-root: {args.data_root} does not exist")
    if args.data_root:
        dataset["root"] = str(Path(args.data_root).resolve())
    if args.limit:
        dataset["limit"] = args.limit
    known = cli_names()
    try:
        benchmarks = [known[name].options_from_args(args, name)
                      for name in _benchmark_names(args)]
    except ValueError as error:
        raise CliError(str(error)) from None
    attack_runs = [b for b in benchmarks if b["type"] == "attack"]
    for flag in ("steps", "alpha", "restarts", "engine"):
        if getattr(args, flag) is not None and not any(flag in b for b in attack_runs):
            names = ", ".join(b["attack"] for b in attack_runs) or "no attack"
            raise CliError(f"--{flag} applies to none of the requested attacks ({names})")
    return {"name": model["name"], "models": [model], "datasets": [dataset],
            "benchmarks": benchmarks, "device": str(args.device),
            "batch_size": args.batch_size, "precision": args.precision}


def run(args) -> int:
    from robust_eval.jobs import ConfigError, parse_config, run_job
    from robust_eval.jobs.runner import ModelConflictError

    from robust_eval.jobs.executors import resolve_device

    raw = job_from_args(args)
    try:
        resolve_device(args.device)
    except ValueError as error:
        raise CliError(f"--device: {error}") from None
    if args.download:
        if args.dataset not in ("cifar10", "cifar100"):
            raise CliError(f"--download works for cifar10/cifar100, not {args.dataset}")
        from robust_eval.data import load_split

        load_split(args.dataset, args.data_root, split=args.split, download=True)
    try:
        config = parse_config(raw, source="")
    except ConfigError as error:
        raise CliError(str(error)) from None
    _check_model(config, args)
    with tempfile.TemporaryDirectory(prefix="robust-eval-") as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        try:
            summary = run_job(config, out, progress=not args.no_progress, accumulate=True,
                              replace_models=args.replace)
        except ModelConflictError as error:
            raise CliError(str(error)) from None
        print(format_tables(summary.frame[summary.frame["cell_key"].isin(
            {c.key for c in summary.cells})]))
        if args.out:
            print(f"wrote {out / 'results.csv'} (and results.parquet, run.json, cells/)")
    return summary.exit_code


def _check_model(config, args) -> None:
    """One model: a file that does not load is unusable input (exit 2), not a failed cell."""
    from dataclasses import asdict

    from robust_eval.checkpoints import CheckpointError
    from robust_eval.jobs.cells import load_model

    flag = "--robustbench" if args.robustbench else "--checkpoint"
    try:
        load_model(asdict(config.models[0]), "cpu")
    except (CheckpointError, ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise CliError(f"{flag}: {message}") from None


def format_tables(frame) -> str:
    """One compact table per benchmark: only the columns that vary, numbers as people write them."""
    from reports.stats import eps_label

    if frame.empty:
        return "no results"
    blocks = []
    first = frame.iloc[0]
    blocks.append(f"{first['model']}: {first['arch']} (norm {first['norm']}) sha256 "
                  f"{str(first['checkpoint_sha256'])[:12]} on {first['dataset']}, "
                  f"mean=({first['mean'].replace(',', ', ')}) std=({first['std'].replace(',', ', ')})"
                  if isinstance(first.get("mean"), str) else
                  f"{first['model']}: {first['arch']} (norm {first['norm']}) sha256 "
                  f"{str(first['checkpoint_sha256'])[:12]} on {first['dataset']}")
    for benchmark, rows in frame.groupby("benchmark", sort=False):
        columns = [c for c in ("corruption", "severity", "param_set", "attack", "threat", "eps",
                               "steps", "noise_type", "noise_rate", "metric")
                   if c in rows and rows[c].notna().any()]
        view = rows[columns].astype(object).where(rows[columns].notna(), "")
        if "eps" in view:
            view["eps"] = [eps_label(e) if e != "" else "" for e in rows["eps"]]
        ok = rows["status"] == "ok"
        has_n = ok & (rows["n"].fillna(0) > 0)
        view["n"] = [int(v) if h else "" for v, h in zip(rows["n"], has_n)]
        view["accuracy %"] = [f"{100 * a:.2f}" if h else "" for a, h in zip(rows["accuracy"],
                                                                           has_n)]
        view["95% CI %"] = [f"{100 * lo:.2f}-{100 * hi:.2f}" if h else ""
                            for lo, hi, h in zip(rows["ci_low"], rows["ci_high"], has_n)]
        if "value" in rows and rows["value"].notna().any():
            view["value"] = [f"{v:.4g}" if v == v else "" for v in rows["value"]]
        if (~ok).any():
            view["status"] = [s if s == "ok" else f"FAILED: {e}"
                              for s, e in zip(rows["status"], rows["error"])]
        view = view.loc[:, [c for c in view.columns if (view[c] != "").any()]]
        blocks.append(f"\n[{benchmark}]\n" + view.to_string(index=False))
    return "\n".join(blocks)
