"""The attack base class: device, eval mode, input checks, restarts and the two engines.

Subclasses hold hyper-parameters and implement a short `forward(images, labels, generator)`
(the native engine) plus `_torchattacks()` (the reference engine). Everything that could make
a robust-accuracy number silently wrong lives here, once: the model is put in eval mode and
every module's own mode restored afterwards; images must already lie in [0, 1] (never clamped
for the caller); labels must be integer class indices inside the model's output; logits must be
a finite (N, num_classes) tensor.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

LOGGER = logging.getLogger("attacks")
ENGINES = ("native", "torchattacks")
THREATS = ("linf", "l2")
# The plain options a front end (CLI flag, YAML field) may set; `Attack.resolve` checks them.
OPTION_NAMES = ("eps", "steps", "alpha", "restarts", "engine", "threat", "version", "parts",
                "n_iter")
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16}


class AttackError(ValueError):
    """Bad attack input or a model that cannot be attacked as given."""


# --------------------------------------------------------------------------- validation
def check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise AttackError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(name: str, value: Any, *, low: float = 0.0, high: float = math.inf,
               low_inclusive: bool = False) -> float:
    """A finite real in (low, high] (or [low, high] with low_inclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AttackError(f"{name} must be a number, got {value!r}")
    value = float(value)
    above = value >= low if low_inclusive else value > low
    if not (math.isfinite(value) and above and value <= high):
        bracket = "[" if low_inclusive else "("
        raise AttackError(f"{name}={value!r} is out of range: it must lie in "
                          f"{bracket}{low:g}, {high:g}]")
    return value


def check_eps(eps: Any, threat: str) -> float:
    """eps in [0, 1] for L-inf (pixels span [0, 1]), in [0, inf) for L2; 0 is the clean point."""
    return check_real("eps", eps, high=1.0 if threat == "linf" else math.inf,
                      low_inclusive=True)


def check_images(images: Any) -> torch.Tensor:
    """Float images in [0, 1], batch first. Out-of-range pixels are an error, never clamped."""
    if not isinstance(images, torch.Tensor):
        raise AttackError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise AttackError(f"images must be a float tensor in [0, 1], got dtype {images.dtype} "
                          "(divide uint8 pixels by 255 first)")
    if images.ndim < 2 or images.shape[0] == 0:
        raise AttackError(f"images must be a non-empty batch (N, ...), got shape "
                          f"{tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise AttackError("images contain NaN or inf values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise AttackError(f"images must lie in [0, 1] but span [{low:.6g}, {high:.6g}]; pass "
                          "pixels/255 and keep input normalisation inside the model")
    return images


def check_labels(labels: Any, n: int, num_classes: Optional[int] = None) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise AttackError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise AttackError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise AttackError(f"labels must have shape ({n},) to match the images, got "
                          f"{tuple(labels.shape)}")
    labels = labels.long()
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        limit = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
        raise AttackError(f"labels must lie in {limit} but span [{low}, {high}]")
    return labels


def check_logits(logits: Any, n: int, where: str) -> torch.Tensor:
    """Shape and dtype of a model output (finiteness is checked by the caller, once)."""
    if not isinstance(logits, torch.Tensor):
        raise AttackError(f"the model returned {type(logits).__name__} {where}; it must return "
                          "a logits tensor of shape (N, num_classes)")
    if logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] < 2:
        raise AttackError(f"the model returned logits of shape {tuple(logits.shape)} {where}; "
                          f"expected (N={n}, num_classes>=2)")
    if not logits.is_floating_point():
        raise AttackError(f"the model returned {logits.dtype} outputs {where}; expected float "
                          "logits")
    return logits


def check_finite_logits(logits: torch.Tensor, where: str) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise AttackError(f"the model returned NaN or inf logits {where}")


def _same_value(value: Any, expected: Any) -> bool:
    """value == expected, with lists equal to tuples and True never equal to 1."""
    if isinstance(value, bool) != isinstance(expected, bool):
        return False
    if isinstance(value, (list, tuple)) and isinstance(expected, (list, tuple)):
        return tuple(value) == tuple(expected)
    return value == expected


# --------------------------------------------------------------------------- model helpers
def model_device_dtype(model: nn.Module) -> Tuple[torch.device, torch.dtype]:
    """Where the model lives and which float dtype it computes in (fp32 when it has none)."""
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    for tensor in tensors:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    if tensors:
        return tensors[0].device, torch.float32
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the attack; afterwards every module gets back its own mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generator for `device` (as torchattacks draws from it) and restore it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed for (seed, parts...): independent streams per batch and per restart."""
    text = ":".join(str(p) for p in (seed,) + parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def restart_seed(seed: int, restart: int) -> int:
    """Seed of restart `restart`; restart 0 uses `seed` itself, so restarts=1 is reproducible
    by any tool seeded with the same number."""
    return seed if restart == 0 else derive_seed(seed, "restart", restart)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, where: str) -> torch.Tensor:
    """Logits in the model's own dtype, without autocast: the number that is reported."""
    with torch.autocast(device_type=images.device.type, enabled=False):
        logits = check_logits(model(images), images.shape[0], where)
    check_finite_logits(logits, where)
    return logits


# --------------------------------------------------------------------------- statistics
@dataclass
class AttackStats:
    """What the native engine saw while attacking (for gradient-masking warnings)."""
    n: int = 0
    steps: int = 0
    losses: List[float] = field(default_factory=list)  # batch-mean loss before each step
    zero_grad_examples: int = 0  # examples whose input gradient was all zero at some step
    nan_grad_examples: int = 0   # examples with a NaN gradient at some step (replaced by 0)
    loss_weight: int = field(default=0, repr=False)  # examples behind `losses`

    def merge(self, other: "AttackStats") -> None:
        """Add another batch's statistics (losses: example-weighted mean per step)."""
        self.n += other.n
        self.zero_grad_examples += other.zero_grad_examples
        self.nan_grad_examples += other.nan_grad_examples
        if other.losses and (not self.losses or len(self.losses) == len(other.losses)):
            old = self.losses or [0.0] * len(other.losses)
            total = self.loss_weight + other.n
            self.losses = [(a * self.loss_weight + b * other.n) / total
                           for a, b in zip(old, other.losses)]
            self.loss_weight = total
        self.steps = max(self.steps, other.steps)

    def warnings(self) -> List[str]:
        found = []
        if self.nan_grad_examples:
            found.append(f"NaN input gradients for {self.nan_grad_examples}/{self.n} examples "
                         "during the attack")
        if self.zero_grad_examples:
            found.append(f"all-zero input gradients for {self.zero_grad_examples}/{self.n} "
                         "examples during the attack (gradient masking?)")
        if len(self.losses) >= 2 and not self.losses[-1] > self.losses[0]:
            found.append(f"attack loss did not increase over the steps ({self.losses[0]:.4g} "
                         f"-> {self.losses[-1]:.4g}; gradient masking?)")
        return found


class _StepRecorder:
    """Collects per-step diagnostics as device tensors; one host sync at the end."""

    def __init__(self, n: int, device: torch.device):
        self.n = n
        self.losses: List[torch.Tensor] = []
        self.zero = torch.zeros(n, dtype=torch.bool, device=device)
        self.nan = torch.zeros(n, dtype=torch.bool, device=device)
        self.labels_checked = False

    def finish(self) -> AttackStats:
        losses = torch.stack(self.losses).float().tolist() if self.losses else []
        if not all(math.isfinite(v) for v in losses):
            raise AttackError("the model returned NaN or inf logits during the attack (the "
                              "loss became non-finite)")
        return AttackStats(n=self.n, steps=len(self.losses), losses=losses,
                           zero_grad_examples=int(self.zero.sum()),
                           nan_grad_examples=int(self.nan.sum()))


# --------------------------------------------------------------------------- base class
class Attack:
    """Base of all attacks. `attack(images, labels)` returns adversarial images.

    images: float (N, ...) in [0, 1]; labels: integer (N,) (the target classes when
    targeted=True). The attack runs on the model's device in the model's dtype and returns the
    adversarial images there. engine="native" is this package's loop (optional `amp="bf16"`
    autocast for the gradient steps, `channels_last`, `compile`); engine="torchattacks" runs
    the torchattacks 3.5.1 class of the same algorithm. restarts>1 keeps, per example, the first
    restart that fools the model (fp32 prediction), else the one with the highest loss.

    Each subclass describes itself with class attributes, so that front ends, the sweep and
    reports need no per-name knowledge (`attacks.describe(name)` lists them):
      name           registry key, e.g. "pgd"
      title          human name for labels, e.g. "PGD"
      threat         "linf" or "l2": the ball eps is measured in (the default one when the
                     attack takes a `threat` option)
      default_eps    budget used when none is given
      default_steps  gradient steps per restart (the result row's `steps`); None when the
                     attack has no single step count (AutoAttack: version, parts and n_iter)
      strength       order of attack strength (FGSM 0 < PGD 1 < AutoAttack 2): at the same
                     eps and threat a stronger attack scoring above a weaker one is flagged
      uses_gradients its adversarial loss must exceed the clean loss (gradient-masking check)
      engines        the engines it runs on; the first is the default
      options        the plain options it takes besides eps and engine (from OPTION_NAMES);
                     any other option is refused by `resolve`, never ignored
      choices        allowed values of its options that are a closed set
    """

    name = "attack"
    title = "Attack"
    threat = "linf"
    default_eps: float = 8 / 255
    default_steps: Optional[int] = 1
    strength = 0
    uses_gradients = True
    engines: Tuple[str, ...] = ENGINES
    options: Tuple[str, ...] = ()
    choices: Dict[str, Tuple[Any, ...]] = {}

    # -- metadata: plain options -> constructor keyword arguments
    @classmethod
    def fixed_options(cls, given: Mapping[str, Any]) -> Dict[str, Tuple[Any, str]]:
        """option -> (the value this attack fixes, why), for options it does not let one set
        (given the other options). Giving such an option is accepted only at that value."""
        fixed: Dict[str, Tuple[Any, str]] = {}
        if "steps" not in cls.options:
            fixed["steps"] = (cls.default_steps, f"it always runs {cls.default_steps} step"
                              if cls.default_steps else "it has no step count")
        if "restarts" not in cls.options:
            fixed["restarts"] = (1, "it takes no restarts")
        if "threat" not in cls.options:
            fixed["threat"] = (cls.threat, f"it attacks the {cls.threat} ball")
        return fixed

    @classmethod
    def rejects(cls, option: str, value: Any,
                given: Optional[Mapping[str, Any]] = None) -> Optional[str]:
        """Why `option=value` does not apply to this attack (given the other options), or None."""
        if option == "eps":
            return None
        if option == "engine":
            return None if value in cls.engines else f"its engines are {', '.join(cls.engines)}"
        fixed = cls.fixed_options(given or {})
        if option in fixed:
            expected, why = fixed[option]
            return None if _same_value(value, expected) else why
        if option in cls.options:
            return None
        return "it takes " + ", ".join(("eps", "engine") + tuple(cls.options))

    @classmethod
    def resolve(cls, given: Mapping[str, Any]) -> Dict[str, Any]:
        """Validated constructor keyword arguments from plain options (None: the default).
        An option that does not apply to this attack is an AttackError, never ignored.
        alpha stays None when not given: the constructor then uses eps/4 for each eps."""
        given = {k: v for k, v in given.items() if v is not None}
        unknown = sorted(set(given) - set(OPTION_NAMES))
        if unknown:
            raise AttackError(f"unknown option(s) {unknown} for attack {cls.name!r}; known: "
                              f"{', '.join(OPTION_NAMES)}")
        for option, value in given.items():
            why = cls.rejects(option, value, given)
            if why:
                raise AttackError(f"option {option}={value!r} does not apply to attack "
                                  f"{cls.name!r}: {why}")
        threat = given.get("threat", cls.threat)
        try:
            kwargs: Dict[str, Any] = {"eps": check_eps(given.get("eps", cls.default_eps), threat),
                                      "engine": given.get("engine", cls.engines[0])}
            if "steps" in cls.options:
                kwargs["steps"] = check_int("steps", given.get("steps", cls.default_steps))
            if "alpha" in cls.options:
                alpha = given.get("alpha")
                kwargs["alpha"] = None if alpha is None else check_real(
                    "alpha", alpha, high=1.0 if threat == "linf" else math.inf)
            if "restarts" in cls.options:
                kwargs["restarts"] = check_int("restarts", given.get("restarts", 1))
        except AttackError as error:
            raise AttackError(f"attack {cls.name!r}: {error}") from None
        return kwargs

    @classmethod
    def label(cls, params: Optional[Mapping[str, Any]] = None) -> str:
        """Human label for reports, e.g. "PGD-10", "FGSM", "PGD-10 (2 restarts)". params:
        constructor keyword arguments (`resolve`'s result or `hyperparameters()` plus
        restarts); missing ones take the class defaults."""
        params = params or {}
        text = cls.title
        if "steps" in cls.options:
            text += f"-{params.get('steps') or cls.default_steps}"
        restarts = params.get("restarts") or 1
        if "restarts" in cls.options and restarts > 1:
            text += f" ({restarts} restarts)"
        return text

    def __init__(self, model: nn.Module, *, restarts: int = 1, seed: int = 0,
                 targeted: bool = False, engine: str = "native", amp: Optional[str] = None,
                 channels_last: bool = False, compile: Any = False, **unknown: Any):
        if unknown:
            raise AttackError(f"{type(self).__name__} takes no argument(s) "
                              f"{', '.join(sorted(unknown))}")
        if not isinstance(model, nn.Module):
            raise AttackError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if engine not in self.engines:
            raise AttackError(f"unknown engine {engine!r} for {self.name}; choose one of "
                              f"{', '.join(self.engines)}")
        if amp not in AMP_DTYPES:
            raise AttackError(f"amp must be one of {[k for k in AMP_DTYPES if k]} or None, got "
                              f"{amp!r}")
        if engine != "native" and (amp or channels_last or compile):
            raise AttackError("amp, channels_last and compile apply to the native engine only")
        self.model = model
        self.device, self.dtype = model_device_dtype(model)
        self.restarts = check_int("restarts", restarts)
        self.seed = check_int("seed", seed, minimum=0)
        if not isinstance(targeted, bool):
            raise AttackError(f"targeted must be True or False, got {targeted!r}")
        self.targeted = targeted
        self.engine = engine
        self.amp = amp
        self.channels_last = bool(channels_last)
        self.compile = compile
        self._compiled: Optional[Any] = None
        self.last_stats: Optional[AttackStats] = None

    # -- what a subclass provides
    def hyperparameters(self) -> Dict[str, Any]:
        return {}

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _torchattacks(self) -> Any:
        raise NotImplementedError

    @property
    def steps_run(self) -> Optional[int]:
        """Gradient steps per restart (the schema's `steps`; None: no single step count)."""
        return getattr(self, "steps", self.default_steps)

    # -- public
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.perturb(images, labels)

    def __repr__(self) -> str:
        info: Dict[str, Any] = {"model_name": type(self.model).__name__,
                                "device": self.device,
                                "attack_mode": "targeted" if self.targeted else "default"}
        info.update(self.hyperparameters())
        info.update(restarts=self.restarts, seed=self.seed, engine=self.engine)
        if self.engine == "native":
            info.update(amp=self.amp, channels_last=self.channels_last, compile=self.compile)
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v}" for k, v in info.items()) + ")"

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, *,
                seed: Optional[int] = None) -> torch.Tensor:
        """Adversarial images for (images, labels); `seed` overrides self.seed for this call."""
        seed = self.seed if seed is None else check_int("seed", seed, minimum=0)
        self.device, self.dtype = model_device_dtype(self.model)
        images = check_images(images).detach().to(self.device, self.dtype)
        labels = check_labels(labels, images.shape[0]).to(self.device)
        if getattr(self, "eps", None) == 0:  # the clean point of a sweep: nothing to search
            self.last_stats = AttackStats(n=images.shape[0])
            return images.clone()
        with eval_mode(self.model):
            if self.engine != "native":  # the native loop checks logits and labels at step 1
                clean = predict_logits(self.model, images, "on the clean images")
                check_labels(labels, images.shape[0], clean.shape[1])
                self._num_classes = clean.shape[1]
            stats = AttackStats()
            best = self._run_once(images, labels, restart_seed(seed, 0), stats)
            if self.restarts > 1:
                best = self._restart(images, labels, best, seed)
        self.last_stats = stats
        return best

    # -- internals
    def _objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example quantity the attack maximises (CE, or -CE to the target)."""
        loss = F.cross_entropy(logits.float(), labels, reduction="none")
        return -loss if self.targeted else loss

    def _success(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred == labels if self.targeted else pred != labels

    def _restart(self, images, labels, best, seed) -> torch.Tensor:
        logits = predict_logits(self.model, best, "on adversarial images")
        done = self._success(logits, labels)
        best_obj = self._objective(logits, labels)
        for restart in range(1, self.restarts):
            todo = (~done).nonzero().flatten()
            if todo.numel() == 0:
                break
            # later restarts see a subset: only restart 0 (the whole batch) feeds the stats
            adv = self._run_once(images[todo], labels[todo], restart_seed(seed, restart),
                                 AttackStats())
            logits = predict_logits(self.model, adv, "on adversarial images")
            success = self._success(logits, labels[todo])
            objective = self._objective(logits, labels[todo])
            better = success | (objective > best_obj[todo])
            keep = todo[better]
            best[keep] = adv[better]
            best_obj[keep] = objective[better]
            done[keep] = success[better]
        return best

    def _run_once(self, images, labels, seed: int, stats: AttackStats) -> torch.Tensor:
        if self.engine == "torchattacks":
            attack = self._torchattacks()
            attack.set_device(images.device)
            if self.targeted:
                attack.set_mode_targeted_by_label(quiet=True)
            with seeded_global_rng(seed, images.device):
                adv = attack(images, labels)
            stats.merge(AttackStats(n=images.shape[0]))
            return adv.detach()
        generator = torch.Generator(device=images.device)
        generator.manual_seed(seed)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        self._recorder = _StepRecorder(images.shape[0], images.device)
        try:
            adv = self.forward(images, labels, generator).detach()
            stats.merge(self._recorder.finish())
        finally:
            self._recorder = None
        return adv.contiguous()

    def _network(self) -> Any:
        if not self.compile:
            return self.model
        if self._compiled is None:
            backend = self.compile if isinstance(self.compile, str) else "inductor"
            self._compiled = torch.compile(self.model, backend=backend)
        return self._compiled

    def _gradient(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """d loss / d images (batch-mean CE, as torchattacks), with per-step diagnostics."""
        images = images.detach().requires_grad_(True)
        amp_dtype = AMP_DTYPES[self.amp]
        if amp_dtype is None:
            logits = self._network()(images)
        else:
            with torch.autocast(device_type=images.device.type, dtype=amp_dtype):
                logits = self._network()(images)
        check_logits(logits, images.shape[0], "during the attack")
        recorder = getattr(self, "_recorder", None)
        if recorder is None or not recorder.labels_checked:
            check_labels(labels, images.shape[0], logits.shape[1])  # before CE can index out
            if recorder is not None:
                recorder.labels_checked = True
        loss = F.cross_entropy(logits.float() if amp_dtype else logits, labels)
        cost = -loss if self.targeted else loss
        (grad,) = torch.autograd.grad(cost, images)
        if recorder is not None:
            recorder.losses.append(cost.detach())  # NaN/inf logits make it non-finite
            largest = grad.flatten(1).abs().amax(1)  # NaN where a row has a NaN
            nan_rows = torch.isnan(largest)
            recorder.nan |= nan_rows
            recorder.zero |= largest == 0
            # CPU: branch for free; GPU: sanitise unconditionally rather than sync every step
            if grad.device.type != "cpu" or bool(nan_rows.any()):
                grad = torch.nan_to_num(grad, nan=0.0)
        return grad
