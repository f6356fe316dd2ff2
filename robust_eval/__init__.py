"""robust-eval: robustness evaluation for convolutional networks, built around ConvNorm."""
from robust_eval import _compat  # noqa: F401  (must run before anything imports robustbench)

__version__ = "0.1.0"
