"""Load, save and identify checkpoints without ever executing code from them.

Formats read:
- own format: one .safetensors file; header metadata key "robust_eval" holds JSON (arch, norm,
  num_classes, mean, std, input_size, recipe, metrics, weights_sha256, ...);
- plain state dicts and legacy pickles ({'state_dict': ...}, akamaster's .th files), via
  torch.load(weights_only=True): a pickle that needs any other global is refused;
- official ConvNorm trainer files ({'arch','epoch','state_dict','optimizer','monitor_best'},
  `module.` prefixes, running_V buffers);
- RobustBench zoo files at <model_dir>/<dataset>/<threat>/<name>.pt (`load_robustbench`).
Arch and norm, when neither given nor in metadata, are inferred by matching the key set and
shapes against every registered (arch, norm) pair built on the meta device (no memory).
"""
from __future__ import annotations

import functools
import hashlib
import json
import pickle
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

PathLike = Union[str, Path]
FORMAT_NAME = "robust-eval"
FORMAT_VERSION = 1
META_KEY = "robust_eval"
STRIP_PREFIXES = ("module.", "model.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


# ----------------------------------------------------------------------------- hashing
def file_sha256(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Hash of names, dtypes, shapes and bytes, independent of the file container."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- saving
def _bare(model: nn.Module) -> nn.Module:
    from robust_eval.models import NormalizedModel

    return model.model if isinstance(model, NormalizedModel) else model


def save_checkpoint(model: nn.Module, path: PathLike, *, arch: str, norm: str, num_classes: int,
                    mean: Sequence[float], std: Sequence[float], input_size: Sequence[int],
                    recipe: Optional[dict] = None, metrics: Optional[dict] = None,
                    extra: Optional[dict] = None) -> str:
    """Write the bare network's weights + metadata as safetensors (atomically); returns the
    file's sha256 (what loaded models record as checkpoint_sha256)."""
    from safetensors.torch import save_file

    from robust_eval.models import MODELS, NormalizedModel, parse_stats
    from robust_eval.nn import get_norm

    MODELS.get(arch)
    get_norm(norm)
    mean, std = list(parse_stats(mean, "mean")), list(parse_stats(std, "std"))
    if isinstance(model, NormalizedModel) and (tuple(mean) != model.mean or tuple(std) != model.std):
        raise ValueError(f"mean/std {mean}/{std} differ from the model's own {model.mean}/"
                         f"{model.std}: the checkpoint would record the wrong preprocessing")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in _bare(model).state_dict().items()}
    meta = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "arch": arch, "norm": norm,
        "num_classes": int(num_classes), "mean": mean, "std": std,
        "input_size": [int(v) for v in input_size], "recipe": recipe or {},
        "metrics": metrics or {}, "extra": extra or {}, "weights_sha256": weights_sha256(state),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
    }
    try:
        from robust_eval.schema import code_version

        meta["code_version"] = code_version()
    except Exception:  # provenance is best effort; never block a save on git
        pass
    text = json.dumps(meta, sort_keys=True, default=_json_default)
    from reports.schema import atomic_target

    with atomic_target(path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT_NAME, META_KEY: text})
    return file_sha256(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")


# ----------------------------------------------------------------------------- reading
def _sniff(path: Path) -> Optional[str]:
    """'safetensors', 'zip' (torch.save), 'pickle' (legacy torch.save) or None, from the header.
    Anything else goes no further: torch would call random bytes a pickle needing code."""
    with open(path, "rb") as f:
        head = f.read(9)
    header_size = int.from_bytes(head[:8], "little")
    if len(head) == 9 and head[8:9] == b"{" and header_size < path.stat().st_size:
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return None


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


_TEXT = (lambda v: isinstance(v, str), "a string")
_OBJECT = (lambda v: isinstance(v, dict), "a JSON object")
_NUMBERS = (_numbers, "a list of numbers")
# Our metadata's fields and their types: a hand-edited header must fail here, by name.
_META_FIELDS = {
    "format": _TEXT, "arch": _TEXT, "norm": _TEXT, "weights_sha256": _TEXT,
    "num_classes": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                    "a positive integer"),
    "mean": _NUMBERS, "std": _NUMBERS, "input_size": _NUMBERS,
    "recipe": _OBJECT, "metrics": _OBJECT, "extra": _OBJECT,
}


