"""Option validation shared by every front end (job configs, CLI flags, the Python API): each
error names the source and the field by its path, e.g. `job.yaml: benchmarks[2].eps[0]: ...`."""
from __future__ import annotations

import difflib
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence


class ConfigError(ValueError):
    """A bad config: the message starts with the file and the field path."""


class Checker:
    """Typed field readers; `base` is the folder relative paths are resolved against."""

    def __init__(self, source: str, base: Optional[Path] = None):
        self.source = source
        self.base = Path(base) if base is not None else Path.cwd()

    def fail(self, path: str, message: str) -> "ConfigError":
        return ConfigError(f"{self.source}: {path}: {message}" if self.source
                           else f"{path}: {message}")

    def mapping(self, value: Any, path: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {show(value)}")
        return value

    def sequence(self, value: Any, path: str, *, allow_scalar: bool = False,
                 non_empty: bool = True) -> List[Any]:
        if allow_scalar and not isinstance(value, (list, tuple, dict)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise self.fail(path, f"expected a list, got {show(value)}")
        if non_empty and not value:
            raise self.fail(path, "must not be empty")
        return list(value)

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {show(value)}")
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> str:
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(path, f"{show(value)} is not one of {', '.join(choices)}{hint}")
        return value

    def integer(self, value: Any, path: str, *, minimum: Optional[int] = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str, *, minimum: Optional[float] = None,
               maximum: Optional[float] = None) -> float:
        """A float, or a fraction string such as '8/255' (how eps is written in papers)."""
        number: Optional[float] = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*[0-9.eE+-]+\s*(/\s*[0-9.eE+-]+\s*)?",
                                                     value):
            try:
                if "/" in value:
                    num, den = value.split("/")
                    number = float(Fraction(num.strip()) / Fraction(den.strip()))
                else:
                    number = float(value)
            except (ValueError, ZeroDivisionError):
                number = None
        if number is None or not math.isfinite(number):
            raise self.fail(path, f"expected a number or a fraction like '8/255', got "
                                  f"{show(value)}")
        if minimum is not None and number < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        if maximum is not None and number > maximum:
            raise self.fail(path, f"must be <= {maximum}, got {value}")
        return number

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {show(value)}")
        return value

    def path(self, value: Any, path: str) -> str:
        return resolve_path(self.string(value, path), self.base)

    def integers(self, value: Any, path: str, *, minimum: Optional[int] = None,
                 maximum: Optional[int] = None) -> List[int]:
        """A list (or one value) of integers in [minimum, maximum], sorted and unique."""
        items = self.sequence(value, path, allow_scalar=True)
        numbers = [self.integer(v, f"{path}[{i}]", minimum=minimum) for i, v in enumerate(items)]
        for i, v in enumerate(numbers):
            if maximum is not None and v > maximum:
                raise self.fail(f"{path}[{i}]", f"must be <= {maximum}, got {v}")
        return sorted(set(numbers))

    def no_unknown(self, mapping: Dict[str, Any], path: str, known: Sequence[str]) -> None:
        for key in mapping:
            if key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(f"{path}.{key}" if path else str(key),
                                f"unknown field{hint}; known: {', '.join(known)}")


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def resolve_path(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


