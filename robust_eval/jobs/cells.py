"""Run one cell: build (or reuse) the model and data, let the benchmark type measure, and turn
its measurements into schema rows. Every path to a number (`run`, `evaluate`, the Python API)
comes through `execute_cell`, so the NaN guard, `seconds`, `params` and the failed rows are made
here once.

`execute_cell` never raises: any error becomes a failed outcome whose row carries status
"failed", the error text and NaN accuracy, so one bad cell cannot stop the others and can never
pass for a number.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

import torch
from torch import nn

from reports.outcomes import encode as encode_outcomes
from robust_eval.evaluate import CellContext, benchmark_for
from robust_eval.schema import make_row

LOG = logging.getLogger("robust_eval.jobs")


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


class WorkerCache:
    """Models, clean sets and corrupted sets a worker keeps between cells (a few of each): the
    cells of one (corruption, severity) run back to back for every model, so the corrupted
    images are made once."""

    def __init__(self, size: int = 6):
        self.size = size
        self._items: "OrderedDict[str, Any]" = OrderedDict()

    def _get(self, key: str, make):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def model(self, spec: Dict[str, Any], device: str) -> nn.Module:
        if spec.get("in_memory"):  # not kept: the cache must not hold on to a caller's module
            return FiniteGuard(load_model(spec, device)).to(device).eval()
        key = json.dumps(["model", spec, str(device)], sort_keys=True, default=str)
        return self._get(key, lambda: FiniteGuard(load_model(spec, device)).to(device).eval())

    def data(self, spec: Dict[str, Any], split: Optional[str] = None,
             limit: Optional[int] = None):
        from robust_eval.data import load_split

        split = split or spec.get("split", "test")
        limits = [x for x in (spec.get("limit"), limit) if x is not None]
        limit = min(limits) if limits else None
        key = json.dumps(["data", spec.get("kind"), spec.get("root"), split, limit])

        def load():
            data = load_split(spec["kind"], spec.get("root"), split=split, limit=limit)
            data.extra["fingerprint"] = fingerprint(data)
            return data

        return self._get(key, load)

    def corrupted(self, data, spec: Dict[str, Any], limit: Optional[int],
                  params: Dict[str, Any], seed: int) -> torch.Tensor:
        """The clean set under one (corruption, severity, parameter set, seed), uint8."""
        from corruptions.generate import apply_corruption

        key = json.dumps(["corrupted", spec.get("kind"), spec.get("root"), spec.get("split"),
                          spec.get("limit"), limit, params, seed], sort_keys=True, default=str)
        return self._get(key, lambda: apply_corruption(
            data.images, params["corruption"], params["severity"], params=params["param_set"],
            seed=seed, indices=torch.arange(len(data.images))))


def fingerprint(data) -> str:
    """What the clean examples are: their pixels, labels and order. Two rows with the same
    fingerprint were measured on the same examples, so their outcomes pair up."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(str(tuple(data.images.shape)).encode())
    digest.update(data.images.contiguous().cpu().numpy().tobytes())
    digest.update(data.labels.cpu().to(torch.int64).numpy().tobytes())
    return digest.hexdigest()[:16]


# Live modules this process evaluates (robust_eval.evaluate on an nn.Module), by module_hash.
# They cannot travel to other processes: their class need not be importable there.
_IN_MEMORY: Dict[str, nn.Module] = {}


def module_hash(model: nn.Module) -> str:
    """What identifies a live module: the classes of it and its submodules, and every tensor of
    its state dict and buffers (names, dtypes, shapes, bytes), so the same weights reuse cells
    and a changed one does not."""
    import hashlib

    from robust_eval.checkpoints import weights_sha256

    tensors = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    tensors.update(model.named_buffers())  # non-persistent ones too (normalisation constants)
    classes = ",".join(f"{name}:{type(m).__module__}.{type(m).__qualname__}"
                       for name, m in model.named_modules())
    return hashlib.sha256(f"{classes}|{weights_sha256(tensors)}".encode()).hexdigest()


