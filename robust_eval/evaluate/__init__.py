"""Benchmark cells. Each plug-in module here declares which `--benchmark` values it handles.

Plug-in contract (contracts.md): `BENCHMARK_NAMES: tuple[str, ...]`, `add_arguments(parser)`,
`run_from_args(model, data, args, base, device) -> list[dict]` (schema rows). Modules without
BENCHMARK_NAMES are helpers and are ignored; a module that fails to import is reported, not fatal,
so one half-finished plug-in cannot take the whole command down.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Dict


@dataclass
class BenchmarkPlugins:
    by_name: Dict[str, ModuleType] = field(default_factory=dict)  # --benchmark value -> module
    modules: Dict[str, ModuleType] = field(default_factory=dict)  # module name -> module
    broken: Dict[str, str] = field(default_factory=dict)  # module name -> import error

    def known(self) -> list:
        return sorted(self.by_name)


def discover_benchmarks() -> BenchmarkPlugins:
    plugins = BenchmarkPlugins()
    package = importlib.import_module(__name__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        full = f"{__name__}.{info.name}"
        try:
            module = importlib.import_module(full)
        except Exception as error:  # a broken plug-in must not hide the working ones
            plugins.broken[info.name] = f"{type(error).__name__}: {error}"
            continue
        names = getattr(module, "BENCHMARK_NAMES", None)
        if not names:
            continue
        plugins.modules[info.name] = module
        for name in names:
            if name in plugins.by_name:
                other = plugins.by_name[name].__name__
                raise RuntimeError(f"benchmark {name!r} is declared by both {other} and {full}")
            plugins.by_name[name] = module
    return plugins
