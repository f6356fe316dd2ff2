"""Config -> grid of cells. A cell is the unit that is run, stored, skipped and retried.

Granularity (one cell = one result row group):
  clean        one cell per (model, dataset)
  corruption   one per (model, dataset, corruption, severity)
  attack       one per (model, dataset, attack, eps)
  label_noise  one per (model, dataset, noise kind, rate, seed): trains a model, then tests it

A cell's key hashes what decides its numbers: the model's identity (checkpoint sha256 plus how it
is loaded), the dataset (kind, split, limit), the benchmark parameters, the seed and the code
version. Paths are not part of the key, so a moved data folder does not invalidate results.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from robust_eval.jobs.config import DatasetSpec, JobConfig, ModelSpec

KEY_VERSION = 1


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

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Cell":
        return cls(**data)

    def label(self) -> str:
        p = self.params
        if self.benchmark == "corruption":
            what = f"{p['corruption']} s{p['severity']}"
        elif self.benchmark == "attack":
            what = f"{p['attack']} eps={p['eps']:.5g}"
        elif self.benchmark == "label_noise":
            what = f"{p['noise_type']} {p['noise_rate']:g} seed {self.seed}"
        else:
            what = ""
        return " ".join(x for x in (self.model, self.dataset, self.benchmark, what) if x)


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
    if checkpoint_sha256 is None and spec.checkpoint:
        # Missing file: key on the path so the failure is recorded and retried on the next run.
        identity["missing_checkpoint"] = spec.checkpoint
    return identity


def cell_key(identity: Dict[str, Any], dataset: DatasetSpec, benchmark: str,
             params: Dict[str, Any], seed: int, limit: Optional[int], code_version: str) -> str:
    payload = {
        "v": KEY_VERSION, "model": identity,
        "dataset": {"kind": dataset.kind, "split": dataset.split, "limit": dataset.limit},
        "benchmark": benchmark, "params": params, "seed": seed, "limit": limit,
        "code_version": code_version,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


def _corruption_source(options: Dict[str, Any], corruption: str) -> str:
    """auto -> files when the published file for this corruption exists, else generated."""
    source = options["source"]
    if source != "auto":
        return source
    folder = options.get("path")
    if folder and (Path(folder) / f"{corruption}.npy").is_file():
        return "files"
    if folder and (Path(folder) / corruption).is_dir():
        return "files"
    return "generated"


def expand(config: JobConfig, identities: Dict[str, Dict[str, Any]], code_version: str
           ) -> List[Cell]:
    """All cells of a config, in config order. `identities` maps model name -> model_identity."""
    cells: List[Cell] = []
    seen: set = set()
    models = {m.name: m for m in config.models}
    datasets = {d.name: d for d in config.datasets}
    for bench in config.benchmarks:
        options = bench.options
        seed = options.get("seed", config.seed)
        batch_size = options.get("batch_size", config.batch_size)
        limit = options.get("limit")
        # Parameters outer, models inner: the models of one (corruption, severity) run back to
        # back, so a worker generates the corrupted images once and reuses them.
        for params, extra, cell_seed in _cell_params(bench.type, options, seed):
            for model_name in bench.models or list(models):
                for dataset_name in bench.datasets or list(datasets):
                    model, dataset = models[model_name], datasets[dataset_name]
                    identity = identities[model_name]
                    key = cell_key(identity, dataset, bench.type, params, cell_seed, limit,
                                   code_version)
                    if key in seen:  # the same cell listed twice: run and store it once
                        continue
                    seen.add(key)
                    cells.append(Cell(
                        benchmark=bench.type, model=model_name, dataset=dataset_name,
                        params=params, seed=cell_seed, key=key, model_spec=asdict(model),
                        dataset_spec=asdict(dataset), model_identity=identity,
                        batch_size=batch_size, limit=limit, bench_index=bench.index,
                        extra=extra,
                    ))
    return cells


def _cell_params(kind: str, options: Dict[str, Any], seed: int):
    if kind == "clean":
        yield {}, {}, seed
    elif kind == "corruption":
        for corruption in options["corruptions"]:
            source = _corruption_source(options, corruption)
            extra = {"path": options.get("path")} if source == "files" else {}
            for severity in options["severities"]:
                yield ({"corruption": corruption, "severity": severity, "source": source,
                        "params": options["params"]}, extra, seed)
    elif kind == "attack":
        for eps in options["eps"]:
            yield ({"attack": options["attack"], "eps": eps, "steps": options["steps"],
                    "alpha": options.get("alpha"), "restarts": options["restarts"],
                    "engine": options["engine"], "threat": options["threat"]}, {}, seed)
    elif kind == "label_noise":
        for noise_type in options["kinds"]:
            for rate in options["rates"]:
                for noise_seed in options["seeds"]:
                    yield ({"noise_type": noise_type, "noise_rate": rate,
                            "recipe": options["recipe"]}, {}, noise_seed)
    else:  # pragma: no cover - config validation rejects other types
        raise ValueError(f"unknown benchmark type {kind!r}")