def _check_meta(path: Path, meta: Any) -> dict:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata field {META_KEY!r} must be a JSON object, got "
                              f"a JSON {type(meta).__name__}")
    for name, (ok, want) in _META_FIELDS.items():
        if meta.get(name) is not None and not ok(meta[name]):
            raise CheckpointError(f"{path}: metadata field {META_KEY}.{name} must be {want}, "
                                  f"got {meta[name]!r}")
    return meta


def read_checkpoint_metadata(path: PathLike) -> dict:
    """Own-format metadata (empty dict for other formats); never reads the weights."""
    path = _existing(path)
    if _sniff(path) != "safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if META_KEY not in header:
        return {}
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: robust_eval metadata is not valid JSON ({error})") from None
    return _check_meta(path, meta)


def _existing(path: PathLike) -> Path:
    """The path of a non-empty file in a format we read; else a CheckpointError saying why."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty")
    if _sniff(path) is None:
        raise CheckpointError(f"{path}: not a checkpoint file (unrecognised format)")
    return path


def _reason(error: BaseException) -> str:
    """The informative line of a torch.load error (the blocked global, the bad opcode)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                lines[0] if lines else type(error).__name__)


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" in str(error).lower():
            raise CheckpointError(
                f"refusing to load {path}: it is a pickle that would need code execution to load "
                f"({_reason(error)}). Re-save its state_dict with torch.save(model.state_dict(), "
                f"...) in the environment that made it.") from None
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint "
                              f"({_reason(error)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, TypeError) as error:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint "
                              f"({_reason(error)})") from None


def strip_prefixes(state_dict: Mapping[str, Any],
                   prefixes: Sequence[str] = STRIP_PREFIXES) -> Dict[str, Any]:
    """Drop `module.` (DataParallel) and `model.` (wrappers) while every key carries one."""
    out = dict(state_dict)
    changed = True
    while changed and out:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def read_state_dict(path: PathLike) -> Tuple[Dict[str, torch.Tensor], dict, str]:
    """(state_dict with prefixes stripped, info, kind). kind: robust-eval | official-convnorm |
    legacy-dict | state-dict. info: own metadata, or the non-weight fields of a legacy dict."""
    path = _existing(path)
    if _sniff(path) == "safetensors":
        from safetensors.torch import load_file

        meta = read_checkpoint_metadata(path)
        try:
            state = load_file(str(path))
        except Exception as error:
            raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({error})") from None
        if meta.get("weights_sha256") and weights_sha256(state) != meta["weights_sha256"]:
            raise CheckpointError(f"{path}: weights do not match the sha256 recorded in its "
                                  f"metadata (file modified or corrupt)")
        return strip_prefixes(state), meta, "robust-eval" if meta else "state-dict"
    obj = _torch_load(path)
    info: dict = {}
    kind = "state-dict"
    if isinstance(obj, Mapping) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model", "net", "state"):
            if isinstance(obj.get(key), Mapping):
                info = {k: v for k, v in obj.items()
                        if isinstance(v, (int, float, str, bool)) and k != key}
                kind = ("official-convnorm" if {"arch", "epoch", "monitor_best"} <= set(obj)
                        else "legacy-dict")
                obj = obj[key]
                break
        else:
            raise CheckpointError(f"{path}: no state_dict found; top-level keys are "
                                  f"{sorted(map(str, obj))[:20]}")
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got "
                              f"{type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries that are not tensors: {bad[:10]}")
    return strip_prefixes(obj), info, kind