@contextmanager
def in_memory_model(model: nn.Module) -> Iterator[str]:
    """Make `model` loadable from the spec {"in_memory": key} in this process while the block
    runs; yields the key (module_hash)."""
    key = module_hash(model)
    previous = _IN_MEMORY.get(key)
    _IN_MEMORY[key] = model
    try:
        yield key
    finally:
        if previous is None:
            _IN_MEMORY.pop(key, None)
        else:
            _IN_MEMORY[key] = previous


def load_model(spec: Dict[str, Any], device: str) -> nn.Module:
    """A model from its spec: a live module of this process, a checkpoint file or a RobustBench
    zoo file (never downloads), in eval mode and in channels_last where that pays
    (`channels_last_pays`)."""
    from robust_eval.checkpoints import load_checkpoint, load_robustbench

    if spec.get("in_memory"):
        if spec["in_memory"] not in _IN_MEMORY:
            raise RuntimeError(f"model {spec['name']!r}: no in-memory module "
                               f"{spec['in_memory'][:12]} in this process (in-memory models "
                               f"run only in the process that holds them)")
        model = _IN_MEMORY[spec["in_memory"]]
    elif spec.get("robustbench"):
        model = load_robustbench(spec["robustbench"], spec["model_dir"],
                                 dataset=spec.get("zoo_dataset", "cifar10"),
                                 threat_model=spec.get("threat_model", "Linf"), device=device)
    else:
        path = spec.get("checkpoint")
        if not path:
            raise FileNotFoundError(f"model {spec['name']!r} has no checkpoint (training it "
                                    f"failed or was skipped)")
        model = load_checkpoint(path, arch=spec.get("arch"), norm=spec.get("norm"),
                                num_classes=spec.get("num_classes"), mean=spec.get("mean"),
                                std=spec.get("std"), device=device)
    if channels_last_pays(model):
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def channels_last_pays(model: nn.Module) -> bool:
    """True when every module with a 4-D weight is a plain nn.Conv2d. Measured (CPU, batch 250,
    docs/performance.md): forward 1.2-1.4x faster for ResNet-20/56 and tiny_cnn with BN, the
    same fp32 predictions; ConvNorm (FFT layers) gains nothing, so it stays contiguous, as do
    the untimed SN/ONI/OCNN convs."""
    convs = [m for m in model.modules()
             if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 4]
    return bool(convs) and all(type(m) is nn.Conv2d for m in convs)


_CACHE = WorkerCache()


# ----------------------------------------------------------------------------- rows
def cell_rows(cell: Dict[str, Any], measurements: List[Dict[str, Any]], *, seconds: float,
              device: str, model: Optional[nn.Module] = None, data=None,
              error: Optional[str] = None, outcomes: Optional[list] = None
              ) -> List[Dict[str, Any]]:
    """Schema rows of a cell: one per measurement, or one failed row when `error` is set.
    A measurement's per-example outcomes are encoded into `outcomes` (aligned with the rows)."""
    benchmark = benchmark_for(cell["benchmark"])
    spec, identity = cell["model_spec"], cell["model_identity"]
    meta = getattr(model, "robust_eval_meta", None) or {}
    base = {
        "model": cell["model"], "checkpoint_sha256": identity.get("checkpoint_sha256"),
        "arch": meta.get("arch") or spec.get("arch"), "norm": meta.get("norm") or spec.get("norm"),
        "dataset": cell["dataset"], "benchmark": cell["benchmark"], "seed": cell["seed"],
        "device": _device_label(device), "code_version": cell["extra"].get("code_version"),
        "cell_key": cell["key"], "precision": cell.get("precision", "fp32"),
        "fingerprint": (getattr(data, "extra", None) or {}).get("fingerprint"),
        "mean": _stats_text(meta.get("mean") or spec.get("mean")),
        "std": _stats_text(meta.get("std") or spec.get("std")),
    }
    base.update(benchmark.columns(cell["params"]))
    if error is not None:
        return [make_row(correct=None, n=None, status="failed", error=error,
                         seconds=seconds, params=cell["params"], **base)]
    rows = []
    for measurement in measurements:
        fields = dict(base)
        measurement = dict(measurement)
        details = measurement.pop("details", None) or {}
        correct, n = measurement.pop("correct"), measurement.pop("n")
        arrays = measurement.pop("outcomes", None)
        if outcomes is not None:
            outcomes.append(None if arrays is None else encode_outcomes(
                **{k: v.cpu().numpy() if hasattr(v, "cpu") else v for k, v in arrays.items()}))
        fields.update(measurement)
        fields.update(seconds=seconds / len(measurements),
                      params={**cell["params"], **details} if details else cell["params"])
        rows.append(make_row(correct=correct, n=n, **fields))
    return rows


