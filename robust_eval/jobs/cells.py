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
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from robust_eval.schema import COLUMNS, make_row

LOG = logging.getLogger("robust_eval.jobs")
_CACHE_SIZE = 4
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


def count_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  batch_size: int, device: str) -> int:
    from robust_eval.data import batches

    correct = 0
    with torch.inference_mode():
        for x, y in batches(images, labels, batch_size, device=device):
            correct += int((model(x).argmax(1) == y).sum())
    return correct


# ----------------------------------------------------------------------------- benchmarks
def _run_clean(cell, device) -> List[Dict[str, Any]]:
    model = load_model(cell["model_spec"], device)
    data = load_data(cell["dataset_spec"], limit=cell["limit"])
    correct = count_correct(model, data.images, data.labels, cell["batch_size"], device)
    return [make_row(correct=correct, n=len(data), **base_fields(cell, model))]


def _run_corruption(cell, device) -> List[Dict[str, Any]]:
    p = cell["params"]
    model = load_model(cell["model_spec"], device)
    data = load_data(cell["dataset_spec"], limit=cell["limit"])
    if p["source"] == "files":
        images, labels = _published_corruption(cell, p, len(data))
    else:
        from corruptions.generate import apply_corruption

        images = apply_corruption(data.images, p["corruption"], p["severity"],
                                  params=p["params"], seed=cell["seed"])
        labels = data.labels
    correct = count_correct(model, images, labels, cell["batch_size"], device)
    fields = dict(base_fields(cell, model), **_param_fields(cell))
    fields["params"] = json.dumps({"source": p["source"], "params": p["params"]},
                                  sort_keys=True)
    return [make_row(correct=correct, n=len(labels), **fields)]


def _published_corruption(cell, p, n: int):
    kind = cell["dataset_spec"]["kind"]
    root = cell["extra"]["path"]
    if kind in ("cifar10", "cifar100"):
        from corruptions.datasets import load_cifar_c

        return load_cifar_c(root, p["corruption"], p["severity"], limit=n)
    if kind == "imagenet":
        from corruptions.datasets import load_imagenet_c

        images, labels, _ = load_imagenet_c(root, p["corruption"], p["severity"], limit=n)
        return images, labels
    raise ValueError(f"no published corruption files exist for dataset kind {kind!r}; "
                     f"use source: generated")


def _run_attack(cell, device) -> List[Dict[str, Any]]:
    from attacks.sweep import eps_sweep

    p = cell["params"]
    model = load_model(cell["model_spec"], device)
    data = load_data(cell["dataset_spec"], limit=cell["limit"])
    frame = eps_sweep(model, data.images.float().div(255), data.labels, attack=p["attack"],
                      eps_list=[p["eps"]], steps=p["steps"], alpha=p["alpha"],
                      restarts=p["restarts"], seed=cell["seed"], engine=p["engine"],
                      batch_size=cell["batch_size"], device=device)
    rows = []
    base = base_fields(cell, model)
    for record in frame.to_dict("records"):
        fields = dict(base)
        for column in ("attack", "threat", "eps", "steps", "restarts", "warnings"):
            if column in record and record[column] is not None:
                fields[column] = record[column]
        fields["benchmark"] = "attack"
        rows.append(make_row(correct=int(record["correct"]), n=int(record["n"]), **fields))
    return rows


def _run_label_noise(cell, device) -> List[Dict[str, Any]]:
    from robust_eval.evaluate.label_noise import run_label_noise_cell

    p = cell["params"]
    rows = run_label_noise_cell(
        arch=cell["model_spec"].get("arch"), norm=cell["model_spec"].get("norm"),
        dataset=cell["dataset_spec"], noise_type=p["noise_type"], noise_rate=p["noise_rate"],
        seed=cell["seed"], recipe=p["recipe"], device=device, base=base_fields(cell))
    return list(rows)


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