# ----------------------------------------------------------------------------- matching
def _num_classes_of(state: Mapping[str, torch.Tensor]) -> Optional[int]:
    for key in ("linear.weight", "fc.weight"):
        if key in state and state[key].dim() == 2:
            return int(state[key].shape[0])
    return None


# torch's spectral_norm init takes seconds per layer on the meta device, milliseconds on CPU.
_SLOW_ON_META = {"sn"}


@functools.lru_cache(maxsize=64)
def _skeleton(arch: str, norm: str, num_classes: int) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of a fresh (arch, norm), built on the meta device (no memory, fast)."""
    from robust_eval.models import MODELS

    builder = MODELS.get(arch).builder
    if norm in _SLOW_ON_META:
        net = builder(norm=norm, num_classes=num_classes)
    else:
        try:
            with torch.device("meta"):
                net = builder(norm=norm, num_classes=num_classes)
        except Exception:  # a layer whose __init__ computes on real tensors
            net = builder(norm=norm, num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _flexible(key: str) -> bool:
    # ConvNorm's running_V takes its shape from the input size (official quirk): compare loosely.
    return key.endswith("running_V")


def compare_keys(expected: Mapping[str, Tuple[int, ...]], state: Mapping[str, torch.Tensor]
                 ) -> Tuple[List[str], List[str], List[str]]:
    """(missing, unexpected, shape mismatches as 'key: file (..) vs model (..)')."""
    # Pre-1.0 BatchNorm had no num_batches_tracked (akamaster's files): not a weight, not missing.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
              for k in expected if k in state and not _flexible(k)
              and tuple(state[k].shape) != tuple(expected[k])]
    return missing, unexpected, shapes


def infer_arch_norm(state: Mapping[str, torch.Tensor], arch: Optional[str] = None,
                    norm: Optional[str] = None) -> List[Tuple[str, str, int]]:
    """All (arch, norm, num_classes) whose key set and shapes fit `state` exactly; 'bn' first
    (ocnn is bn at evaluation time: identical keys)."""
    from robust_eval.models import MODELS
    from robust_eval.nn import list_norms

    num_classes = _num_classes_of(state) or 10
    archs = [arch] if arch else list(MODELS)
    norms = [norm] if norm else sorted(list_norms(), key=lambda n: (n != "bn", n))
    leaves = _leaf_names(state)
    norms = [n for n in norms if _norm_leaves(n) == leaves]  # cheap filter before building
    found = []
    for a in archs:
        for n in norms:
            try:
                skeleton = _skeleton(a, n, num_classes)
            except Exception:
                continue
            if not any(compare_keys(skeleton, state)):
                found.append((a, n, num_classes))
    return found


def _leaf_names(keys) -> frozenset:
    return frozenset(k.rsplit(".", 1)[-1] for k in keys) - {"num_batches_tracked"}


@functools.lru_cache(maxsize=None)
def _norm_leaves(norm: str) -> frozenset:
    """Parameter/buffer leaf names a norm produces (e.g. running_V, weight_orig), from tiny_cnn."""
    return _leaf_names(_skeleton("tiny_cnn", norm, 10))


def _closest(state: Mapping[str, torch.Tensor]) -> str:
    from robust_eval.models import MODELS

    num_classes = _num_classes_of(state) or 10
    best, score = "", -1.0
    for a in MODELS:
        try:
            keys = set(_skeleton(a, "bn", num_classes))
        except Exception:
            continue
        jaccard = len(keys & set(state)) / max(1, len(keys | set(state)))
        if jaccard > score:
            best, score = a, jaccard
    return best


def _stripped_prefix(keys: Mapping[str, Any]) -> str:
    """What `strip_prefixes` removes from every one of `keys` ('' for the registered archs)."""
    if not keys:
        return ""
    first = next(iter(keys))
    return first[:len(first) - len(next(iter(strip_prefixes(dict.fromkeys(keys)))))]


def _names(keys: List[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


# ----------------------------------------------------------------------------- loading
def load_checkpoint(path: PathLike, arch: Optional[str] = None, norm: Optional[str] = None,
                    num_classes: Optional[int] = None, mean: Optional[Sequence[float]] = None,
                    std: Optional[Sequence[float]] = None, device: Union[str, torch.device] = "cpu"
                    ) -> nn.Module:
    """A ready NormalizedModel in eval mode. Arguments override metadata; what is neither given
    nor recorded is inferred (arch/norm/num_classes) or the arch default (mean/std, with a
    warning: a legacy file does not record its preprocessing)."""
    from robust_eval.models import create_model, get_model_spec

    path = Path(path)
    state, info, kind = read_state_dict(path)
    meta = info if kind == "robust-eval" else {}
    warn: List[str] = []
    if arch is not None:
        get_model_spec(arch)
    elif ":" in str(meta.get("arch") or ""):
        raise CheckpointError(f"{path} records the factory arch {meta['arch']!r}: a checkpoint "
                              f"never chooses code to import; pass arch= yourself")
    for name, given in (("arch", arch), ("norm", norm), ("num_classes", num_classes)):
        if given is not None and meta.get(name) not in (None, given):
            warn.append(f"{name}={given!r} overrides {meta[name]!r} recorded in {path.name}")
    arch = arch or meta.get("arch")
    norm = norm or meta.get("norm")
    num_classes = num_classes or meta.get("num_classes") or _num_classes_of(state)
    if arch is None or (norm is None and not get_model_spec(arch).factory):
        fits = infer_arch_norm(state, arch, norm)
        if fits:
            arch, norm = arch or fits[0][0], norm or fits[0][1]
        else:  # compare with the closest candidate below, which names the differing keys
            arch, norm = arch or _closest(state), norm or "bn"
    spec = get_model_spec(arch)
    num_classes = num_classes or spec.default_num_classes
    if mean is None or std is None:
        if meta.get("mean") and meta.get("std"):
            mean, std = mean or meta["mean"], std or meta["std"]
        else:
            mean, std = mean or spec.default_mean, std or spec.default_std
            if not spec.factory:  # a factory's model normalises itself
                warn.append(f"{path.name} records no mean/std: using {arch}'s default "
                            f"mean={tuple(mean)} std={tuple(std)}")
    for name, given in (("mean", mean), ("std", std)):
        if meta.get(name) and [float(v) for v in given] != [float(v) for v in meta[name]]:
            warn.append(f"{name}={tuple(given)} overrides {tuple(meta[name])} recorded in {path.name}")
    model = create_model(arch, norm=norm, num_classes=num_classes and int(num_classes),
                         mean=mean, std=std)
    expected = {k: tuple(v.shape) for k, v in model.model.state_dict().items()}
    prefix = _stripped_prefix(expected)  # a factory's model may keep its own `model.` wrapper
    if prefix:
        state = {prefix + k: v for k, v in state.items()}
    missing, unexpected, shapes = compare_keys(expected, state)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {_names(shapes, 4)}")
        fits = infer_arch_norm(state)
        hint = (f"; it fits {fits[0][0]} with norm {fits[0][1]!r}" if fits
                else f"; closest arch: {_closest(state)!r}")
        raise CheckpointError(f"{path} does not fit {arch} (norm {norm!r}, {num_classes} classes): "
                              + "; ".join(parts) + hint)
    # Missing num_batches_tracked: BatchNorm fills 0 itself; ConvNorm2d treats a trained
    # running_V without its counter as past the EMA ramp-down (robust_eval/nn/convnorm.py).
    try:
        model.model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: cannot load into {arch} (norm {norm!r}): {error}") from None
    for message in warn:
        warnings.warn(message, stacklevel=2)
    model.robust_eval_meta = {
        "arch": arch, "norm": norm, "num_classes": num_classes and int(num_classes),
        "mean": list(model.mean),
        "std": list(model.std), "input_size": list(meta.get("input_size") or spec.input_size),
        "checkpoint": str(path), "checkpoint_sha256": file_sha256(path), "format": kind,
        "recipe": meta.get("recipe", {}), "metrics": meta.get("metrics", {}),
        "source_info": {k: v for k, v in info.items() if kind != "robust-eval"},
        "warnings": warn,
    }
    return model.to(device).eval()


# ----------------------------------------------------------------------------- RobustBench
# robustbench.utils.download_gdrive's URL for a zoo file; the file's id is appended as &id=.
GDRIVE_URL = "https://docs.google.com/uc?export=download&confirm=t"


def _robustbench_zoo() -> Tuple[Dict[str, Dict[str, Mapping[str, dict]]], List[str]]:
    """robustbench's model list as {dataset: {threat: {name: entry}}}, and its threat names,
    imported on first use. Importing robustbench prints third-party noise (a torch.jit
    FutureWarning, timm and pkg_resources deprecations) into users' output: that is silenced for
    this import alone, never by a process-wide filter."""
    from robust_eval._compat import install_autoattack_alias

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        install_autoattack_alias()  # pyautoattack's own import is noisy too
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import ThreatModel
    zoo = {d.value: {t.value: models for t, models in threats.items()}
           for d, threats in model_dicts.items()}
    return zoo, [t.value for t in ThreatModel]


def _zoo_spelling(dataset: Optional[str], threat_model: Optional[str]
                  ) -> Tuple[Optional[str], Optional[str]]:
    """RobustBench's spelling of a dataset and a threat model (None stays None), any case."""
    zoo, threats = _robustbench_zoo()
    spelled = []
    for value, choices, what in ((dataset, list(zoo), "dataset"),
                                 (threat_model, threats, "threat model")):
        match = [c for c in choices if value is not None and c.lower() == str(value).lower()]
        if value is not None and not match:
            raise CheckpointError(f"unknown RobustBench {what} {value!r}: choose "
                                  f"{', '.join(choices)}")
        spelled.append(match[0] if match else None)
    dataset, threat = spelled
    # load_model keeps corruptions_3d models in the corruptions zoo and folder.
    return dataset, threat and threat.replace("_3d", "")


