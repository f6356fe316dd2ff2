"""robust-eval: robustness evaluation for convolutional networks, built around ConvNorm."""

__version__ = "0.1.0"


def __getattr__(name):
    """evaluate, compare and report load on first use (`import robust_eval` stays light)."""
    import importlib

    if name == "evaluate":  # the package robust_eval/evaluate/, callable (robust_eval.api)
        return importlib.import_module("robust_eval.evaluate")
    if name in ("compare", "report"):
        return getattr(importlib.import_module("robust_eval.api"), name)
    raise AttributeError(f"module 'robust_eval' has no attribute {name!r}")


__all__ = ["__version__", "compare", "evaluate", "report"]
