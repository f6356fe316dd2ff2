"""Run one cell: build (or reuse) the model and data, call the benchmark, return an outcome.

`execute_cell` never raises: any error becomes a failed outcome whose rows carry status
"failed", the error text and NaN accuracy, so one bad cell cannot stop the others and can never
pass for a number. Models and datasets are cached per process (a worker runs many cells).
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from robust_eval.schema import COLUMNS

LOG = logging.getLogger("robust_eval.jobs")
_CACHE_SIZE = 6
_models: "OrderedDict[str, nn.Module]" = OrderedDict()
_data: "OrderedDict[str, Any]" = OrderedDict()


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN or inf logits: any accuracy from it would be meaningless."""


class FiniteGuard(nn.Module):
    """Raises on NaN/inf logits. Without it argmax(NaN) = class 0 and accuracy looks plausible."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        for name in ("robust_eval_meta", "mean", "std"):
            if hasattr(model, name):
                object.__setattr__(self, name, getattr(model, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if not torch.isfinite(out).all():
            raise NonFiniteOutputError(
                f"the model produced non-finite outputs (NaN/inf) on a batch of {len(x)} "
                f"inputs; no accuracy is reported for it")
        return out


def _remember(cache: "OrderedDict[str, Any]", key: str, value: Any) -> Any:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def clear_caches() -> None:
    _models.clear()
    _data.clear()


# ----------------------------------------------------------------------------- model and data
def load_model(spec: Dict[str, Any], device: str) -> nn.Module:
    key = json.dumps([spec, str(device)], sort_keys=True, default=str)
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    if spec.get("robustbench"):
        model = _load_robustbench(spec, device)
    else:
        path = spec.get("checkpoint")
        if not path:
            raise FileNotFoundError(f"model {spec['name']!r} has no checkpoint (training it "
                                    f"failed or was skipped)")
        from robust_eval.checkpoints import load_checkpoint

        model = load_checkpoint(path, arch=spec.get("arch"), norm=spec.get("norm"),
                                num_classes=spec.get("num_classes"), mean=spec.get("mean"),
                                std=spec.get("std"), device=device)
    model.eval()
    return _remember(_models, key, FiniteGuard(model).to(device).eval())


def _load_robustbench(spec: Dict[str, Any], device: str) -> nn.Module:
    from robust_eval.checkpoints import load_robustbench

    # Read from <model_dir>/<dataset>/<threat>/<name>.pt with weights_only; never downloads.
    return load_robustbench(spec["robustbench"], spec["model_dir"],
                            dataset=spec.get("zoo_dataset", "cifar10"),
                            threat_model=spec.get("threat_model", "Linf"), device=device)


def load_data(spec: Dict[str, Any], split: Optional[str] = None, limit: Optional[int] = None):
    from robust_eval.data import load_split

    split = split or spec.get("split", "test")
    limits = [x for x in (spec.get("limit"), limit) if x is not None]
    limit = min(limits) if limits else None
    key = json.dumps([spec.get("kind"), spec.get("root"), split, limit])
    if key in _data:
        _data.move_to_end(key)
        return _data[key]
    return _remember(_data, key, load_split(spec["kind"], spec.get("root"), split=split,
                                            limit=limit))


# ----------------------------------------------------------------------------- rows
def base_fields(cell: Dict[str, Any], model: Optional[nn.Module] = None) -> Dict[str, Any]:
    spec = cell["model_spec"]
    meta = getattr(model, "robust_eval_meta", None) or {}
    return {
        "model": cell["model"],
        "checkpoint_sha256": cell["model_identity"].get("checkpoint_sha256"),
        "arch": meta.get("arch") or spec.get("arch"),
        "norm": meta.get("norm") or spec.get("norm"),
        "dataset": cell["dataset"],
        "benchmark": cell["benchmark"],
        "seed": cell["seed"],
        "code_version": cell["extra"].get("code_version"),
    }


def _param_fields(cell: Dict[str, Any]) -> Dict[str, Any]:
    p = cell["params"]
    if cell["benchmark"] == "corruption":
        return {"corruption": p["corruption"], "severity": p["severity"]}
    if cell["benchmark"] == "attack":
        return {"attack": p["attack"], "threat": p["threat"], "eps": p["eps"],
                "steps": p["steps"], "restarts": p["restarts"]}
    if cell["benchmark"] == "label_noise":
        return {"noise_type": p["noise_type"], "noise_rate": p["noise_rate"]}
    return {}


def failed_rows(cell: Dict[str, Any], error: str) -> List[Dict[str, Any]]:
    """One row marking the cell failed: NaN accuracy and interval, the error text."""
    row: Dict[str, Any] = {c: None for c in COLUMNS}
    row.update(base_fields(cell))
    row.update(_param_fields(cell))
    row.update(n=math.nan, correct=math.nan, accuracy=math.nan, ci_low=math.nan,
               ci_high=math.nan, status="failed", error=error,
               params=json.dumps(cell["params"], sort_keys=True, default=str))
    from datetime import datetime, timezone

    row["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [row]


# ----------------------------------------------------------------------------- benchmarks
# Each cell calls the plain entry point of the module that owns its benchmark, so `run` and
# `robust-eval evaluate` compute every number the same way.
def _run_clean(cell, device) -> List[Dict[str, Any]]:
    from robust_eval.evaluate.clean import run_clean

    model = load_model(cell["model_spec"], device)
    data = load_data(cell["dataset_spec"], limit=cell["limit"])
    return run_clean(model, data, base_fields(cell, model), batch_size=cell["batch_size"],
                     device=device)


def _run_corruption(cell, device) -> List[Dict[str, Any]]:
    from robust_eval.evaluate.corruption import corruption_rows

    p = cell["params"]
    model = load_model(cell["model_spec"], device)
    data = load_data(cell["dataset_spec"], limit=cell["limit"])
    if p["source"] == "files":
        return corruption_rows(
            model, data, corruptions=[p["corruption"]], severities=[p["severity"]],
            source=cell["extra"]["path"], batch_size=cell["batch_size"],
            base=base_fields(cell, model), device=device)
    return _generated_corruption(cell, model, data, device)


def _generated_corruption(cell, model, data, device) -> List[Dict[str, Any]]:
    """Generated corruption: the corrupted set is cached per worker, so the next model of the
    same (corruption, severity) cell reuses it. apply_corruption is deterministic per (seed,
    image index, corruption, severity), so this equals evaluate/corruption.py's batched path."""
    from corruptions.generate import apply_corruption

    from robust_eval.evaluate.clean import run_clean

    p = cell["params"]
    key = json.dumps(["corrupted", cell["dataset_spec"], cell["limit"], p, cell["seed"]],
                     sort_keys=True, default=str)
    if key in _data:
        corrupted = _data[key]
    else:
        images = apply_corruption(data.images, p["corruption"], p["severity"],
                                  params=p["params"], seed=cell["seed"],
                                  indices=torch.arange(len(data.images)))
        corrupted = _remember(_data, key, replace(data, images=images))
    start = time.perf_counter()
    rows = run_clean(model, corrupted, base_fields(cell, model), batch_size=cell["batch_size"],
                     device=device)
    for row in rows:
        row.update(benchmark="corruption", corruption=p["corruption"],
                   severity=p["severity"], params=p["params"],
                   seconds=time.perf_counter() - start)
    return rows