def robustbench_entry(name: str, dataset: str = "cifar10", threat_model: str = "Linf"
                      ) -> Tuple[str, str, dict]:
    """(dataset, threat, zoo entry) from the model list robustbench ships; dataset and threat
    are case-insensitive, names are not (as in robustbench). Errors blame the wrong part."""
    import difflib

    zoo, _ = _robustbench_zoo()
    dataset, threat = _zoo_spelling(dataset, threat_model)
    if threat not in zoo[dataset]:
        raise CheckpointError(f"RobustBench has no {dataset} models for threat {threat} "
                              f"({dataset} has {', '.join(zoo[dataset])})")
    models = zoo[dataset][threat]
    if name in models:
        return dataset, threat, models[name]
    lower = {m.lower(): m for m in models}
    close = [lower[m] for m in difflib.get_close_matches(name.lower(), lower, n=3, cutoff=0.6)]
    elsewhere = [f"{d}/{t}" for d in zoo for t in zoo[d] if name in zoo[d][t]]
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    if elsewhere:
        hint += f"; {name!r} exists for {', '.join(elsewhere)}"
    raise CheckpointError(f"no RobustBench model {name!r} for {dataset}/{threat}{hint} "
                          f"(`robust-eval zoo list --dataset {dataset} --threat {threat}` lists "
                          f"them)")


