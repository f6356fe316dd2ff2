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
import os
import pickle
import tempfile
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": FORMAT_NAME, META_KEY: text})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_checkpoint_metadata(path: PathLike) -> dict:
    """Own-format metadata (empty dict for other formats); never reads the weights."""
    path = _existing(path)
    if not _looks_like_safetensors(path):
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
        return json.loads(header[META_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: robust_eval metadata is not valid JSON ({error})") from None


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty")
    return path


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "global" in str(error).lower():
            raise CheckpointError(
                f"refusing to load {path}: it is a pickle that would need code execution to load "
                f"({first}). Re-save its state_dict with torch.save(model.state_dict(), ...) in "
                f"the environment that made it.") from None
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None


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
    if _looks_like_safetensors(path):
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
    from robust_eval.models import MODELS, create_model

    path = Path(path)
    state, info, kind = read_state_dict(path)
    meta = info if kind == "robust-eval" else {}
    warn: List[str] = []
    if arch is not None:
        MODELS.get(arch)
    for name, given in (("arch", arch), ("norm", norm), ("num_classes", num_classes)):
        if given is not None and meta.get(name) not in (None, given):
            warn.append(f"{name}={given!r} overrides {meta[name]!r} recorded in {path.name}")
    arch = arch or meta.get("arch")
    norm = norm or meta.get("norm")
    num_classes = num_classes or meta.get("num_classes") or _num_classes_of(state)
    if arch is None or norm is None:
        fits = infer_arch_norm(state, arch, norm)
        if fits:
            arch, norm = arch or fits[0][0], norm or fits[0][1]
        else:  # compare with the closest candidate below, which names the differing keys
            arch, norm = arch or _closest(state), norm or "bn"
    spec = MODELS.get(arch)
    num_classes = num_classes or spec.default_num_classes
    if mean is None or std is None:
        if meta.get("mean") and meta.get("std"):
            mean, std = mean or meta["mean"], std or meta["std"]
        else:
            mean, std = mean or spec.default_mean, std or spec.default_std
            warn.append(f"{path.name} records no mean/std: using {arch}'s default "
                        f"mean={tuple(mean)} std={tuple(std)}")
    for name, given in (("mean", mean), ("std", std)):
        if meta.get(name) and [float(v) for v in given] != [float(v) for v in meta[name]]:
            warn.append(f"{name}={tuple(given)} overrides {tuple(meta[name])} recorded in {path.name}")
    model = create_model(arch, norm=norm, num_classes=int(num_classes), mean=mean, std=std)
    expected = {k: tuple(v.shape) for k, v in model.model.state_dict().items()}
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
        "arch": arch, "norm": norm, "num_classes": int(num_classes), "mean": list(model.mean),
        "std": list(model.std), "input_size": list(meta.get("input_size") or spec.input_size),
        "checkpoint": str(path), "checkpoint_sha256": file_sha256(path), "format": kind,
        "recipe": meta.get("recipe", {}), "metrics": meta.get("metrics", {}),
        "source_info": {k: v for k, v in info.items() if kind != "robust-eval"},
        "warnings": warn,
    }
    return model.to(device).eval()


# ----------------------------------------------------------------------------- RobustBench
def robustbench_path(name: str, model_dir: PathLike, dataset: str = "cifar10",
                     threat_model: str = "Linf") -> Path:
    """Where robustbench.utils.load_model looks: <model_dir>/<dataset>/<threat>/<name>.pt."""
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def load_robustbench(name: str, model_dir: PathLike, dataset: str = "cifar10",
                     threat_model: str = "Linf", device: Union[str, torch.device] = "cpu",
                     download: bool = False) -> nn.Module:
    """A RobustBench zoo model from its local file, read with weights_only=True.

    robustbench.utils.load_model would torch.load the same file with torch's default (safe only
    since torch 2.6, and a user's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns it off), so we read it
    ourselves and apply the same key fixes ('state_dict', 'module.', 'model.'). 'Standard' goes
    into our wrn28_10 (same layout); other zoo entries into robustbench's own architecture.
    Zoo models take [0,1] inputs, so the wrapper's mean/std are 0/1.
    """
    from robust_eval._compat import install_autoattack_alias

    install_autoattack_alias()  # before robustbench imports `autoattack`
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    from robust_eval.models import NormalizedModel, create_model

    try:
        entry = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)][name]
    except (KeyError, ValueError):
        raise CheckpointError(f"no RobustBench model {name!r} for {dataset}/{threat_model}") from None
    path = robustbench_path(name, model_dir, dataset, threat_model)
    if not path.is_file():
        if not download:
            raise CheckpointError(f"RobustBench file {path} does not exist (download=True fetches "
                                  f"it from Google Drive, id {entry['gdrive_id']})")
        from robustbench.utils import download_gdrive_new

        path.parent.mkdir(parents=True, exist_ok=True)
        download_gdrive_new(entry["gdrive_id"], path)
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


__all__ = ["CheckpointError", "compare_keys", "file_sha256", "infer_arch_norm", "load_checkpoint",
           "load_robustbench", "read_checkpoint_metadata", "read_state_dict", "robustbench_path",
           "save_checkpoint", "strip_prefixes", "weights_sha256"]
