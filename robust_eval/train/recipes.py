"""Training recipes (the official ConvNorm protocols, convnorm.md "Official protocols").

A recipe is a set of default hyper-parameters; `TrainSpec` is one fully resolved run. Every field
of a TrainSpec decides the trained weights, so its hash (`TrainSpec.key`) is the reuse key of a
checkpoint. Where a run goes, which device it uses and how often it logs are not in the spec.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, List, Optional, Tuple

from robust_eval.registry import Registry
from robust_eval.train.noise import KINDS as NOISE_KINDS, validate_noise

RECIPES = Registry("recipe")
SPEC_VERSION = 1
AMP_CHOICES = ("none", "bf16", "fp16")
VAL_LABEL_CHOICES = ("noisy", "clean")


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    lr: float
    milestones: Tuple[int, ...]
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    gamma: float = 0.1
    augment: bool = True  # RandomCrop(32, padding 4) + horizontal flip
    adv_replays: int = 0  # free adversarial training: m replays per minibatch (0 = off)
    adv_eps: float = 0.0
    adv_step: float = 0.0
    uses_noise: bool = False
    uses_fraction: bool = False
    description: str = ""
    # CIFAR-100 runs longer in the official configs.
    cifar100_epochs: Optional[int] = None
    cifar100_milestones: Optional[Tuple[int, ...]] = None


def _register(recipe: Recipe) -> Recipe:
    RECIPES.register(recipe.name)(recipe)
    return recipe


_STANDARD = dict(epochs=120, lr=0.1, milestones=(40, 80), cifar100_epochs=150,
                 cifar100_milestones=(60, 120))
_register(Recipe("standard", **_STANDARD,
                 description="SGD 0.1, momentum 0.9, wd 1e-4, batch 128, 120 epochs, lr x0.1 at "
                             "40/80 (CIFAR-100: 150, 60/120); crop+flip"))
_register(Recipe("label_noise", **_STANDARD, uses_noise=True,
                 description="standard, with a fraction of training labels corrupted"))
_register(Recipe("data_scarcity", **_STANDARD, uses_fraction=True,
                 description="standard, on a fraction of the training images per class"))
_register(Recipe("free_adv", epochs=30, lr=0.1, milestones=(10, 20), adv_replays=4,
                 adv_eps=8 / 255, adv_step=8 / 255,
                 description="free adversarial training: each minibatch replayed m=4 times, "
                             "delta reset per minibatch, step and clip 8/255; 30 epochs, lr x0.1 "
                             "at 10/20"))


def list_recipes():
    return RECIPES.list()


# Dataset defaults over a recipe's (CIFAR) ones, measured in docs/training.md. digits has 1,437
# training images: batch 128 makes 10 steps an epoch; crops cut strokes off a digit that fills
# its frame and cost accuracy.
DATASET_DEFAULTS: Dict[str, Dict[str, Any]] = {"digits": dict(batch_size=32, lr=0.05,
                                                              augment=False)}
# A mirrored digit is another digit or none: augmentation never flips these.
NO_FLIP_DATASETS = frozenset({"digits"})
# An lr drop before this epoch leaves the run almost no epochs at the full lr.
FIRST_MILESTONE = 2


def scale_milestones(milestones: Tuple[int, ...], base_epochs: int, epochs: int
                     ) -> Tuple[int, ...]:
    """The recipe's lr drops at the same fractions of an `epochs`-long run. A drop that lands
    before FIRST_MILESTONE, at or past the last epoch, or on the epoch of the previous drop is
    left out, never merged: 2 epochs of 120 (drops at 40, 80) keep the full lr throughout."""
    scaled: List[int] = []
    for m in milestones:
        epoch = round(m * epochs / base_epochs)
        if FIRST_MILESTONE <= epoch < epochs and (not scaled or epoch > scaled[-1]):
            scaled.append(epoch)
    return tuple(scaled)


@dataclass(frozen=True)
class TrainSpec:
    """Everything that decides the weights a run produces (and nothing else)."""
    arch: str
    norm: str
    dataset: str
    num_classes: int
    recipe: str
    epochs: int
    lr: float
    milestones: Tuple[int, ...]
    momentum: float
    weight_decay: float
    batch_size: int
    gamma: float
    augment: bool
    seed: int
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    noise_type: Optional[str] = None
    noise_rate: float = 0.0
    val_labels: str = "noisy"  # validation labels get the same noise, as the official code
    data_fraction: float = 1.0
    val_fraction: float = 0.1
    train_limit: Optional[int] = None  # first N images of the training split (tests, CPU runs)
    adv_replays: int = 0
    adv_eps: float = 0.0
    adv_step: float = 0.0
    amp: str = "none"
    channels_last: bool = False
    data_fingerprint: Optional[str] = None  # sha256 of the training images+labels used
    version: int = SPEC_VERSION

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        for key in ("milestones", "mean", "std"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"training spec has unknown field(s) {sorted(unknown)}")
        data = dict(data)
        for key in ("milestones", "mean", "std"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    @property
    def key(self) -> str:
        """sha256 of the canonical JSON spec: identical specs share a checkpoint."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def lr_at(self, epoch: int) -> float:
        """lr for 0-based epoch: MultiStepLR stepped once per epoch (a pure function of the
        epoch, so resuming needs no scheduler state)."""
        drops = sum(1 for m in self.milestones if epoch >= m)
        return self.lr * self.gamma ** drops

    def with_fingerprint(self, fingerprint: str) -> "TrainSpec":
        return replace(self, data_fingerprint=fingerprint)


