"""Layers: ConvNorm2d and the baselines (spectral norm, ONI, OCNN penalty), and the norm registry."""
from robust_eval.nn.baselines import (ONIConv2d, OCNNConv2d, SNConv2d, ocnn_penalty,
                                      official_resnet18_selection, oni_orthogonalize,
                                      orthogonality_distance)
from robust_eval.nn.convnorm import ConvNorm2d, ema_factor, spectral_energy
from robust_eval.nn.norms import NORMS, Norm, get_norm, list_norms, register_norm

__all__ = ["NORMS", "Norm", "get_norm", "list_norms", "register_norm", "ConvNorm2d",
           "ema_factor", "spectral_energy", "SNConv2d", "ONIConv2d", "OCNNConv2d",
           "ocnn_penalty", "official_resnet18_selection", "oni_orthogonalize",
           "orthogonality_distance"]
