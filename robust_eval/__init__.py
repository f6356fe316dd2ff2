"""robust-eval: robustness evaluation for convolutional networks, built around ConvNorm."""

__version__ = "0.1.0"