def make_spec(*, arch: str, norm: str = "bn", dataset: str = "cifar10", num_classes: int = 10,
              recipe: str = "standard", seed: int = 0, **overrides: Any) -> TrainSpec:
    """Resolve a recipe plus overrides (None = recipe default) into a validated TrainSpec."""
    base = RECIPES.get(recipe)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(TrainSpec)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown training option(s) {sorted(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    epochs, milestones = base.epochs, base.milestones
    if dataset == "cifar100" and base.cifar100_epochs:
        epochs, milestones = base.cifar100_epochs, base.cifar100_milestones
    values: Dict[str, Any] = dict(
        arch=arch, norm=norm, dataset=dataset, num_classes=num_classes, recipe=recipe,
        epochs=epochs, lr=base.lr, milestones=milestones, momentum=base.momentum,
        weight_decay=base.weight_decay, batch_size=base.batch_size, gamma=base.gamma,
        augment=base.augment, seed=seed, adv_replays=base.adv_replays, adv_eps=base.adv_eps,
        adv_step=base.adv_step)
    values.update(DATASET_DEFAULTS.get(dataset, {}))
    if "epochs" in overrides and "milestones" not in overrides:
        values["milestones"] = scale_milestones(milestones, epochs, overrides["epochs"])
    values.update(overrides)
    values["milestones"] = tuple(int(m) for m in values["milestones"])
    for key in ("mean", "std"):
        if values.get(key) is not None:
            values[key] = tuple(float(v) for v in values[key])
    if base.uses_noise and values.get("noise_type") is None:
        values["noise_type"] = "symmetric"
    spec = TrainSpec(**values)
    validate_spec(spec)
    return spec


def validate_spec(spec: TrainSpec) -> None:
    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"training option {name}={getattr(spec, name)!r}: {why}")

    for name in ("epochs", "batch_size", "num_classes"):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad(name, "must be a positive integer")
    if spec.batch_size < 2:
        raise bad("batch_size", "must be >= 2 (BatchNorm needs two samples)")
    for name in ("lr", "weight_decay", "momentum", "gamma", "adv_eps", "adv_step"):
        if not float(getattr(spec, name)) >= 0:
            raise bad(name, "must be a non-negative number")
    if any(m < 1 for m in spec.milestones) or any(
            a >= b for a, b in zip(spec.milestones, spec.milestones[1:])):
        raise bad("milestones", "must be strictly increasing positive epoch numbers")
    if spec.milestones and spec.milestones[-1] >= spec.epochs:
        raise bad("milestones", f"a drop at epoch {spec.milestones[-1]} never happens in a run of "
                                f"{spec.epochs} epochs")
    if not isinstance(spec.seed, int) or spec.seed < 0:
        raise bad("seed", "must be a non-negative integer")
    if spec.noise_type is not None:
        validate_noise(spec.noise_type, spec.noise_rate, spec.num_classes)
    elif spec.noise_rate:
        raise bad("noise_rate", "is set but noise_type is not (one of "
                                f"{', '.join(NOISE_KINDS)})")
    if spec.val_labels not in VAL_LABEL_CHOICES:
        raise bad("val_labels", f"must be one of {VAL_LABEL_CHOICES}")
    if not 0 < spec.data_fraction <= 1:
        raise bad("data_fraction", "must lie in (0, 1]")
    if not 0 <= spec.val_fraction < 1:
        raise bad("val_fraction", "must lie in [0, 1)")
    if spec.train_limit is not None and spec.train_limit < 2:
        raise bad("train_limit", "must be >= 2")
    if spec.adv_replays < 0:
        raise bad("adv_replays", "must be >= 0")
    if spec.amp not in AMP_CHOICES:
        raise bad("amp", f"must be one of {AMP_CHOICES}")