def _run_attack(cell, device) -> List[Dict[str, Any]]:
    from robust_eval.evaluate.attack import run_attack_cells

    p = cell["params"]
    model = load_model(cell["model_spec"], device)
    data = load_data(cell["dataset_spec"], limit=cell["limit"])
    return run_attack_cells(
        model, data.images, data.labels, attacks=[p["attack"]], eps_list=[p["eps"]],
        steps=p["steps"], alpha=p["alpha"], restarts=p["restarts"], seed=cell["seed"],
        engine=p["engine"], batch_size=cell["batch_size"], device=device,
        base=base_fields(cell, model))


def _run_label_noise(cell, device) -> List[Dict[str, Any]]:
    """Train (or reuse from the cache) on noisy training labels, test on clean test labels."""
    from robust_eval.evaluate.label_noise import label_noise_rows

    p, spec, data_spec = cell["params"], cell["model_spec"], cell["dataset_spec"]
    arch, norm = spec.get("arch"), spec.get("norm")
    if (arch is None or norm is None) and spec.get("checkpoint"):
        from robust_eval.checkpoints import read_checkpoint_metadata

        meta = read_checkpoint_metadata(spec["checkpoint"])  # retrain the same arch and norm
        arch, norm = arch or meta.get("arch"), norm or meta.get("norm")
    if arch is None or norm is None:
        raise ValueError(f"model {cell['model']!r}: label-noise training needs arch and norm "
                         f"(set them in the config)")
    test = load_data(data_spec, limit=cell["limit"])
    rows = label_noise_rows(
        arch=arch, norm=norm, noise_type=p["noise_type"],
        noise_rate=p["noise_rate"], seed=cell["seed"], dataset=data_spec["kind"],
        data_root=data_spec.get("root"), cache_dir=cell["extra"]["label_noise_cache"],
        recipe=p["recipe"], test_data=test, num_classes=spec.get("num_classes"),
        mean=spec.get("mean"), std=spec.get("std"), device=device,
        batch_size=cell["batch_size"], model_name=cell["model"])
    base = base_fields(cell)
    for row in rows:
        row["dataset"] = base["dataset"]
        row["code_version"] = base["code_version"]
        if not isfinite_number(row.get("accuracy")):
            raise NonFiniteOutputError("label-noise training produced no finite accuracy")
    return rows