def list_robustbench(dataset: Optional[str] = None, threat_model: Optional[str] = None
                     ) -> List[Tuple[str, str, str, Any]]:
    """(dataset, threat, name, gdrive_id) of every zoo model, or of one dataset and/or threat.
    gdrive_id is None for timm models (no zoo file) and a list for ensembles."""
    zoo, _ = _robustbench_zoo()
    dataset, threat = _zoo_spelling(dataset, threat_model)
    return [(d, t, name, entry.get("gdrive_id")) for d in zoo if dataset in (None, d)
            for t in zoo[d] if threat in (None, t) for name, entry in zoo[d][t].items()]


def robustbench_path(name: str, model_dir: PathLike, dataset: str = "cifar10",
                     threat_model: str = "Linf") -> Path:
    """Where robustbench.utils.load_model looks: <model_dir>/<dataset>/<threat>/<name>.pt, in
    RobustBench's spelling. Never raises: a job's missing or unknown model fails in its own cells,
    where load_robustbench names what is wrong."""
    try:
        dataset, threat_model = _zoo_spelling(dataset, threat_model)
    except CheckpointError:
        pass
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def download_robustbench(name: str, model_dir: PathLike, dataset: str = "cifar10",
                         threat_model: str = "Linf", timeout: float = 60.0) -> Path:
    """Fetch a zoo file into robustbench_path(...) from its gdrive id in robustbench's list; a
    file already there is kept. The download goes to a temporary file that must load with
    weights_only=True before it is renamed into place, so a failure leaves nothing behind."""
    dataset, threat, entry = robustbench_entry(name, dataset, threat_model)
    gdrive_id = entry.get("gdrive_id")
    if not isinstance(gdrive_id, str):
        what = ("a timm model with no zoo file" if gdrive_id is None
                else f"an ensemble of {len(gdrive_id)} files")
        raise CheckpointError(f"RobustBench {name} ({dataset}/{threat}) is {what}: only "
                              f"single-file zoo models can be downloaded and loaded here")
    path = robustbench_path(name, model_dir, dataset, threat)
    if path.is_file():
        return path
    from reports.schema import atomic_target

    with atomic_target(path) as tmp:
        url = _gdrive_fetch(gdrive_id, tmp, timeout)
        try:
            obj = _torch_load(_existing(tmp))
        except CheckpointError as error:
            raise CheckpointError(f"RobustBench {name}: the file served by {url} is unusable "
                                  f"({error})") from None
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"RobustBench {name}: the file served by {url} holds a "
                                  f"{type(obj).__name__}, not a state dict")
    return path


