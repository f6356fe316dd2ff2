"""Job config: YAML -> validated dataclasses. Every error names the field by its path.

A config names models, datasets and benchmarks (docs/jobs.md has the full schema):

    name: cifar10
    models:    [{name, checkpoint | robustbench | train, arch, norm, num_classes, mean, std}]
    datasets:  [{name, kind, root, split, limit}]
    benchmarks:
      - {type: clean}
      - {type: corruption, source: auto|files|generated, path, params, corruptions, severities}
      - {type: attack, attack: fgsm|pgd|pgd_l2|autoattack, eps: [0, 8/255], steps, restarts, engine}
      - {type: label_noise, kinds: [symmetric], rates: [0.2], seeds: [0], recipe: {...}}

Relative paths are resolved against the config file's folder, so a config travels with its repo.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from corruptions.params import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
from robust_eval.registry import attack_registry
from robust_eval.train.noise import KINDS as NOISE_KINDS

ATTACKS = tuple(attack_registry())

BENCHMARK_TYPES = ("clean", "corruption", "attack", "label_noise")
ENGINES = ("native", "torchattacks", "autoattack")
DATASET_KINDS = ("cifar10", "cifar100", "imagenet", "digits")
CORRUPTION_SOURCES = ("auto", "files", "generated")
PARAM_SETS = ("cifar10", "imagenet")
CORRUPTION_GROUPS = {
    "benchmark": BENCHMARK_CORRUPTIONS,
    "all": BENCHMARK_CORRUPTIONS,
    "extra": EXTRA_CORRUPTIONS,
    "all19": BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS,
}


class ConfigError(ValueError):
    """A bad config: the message starts with the file and the field path."""


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

    @property
    def source(self) -> str:
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
    source: Optional[str] = None  # the config file
    raw: Dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- field checkers
class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, message: str) -> "ConfigError":
        return ConfigError(f"{self.source}: {path}: {message}")

    def mapping(self, value: Any, path: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_show(value)}")
        return value

    def sequence(self, value: Any, path: str, *, allow_scalar: bool = False,
                 non_empty: bool = True) -> List[Any]:
        if allow_scalar and not isinstance(value, (list, tuple, dict)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise self.fail(path, f"expected a list, got {_show(value)}")
        if non_empty and not value:
            raise self.fail(path, "must not be empty")
        return list(value)

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {_show(value)}")
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> str:
        if value not in choices:
            raise self.fail(path, f"{_show(value)} is not one of {', '.join(choices)}")
        return value

    def integer(self, value: Any, path: str, *, minimum: Optional[int] = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str, *, minimum: Optional[float] = None,
               maximum: Optional[float] = None) -> float:
        """A float, or a fraction string such as '8/255' (how eps is written in papers)."""
        number: Optional[float] = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*[0-9.eE+-]+\s*(/\s*[0-9.eE+-]+\s*)?",
                                                     value):
            try:
                if "/" in value:
                    num, den = value.split("/")
                    number = float(Fraction(num.strip()) / Fraction(den.strip()))
                else:
                    number = float(value)
            except (ValueError, ZeroDivisionError):
                number = None
        if number is None or not math.isfinite(number):
            raise self.fail(path, f"expected a number or a fraction like '8/255', got "
                                  f"{_show(value)}")
        if minimum is not None and number < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        if maximum is not None and number > maximum:
            raise self.fail(path, f"must be <= {maximum}, got {value}")
        return number

    def no_unknown(self, mapping: Dict[str, Any], path: str, known: Sequence[str]) -> None:
        for key in mapping:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(str(key), list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(f"{path}.{key}" if path else str(key),
                                f"unknown field{hint}; known: {', '.join(known)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _resolve_path(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


# ----------------------------------------------------------------------------- sections
_MODEL_FIELDS = ("name", "arch", "norm", "checkpoint", "robustbench", "threat_model",
                 "zoo_dataset", "model_dir", "num_classes", "mean", "std", "train")
_TRAIN_FIELDS = ("dataset", "root", "epochs", "lr", "milestones", "batch_size", "seed",
                 "weight_decay", "momentum", "augment", "limit", "recipe", "cache_dir")


def _parse_model(c: _Checker, raw: Any, path: str, base: Path) -> ModelSpec:
    raw = c.mapping(raw, path)
    c.no_unknown(raw, path, _MODEL_FIELDS)
    name = c.string(raw.get("name"), f"{path}.name")
    spec = ModelSpec(name=name)
    if "arch" in raw:
        spec.arch = c.string(raw["arch"], f"{path}.arch")
    if "norm" in raw:
        spec.norm = c.string(raw["norm"], f"{path}.norm")
    if "checkpoint" in raw:
        spec.checkpoint = _resolve_path(c.string(raw["checkpoint"], f"{path}.checkpoint"), base)
    if "robustbench" in raw:
        spec.robustbench = c.string(raw["robustbench"], f"{path}.robustbench")
        if "threat_model" in raw:
            spec.threat_model = c.choice(raw["threat_model"], f"{path}.threat_model",
                                         ("Linf", "L2", "corruptions"))
        if "zoo_dataset" in raw:
            spec.zoo_dataset = c.choice(raw["zoo_dataset"], f"{path}.zoo_dataset",
                                        ("cifar10", "cifar100", "imagenet"))
        if "model_dir" in raw:
            spec.model_dir = _resolve_path(c.string(raw["model_dir"], f"{path}.model_dir"), base)
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
                                                  f"{_show(train['augment'])}")
        if "root" in train:
            train["root"] = _resolve_path(c.string(train["root"], f"{path}.train.root"), base)
        if "cache_dir" in train:
            train["cache_dir"] = _resolve_path(c.string(train["cache_dir"],
                                                        f"{path}.train.cache_dir"), base)
        spec.train = train
    sources = [k for k in ("checkpoint", "robustbench", "train") if k in raw]
    if not sources:
        raise c.fail(path, f"model {name!r} needs one of checkpoint, robustbench or train")
    if "robustbench" in raw and len(sources) > 1:
        raise c.fail(path, f"model {name!r}: robustbench cannot be combined with "
                           f"{', '.join(s for s in sources if s != 'robustbench')}")
    if spec.source == "train" and not (spec.arch and spec.norm):
        raise c.fail(path, f"model {name!r}: training needs arch and norm")
    return spec


_DATASET_FIELDS = ("name", "kind", "root", "split", "limit")


def _parse_dataset(c: _Checker, raw: Any, path: str, base: Path) -> DatasetSpec:
    raw = c.mapping(raw, path)
    c.no_unknown(raw, path, _DATASET_FIELDS)
    name = c.string(raw.get("name"), f"{path}.name")
    kind = c.choice(raw.get("kind", name), f"{path}.kind", DATASET_KINDS)
    spec = DatasetSpec(name=name, kind=kind)
    if "root" in raw:
        spec.root = _resolve_path(c.string(raw["root"], f"{path}.root"), base)
    elif kind != "digits":
        raise c.fail(f"{path}.root", f"dataset {name!r} ({kind}) needs a root folder")
    if "split" in raw:
        spec.split = c.choice(raw["split"], f"{path}.split", ("test", "train", "val"))
    if raw.get("limit") is not None:
        spec.limit = c.integer(raw["limit"], f"{path}.limit", minimum=1)
    return spec


_COMMON_BENCH = ("type", "models", "datasets", "seed", "batch_size", "limit")
_BENCH_FIELDS = {
    "clean": _COMMON_BENCH,
    "corruption": _COMMON_BENCH + ("source", "path", "params", "corruptions", "severities"),
    "attack": _COMMON_BENCH + ("attack", "eps", "steps", "alpha", "restarts", "engine",
                               "threat"),
    "label_noise": _COMMON_BENCH + ("kinds", "rates", "seeds", "recipe"),
}


def _parse_benchmark(c: _Checker, raw: Any, index: int, base: Path, cfg: Dict[str, Any]
                     ) -> BenchmarkSpec:
    path = f"benchmarks[{index}]"
    raw = c.mapping(raw, path)
    kind = c.choice(raw.get("type"), f"{path}.type", BENCHMARK_TYPES)
    c.no_unknown(raw, path, _BENCH_FIELDS[kind])
    options: Dict[str, Any] = {}
    for key in ("seed", "batch_size", "limit"):
        if key in raw:
            options[key] = c.integer(raw[key], f"{path}.{key}", minimum=0 if key == "seed" else 1)
    spec = BenchmarkSpec(type=kind, index=index, options=options)
    for key, section in (("models", "models"), ("datasets", "datasets")):
        if key in raw:
            names = c.sequence(raw[key], f"{path}.{key}", allow_scalar=True)
            known = [item.get("name") for item in cfg.get(section) or [] if isinstance(item, dict)]
            for i, name in enumerate(names):
                if name not in known:
                    raise c.fail(f"{path}.{key}[{i}]", f"no {section[:-1]} named {_show(name)} "
                                                       f"(known: {', '.join(map(str, known))})")
            setattr(spec, key, list(names))

    if kind == "corruption":
        options["source"] = c.choice(raw.get("source", "auto"), f"{path}.source",
                                     CORRUPTION_SOURCES)
        if "path" in raw:
            options["path"] = _resolve_path(c.string(raw["path"], f"{path}.path"), base)
        elif options["source"] == "files":
            raise c.fail(f"{path}.path", "source 'files' needs the path of the published "
                                         "CIFAR-10-C / ImageNet-C folder")
        options["params"] = c.choice(raw.get("params", "cifar10"), f"{path}.params", PARAM_SETS)
        names = raw.get("corruptions", "benchmark")
        if isinstance(names, str) and names in CORRUPTION_GROUPS:
            names = list(CORRUPTION_GROUPS[names])
        names = c.sequence(names, f"{path}.corruptions", allow_scalar=True)
        known = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
        for i, name in enumerate(names):
            c.choice(name, f"{path}.corruptions[{i}]", known)
        if len(set(names)) != len(names):
            raise c.fail(f"{path}.corruptions", "lists a corruption twice")
        options["corruptions"] = list(names)
        severities = c.sequence(raw.get("severities", [1, 2, 3, 4, 5]), f"{path}.severities",
                                allow_scalar=True)
        for i, s in enumerate(severities):
            c.integer(s, f"{path}.severities[{i}]", minimum=1)
            if s > 5:
                raise c.fail(f"{path}.severities[{i}]", f"severity must be 1..5, got {s}")
        options["severities"] = sorted(set(severities))
    elif kind == "attack":
        options["attack"] = c.choice(raw.get("attack"), f"{path}.attack", ATTACKS)
        eps = c.sequence(raw.get("eps"), f"{path}.eps", allow_scalar=True)
        options["eps"] = [c.number(e, f"{path}.eps[{i}]", minimum=0) for i, e in enumerate(eps)]
        if "steps" in raw:
            options["steps"] = c.integer(raw["steps"], f"{path}.steps", minimum=1)
        elif options["attack"] in ("pgd", "pgd_l2"):
            options["steps"] = 10
        else:
            options["steps"] = 1
        if "alpha" in raw:
            options["alpha"] = c.number(raw["alpha"], f"{path}.alpha", minimum=0)
        options["restarts"] = c.integer(raw.get("restarts", 1), f"{path}.restarts", minimum=1)
        options["engine"] = c.choice(raw.get("engine", "native"), f"{path}.engine", ENGINES)
        default_threat = "l2" if options["attack"] == "pgd_l2" else "linf"
        options["threat"] = c.choice(raw.get("threat", default_threat), f"{path}.threat",
                                     ("linf", "l2"))
    elif kind == "label_noise":
        kinds = c.sequence(raw.get("kinds", ["symmetric"]), f"{path}.kinds", allow_scalar=True)
        options["kinds"] = [c.choice(k, f"{path}.kinds[{i}]", NOISE_KINDS)
                            for i, k in enumerate(kinds)]
        rates = c.sequence(raw.get("rates"), f"{path}.rates", allow_scalar=True)
        options["rates"] = [c.number(r, f"{path}.rates[{i}]", minimum=0, maximum=1)
                            for i, r in enumerate(rates)]
        for i, rate in enumerate(options["rates"]):
            if rate >= 1:
                raise c.fail(f"{path}.rates[{i}]", f"a noise rate must be below 1, got {rate}")
        seeds = c.sequence(raw.get("seeds", [cfg.get("seed", 0)]), f"{path}.seeds",
                           allow_scalar=True)
        options["seeds"] = [c.integer(s, f"{path}.seeds[{i}]", minimum=0)
                            for i, s in enumerate(seeds)]
        recipe = dict(c.mapping(raw.get("recipe", {}), f"{path}.recipe"))
        for key in ("epochs", "batch_size", "limit"):
            if key in recipe:
                c.integer(recipe[key], f"{path}.recipe.{key}", minimum=1)
        for key in ("lr", "weight_decay", "momentum"):
            if key in recipe:
                recipe[key] = c.number(recipe[key], f"{path}.recipe.{key}", minimum=0)
        if "augment" in recipe and not isinstance(recipe["augment"], bool):
            raise c.fail(f"{path}.recipe.augment", f"expected true or false, got "
                                                   f"{_show(recipe['augment'])}")
        options["recipe"] = recipe
    return spec


_TOP_FIELDS = ("name", "models", "datasets", "benchmarks", "seed", "device", "batch_size",
               "workers", "description")


def parse_config(raw: Any, *, source: str = "<config>", base_dir: Optional[Path] = None
                 ) -> JobConfig:
    """Validate a parsed YAML document; raise ConfigError naming the offending field."""
    c = _Checker(source)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping, got {_show(raw)}")
    c.no_unknown(raw, "", _TOP_FIELDS)
    name = c.string(raw.get("name", Path(source).stem), "name")
    seed = c.integer(raw.get("seed", 0), "seed", minimum=0)
    device = c.string(raw.get("device", "auto"), "device")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise c.fail("device", f"expected auto, cpu, cuda, cuda:N or mps, got {device!r}")
    batch_size = c.integer(raw.get("batch_size", 256), "batch_size", minimum=1)
    workers = None if raw.get("workers") is None else c.integer(raw["workers"], "workers",
                                                                 minimum=1)

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
    benchmarks = [_parse_benchmark(c, b, i, base, raw)
                  for i, b in enumerate(c.sequence(raw.get("benchmarks"), "benchmarks"))]
    return JobConfig(name=name, models=models, datasets=datasets, benchmarks=benchmarks,
                     seed=seed, device=device, batch_size=batch_size, workers=workers,
                     source=source, raw=copy.deepcopy(raw))


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
