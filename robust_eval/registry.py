"""One registry idea for models, norms, attacks and corruptions.

A Registry maps names to factories. Leaves (attacks/, corruptions/) cannot import the hub, so
they keep a plain dict and the hub wraps it with `Registry.view(dict)`; lookups behave the same.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Dict, Iterator, List, Optional


class RegistryError(KeyError):
    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str, entries: Optional[Dict[str, Any]] = None):
        self.kind = kind
        self._entries: Dict[str, Any] = entries if entries is not None else {}

    @classmethod
    def view(cls, kind: str, entries: Dict[str, Any]) -> "Registry":
        """Wrap a leaf's dict without copying, so later leaf registrations show up."""
        return cls(kind, entries)

    def register(self, name: Optional[str] = None, *, override: bool = False) -> Callable:
        def decorator(obj: Any) -> Any:
            key = name or getattr(obj, "__name__")
            if key in self._entries and not override:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._entries))})"

    def list(self, pattern: str = "*") -> List[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def attack_registry() -> Registry:
    """The attacks leaf's registry, seen through the hub's Registry."""
    import attacks

    return Registry.view("attack", attacks.ATTACKS)


def corruption_registry() -> Registry:
    """The corruptions leaf's registry, seen through the hub's Registry."""
    from corruptions.generate import CORRUPTIONS

    return Registry.view("corruption", CORRUPTIONS)
