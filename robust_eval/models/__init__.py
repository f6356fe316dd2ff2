"""Architecture registry. Every arch takes every norm and [0,1] NCHW inputs.

An arch is a registered name (`register_model`, in-process) or an importable factory
`package.module:callable` returning an nn.Module that takes [0,1] images (it normalises
itself; a `num_classes` keyword is passed when it accepts one). Factories are what worker
processes and Ray can build, as they import the module by name; `get_model_spec` resolves both.

`create_model` wraps the bare network in `NormalizedModel`, which owns the mean/std
normalisation and records it (`model.mean`, `model.std`), so a checkpoint cannot be evaluated
with the wrong preprocessing by accident. The bare network sits at `model.model`, so the wrapped
state_dict is the bare one with a `model.` prefix (official and zoo checkpoints map directly).
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Dict, List, Optional, Sequence

from torch import nn

from robust_eval.models.normalize import NormalizedModel, parse_stats
from robust_eval.models.registry import NO_MEAN, NO_STD, MODELS, ModelSpec, register_model

# Importing the arch modules fills MODELS.
from robust_eval.models import tiny as _tiny  # noqa: F401,E402
from robust_eval.models import cifar_resnet as _cifar_resnet  # noqa: F401,E402
from robust_eval.models import he2016 as _he2016  # noqa: F401,E402
from robust_eval.models import wide_resnet as _wide_resnet  # noqa: F401,E402
from robust_eval.models import imagenet_resnet as _imagenet_resnet  # noqa: F401,E402

__all__ = ["MODELS", "ModelSpec", "NormalizedModel", "create_model", "get_model_spec",
           "list_models", "register_model", "parse_stats"]


def list_models(pattern: str = "*") -> List[str]:
    """Registered arch names matching a shell-style wildcard, sorted."""
    return MODELS.list(pattern)


def get_model_spec(name: str) -> ModelSpec:
    """The registered arch `name`, or the factory `package.module:callable` it names."""
    if not isinstance(name, str) or ":" not in name:
        return MODELS.get(name)
    return _factory_spec(name)


@functools.lru_cache(maxsize=None)
def _factory_spec(name: str) -> ModelSpec:
    module_name, _, attr = name.partition(":")
    try:
        target = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is the same user error
        raise ValueError(f"arch {name!r}: cannot import module {module_name!r} "
                         f"({type(error).__name__}: {error})") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"arch {name!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"arch {name!r}: {attr!r} is not callable "
                         f"({type(target).__name__})")
    try:
        params = inspect.signature(target).parameters.values()
        takes_classes = any(p.name == "num_classes" or p.kind == p.VAR_KEYWORD for p in params)
    except (TypeError, ValueError):  # no signature (builtins): call it without num_classes
        takes_classes = False

    def build(norm=None, num_classes=None, **kwargs) -> nn.Module:
        if num_classes is not None and takes_classes:
            kwargs["num_classes"] = num_classes
        net = target(**kwargs)
        if not isinstance(net, nn.Module):
            raise TypeError(f"arch {name!r} returned a {type(net).__name__}, not an nn.Module")
        return net

    return ModelSpec(name, build, NO_MEAN, NO_STD, description=f"factory {name}",
                     default_num_classes=None, factory=True)


def create_model(name: str, norm: str = "bn", num_classes: Optional[int] = 10,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 **kwargs) -> NormalizedModel:
    """Build arch `name` with norm `norm`; returns a NormalizedModel taking [0,1] inputs.

    num_classes=None takes the arch's default. mean/std default to the arch's documented default (`list_models` / docs/checkpoints.md);
    both are recorded on the model and in checkpoints written from it. A factory arch
    normalises itself: it takes no norm, and its wrapper's mean/std are 0/1.
    """
    from robust_eval.nn import get_norm

    spec = get_model_spec(name)
    if spec.factory:
        norm = None
    else:
        get_norm(norm)  # unknown norm -> clear error listing the known ones
    if num_classes is None:  # None: the arch's own default (1000 for the ImageNet archs)
        num_classes = spec.default_num_classes
    if num_classes is not None and (not isinstance(num_classes, int)
                                    or isinstance(num_classes, bool) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    mean_t = parse_stats(mean if mean is not None else spec.default_mean, "mean")
    std_t = parse_stats(std if std is not None else spec.default_std, "std")
    if len(mean_t) != len(std_t):
        raise ValueError(f"mean has {len(mean_t)} values but std has {len(std_t)}")
    if len(mean_t) != spec.in_channels:
        raise ValueError(f"{name} takes {spec.in_channels} input channels; mean/std have "
                         f"{len(mean_t)} values")
    net = spec.builder(norm=norm, num_classes=num_classes, **kwargs)
    model = NormalizedModel(net, mean_t, std_t)
    model.robust_eval_meta = {
        "arch": name, "norm": norm, "num_classes": num_classes, "mean": list(mean_t),
        "std": list(std_t), "input_size": list(spec.input_size), "checkpoint_sha256": None,
    }
    return model


def describe_models() -> Dict[str, str]:
    return {name: MODELS.get(name).description for name in MODELS}
