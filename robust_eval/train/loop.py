"""The training loop: one function, `train_model`, for every recipe; resumable bit for bit.

A run lives in one folder:
  spec.json       the resolved TrainSpec (its sha256 is the reuse key)
  state.pt        everything needed to resume after epoch k: weights, optimizer and AMP-scaler
                  state, noisy labels, split indices, history (torch.save of tensors and plain
                  containers only, so it loads with weights_only=True). Written last each epoch:
                  it is the commit point of the epoch.
  last.safetensors  the model after the last finished epoch (robust_eval.checkpoints format;
                    metadata: recipe = the TrainSpec, metrics = per-epoch history, extra = noise
                    incl. flipped indices)
  best.safetensors  the model at the best-validation epoch (when there is a validation split)

Determinism: the model is initialised from the seed; each epoch's data order and augmentation
come from a generator seeded with (seed, epoch); the lr is a pure function of the epoch. So a
killed run, resumed from state.pt, ends with exactly the weights of an uninterrupted one (same
device, same thread count). Training never reseeds torch's global RNG: other code in the
process draws the same numbers whether or not a model was trained in between.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robust_eval.train.noise import corrupt_labels, noise_summary
from robust_eval.train.recipes import NO_FLIP_DATASETS, TrainSpec, make_spec

STATE_FORMAT = "robust-eval-train-state"
STATE_VERSION = 1
SPEC_FILE, STATE_FILE = "spec.json", "state.pt"
LAST_FILE, BEST_FILE = "last.safetensors", "best.safetensors"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # official ConvNorm loaders (convnorm.md)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
EVAL_BATCH = 512


class TrainError(ValueError):
    """Bad training input (data too small, folder holding another run, ...)."""


@dataclass
class TrainResult:
    out_dir: Path
    spec: TrainSpec
    history: List[Dict[str, Any]]
    best_epoch: Optional[int]  # 1-based; None without a validation split
    last_checkpoint: Path
    best_checkpoint: Optional[Path]
    noise: Optional[Dict[str, Any]]  # summary of the training-label noise (no index list)
    resumed_from_epoch: int = 0  # epochs already done when this call started
    trained_epochs: int = 0  # epochs run by this call
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.history) >= self.spec.epochs


def derive_seed(seed: int, *tags: Any) -> int:
    """Independent, stable sub-seeds (data order, init, val noise ...) from one user seed."""
    text = ":".join(str(t) for t in (seed,) + tags)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def split_indices(labels: np.ndarray, num_classes: int, val_fraction: float,
                  data_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per class: a seeded shuffle, the first round(val_fraction*n) go to validation, then
    round(data_fraction*rest) (data scarcity) to training. Disjoint by construction."""
    rng = np.random.default_rng(derive_seed(seed, "split"))
    train, val = [], []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        members = rng.permutation(members)
        n_val = int(round(val_fraction * members.size))
        if val_fraction > 0 and n_val == 0:
            raise TrainError(
                f"dataset too small for the validation split: class {c} has {members.size} "
                f"image(s), val_fraction={val_fraction} leaves none for validation (use more "
                f"images or a larger val_fraction, or val_fraction=0)")
        rest = members[n_val:]
        n_train = int(round(data_fraction * rest.size))
        if n_train == 0:
            raise TrainError(
                f"dataset too small: class {c} has {members.size} image(s); after "
                f"val_fraction={val_fraction} and data_fraction={data_fraction} no training "
                f"image is left")
        train.append(rest[:n_train])
        val.append(members[:n_val])
    train_idx = np.sort(np.concatenate(train)) if train else np.zeros(0, np.int64)
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    if train_idx.size < 2:
        raise TrainError(f"dataset too small: {train_idx.size} training image(s)")
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     flip: bool = True) -> torch.Tensor:
    """RandomCrop(size, padding, zero fill) + RandomHorizontalFlip, batched on x's device.
    Offsets come from a CPU generator so CPU and GPU runs draw the same crops. flip=False
    draws the same numbers (the crops stay those of a flipping run) and flips nothing."""
    n, c, h, w = x.shape
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device) & flip
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = oy[:, None] + torch.arange(h, device=x.device)
    cols = ox[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def _atomic_torch_save(obj: Any, path: Path) -> None:
    from reports.schema import atomic_target

    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


def _atomic_write_text(text: str, path: Path) -> None:
    from reports.schema import write_atomic

    write_atomic(path, text)


def load_state(out_dir: Union[str, Path]) -> Optional[Dict[str, Any]]:
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrainError(f"cannot read training state {path}: {error}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainError(f"{path} is not a robust-eval training state")
    return state


def _check_spec_file(out_dir: Path, spec: TrainSpec) -> None:
    path = out_dir / SPEC_FILE
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TrainError(f"cannot read {path}: {error}") from None
    new = spec.to_dict()
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:6])
        raise TrainError(f"{out_dir} holds a run with a different training spec ({details}); "
                         f"use another output folder")