def _gdrive_fetch(gdrive_id: str, dest: Path, timeout: float) -> str:
    """Stream a public Google Drive file into dest, asked for as robustbench.utils.download_gdrive
    does (GDRIVE_URL, its browser User-Agent, the download_warning cookie's confirm token); big
    files answer with a virus-scan form first, followed as gdown does. Returns the file's URL."""
    import http.cookiejar
    import shutil
    import urllib.parse
    import urllib.request

    from robustbench.utils import CANNED_USER_AGENT

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", CANNED_USER_AGENT)]
    url = f"{GDRIVE_URL}&{urllib.parse.urlencode({'id': gdrive_id})}"
    for _ in range(3):  # the file, or a page leading to it
        try:
            with opener.open(url, timeout=timeout) as response:
                if response.headers.get_content_type() != "text/html":
                    with open(dest, "wb") as out:
                        shutil.copyfileobj(response, out, 1 << 20)
                    return url
                page = response.read(1 << 20).decode("utf-8", "replace")
                base = response.geturl()
        except OSError as error:
            raise CheckpointError(f"cannot download Google Drive file {gdrive_id} from {url}: "
                                  f"{error}") from None
        url = _gdrive_next_url(page, base, jar, gdrive_id)
    raise CheckpointError(f"Google Drive answered file {gdrive_id} with pages, never the file")