def isfinite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


RUNNERS: Dict[str, Callable[[Dict[str, Any], str], List[Dict[str, Any]]]] = {
    "clean": _run_clean,
    "corruption": _run_corruption,
    "attack": _run_attack,
    "label_noise": _run_label_noise,
}


def execute_cell(cell: Dict[str, Any], device: str) -> Dict[str, Any]:
    """Run one cell; the outcome dict is {key, status, rows, error, seconds}."""
    start = time.time()
    try:
        if cell["model_identity"].get("missing_checkpoint"):
            raise FileNotFoundError(
                f"checkpoint not found: {cell['model_identity']['missing_checkpoint']}")
        if cell["extra"].get("prepare_error"):
            raise RuntimeError(cell["extra"]["prepare_error"])
        rows = RUNNERS[cell["benchmark"]](cell, device)
        if not rows:
            raise RuntimeError(f"benchmark {cell['benchmark']!r} returned no rows")
        seconds = time.time() - start
        device_label = _device_label(device)
        for row in rows:
            row.setdefault("status", "ok")
            if row.get("seconds") is None:
                row["seconds"] = seconds / len(rows)
            if row.get("device") is None:
                row["device"] = device_label
            if cell["extra"].get("code_version"):
                row["code_version"] = cell["extra"]["code_version"]
            for column in ("accuracy",):
                value = row.get(column)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    raise RuntimeError(f"benchmark {cell['benchmark']!r} returned a row "
                                       f"without {column}: {row}")
        return {"key": cell["key"], "status": "ok", "rows": rows, "error": None,
                "seconds": seconds}
    except Exception as error:  # noqa: BLE001 - every failure is recorded per cell
        from robust_eval.jobs.executors import format_exception

        message = format_exception(error)
        LOG.error("cell %s failed: %s", cell.get("key"), message)
        rows = failed_rows(cell, message)
        for row in rows:
            row["device"] = _device_label(device)
        return {"key": cell["key"], "status": "failed", "rows": rows, "error": message,
                "seconds": time.time() - start}


def _device_label(device: str) -> str:
    try:
        from robust_eval.schema import device_name

        return device_name(device)
    except Exception:  # noqa: BLE001 - a label, never worth failing a cell over
        return str(device)


def file_sha256(path: Any, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (the checkpoint identity in cell keys and results)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
