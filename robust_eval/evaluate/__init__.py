"""Benchmark types: the one protocol behind `robust-eval evaluate`, job configs and the API.

A benchmark type validates its options (`parse`), expands them into cells (`expand`), names a
cell (`columns`, `label`) and measures one cell (`run`). Front ends only translate: CLI flags
become the same option mapping a job config holds (`options_from_args`), then everything goes
through `parse`, the job runner and the store. Adding a benchmark is one module that subclasses
`Benchmark` and registers it with `@register_benchmark`.

Called, this package is the Python API's one-call form: `robust_eval.evaluate(model, ...)` is
robust_eval.api.evaluate.
"""
from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from robust_eval.registry import Registry
from robust_eval.validate import Checker

BENCHMARKS = Registry("benchmark")
# Options every benchmark accepts (they pick models/datasets or override the job's defaults).
COMMON_FIELDS = ("type", "models", "datasets", "seed", "batch_size", "limit", "precision")
# fp32, or bf16: the model runs under torch.autocast(bfloat16) while a cell is measured.
PRECISIONS = ("fp32", "bf16")


@dataclass
class CellPlan:
    """One cell a benchmark asks for: `params` decide its numbers (they are hashed into the cell
    key), `extra` does not (file locations)."""

    params: Dict[str, Any]
    seed: int
    extra: Dict[str, Any] = field(default_factory=dict)


class Benchmark:
    """Base class of a benchmark type. Subclasses set `name`, `fields` and override the hooks."""

    name: str = ""
    cli_names: Tuple[str, ...] = ()  # `--benchmark` values it answers to (default: its name)
    fields: Tuple[str, ...] = ()  # config fields besides COMMON_FIELDS
    help: str = ""

    def add_arguments(self, parser) -> None:
        """CLI flags of its own (the flag group of `robust-eval evaluate`)."""

    def options_from_args(self, args, cli_name: str) -> Dict[str, Any]:
        """CLI flags -> the option mapping a job config would hold for the same benchmark."""
        return {"type": self.name}

    def parse(self, raw: Dict[str, Any], check: Checker, path: str, job_seed: int
              ) -> Dict[str, Any]:
        """Validated options of one config entry; errors name `path`.field."""
        return {}

    def expand(self, options: Dict[str, Any], seed: int, dataset_kind: Optional[str] = None
               ) -> Iterable[CellPlan]:
        """The cells of one config entry on one dataset (kind: cifar10, imagenet, ...)."""
        yield CellPlan({}, seed)

    def columns(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """The schema columns that name a cell (for ok and failed rows alike)."""
        return {}

    def precisions(self, options: Dict[str, Any]) -> Tuple[str, ...]:
        """Precisions its `run` honours. A job-wide precision it lacks gives fp32 cells (their
        rows say so); asking for it on the benchmark itself is a config error."""
        return PRECISIONS

    def label(self, params: Dict[str, Any], seed: int) -> str:
        return ""

    def run(self, cell: Dict[str, Any], ctx: "CellContext") -> List[Dict[str, Any]]:
        """Measure one cell: a list of measurements, each {correct, n, ...} plus schema columns
        of its own (metric, value, warnings) and `details` (merged into the params column)."""
        raise NotImplementedError


def register_benchmark(cls):
    """Class decorator: make a Benchmark subclass known to every front end."""
    BENCHMARKS.register(cls.name)(cls())
    return cls


@dataclass
class CellContext:
    """What a benchmark's `run` may use: the model and data of its cell, loaded once per worker."""

    cell: Dict[str, Any]
    device: str
    cache: Any  # robust_eval.jobs.cells.WorkerCache
    progress: Any = None  # callable(total, desc) -> object with update(n) and close()

    @property
    def batch_size(self) -> int:
        return self.cell["batch_size"]

    @property
    def precision(self) -> str:
        return self.cell.get("precision", "fp32")

    def autocast(self):
        """bf16: torch.autocast for everything `run` does (execute_cell enters it); code that
        must stay fp32 (training, the attacks' reported predictions) disables it itself."""
        import torch

        return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16,
                              enabled=self.precision == "bf16")

    def model(self, guarded: bool = True):
        """The cell's model; guarded, it raises on NaN/inf logits (robust_eval.jobs.cells)."""
        model = self.cache.model(self.cell["model_spec"], self.device)
        return model if guarded else model.model

    def data(self):
        return self.cache.data(self.cell["dataset_spec"], limit=self.cell["limit"])

    def bar(self, total: int, desc: str):
        """A progress bar over this cell's examples (a context manager with update(n))."""
        if self.progress is None:
            return _NoBar()
        return self.progress(total, desc)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


_MODULES = ("clean", "corruption", "attack", "label_noise", "spectral")


def benchmark_for(name: str) -> Benchmark:
    """The benchmark type named `name` (a config `type`)."""
    _load()
    return BENCHMARKS.get(name)


def cli_names() -> Dict[str, Benchmark]:
    """`--benchmark` value -> benchmark type."""
    _load()
    names: Dict[str, Benchmark] = {}
    for type_name in BENCHMARKS:
        bench = BENCHMARKS.get(type_name)
        for cli_name in bench.cli_names or (bench.name,):
            if cli_name in names:
                raise RuntimeError(f"--benchmark {cli_name!r} is claimed by "
                                   f"{names[cli_name].name!r} and {bench.name!r}")
            names[cli_name] = bench
    return names


def _load() -> None:
    for module in _MODULES:
        importlib.import_module(f"robust_eval.evaluate.{module}")


__all__ = ["BENCHMARKS", "COMMON_FIELDS", "PRECISIONS", "Benchmark", "CellContext", "CellPlan",
           "benchmark_for", "cli_names", "register_benchmark"]


class _CallablePackage(types.ModuleType):
    """Lets `robust_eval.evaluate(model, ...)` call the API while `robust_eval.evaluate` stays
    the package of benchmark types."""

    def __call__(self, *args, **kwargs):
        from robust_eval.api import evaluate

        return evaluate(*args, **kwargs)

    @property
    def __signature__(self):  # what help() and notebooks show for the call
        import inspect

        from robust_eval.api import evaluate

        return inspect.signature(evaluate)


sys.modules[__name__].__class__ = _CallablePackage