def _gdrive_next_url(page: str, base: str, jar, gdrive_id: str) -> str:
    import re
    import urllib.parse
    from html.parser import HTMLParser

    token = next((c.value for c in jar if c.name.startswith("download_warning")), None)
    if token:
        return f"{GDRIVE_URL}&{urllib.parse.urlencode({'id': gdrive_id, 'confirm': token})}"

    class Form(HTMLParser):  # <form id="download-form" action=...> and its hidden inputs
        def __init__(self):
            super().__init__()
            self.action, self.fields, self.inside = None, {}, False

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "form" and attrs.get("id") == "download-form":
                self.action, self.inside = attrs.get("action"), True
            elif tag == "input" and self.inside and attrs.get("type") == "hidden":
                self.fields[attrs.get("name") or ""] = attrs.get("value") or ""

        def handle_endtag(self, tag):
            self.inside = self.inside and tag != "form"

    form = Form()
    form.feed(page)
    if form.action:
        action = urllib.parse.urlsplit(urllib.parse.urljoin(base, form.action))
        query = dict(urllib.parse.parse_qsl(action.query), **form.fields)
        return urllib.parse.urlunsplit(action._replace(query=urllib.parse.urlencode(query)))
    error = re.search(r'class="uc-error-subcaption">([^<]*)<', page)
    raise CheckpointError(f"Google Drive did not serve file {gdrive_id}: " + (
        error.group(1) if error else "it answered with a web page (the file is not shared "
                                     "publicly, or its download quota is used up)"))


def load_robustbench(name: str, model_dir: PathLike, dataset: str = "cifar10",
                     threat_model: str = "Linf", device: Union[str, torch.device] = "cpu",
                     download: bool = False) -> nn.Module:
    """A RobustBench zoo model from its local file, read with weights_only=True.

    robustbench.utils.load_model would torch.load the same file with torch's default (safe only
    since torch 2.6, and a user's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns it off), so we read it
    ourselves and apply the same key fixes ('state_dict', 'module.', 'model.'). 'Standard' goes
    into our wrn28_10 (same layout); other zoo entries into robustbench's own architecture.
    Zoo models take [0,1] inputs, so the wrapper's mean/std are 0/1. dataset and threat_model
    are case-insensitive; download=True fetches a missing file (download_robustbench).
    """
    from robust_eval.models import NormalizedModel, create_model

    dataset, threat_model, entry = robustbench_entry(name, dataset, threat_model)
    path = robustbench_path(name, model_dir, dataset, threat_model)
    if not path.is_file():
        if not download:
            raise CheckpointError(
                f"RobustBench file {path} does not exist; download it with `robust-eval zoo "
                f"download {name} --dataset {dataset} --threat {threat_model} --model-dir "
                f"{model_dir}`")
        download_robustbench(name, model_dir, dataset, threat_model)
    obj = _torch_load(_existing(path))
    state = obj["state_dict"] if isinstance(obj, Mapping) and "state_dict" in obj else obj
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = strip_prefixes(state)
    if name == "Standard":
        num_classes = {"cifar10": 10, "cifar100": 100}.get(dataset, 1000)
        model = create_model("wrn28_10", norm="bn", num_classes=num_classes,
                             mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        arch = "wrn28_10"
    else:
        model = NormalizedModel(entry["model"](), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        arch = f"robustbench:{name}"
    expected = {k: tuple(v.shape) for k, v in model.model.state_dict().items()}
    missing, unexpected, shapes = compare_keys(expected, state)
    if missing or unexpected or shapes:
        raise CheckpointError(f"{path} does not fit RobustBench {name}: missing {_names(missing)}; "
                              f"unexpected {_names(unexpected)}; shapes {_names(shapes, 4)}")
    model.model.load_state_dict(state, strict=True)
    model.robust_eval_meta = {
        "arch": arch, "norm": "bn", "num_classes": _num_classes_of(state), "mean": [0.0] * 3,
        "std": [1.0] * 3, "checkpoint": str(path), "checkpoint_sha256": file_sha256(path),
        "format": "robustbench", "source_info": {"name": name, "dataset": dataset,
                                                  "threat_model": threat_model},
    }
    return model.to(device).eval()


__all__ = ["CheckpointError", "compare_keys", "download_robustbench", "file_sha256",
           "infer_arch_norm", "list_robustbench", "load_checkpoint", "load_robustbench",
           "read_checkpoint_metadata", "read_state_dict", "robustbench_entry", "robustbench_path",
           "save_checkpoint", "strip_prefixes", "weights_sha256"]
