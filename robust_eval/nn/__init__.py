"""Layers: ConvNorm2d and the baselines (spectral norm, ONI, OCNN penalty), and the norm registry."""
from robust_eval.nn.norms import NORMS, Norm, get_norm, list_norms, register_norm

__all__ = ["NORMS", "Norm", "get_norm", "list_norms", "register_norm"]
