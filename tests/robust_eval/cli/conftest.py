"""Real result folders for the gate and compare tests: a tiny_cnn trained on scikit-learn digits
(a few seconds, once per session), a copy with perturbed conv weights that lost accuracy, both
saved as robust-eval checkpoints and evaluated by `robust-eval evaluate --out`."""
from pathlib import Path

import pytest
import torch
from torch import nn

CORRUPTIONS = "gaussian_noise,impulse_noise"


def train_digits_cnn(epochs: int = 5):
    from robust_eval.data import load_split
    from robust_eval.models import create_model

    torch.manual_seed(0)
    train = load_split("digits", None, "train")
    x, y = train.images.float() / 255, train.labels
    model = create_model("tiny_cnn", norm="bn")
    steps = epochs * ((len(y) + 63) // 64)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 0.2, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
            schedule.step()
    return model.eval()


def damaged_copy(model, scale: float, seed: int = 123):
    """The same network with noise on its conv weights: a checkpoint that lost accuracy."""
    import copy

    damaged = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in damaged.named_parameters():
            if weight.dim() == 4:
                weight += scale * weight.std() * torch.randn(weight.shape, generator=generator)
    return damaged.eval()


def save(model, path: Path, **extra) -> Path:
    from robust_eval.checkpoints import save_checkpoint

    save_checkpoint(model, path, arch="tiny_cnn", norm="bn", num_classes=10, mean=model.mean,
                    std=model.std, input_size=(3, 32, 32), extra=extra or None)
    return path


def evaluate(checkpoint: Path, out: Path, *flags: str, name: str = "digits_cnn",
             benchmark: str = "clean,corruption") -> Path:
    """`robust-eval evaluate --out` on the 360 digits test images: clean + two corruptions at
    severities 3 and 5 (corruption seed 0 unless a flag says otherwise)."""
    from robust_eval.cli import main

    rc = main(["evaluate", "--checkpoint", str(checkpoint), "--model-name", name,
               "--dataset", "digits", "--benchmark", benchmark, "--corruptions", CORRUPTIONS,
               "--severities", "3,5", "--out", str(out), "--no-progress", *flags])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def digits_checkpoints(tmp_path_factory):
    """{"good": path, "worse": path, "resaved": path (same weights, another file hash)}."""
    root = tmp_path_factory.mktemp("digits_checkpoints")
    model = train_digits_cnn()
    return {"good": save(model, root / "good.safetensors"),
            "worse": save(damaged_copy(model, 0.35), root / "worse.safetensors"),
            "resaved": save(model, root / "resaved.safetensors", note="re-exported")}


@pytest.fixture(scope="session")
def digits_runs(digits_checkpoints, tmp_path_factory):
    """Result folders: base (good, corruption seed 0), rerun (good, seed 1), worse (damaged
    weights under the same model name, seed 0)."""
    root = tmp_path_factory.mktemp("digits_runs")
    ck = digits_checkpoints
    return {"base": evaluate(ck["good"], root / "base"),
            "rerun": evaluate(ck["good"], root / "rerun", "--corruption-seed", "1"),
            "worse": evaluate(ck["worse"], root / "worse")}


@pytest.fixture(scope="session")
def digits_tools():
    """evaluate / save / damaged_copy / train_digits_cnn for test modules."""
    from types import SimpleNamespace

    return SimpleNamespace(evaluate=evaluate, save=save, damaged_copy=damaged_copy)
