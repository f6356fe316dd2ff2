"""Config -> grid of cells. A cell is the unit that is run, stored, skipped and retried.

Each benchmark type's `expand` decides what one cell is (robust_eval/evaluate/): clean one per
(model, dataset); corruption per (corruption, severity); attack per (attack, eps); label noise
per (noise kind, rate, seed); spectral one per model.

A cell's key hashes what decides its numbers: the model's identity (checkpoint sha256 plus how it
is loaded), the dataset (kind, split, limit), the benchmark parameters, the seed, the precision
and the code version. Paths are not part of the key, so a moved data folder does not invalidate results.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from robust_eval.evaluate import benchmark_for
from robust_eval.jobs.config import DatasetSpec, JobConfig, ModelSpec

KEY_VERSION = 2  # 2: one benchmark protocol (params renamed)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class Cell:
    benchmark: str
    model: str
    dataset: str
    params: Dict[str, Any]  # benchmark parameters that decide the numbers (part of the key)
    seed: int
    key: str
    model_spec: Dict[str, Any]  # how to build the model (resolved paths)
    dataset_spec: Dict[str, Any]
    model_identity: Dict[str, Any]
    batch_size: int = 256
    limit: Optional[int] = None
    bench_index: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)  # not in the key (e.g. file paths)
    precision: str = "fp32"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Cell":
        return cls(**data)

    def label(self) -> str:
        from robust_eval.evaluate import benchmark_for

        what = benchmark_for(self.benchmark).label(self.params, self.seed)
        precision = "" if self.precision == "fp32" else self.precision
        return " ".join(x for x in (self.model, self.dataset, self.benchmark, what, precision)
                        if x)


def model_identity(spec: ModelSpec, checkpoint_sha256: Optional[str]) -> Dict[str, Any]:
    """What decides a model's outputs: its weights plus the arguments it is loaded with."""
    identity: Dict[str, Any] = {
        "checkpoint_sha256": checkpoint_sha256,
        "arch": spec.arch, "norm": spec.norm, "num_classes": spec.num_classes,
        "mean": list(spec.mean) if spec.mean else None,
        "std": list(spec.std) if spec.std else None,
    }
    if spec.robustbench:
        identity.update(robustbench=spec.robustbench, threat_model=spec.threat_model)
    if spec.in_memory:
        identity["in_memory"] = spec.in_memory  # hash of the module's class and tensors
    if checkpoint_sha256 is None and spec.checkpoint:
        # Missing file: key on the path so the failure is recorded and retried on the next run.
        identity["missing_checkpoint"] = spec.checkpoint
    return identity


def cell_key(name: str, identity: Dict[str, Any], dataset: DatasetSpec, benchmark: str,
             params: Dict[str, Any], seed: int, limit: Optional[int], code_version: str,
             precision: str = "fp32") -> str:
    """The model's name is part of the key: its rows carry it. fp32 leaves the payload as it
    was before precisions existed, so stored fp32 cells keep their keys."""
    payload = {
        "v": KEY_VERSION, "name": name, "model": identity,
        "dataset": {"kind": dataset.kind, "split": dataset.split, "limit": dataset.limit},
        "benchmark": benchmark, "params": params, "seed": seed, "limit": limit,
        "code_version": code_version,
    }
    if precision != "fp32":
        payload["precision"] = precision
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


def expand(config: JobConfig, identities: Dict[str, Dict[str, Any]], code_version: str
           ) -> List[Cell]:
    """All cells of a config, in config order. `identities` maps model name -> model_identity."""
    cells: List[Cell] = []
    seen: set = set()
    models = {m.name: m for m in config.models}
    datasets = {d.name: d for d in config.datasets}
    for bench in config.benchmarks:
        benchmark = benchmark_for(bench.type)
        options = bench.options
        seed = options.get("seed", config.seed)
        batch_size = options.get("batch_size", config.batch_size)
        limit = options.get("limit")
        precision = options.get("precision", config.precision)
        if precision not in benchmark.precisions(options):
            precision = "fp32"  # e.g. spectral reads weights only; its rows say fp32
        # Parameters outer, models inner: the models of one (corruption, severity) run back to
        # back, so a worker generates the corrupted images once and reuses them.
        for dataset_name in bench.datasets or list(datasets):
            dataset = datasets[dataset_name]
            for plan in benchmark.expand(options, seed, dataset.kind):
                for model_name in bench.models or list(models):
                    identity = identities[model_name]
                    key = cell_key(model_name, identity, dataset, bench.type, plan.params,
                                   plan.seed, limit, code_version, precision)
                    if key in seen:  # the same cell listed twice: run and store it once
                        continue
                    seen.add(key)
                    cells.append(Cell(
                        benchmark=bench.type, model=model_name, dataset=dataset_name,
                        params=plan.params, seed=plan.seed, key=key,
                        model_spec=asdict(models[model_name]), dataset_spec=asdict(dataset),
                        model_identity=identity, batch_size=batch_size, limit=limit,
                        bench_index=bench.index, extra=dict(plan.extra), precision=precision,
                    ))
    return cells
