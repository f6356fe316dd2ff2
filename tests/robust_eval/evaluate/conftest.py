"""`measure`: run a benchmark type on an in-memory model and data through the job runner's own
cell path (parse -> expand -> execute_cell), without a store."""
import argparse

import pytest

from robust_eval.evaluate import benchmark_for
from robust_eval.jobs.cells import FiniteGuard, WorkerCache, execute_cell
from robust_eval.validate import Checker


class StaticCache(WorkerCache):
    """Serves one given model and dataset whatever the cell asks for."""

    def __init__(self, model, data):
        super().__init__()
        self._model, self._data = FiniteGuard(model).eval(), data

    def model(self, spec, device):
        return self._model

    def data(self, spec, split=None, limit=None):
        return self._data.subset(limit) if limit else self._data


def _measure(benchmark, model, data, raw=None, *, seed=0, batch_size=256, device="cpu",
            extra=None, precision="fp32"):
    """Rows of every cell of one benchmark entry; raises on a failed cell."""
    bench = benchmark_for(benchmark)
    seed = (raw or {}).get("seed", seed)
    options = bench.parse(dict(raw or {}, type=benchmark), Checker("test"), "benchmark", seed)
    cache = StaticCache(model, data)
    rows = []
    for i, plan in enumerate(bench.expand(options, seed, getattr(data, "name", "cifar10"))):
        cell = {"benchmark": benchmark, "model": "m", "dataset": getattr(data, "name", "d"),
                "params": plan.params, "seed": plan.seed, "key": f"k{i}",
                "model_spec": {"name": "m"}, "dataset_spec": {"kind": "test"},
                "model_identity": {"checkpoint_sha256": None}, "batch_size": batch_size,
                "limit": None, "extra": dict(plan.extra, **(extra or {})),
                "precision": precision}
        outcome = execute_cell(cell, device, cache)
        if outcome["status"] != "ok":
            raise RuntimeError(outcome["error"])
        rows += outcome["rows"]
    return rows


def _flags(benchmark_cli_name, argv):
    """The option mapping `robust-eval evaluate --benchmark NAME ARGV` gives."""
    from robust_eval.evaluate import cli_names

    bench = cli_names()[benchmark_cli_name]
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.options_from_args(parser.parse_args(argv), benchmark_cli_name)


@pytest.fixture
def measure():
    return _measure


@pytest.fixture
def flags():
    return _flags
