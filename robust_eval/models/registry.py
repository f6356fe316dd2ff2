"""The model registry (timm-style decorator) and what each arch records about itself."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from torch import nn

from robust_eval.registry import Registry

MODELS = Registry("model")

CIFAR10_MEAN_CONVNORM = (0.4914, 0.4822, 0.4465)  # official ConvNorm data loader
CIFAR10_STD_CONVNORM = (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_MEAN = (0.0, 0.0, 0.0)
NO_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]  # (norm=, num_classes=, **kw) -> bare network
    default_mean: Tuple[float, ...]
    default_std: Tuple[float, ...]
    input_size: Tuple[int, int] = (32, 32)
    in_channels: int = 3
    description: str = ""
    default_num_classes: Optional[int] = 10
    factory: bool = False  # an importable `package.module:callable`: no norm, normalises itself


def register_model(name: str, *, default_mean=NO_MEAN, default_std=NO_STD,
                   input_size=(32, 32), description: str = "",
                   default_num_classes: int = 10) -> Callable:
    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(name)(ModelSpec(name, builder, tuple(default_mean), tuple(default_std),
                                        tuple(input_size), 3, description,
                                        default_num_classes))
        return builder

    return decorator