def execute_cell(cell: Dict[str, Any], device: str, cache: Optional[WorkerCache] = None,
                 progress=None) -> Dict[str, Any]:
    """Run one cell; the outcome dict is {key, status, rows, error, seconds}."""
    cache = cache or _CACHE
    start = time.perf_counter()
    model = None
    try:
        if cell["model_identity"].get("missing_checkpoint"):
            raise FileNotFoundError(
                f"checkpoint not found: {cell['model_identity']['missing_checkpoint']}")
        if cell["extra"].get("prepare_error"):
            raise RuntimeError(cell["extra"]["prepare_error"])
        benchmark = benchmark_for(cell["benchmark"])
        ctx = CellContext(cell=cell, device=device, cache=cache, progress=progress)
        model = ctx.model()
        data = ctx.data()
        started = time.perf_counter()  # model and data loads are shared between cells
        with ctx.autocast():
            measurements = benchmark.run(cell, ctx)
        seconds = time.perf_counter() - started
        if not measurements:
            raise RuntimeError(f"benchmark {cell['benchmark']!r} measured nothing")
        for m in measurements:
            if m.get("value") is not None and not _finite(m["value"]):
                raise NonFiniteOutputError(f"benchmark {cell['benchmark']!r} measured a "
                                           f"non-finite value ({m['value']})")
        outcomes: list = []
        rows = cell_rows(cell, measurements, seconds=seconds, device=device, model=model,
                         data=data, outcomes=outcomes)
        return {"key": cell["key"], "status": "ok", "rows": rows, "error": None,
                "seconds": seconds, "outcomes": outcomes}
    except Exception as error:  # noqa: BLE001 - every failure is recorded per cell
        message = format_exception(error)
        LOG.error("cell %s failed: %s", cell.get("key"), message)
        seconds = time.perf_counter() - start
        return failed_outcome(cell, message, seconds, device, model)


def failed_outcome(cell: Dict[str, Any], error: str, seconds: float = 0.0,
                   device: str = "cpu", model: Optional[nn.Module] = None) -> Dict[str, Any]:
    rows = cell_rows(cell, [], seconds=seconds, device=device, model=model, error=error)
    return {"key": cell["key"], "status": "failed", "rows": rows, "error": error,
            "seconds": seconds}


def format_exception(error: BaseException) -> str:
    """One line for the results table; the traceback goes to the log."""
    LOG.debug("%s", "".join(traceback.format_exception(type(error), error,
                                                          error.__traceback__)))
    return f"{type(error).__name__}: {error}"


def _stats_text(values) -> Optional[str]:
    return None if values is None else ",".join(f"{float(v):g}" for v in values)


def _finite(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and math.isfinite(value)


def _device_label(device: str) -> str:
    try:
        from robust_eval.schema import device_name

        return device_name(device)
    except Exception:  # noqa: BLE001 - a label, never worth failing a cell over
        return str(device)
