"""The label-noise benchmark: train under noisy labels, report clean test accuracy.

Plain entry point for the job runner: `label_noise_rows(arch=, norm=, noise_type=, noise_rate=,
seed=, dataset=, data_root=, cache_dir=, recipe=, device=)`. For one (arch, norm, noise kind,
rate, seed) it trains, or reuses the finished run whose full training spec matches (folder
`cache_dir/run_name(spec)`), then measures clean test accuracy at the best-validation epoch
and at the last epoch: two rows, `metric` = "best_val_epoch" / "last_epoch".

Without rates (`robust-eval evaluate --benchmark label_noise` on a checkpoint that `robust-eval
train` made) it measures that checkpoint: kind, rate and seed come from its metadata.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import pandas as pd
import torch

from robust_eval.evaluate import Benchmark, CellPlan, register_benchmark

METRICS = ("best_val_epoch", "last_epoch")
# Job-config recipe keys -> train_model options (the config says `limit` for the training set).
RECIPE_ALIASES = {"limit": "train_limit"}


def _recipe_options(recipe: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    options = {}
    for key, value in (recipe or {}).items():
        options[RECIPE_ALIASES.get(key, key)] = value
    for forbidden in ("noise_type", "noise_rate", "seed", "arch", "norm"):
        if forbidden in options:
            raise ValueError(f"label_noise recipe must not set {forbidden!r}: it is a cell "
                             f"parameter, not a recipe option")
    if "milestones" in options and options["milestones"] is not None:
        options["milestones"] = tuple(options["milestones"])
    return options


def label_noise_measurements(*, arch: str, norm: str = "bn", noise_type: str = "symmetric",
                     noise_rate: float, seed: int = 0, dataset: str = "cifar10",
                     data_root: Union[str, Path, None] = None, cache_dir: Union[str, Path],
                     recipe: Optional[Mapping[str, Any]] = None, train_recipe: str = "label_noise",
                     train_data=None, test_data=None, test_limit: Optional[int] = None,
                     num_classes: Optional[int] = None, mean=None, std=None,
                     device: Union[str, torch.device] = "cpu", batch_size: int = 512,
                     progress=None, precision: str = "fp32") -> List[Dict[str, Any]]:
    """Train-or-reuse, then two measurements (best-validation epoch, last epoch) with their
    per-example outcomes on the clean test labels. Training follows the recipe (fp32 unless it
    says amp), whatever autocast the caller runs under; `precision` is that of the test pass."""
    from robust_eval.checkpoints import file_sha256, load_checkpoint
    from robust_eval.data import load_split
    from robust_eval.evaluate.clean import outcome_measurement, predict
    from robust_eval.train import train_model

    options = _recipe_options(recipe)
    if mean is not None:
        options["mean"] = tuple(mean)
    if std is not None:
        options["std"] = tuple(std)
    if float(options.get("val_fraction", 0.1)) <= 0:
        raise ValueError("the label_noise benchmark needs a validation split (val_fraction > 0) "
                         "to pick the best-validation epoch")
    started = time.perf_counter()
    # a bf16 cell trains as the recipe says (the cached run is shared with fp32 cells)
    with torch.autocast(torch.device(device).type, enabled=False):
        result = train_model(cache_dir=cache_dir, arch=arch, norm=norm, dataset=dataset,
                             data_root=data_root, train_data=train_data, recipe=train_recipe,
                             seed=seed, num_classes=num_classes, device=device,
                             noise_type=noise_type, noise_rate=noise_rate, progress=progress,
                             **options)
    train_seconds = time.perf_counter() - started
    if not result.complete:  # pragma: no cover - train_model runs to the end without stop_after
        raise RuntimeError(f"training in {result.out_dir} did not finish")
    if test_data is None:
        test_data = load_split(dataset, data_root, split="test", limit=test_limit)
    elif test_limit is not None:
        test_data = test_data.subset(test_limit)

    measurements = []
    epochs = {"best_val_epoch": result.best_epoch, "last_epoch": len(result.history)}
    paths = {"best_val_epoch": result.best_checkpoint, "last_epoch": result.last_checkpoint}
    for metric in METRICS:
        model = load_checkpoint(paths[metric], device=device)
        with _autocast(device, precision):
            predictions = predict(model, test_data.images, batch_size, device)
        epoch = epochs[metric]
        record = result.history[epoch - 1]
        details = {
            "epoch": epoch, "epochs": result.spec.epochs, "val_acc": record.get("val_acc"),
            "val_labels": result.spec.val_labels, "recipe": result.spec.recipe,
            "train_spec_key": result.spec.key, "run_dir": str(result.out_dir),
            "realised_noise_rate": (result.noise or {}).get("realised_rate"),
            "reused": result.trained_epochs == 0, "train_seconds": round(train_seconds, 3),
            "trained_checkpoint_sha256": file_sha256(paths[metric]),
        }
        measurements.append(outcome_measurement(predictions, test_data.labels, metric=metric,
                                                details=details))
    return measurements


def _autocast(device, precision: str):
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                          enabled=precision == "bf16")


def label_noise_rows(*, arch: str, norm: str = "bn", noise_type: str = "symmetric",
                     noise_rate: float, seed: int = 0, dataset: str = "cifar10",
                     model_name: Optional[str] = None, device: Union[str, torch.device] = "cpu",
                     **options: Any) -> List[Dict[str, Any]]:
    """label_noise_measurements as schema rows (the library form)."""
    from robust_eval.schema import device_name, make_row

    rows = []
    for m in label_noise_measurements(arch=arch, norm=norm, noise_type=noise_type,
                                      noise_rate=noise_rate, seed=seed, dataset=dataset,
                                      device=device, **options):
        details = m["details"]
        rows.append(make_row(
            correct=m["correct"], n=m["n"], model=model_name or f"{arch}-{norm}",
            checkpoint_sha256=details["trained_checkpoint_sha256"], arch=arch, norm=norm,
            dataset=options.get("test_data").name if options.get("test_data") is not None
            else dataset, benchmark="label_noise", noise_type=noise_type,
            noise_rate=float(noise_rate), seed=int(seed), metric=m["metric"],
            device=device_name(device), params=details))
    return rows


@register_benchmark
class LabelNoise(Benchmark):
    name = "label_noise"
    fields = ("kinds", "rates", "seeds", "recipe")
    help = "train under noisy labels, test on clean labels (or measure such a checkpoint)"

    def add_arguments(self, parser) -> None:
        g = parser.add_argument_group("label noise (--benchmark label_noise)")
        g.add_argument("--noise-rates", default=None, metavar="R[,R...]",
                       help="train the model's arch and norm at these noise rates; without it, "
                            "measure a checkpoint trained by a label-noise recipe")
        g.add_argument("--noise-kinds", default="symmetric", help="symmetric, pairflip, ...")
        g.add_argument("--noise-seeds", default="0", help="training seeds, e.g. 0,1,2")
        g.add_argument("--noise-epochs", type=int, default=None, help="training epochs")

    def options_from_args(self, args, cli_name):
        raw: Dict[str, Any] = {"type": self.name}
        if args.noise_rates:
            split = lambda text: [v.strip() for v in text.split(",") if v.strip()]  # noqa: E731
            raw.update(rates=split(args.noise_rates), kinds=split(args.noise_kinds))
            raw["seeds"] = [int(v) for v in split(args.noise_seeds)]
            if args.noise_epochs is not None:
                raw["recipe"] = {"epochs": args.noise_epochs}
        return raw

    def parse(self, raw, check, path, job_seed):
        from robust_eval.train.noise import KINDS

        if "rates" not in raw:
            for key in ("kinds", "seeds", "recipe"):
                if key in raw:
                    raise check.fail(f"{path}.{key}", "applies only with rates (training)")
            return {"mode": "checkpoint"}
        options: Dict[str, Any] = {"mode": "train"}
        kinds = check.sequence(raw.get("kinds", ["symmetric"]), f"{path}.kinds",
                               allow_scalar=True)
        options["kinds"] = [check.choice(k, f"{path}.kinds[{i}]", KINDS)
                            for i, k in enumerate(kinds)]
        rates = check.sequence(raw["rates"], f"{path}.rates", allow_scalar=True)
        options["rates"] = [check.number(r, f"{path}.rates[{i}]", minimum=0, maximum=1)
                            for i, r in enumerate(rates)]
        for i, rate in enumerate(options["rates"]):
            if rate >= 1:
                raise check.fail(f"{path}.rates[{i}]", f"a noise rate must be below 1, got {rate}")
        options["seeds"] = check.integers(raw.get("seeds", [job_seed]), f"{path}.seeds",
                                          minimum=0)
        recipe = dict(check.mapping(raw.get("recipe", {}), f"{path}.recipe"))
        for key in ("epochs", "batch_size", "limit"):
            if key in recipe:
                check.integer(recipe[key], f"{path}.recipe.{key}", minimum=1)
        for key in ("lr", "weight_decay", "momentum"):
            if key in recipe:
                recipe[key] = check.number(recipe[key], f"{path}.recipe.{key}", minimum=0)
        if "augment" in recipe:
            check.boolean(recipe["augment"], f"{path}.recipe.augment")
        try:
            _recipe_options(recipe)
        except ValueError as error:
            raise check.fail(f"{path}.recipe", str(error)) from None
        options["recipe"] = recipe
        return options

    def expand(self, options, seed, dataset_kind=None):
        if options["mode"] == "checkpoint":
            yield CellPlan({"mode": "checkpoint"}, seed)
            return
        for noise_type in options["kinds"]:
            for rate in options["rates"]:
                for noise_seed in options["seeds"]:
                    yield CellPlan({"mode": "train", "noise_type": noise_type, "noise_rate": rate,
                                    "recipe": options["recipe"]}, noise_seed)

    def columns(self, params):
        if params["mode"] == "checkpoint":
            return {}
        return {"noise_type": params["noise_type"], "noise_rate": params["noise_rate"]}

    def label(self, params, seed):
        if params["mode"] == "checkpoint":
            return "as trained"
        return f"{params['noise_type']} {params['noise_rate']:g} seed {seed}"

    def run(self, cell, ctx):
        if cell["params"]["mode"] == "checkpoint":
            return self._measure_checkpoint(ctx)
        return self._train(cell, ctx)

    @staticmethod
    def _measure_checkpoint(ctx):
        """Clean accuracy of a checkpoint trained by a robust-eval label-noise recipe."""
        from robust_eval.evaluate.clean import outcome_measurement, predict

        model = ctx.model()
        meta = getattr(model, "robust_eval_meta", {}) or {}
        spec = meta.get("recipe") or {}
        if not spec.get("noise_type"):
            where = meta.get("checkpoint", "the model")
            raise ValueError(f"{where} was not trained by a robust-eval label-noise recipe (its "
                             f"metadata has no noise_type); train one with `robust-eval train "
                             f"--recipe label_noise`")
        metrics = meta.get("metrics") or {}
        data = ctx.data()
        predictions = predict(model, data.images, ctx.batch_size, ctx.device,
                              num_classes=data.num_classes)
        details = {"epoch": metrics.get("epoch"), "epochs": spec.get("epochs"),
                   "train_spec": {k: spec.get(k) for k in ("recipe", "epochs", "val_labels",
                                                           "val_fraction", "data_fingerprint")},
                   "realised_noise_rate": (metrics.get("noise") or {}).get("realised_rate")}
        return [outcome_measurement(predictions, data.labels, noise_type=spec["noise_type"],
                                    noise_rate=float(spec.get("noise_rate", 0.0)),
                                    seed=spec.get("seed"),
                                    metric=metrics.get("role", "checkpoint"), details=details)]

    @staticmethod
    def _train(cell, ctx):
        """Train (or reuse from the cache) on noisy training labels, test on clean labels."""
        p, spec, data_spec = cell["params"], cell["model_spec"], cell["dataset_spec"]
        arch, norm = spec.get("arch"), spec.get("norm")
        if (arch is None or norm is None) and spec.get("checkpoint"):
            from robust_eval.checkpoints import read_checkpoint_metadata

            meta = read_checkpoint_metadata(spec["checkpoint"])  # retrain the same arch and norm
            arch, norm = arch or meta.get("arch"), norm or meta.get("norm")
        if arch is None or norm is None:
            raise ValueError(f"model {cell['model']!r}: label-noise training needs arch and norm "
                             f"(set them in the config)")
        return label_noise_measurements(
            arch=arch, norm=norm, noise_type=p["noise_type"], noise_rate=p["noise_rate"],
            seed=cell["seed"], dataset=data_spec["kind"], data_root=data_spec.get("root"),
            cache_dir=cell["extra"]["label_noise_cache"], recipe=p["recipe"],
            test_data=ctx.data(), num_classes=spec.get("num_classes"), mean=spec.get("mean"),
            std=spec.get("std"), device=ctx.device, batch_size=ctx.batch_size,
            precision=ctx.precision)


def label_noise_table(frame: pd.DataFrame, metric: str = "best_val_epoch") -> pd.DataFrame:
    """Accuracy (%) vs noise rate: rows (arch, norm, noise_type), columns noise_rate; the mean
    over seeds, with the seed count alongside when there is more than one seed."""
    rows = frame[(frame["benchmark"] == "label_noise") & (frame["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no label_noise rows with metric {metric!r}")
    grouped = rows.groupby(["arch", "norm", "noise_type", "noise_rate"])["accuracy"]
    table = (grouped.mean() * 100).unstack("noise_rate")
    counts = grouped.count().unstack("noise_rate")
    if (counts > 1).any().any():
        table = table.round(2).astype(str) + " (n=" + counts.astype(str) + ")"
    return table
