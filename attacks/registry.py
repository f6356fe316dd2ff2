"""The attack registry and the two calls front ends need: `describe` (an attack's metadata,
for help texts and dry runs) and `resolve_options` (plain options -> validated constructor
keyword arguments). Everything here comes from the classes' own attributes (see `Attack`)."""
from __future__ import annotations

import inspect
import numbers
from typing import Any, Dict, Optional, Sequence, Type

from attacks.base import OPTION_NAMES, THREATS, Attack, AttackError

# name -> class; the hub wraps it with robust_eval.registry.Registry.view("attack", ATTACKS).
ATTACKS: Dict[str, Type[Attack]] = {}


def register(cls: Type[Attack]) -> Type[Attack]:
    """Add an Attack subclass under `cls.name` after checking its metadata (usable as a class
    decorator). A name already taken is an error, never silently replaced."""
    where = getattr(cls, "__name__", repr(cls))
    if not (inspect.isclass(cls) and issubclass(cls, Attack)):
        raise AttackError(f"{where} is not a subclass of attacks.Attack")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise AttackError(f"{where}.name must be a non-empty name without commas, got {name!r}")
    if name in ATTACKS:
        raise AttackError(f"attack name {name!r} is already registered ({ATTACKS[name].__name__})")
    problems = []
    if cls.threat not in THREATS:
        problems.append(f"threat must be one of {', '.join(THREATS)}, got {cls.threat!r}")
    if (isinstance(cls.default_eps, bool) or not isinstance(cls.default_eps, numbers.Real)
            or not cls.default_eps >= 0):
        problems.append(f"default_eps must be a number >= 0, got {cls.default_eps!r}")
    steps = cls.default_steps
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        problems.append(f"default_steps must be None or an integer >= 1, got {steps!r}")
    if "steps" in cls.options and steps is None:
        problems.append("an attack that takes steps needs an integer default_steps")
    if isinstance(cls.strength, bool) or not isinstance(cls.strength, int):
        problems.append(f"strength must be an integer, got {cls.strength!r}")
    if not isinstance(cls.uses_gradients, bool):
        problems.append(f"uses_gradients must be True or False, got {cls.uses_gradients!r}")
    if (not isinstance(cls.engines, tuple) or not cls.engines
            or not all(isinstance(e, str) for e in cls.engines)):
        problems.append(f"engines must be a non-empty tuple of names, got {cls.engines!r}")
    unknown = [o for o in cls.options if o not in OPTION_NAMES or o in ("eps", "engine")]
    if unknown:
        problems.append(f"options {unknown} are not plain options besides eps and engine "
                        f"({', '.join(OPTION_NAMES)})")
    if problems:
        raise AttackError(f"attack class {where}: " + "; ".join(problems))
    ATTACKS[name] = cls
    return cls


def attack_class(name: str) -> Type[Attack]:
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def describe(name: str) -> Dict[str, Any]:
    """The metadata of attack `name`, plain values only (help texts, dry runs, reports).

    Keys: name, class, title, summary, threat, default_eps, default_steps, strength,
    uses_gradients, engines, options (every option it takes, eps and engine first), choices
    (option -> allowed values, where closed), defaults (resolve_options(name): the constructor
    keyword arguments with nothing given) and label (the label of those defaults).
    """
    cls = attack_class(name)
    defaults = cls.resolve({})
    return {
        "name": name, "class": cls.__name__, "title": cls.title,
        "summary": (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " "),
        "threat": cls.threat, "default_eps": cls.default_eps, "default_steps": cls.default_steps,
        "strength": cls.strength, "uses_gradients": cls.uses_gradients,
        "engines": list(cls.engines), "options": ["eps", "engine", *cls.options],
        "choices": {"engine": list(cls.engines),
                    **{k: list(v) for k, v in cls.choices.items()}},
        "defaults": defaults, "label": cls.label(defaults),
    }


def resolve_options(name: str, *, eps: Optional[float] = None, steps: Optional[int] = None,
                    alpha: Optional[float] = None, restarts: Optional[int] = None,
                    engine: Optional[str] = None, threat: Optional[str] = None,
                    version: Optional[str] = None, parts: Optional[Sequence[str]] = None,
                    n_iter: Optional[int] = None) -> Dict[str, Any]:
    """Validated keyword arguments for `ATTACKS[name](model, **kwargs, seed=...)`.

    None means "not given": the attack's default fills it. An option the attack does not take
    (alpha for fgsm, version for pgd, engine torchattacks for autoattack, steps != 1 for fgsm)
    is an AttackError naming the option and the attack, never ignored.
    E.g. resolve_options("autoattack", version="custom", parts=["apgd-ce"], n_iter=10).
    """
    return attack_class(name).resolve({
        "eps": eps, "steps": steps, "alpha": alpha, "restarts": restarts, "engine": engine,
        "threat": threat, "version": version, "parts": parts, "n_iter": n_iter})


__all__ = ["ATTACKS", "attack_class", "describe", "register", "resolve_options"]
