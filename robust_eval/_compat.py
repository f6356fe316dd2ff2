"""Make robustbench 1.1.1 importable without the user touching anything.

robustbench imports `autoattack`, but its dependency installs as `pyautoattack`; alias the
modules robustbench touches before it is imported. Called where robustbench is
used, never at `import robust_eval` (pyautoattack imports torch and more: ~1.5 s).
"""
import importlib
import sys


def install_autoattack_alias() -> bool:
    """Alias `autoattack` -> `pyautoattack`. Returns False when neither is installed."""
    if "autoattack" in sys.modules:
        return True
    try:
        importlib.import_module("autoattack")
        return True
    except ImportError:
        pass
    try:
        package = importlib.import_module("pyautoattack")
    except ImportError:
        return False
    sys.modules["autoattack"] = package
    for sub in ("state", "autopgd_base", "other_utils", "checks", "fab_pt", "square"):
        try:
            sys.modules[f"autoattack.{sub}"] = importlib.import_module(f"pyautoattack.{sub}")
        except ImportError:
            continue
    return True
