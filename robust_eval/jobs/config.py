"""Job config: YAML -> validated dataclasses. Every error names the field by its path.

A config names models, datasets and benchmarks (docs/jobs.md has the full schema):

    name: cifar10
    precision: fp32 | bf16  (default fp32; a benchmark may set its own)
    models:    [{name, checkpoint | robustbench | train, arch, norm, num_classes, mean, std}]
               (arch: a registered name or an importable factory `package.module:callable`)
    datasets:  [{name, kind, root, split, limit}]
    benchmarks:
      - {type: clean}
      - {type: corruption, source: auto|files|generated, path, params, corruptions, severities}
      - {type: attack, attack: fgsm|pgd|pgd_l2|autoattack, eps: [0, 8/255], steps, restarts, engine}
      - {type: label_noise, kinds: [symmetric], rates: [0.2], seeds: [0], recipe: {...}}
      - {type: spectral, layers: ["layer1.*"]}

Each benchmark type validates its own fields (robust_eval/evaluate/); this module the rest.

Relative paths are resolved against the config file's folder, so a config travels with its repo.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from robust_eval.evaluate import PRECISIONS
from robust_eval.validate import Checker, ConfigError, resolve_path, show

DATASET_KINDS = ("cifar10", "cifar100", "imagenet", "digits")


@dataclass
class ModelSpec:
    name: str
    arch: Optional[str] = None
    norm: Optional[str] = None
    checkpoint: Optional[str] = None  # absolute path
    robustbench: Optional[str] = None  # zoo model name
    threat_model: str = "Linf"
    zoo_dataset: str = "cifar10"  # RobustBench leaderboard the zoo model belongs to
    model_dir: Optional[str] = None
    num_classes: Optional[int] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    train: Optional[Dict[str, Any]] = None  # train-and-cache recipe when no checkpoint exists
    # A live nn.Module of this process (robust_eval.evaluate): the hash it is registered under
    # in robust_eval.jobs.cells. Its arch/norm/mean/std only label its rows.
    in_memory: Optional[str] = None

    @property
    def source(self) -> str:
        if self.in_memory:
            return "in_memory"
        if self.robustbench:
            return "robustbench"
        if self.train is not None and self.checkpoint is None:
            return "train"
        return "checkpoint"


@dataclass
class DatasetSpec:
    name: str
    kind: str
    root: Optional[str] = None
    split: str = "test"
    limit: Optional[int] = None


@dataclass
class BenchmarkSpec:
    type: str
    index: int
    options: Dict[str, Any]
    models: Optional[List[str]] = None
    datasets: Optional[List[str]] = None


@dataclass
class JobConfig:
    name: str
    models: List[ModelSpec]
    datasets: List[DatasetSpec]
    benchmarks: List[BenchmarkSpec]
    seed: int = 0
    device: str = "auto"
    batch_size: int = 256
    workers: Optional[int] = None
    precision: str = "fp32"  # fp32 | bf16; a benchmark may set its own
    source: Optional[str] = None  # the config file
    raw: Dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- sections
_MODEL_FIELDS = ("name", "arch", "norm", "checkpoint", "robustbench", "threat_model",
                 "zoo_dataset", "model_dir", "num_classes", "mean", "std", "train", "in_memory")
_TRAIN_FIELDS = ("dataset", "root", "epochs", "lr", "milestones", "batch_size", "seed",
                 "weight_decay", "momentum", "augment", "limit", "recipe", "cache_dir")


def _parse_model(c: Checker, raw: Any, path: str, base: Path) -> ModelSpec:
    raw = c.mapping(raw, path)
    c.no_unknown(raw, path, _MODEL_FIELDS)
    name = c.string(raw.get("name"), f"{path}.name")
    spec = ModelSpec(name=name)
    if "in_memory" in raw:
        spec.in_memory = c.string(raw["in_memory"], f"{path}.in_memory")
    if "arch" in raw:
        spec.arch = c.string(raw["arch"], f"{path}.arch")
        if not spec.in_memory:
            from robust_eval.models import get_model_spec

            try:
                get_model_spec(spec.arch)
            except (KeyError, ValueError) as error:
                raise c.fail(f"{path}.arch", str(error)) from None
    if "norm" in raw:
        spec.norm = c.string(raw["norm"], f"{path}.norm")
    if "checkpoint" in raw:
        spec.checkpoint = resolve_path(c.string(raw["checkpoint"], f"{path}.checkpoint"), base)
    if "robustbench" in raw:
        spec.robustbench = c.string(raw["robustbench"], f"{path}.robustbench")
        if "threat_model" in raw:
            spec.threat_model = c.choice(raw["threat_model"], f"{path}.threat_model",
                                         ("Linf", "L2", "corruptions"))
        if "zoo_dataset" in raw:
            spec.zoo_dataset = c.choice(raw["zoo_dataset"], f"{path}.zoo_dataset",
                                        ("cifar10", "cifar100", "imagenet"))
        if "model_dir" in raw:
            spec.model_dir = resolve_path(c.string(raw["model_dir"], f"{path}.model_dir"), base)
    if "num_classes" in raw:
        spec.num_classes = c.integer(raw["num_classes"], f"{path}.num_classes", minimum=2)
    for key in ("mean", "std"):
        if key in raw:
            values = c.sequence(raw[key], f"{path}.{key}")
            if len(values) not in (1, 3):
                raise c.fail(f"{path}.{key}", f"expected 1 or 3 values, got {len(values)}")
            numbers = tuple(c.number(v, f"{path}.{key}[{i}]") for i, v in enumerate(values))
            if key == "std" and any(v <= 0 for v in numbers):
                raise c.fail(f"{path}.std", f"every std must be > 0, got {list(numbers)}")
            setattr(spec, key, numbers)
    if "train" in raw:
        train = dict(c.mapping(raw["train"], f"{path}.train"))
        c.no_unknown(train, f"{path}.train", _TRAIN_FIELDS)
        train.setdefault("dataset", "digits")
        c.choice(train["dataset"], f"{path}.train.dataset", DATASET_KINDS)
        for key in ("epochs", "batch_size", "seed", "limit"):
            if key in train:
                c.integer(train[key], f"{path}.train.{key}", minimum=0 if key == "seed" else 1)
        for key in ("lr", "weight_decay", "momentum"):
            if key in train:
                train[key] = c.number(train[key], f"{path}.train.{key}", minimum=0)
        if "milestones" in train:
            train["milestones"] = [c.integer(m, f"{path}.train.milestones[{i}]", minimum=1)
                                   for i, m in enumerate(c.sequence(
                                       train["milestones"], f"{path}.train.milestones",
                                       non_empty=False))]
        if "augment" in train and not isinstance(train["augment"], bool):
            raise c.fail(f"{path}.train.augment", f"expected true or false, got "
                                                  f"{show(train['augment'])}")
        if "root" in train:
            train["root"] = resolve_path(c.string(train["root"], f"{path}.train.root"), base)
        if "cache_dir" in train:
            train["cache_dir"] = resolve_path(c.string(train["cache_dir"],
                                                        f"{path}.train.cache_dir"), base)
        spec.train = train
    sources = [k for k in ("checkpoint", "robustbench", "train", "in_memory") if k in raw]
    if not sources:
        raise c.fail(path, f"model {name!r} needs one of checkpoint, robustbench or train")
    for alone in ("robustbench", "in_memory"):
        if alone in raw and len(sources) > 1:
            raise c.fail(path, f"model {name!r}: {alone} cannot be combined with "
                               f"{', '.join(s for s in sources if s != alone)}")
    if spec.source == "train" and not (spec.arch and spec.norm):
        raise c.fail(path, f"model {name!r}: training needs arch and norm")
    return spec


_DATASET_FIELDS = ("name", "kind", "root", "split", "limit")


def _parse_dataset(c: Checker, raw: Any, path: str, base: Path) -> DatasetSpec:
    raw = c.mapping(raw, path)
    c.no_unknown(raw, path, _DATASET_FIELDS)
    name = c.string(raw.get("name"), f"{path}.name")
    kind = c.choice(raw.get("kind", name), f"{path}.kind", DATASET_KINDS)
    spec = DatasetSpec(name=name, kind=kind)
    if "root" in raw:
        spec.root = resolve_path(c.string(raw["root"], f"{path}.root"), base)
    elif kind != "digits":
        raise c.fail(f"{path}.root", f"dataset {name!r} ({kind}) needs a root folder")
    if "split" in raw:
        spec.split = c.choice(raw["split"], f"{path}.split", ("test", "train", "val"))
    if raw.get("limit") is not None:
        spec.limit = c.integer(raw["limit"], f"{path}.limit", minimum=1)
    return spec


def _parse_benchmark(c: Checker, raw: Any, index: int, cfg: Dict[str, Any]) -> BenchmarkSpec:
    """Common fields here; the benchmark type validates its own (robust_eval.evaluate)."""
    from robust_eval.evaluate import BENCHMARKS, COMMON_FIELDS, benchmark_for

    path = f"benchmarks[{index}]"
    raw = c.mapping(raw, path)
    benchmark_for("clean")  # loads the registry
    kind = c.choice(raw.get("type"), f"{path}.type", tuple(BENCHMARKS))
    bench = benchmark_for(kind)
    c.no_unknown(raw, path, COMMON_FIELDS + bench.fields)
    common: Dict[str, Any] = {}
    for key in ("seed", "batch_size", "limit"):
        if key in raw:
            common[key] = c.integer(raw[key], f"{path}.{key}", minimum=0 if key == "seed" else 1)
    spec = BenchmarkSpec(type=kind, index=index, options=common)
    for key, section in (("models", "models"), ("datasets", "datasets")):
        if key in raw:
            names = c.sequence(raw[key], f"{path}.{key}", allow_scalar=True)
            known = [item.get("name") for item in cfg.get(section) or [] if isinstance(item, dict)]
            for i, name in enumerate(names):
                if name not in known:
                    raise c.fail(f"{path}.{key}[{i}]", f"no {section[:-1]} named {show(name)} "
                                                       f"(known: {', '.join(map(str, known))})")
            setattr(spec, key, list(names))
    spec.options.update(bench.parse(raw, c, path, cfg.get("seed", 0)))
    if "precision" in raw:
        precision = c.choice(raw["precision"], f"{path}.precision", PRECISIONS)
        supported = bench.precisions(spec.options)
        if precision not in supported:
            raise c.fail(f"{path}.precision", f"this benchmark runs in {', '.join(supported)} "
                                              f"only, not {precision}")
        spec.options["precision"] = precision
    return spec


_TOP_FIELDS = ("name", "models", "datasets", "benchmarks", "seed", "device", "batch_size",
               "workers", "precision", "description")


def parse_config(raw: Any, *, source: str = "<config>", base_dir: Optional[Path] = None
                 ) -> JobConfig:
    """Validate a parsed YAML document; raise ConfigError naming the offending field."""
    c = Checker(source, base_dir)
    base = c.base
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping, got {show(raw)}")
    c.no_unknown(raw, "", _TOP_FIELDS)
    name = c.string(raw.get("name", Path(source).stem if source else "job"), "name")
    seed = c.integer(raw.get("seed", 0), "seed", minimum=0)
    device = c.string(raw.get("device", "auto"), "device")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise c.fail("device", f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}")
    batch_size = c.integer(raw.get("batch_size", 256), "batch_size", minimum=1)
    workers = None if raw.get("workers") is None else c.integer(raw["workers"], "workers",
                                                                 minimum=1)
    precision = c.choice(raw.get("precision", "fp32"), "precision", PRECISIONS)

    models = [_parse_model(c, m, f"models[{i}]", base)
              for i, m in enumerate(c.sequence(raw.get("models"), "models"))]
    datasets = [_parse_dataset(c, d, f"datasets[{i}]", base)
                for i, d in enumerate(c.sequence(raw.get("datasets"), "datasets"))]
    for section, items in (("models", models), ("datasets", datasets)):
        seen: Dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in seen:
                raise c.fail(f"{section}[{i}].name", f"{item.name!r} is already used by "
                                                     f"{section}[{seen[item.name]}]")
            seen[item.name] = i
    benchmarks = [_parse_benchmark(c, b, i, raw)
                  for i, b in enumerate(c.sequence(raw.get("benchmarks"), "benchmarks"))]
    return JobConfig(name=name, models=models, datasets=datasets, benchmarks=benchmarks,
                     seed=seed, device=device, batch_size=batch_size, workers=workers,
                     precision=precision, source=source, raw=copy.deepcopy(raw))


def load_config(path: Any) -> JobConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(raw, source=str(path), base_dir=path.resolve().parent)


def packaged_config(name: str) -> Path:
    """A config shipped inside the package (robust_eval/jobs/<name>.yaml)."""
    path = Path(__file__).resolve().parent / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no packaged config {name!r} at {path}")
    return path