def _autocast(amp: str, device: torch.device):
    if amp == "none":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      device: Union[str, torch.device] = "cpu", batch_size: int = EVAL_BATCH,
                      amp: str = "none", channels_last: bool = False) -> Tuple[int, float]:
    """(correct, mean cross-entropy) of model.eval() on uint8 images."""
    device = torch.device(device)
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device).float().div_(255)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = labels[start:start + batch_size].to(device)
            with _autocast(amp, device):
                out = model(x)
            loss_sum += float(F.cross_entropy(out.float(), y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
    return correct, loss_sum / max(1, len(images))


def _save_model(model: nn.Module, path: Path, spec: TrainSpec, role: str, epoch: int,
                history: List[Dict[str, Any]], noise: Optional[Dict[str, Any]],
                input_size: Tuple[int, int], best_epoch: Optional[int]) -> str:
    from robust_eval.checkpoints import save_checkpoint

    metrics = {"epoch": epoch, "role": role, "best_val_epoch": best_epoch,
               "per_epoch": history, "noise": _noise_brief(noise)}
    extra = {"train_spec_key": spec.key, "role": role, "epoch": epoch, "seed": spec.seed,
             "noise": noise}
    return save_checkpoint(model, path, arch=spec.arch, norm=spec.norm,
                           num_classes=spec.num_classes, mean=list(model.mean),
                           std=list(model.std), input_size=list(input_size),
                           recipe=spec.to_dict(), metrics=metrics, extra=extra)


def prepare_training_data(spec: TrainSpec, data) -> Dict[str, Any]:
    """Split, subsample (data scarcity) and corrupt labels; everything the loop and the
    checkpoint metadata need. Labels are corrupted on the training part only (val separately)."""
    labels = data.labels.numpy()
    if labels.size and labels.max() >= spec.num_classes:
        raise TrainError(f"{data.name}: labels go up to {labels.max()} but num_classes="
                         f"{spec.num_classes}: the class count does not match the labels")
    train_idx, val_idx = split_indices(labels, spec.num_classes, spec.val_fraction,
                                       spec.data_fraction, spec.seed)
    clean_train = labels[train_idx]
    noisy_train, noise = clean_train, None
    val_labels = labels[val_idx]
    if spec.noise_type is not None:
        noisy_train = corrupt_labels(clean_train, spec.noise_type, spec.noise_rate,
                                     spec.num_classes, spec.seed)
        summary = noise_summary(clean_train, noisy_train, spec.num_classes)
        noise = {"type": spec.noise_type, "rate": spec.noise_rate, "seed": spec.seed,
                 "n": summary["n"], "num_flipped": summary["num_flipped"],
                 "realised_rate": summary["realised_rate"],
                 "per_class_rate": summary["per_class_rate"],
                 "transitions": summary["transitions"],
                 # indices into the training split the run read (e.g. train.npz order)
                 "flipped_indices": train_idx[summary["flipped_indices"]].tolist(),
                 "val_labels": spec.val_labels}
        if spec.val_labels == "noisy" and val_idx.size:
            val_labels = corrupt_labels(val_labels, spec.noise_type, spec.noise_rate,
                                        spec.num_classes, derive_seed(spec.seed, "val-noise"))
    return {"train_idx": train_idx, "val_idx": val_idx, "train_labels": noisy_train,
            "val_labels": val_labels, "noise": noise}


def _noise_brief(noise: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if noise is None:
        return None
    return {k: v for k, v in noise.items() if k not in ("flipped_indices", "transitions")}


def run_name(spec: TrainSpec) -> str:
    """Readable, unique folder name for a spec under a cache folder."""
    noise = f"-{spec.noise_type}{spec.noise_rate:g}" if spec.noise_type else ""
    return f"{spec.arch}-{spec.norm}-{spec.recipe}{noise}-s{spec.seed}-{spec.key[:12]}"


def train_model(out_dir: Union[str, Path, None] = None, *, arch: str, norm: str = "bn",
                dataset: str = "cifar10", data_root: Union[str, Path, None] = None,
                train_data=None, recipe: str = "standard", seed: int = 0,
                num_classes: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                resume: bool = True, progress: Optional[Callable[[Dict[str, Any]], None]] = None,
                stop_after_epoch: Optional[int] = None,
                cache_dir: Union[str, Path, None] = None, **options: Any) -> TrainResult:
    """Train `arch` with `norm` by `recipe` into `out_dir`; resume from its state.pt if present.

    Data: `train_data` (a LabeledImages) or `load_split(dataset, data_root, "train")`.
    `options` override recipe fields (epochs, lr, milestones, batch_size, weight_decay, momentum,
    gamma, augment, noise_type, noise_rate, val_labels, data_fraction, val_fraction, train_limit,
    adv_replays, adv_eps, adv_step, amp, channels_last, mean, std); see TrainSpec.
    `stop_after_epoch` ends this call early (the run stays resumable); it is not part of the spec.
    A finished run in `out_dir` with the same spec is returned without training. With
    `cache_dir` instead of `out_dir` the folder is `cache_dir/run_name(spec)`: runs are reused
    by their full training spec (the reuse key).
    """
    if (out_dir is None) == (cache_dir is None):
        raise ValueError("give exactly one of out_dir and cache_dir")
    device = torch.device(device)
    train_data = _training_data(dataset, data_root, train_data, options.get("train_limit"))
    spec = _resolve_spec(train_data, arch=arch, norm=norm, dataset=dataset, recipe=recipe,
                         seed=seed, num_classes=num_classes, options=options)
    if spec.amp == "fp16" and device.type != "cuda":
        raise TrainError("amp='fp16' needs a CUDA device; use amp='bf16' on CPU")
    out_dir = _run_dir(out_dir, cache_dir, spec)
    data = _RunData.make(spec, train_data, device)
    run = _build(spec, device)
    if resume:
        _resume(run, out_dir, spec)
    started_at = run.epoch
    end_epoch = spec.epochs if stop_after_epoch is None else min(spec.epochs, stop_after_epoch)
    while run.epoch < end_epoch:
        record = _train_epoch(run, spec, data, device)
        _save_epoch(run, out_dir, spec, data)
        if progress is not None:
            progress(dict(record, best_epoch=run.best_epoch, epochs=spec.epochs))
    if not run.history:
        raise TrainError("no epoch was run")  # e.g. stop_after_epoch=0 on a fresh run
    return TrainResult(out_dir=out_dir, spec=spec, history=run.history, best_epoch=run.best_epoch,
                       last_checkpoint=out_dir / LAST_FILE,
                       best_checkpoint=out_dir / BEST_FILE if run.best_epoch else None,
                       noise=_noise_brief(data.noise), resumed_from_epoch=started_at,
                       trained_epochs=run.epoch - started_at)


def _training_data(dataset: str, data_root, train_data, train_limit: Optional[int]):
    if train_data is None:
        from robust_eval.data import load_split

        return load_split(dataset, data_root, split="train", limit=train_limit)
    return train_data.subset(train_limit) if train_limit is not None else train_data


def _resolve_spec(train_data, *, arch: str, norm: str, dataset: str, recipe: str, seed: int,
                  num_classes: Optional[int], options: Dict[str, Any]) -> TrainSpec:
    """The TrainSpec of this call: recipe + dataset defaults + options + the data's sha256."""
    dataset = train_data.name or dataset
    if dataset in ("cifar10", "cifar100"):
        options = {"mean": CIFAR_MEAN, "std": CIFAR_STD, **options}
    spec = make_spec(arch=arch, norm=norm, dataset=dataset,
                     num_classes=len(train_data.classes) if num_classes is None else num_classes,
                     recipe=recipe, seed=seed, **options)
    return spec.with_fingerprint(data_fingerprint(train_data.images, train_data.labels))


def _run_dir(out_dir, cache_dir, spec: TrainSpec) -> Path:
    """The run folder, created, with spec.json written (or checked against this spec)."""
    out_dir = Path(out_dir) if out_dir is not None else Path(cache_dir) / run_name(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_spec_file(out_dir, spec)
    if not (out_dir / SPEC_FILE).is_file():
        _atomic_write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n",
                           out_dir / SPEC_FILE)
    return out_dir


@dataclass
class _RunData:
    """The split, (noisy) labels and images a run trains and validates on."""
    prepared: Dict[str, Any]  # prepare_training_data's result
    train_images: torch.Tensor  # on the training device
    train_labels: torch.Tensor
    val_images: torch.Tensor  # on the CPU: evaluated batch by batch
    val_labels: torch.Tensor
    input_size: Tuple[int, int]

    @classmethod
    def make(cls, spec: TrainSpec, train_data, device: torch.device) -> "_RunData":
        prepared = prepare_training_data(spec, train_data)
        images = train_data.images
        return cls(prepared=prepared,
                   train_images=images[torch.from_numpy(prepared["train_idx"])].to(device),
                   train_labels=torch.as_tensor(prepared["train_labels"],
                                                dtype=torch.int64).to(device),
                   val_images=images[torch.from_numpy(prepared["val_idx"])],
                   val_labels=torch.as_tensor(prepared["val_labels"], dtype=torch.int64),
                   input_size=tuple(images.shape[-2:]))

    @property
    def noise(self) -> Optional[Dict[str, Any]]:
        return self.prepared["noise"]


@dataclass
class _Run:
    """What changes from epoch to epoch, i.e. what state.pt holds."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler
    penalty: Optional[Callable[[nn.Module], torch.Tensor]]
    epoch: int = 0  # epochs finished
    history: List[Dict[str, Any]] = field(default_factory=list)
    best_epoch: Optional[int] = None
    best_val: float = -math.inf


def _build(spec: TrainSpec, device: torch.device) -> _Run:
    """Model initialised from the seed, SGD, AMP scaler. Module constructors draw from torch's
    global RNG and take no generator, so they run under fork_rng: the caller's RNG state is
    restored afterwards, untouched."""
    from robust_eval.models import create_model
    from robust_eval.nn import get_norm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(spec.seed, "init"))
        model = create_model(spec.arch, norm=spec.norm, num_classes=spec.num_classes,
                             mean=spec.mean, std=spec.std)
    model = model.to(device)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                                weight_decay=spec.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=spec.amp == "fp16")
    return _Run(model, optimizer, scaler, get_norm(spec.norm).penalty)


def _resume(run: _Run, out_dir: Path, spec: TrainSpec) -> None:
    state = load_state(out_dir)
    if state is None:
        return
    if state.get("spec_key") != spec.key:
        raise TrainError(f"{out_dir / STATE_FILE} belongs to another training spec")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.history = list(state["history"])
    run.best_epoch = state["best_epoch"]
    run.best_val = state["best_val_acc"] if run.best_epoch is not None else -math.inf
    run.epoch = int(state["epoch"])


def _train_epoch(run: _Run, spec: TrainSpec, data: _RunData, device: torch.device
                 ) -> Dict[str, Any]:
    """One epoch of SGD (order and augmentation from a generator seeded by (seed, epoch)), then
    validation; appends and returns the epoch's record."""
    started = time.perf_counter()
    epoch, model, optimizer, scaler = run.epoch, run.model, run.optimizer, run.scaler
    lr = spec.lr_at(epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    generator = torch.Generator().manual_seed(derive_seed(spec.seed, "epoch", epoch))
    n_train = len(data.train_labels)
    order = torch.randperm(n_train, generator=generator).to(device)
    flip = spec.dataset not in NO_FLIP_DATASETS
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for start in range(0, n_train, spec.batch_size):
        index = order[start:start + spec.batch_size]
        if len(index) < 2:  # BatchNorm cannot train on a single image
            continue
        x = data.train_images[index]
        if spec.augment:
            x = random_crop_flip(x, generator, flip=flip)
        x = x.float().div_(255)
        if spec.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = data.train_labels[index]
        if spec.adv_replays:
            out, loss = _free_adversarial_step(model, x, y, spec, optimizer, scaler, run.penalty,
                                               device)
        else:
            with _autocast(spec.amp, device):
                out = model(x)
                loss = F.cross_entropy(out.float(), y)
                if run.penalty is not None:
                    loss = loss + run.penalty(model)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        loss_sum += float(loss.detach()) * len(y)
        correct += int((out.detach().argmax(1) == y).sum())
        seen += len(y)
    record: Dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(seen, 1),
                              "train_acc": correct / max(seen, 1)}
    if not math.isfinite(record["train_loss"]):
        raise TrainError(f"training diverged at epoch {epoch + 1}: loss {record['train_loss']}")
    if len(data.val_labels):
        val_correct, val_loss = evaluate_accuracy(model, data.val_images, data.val_labels, device,
                                                  amp=spec.amp, channels_last=spec.channels_last)
        record.update(val_acc=val_correct / len(data.val_labels), val_loss=val_loss,
                      val_n=len(data.val_labels))
        if record["val_acc"] > run.best_val:  # strict: ties keep the earlier epoch (official)
            run.best_val, run.best_epoch = record["val_acc"], epoch + 1
    record["seconds"] = time.perf_counter() - started
    run.history.append(record)
    run.epoch += 1
    return record


def _save_epoch(run: _Run, out_dir: Path, spec: TrainSpec, data: _RunData) -> None:
    """best/last checkpoints, then state.pt: written last, it commits the epoch."""
    epoch, noise = run.epoch, data.noise
    if run.best_epoch == epoch:
        _save_model(run.model, out_dir / BEST_FILE, spec, "best_val_epoch", epoch, run.history,
                    noise, data.input_size, run.best_epoch)
    _save_model(run.model, out_dir / LAST_FILE, spec, "last_epoch", epoch, run.history, noise,
                data.input_size, run.best_epoch)
    _atomic_torch_save({
        "format": STATE_FORMAT, "version": STATE_VERSION, "spec": spec.to_dict(),
        "spec_key": spec.key, "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "history": run.history, "best_epoch": run.best_epoch,
        "best_val_acc": run.best_val if run.best_epoch else None,
        "noise": _noise_brief(noise),
        "train_indices": torch.from_numpy(data.prepared["train_idx"]),
        "val_indices": torch.from_numpy(data.prepared["val_idx"]),
        "train_labels": data.train_labels.cpu(),
    }, out_dir / STATE_FILE)


def _free_adversarial_step(model, x, y, spec: TrainSpec, optimizer, scaler, penalty, device):
    """Free AT (official ConvNorm variant): delta starts at 0 for each minibatch; each of the m
    replays takes one SGD step on the perturbed batch, then delta += step*sign(grad_delta),
    clipped to +-eps. The weight step and the delta step share one backward pass."""
    delta = torch.zeros_like(x)
    out = loss = None
    for _ in range(spec.adv_replays):
        delta.requires_grad_(True)
        with _autocast(spec.amp, device):
            out = model((x + delta).clamp(0, 1))
            loss = F.cross_entropy(out.float(), y)
            if penalty is not None:
                loss = loss + penalty(model)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        grad = torch.nan_to_num(delta.grad)  # fp16 overflow: the scaler skips the step, and
        # delta must not turn NaN for the next replay
        delta = (delta.detach() + spec.adv_step * grad.sign()).clamp_(-spec.adv_eps, spec.adv_eps)
        scaler.step(optimizer)
        scaler.update()
    return out, loss
