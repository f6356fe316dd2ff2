"""train_model: splits, resume bit for bit, checkpoint metadata, recipes, bad input."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from robust_eval.checkpoints import load_checkpoint, read_checkpoint_metadata
from robust_eval.data import LabeledImages
from robust_eval.train import (BEST_FILE, LAST_FILE, STATE_FILE, TrainError, corrupt_labels,
                               make_spec, split_indices, train_model)
from robust_eval.train.loop import _free_adversarial_step, random_crop_flip

CLASSES = [f"c{i}" for i in range(10)]


def synthetic(n_per_class=12, size=16, seed=0, num_classes=10):
    """Class-coloured noisy images: learnable in a few epochs by tiny_cnn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    palette = torch.randint(40, 215, (num_classes, 3, 1, 1), generator=g)
    noise = torch.randint(-40, 41, (len(labels), 3, size, size), generator=g)
    images = (palette[labels] + noise).clamp(0, 255).to(torch.uint8)
    return LabeledImages(images, labels, CLASSES[:num_classes], "synthetic")


FAST = dict(epochs=3, batch_size=16, milestones=(2,))


def weights(path):
    return load_checkpoint(path).state_dict()


def test_split_is_disjoint_per_class_and_scarcity_keeps_a_fraction():
    labels = np.repeat(np.arange(10), 50)
    train, val = split_indices(labels, 10, val_fraction=0.1, data_fraction=0.5, seed=3)
    assert not set(train) & set(val)
    assert np.bincount(labels[val], minlength=10).tolist() == [5] * 10
    assert np.bincount(labels[train], minlength=10).tolist() == [22] * 10  # round(0.5 * 45)
    again = split_indices(labels, 10, 0.1, 0.5, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, split_indices(labels, 10, 0.1, 0.5, seed=4)[1])


def test_dataset_too_small_for_validation_split_is_a_clear_error(tmp_path):
    with pytest.raises(TrainError, match="too small for the validation split: class 0 has 3"):
        train_model(tmp_path, arch="tiny_cnn", train_data=synthetic(n_per_class=3), **FAST)
    with pytest.raises(TrainError, match="no training image is left"):
        split_indices(np.repeat(np.arange(2), 4), 2, 0.25, 0.1, seed=0)


@pytest.mark.parametrize("norm", ["bn", "convnorm"])
def test_resume_after_interruption_is_bit_identical(tmp_path, norm):
    data = synthetic()
    options = dict(arch="tiny_cnn", norm=norm, train_data=data, recipe="label_noise",
                   noise_rate=0.4, seed=5, **FAST)
    full = train_model(tmp_path / "full", **options)
    part = train_model(tmp_path / "part", stop_after_epoch=1, **options)
    assert part.trained_epochs == 1 and not part.complete
    resumed = train_model(tmp_path / "part", **options)
    assert resumed.resumed_from_epoch == 1 and resumed.trained_epochs == 2
    for name in (LAST_FILE, BEST_FILE):
        a, b = weights(tmp_path / "full" / name), weights(tmp_path / "part" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert [h["val_acc"] for h in full.history] == [h["val_acc"] for h in resumed.history]
    # Training changed the weights (the comparison above is not between two untouched inits).
    state0 = torch.load(tmp_path / "part" / STATE_FILE, weights_only=True)
    assert state0["epoch"] == 3


def test_checkpoints_carry_recipe_noise_and_per_epoch_metrics(tmp_path):
    data = synthetic()
    result = train_model(tmp_path, arch="tiny_cnn", train_data=data, recipe="label_noise",
                         noise_type="asymmetric", noise_rate=0.3, seed=2, **FAST)
    meta = read_checkpoint_metadata(tmp_path / LAST_FILE)
    assert meta["recipe"]["recipe"] == "label_noise"
    assert meta["recipe"]["noise_type"] == "asymmetric" and meta["recipe"]["noise_rate"] == 0.3
    assert meta["recipe"]["seed"] == 2 and meta["recipe"]["epochs"] == 3
    assert [h["epoch"] for h in meta["metrics"]["per_epoch"]] == [1, 2, 3]
    assert all("val_acc" in h and "train_loss" in h for h in meta["metrics"]["per_epoch"])
    best = read_checkpoint_metadata(tmp_path / BEST_FILE)
    assert best["metrics"]["epoch"] == result.best_epoch == meta["metrics"]["best_val_epoch"]
    assert best["metrics"]["role"] == "best_val_epoch"
    # The recorded flipped indices are exactly where the run's labels differ from the clean ones.
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)  # optimizer etc. load safely
    train_idx = state["train_indices"].numpy()
    clean = data.labels.numpy()[train_idx]
    expected = corrupt_labels(clean, "asymmetric", 0.3, 10, seed=2)
    assert np.array_equal(state["train_labels"].numpy(), expected)
    noise = meta["extra"]["noise"]
    assert noise["flipped_indices"] == train_idx[np.flatnonzero(expected != clean)].tolist()
    assert noise["realised_rate"] == pytest.approx(np.mean(expected != clean))
    assert meta["metrics"]["noise"]["realised_rate"] == noise["realised_rate"]
    assert json.loads((tmp_path / "spec.json").read_text())["noise_rate"] == 0.3


def test_finished_run_is_reused_and_other_spec_is_refused(tmp_path):
    data = synthetic()
    train_model(tmp_path, arch="tiny_cnn", train_data=data, **FAST)
    again = train_model(tmp_path, arch="tiny_cnn", train_data=data, **FAST)
    assert again.trained_epochs == 0 and again.complete
    with pytest.raises(TrainError, match=r"different training spec \(lr: 0.1 -> 0.05"):
        train_model(tmp_path, arch="tiny_cnn", train_data=data, lr=0.05, **FAST)


def test_standard_recipe_learns_the_synthetic_task(tmp_path):
    result = train_model(tmp_path, arch="tiny_cnn", train_data=synthetic(n_per_class=20),
                         epochs=4, batch_size=16, milestones=(3,), augment=False)
    assert result.history[-1]["val_acc"] >= 0.8  # chance is 0.1
    assert result.spec.val_fraction == 0.1 and result.history[-1]["val_n"] == 20


def test_ocnn_penalty_is_added_to_the_loss(tmp_path, monkeypatch):
    from robust_eval.nn import norms

    original = norms.get_norm("ocnn")
    calls = []

    def counting(model):
        calls.append(1)
        return original.penalty(model)

    monkeypatch.setitem(norms.NORMS._entries, "ocnn",
                        dataclasses.replace(original, penalty=counting))
    train_model(tmp_path, arch="tiny_cnn", norm="ocnn", train_data=synthetic(), epochs=1,
                batch_size=32)
    assert len(calls) == 4  # 108 training images / 32 -> 4 minibatches


def test_free_adversarial_step_replays_with_growing_signed_perturbation():
    torch.manual_seed(0)
    from robust_eval.models import create_model

    model = create_model("tiny_cnn", num_classes=10)
    data = synthetic(n_per_class=2)
    x, y = data.images[:8].float() / 255, data.labels[:8]
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    spec = make_spec(arch="tiny_cnn", recipe="free_adv")
    assert (spec.adv_replays, spec.epochs, spec.milestones) == (4, 30, (10, 20))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    _free_adversarial_step(model, x, y, spec, optimizer, scaler, None, torch.device("cpu"))
    assert len(seen) == 4 and torch.equal(seen[0], x)  # delta starts at 0 each minibatch
    eps = 8 / 255
    inner = (x > eps) & (x < 1 - eps)  # pixels the [0,1] clamp cannot touch
    d1 = (seen[1] - x)[inner].abs()
    assert torch.all(((d1 - eps).abs() < 1e-6) | (d1 < 1e-7))  # one signed step of 8/255
    assert (d1 > 0).float().mean() > 0.5
    for later in seen[2:]:
        assert (later - x).abs().max() <= eps + 1e-6  # clipped to the eps ball
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_free_adv_recipe_trains_with_amp_bf16_and_channels_last(tmp_path):
    result = train_model(tmp_path, arch="tiny_cnn", train_data=synthetic(n_per_class=6),
                         recipe="free_adv", epochs=1, batch_size=16, amp="bf16",
                         channels_last=True, val_fraction=0.0)
    assert result.best_epoch is None and result.best_checkpoint is None
    assert np.isfinite(result.history[0]["train_loss"])
    assert read_checkpoint_metadata(tmp_path / LAST_FILE)["recipe"]["adv_replays"] == 4


def test_random_crop_flip_moves_content_within_padding():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    same = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)
    # Every output is a (possibly flipped) shifted window of the zero-padded input.
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        windows = [padded[i, :, a:a + 8, b:b + 8] for a in range(9) for b in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)


@pytest.mark.parametrize("options, message", [
    (dict(recipe="label_noise", noise_rate=1.0), r"\[0, 1\)"),
    (dict(recipe="label_noise", noise_type="bogus", noise_rate=0.2), "unknown label-noise kind"),
    (dict(num_classes=5), "class count does not match"),
    (dict(recipe="nope"), "unknown recipe 'nope'"),
    (dict(data_fraction=0.0), "data_fraction"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(amp="fp16"), "needs a CUDA device"),
])
def test_bad_training_input_is_rejected(tmp_path, options, message):
    with pytest.raises((ValueError, KeyError), match=message):
        train_model(tmp_path, arch="tiny_cnn", train_data=synthetic(), epochs=1, **options)


@pytest.fixture(autouse=True)
def one_thread():
    """Two OpenMP threads on a loaded 2-core box spin-wait badly; one is faster and stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_recipes_resolve_to_the_official_protocols():
    spec = make_spec(arch="resnet18", recipe="standard")
    assert (spec.epochs, spec.milestones, spec.lr, spec.momentum, spec.weight_decay,
            spec.batch_size) == (120, (40, 80), 0.1, 0.9, 1e-4, 128)
    assert [spec.lr_at(e) for e in (0, 39, 40, 79, 80)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])
    c100 = make_spec(arch="resnet18", dataset="cifar100", num_classes=100, recipe="standard")
    assert (c100.epochs, c100.milestones) == (150, (60, 120))
    assert make_spec(arch="resnet18", epochs=10).milestones == (3, 7)  # scaled with the run
    assert make_spec(arch="resnet18", epochs=2).milestones == ()  # was (1, 1): lr / 100 at once
    noisy = make_spec(arch="resnet18", recipe="label_noise", noise_rate=0.4)
    assert noisy.noise_type == "symmetric"
    assert noisy.key == make_spec(arch="resnet18", recipe="label_noise", noise_rate=0.4).key
    assert noisy.key != make_spec(arch="resnet18", recipe="label_noise", noise_rate=0.4,
                                  seed=1).key
    with pytest.raises(ValueError, match="unknown training option"):
        make_spec(arch="resnet18", learning_rate=0.1)


@pytest.mark.parametrize("recipe", ["standard", "free_adv"])
def test_scaled_milestones_never_collapse(recipe):
    """Drops stay distinct, inside the run and not at its very start; too few epochs drop them."""
    for epochs in range(1, 61):
        milestones = make_spec(arch="tiny_cnn", recipe=recipe, epochs=epochs).milestones
        assert list(milestones) == sorted(set(milestones)), (epochs, milestones)
        assert all(2 <= m < epochs for m in milestones), (epochs, milestones)
    assert make_spec(arch="tiny_cnn", epochs=3).milestones == (2,)
    assert make_spec(arch="tiny_cnn", epochs=5).milestones == (2, 3)
    assert make_spec(arch="tiny_cnn", recipe="free_adv", epochs=6).milestones == (2, 4)


@pytest.mark.parametrize("milestones, message", [
    ((1, 1), "must be strictly increasing"), ((3, 2), "must be strictly increasing"),
    ((2, 5), "a drop at epoch 5 never happens in a run of 5 epochs"),
])
def test_given_milestones_that_collapse_or_never_fire_are_refused(milestones, message):
    with pytest.raises(ValueError, match=rf"milestones=\({milestones[0]}, {milestones[1]}\): "
                                         rf"{message}"):
        make_spec(arch="tiny_cnn", epochs=5, milestones=milestones)


def test_digits_defaults_fit_its_size_and_never_flip():
    digits = make_spec(arch="tiny_cnn", dataset="digits")
    assert (digits.batch_size, digits.lr, digits.augment) == (32, 0.05, False)
    assert make_spec(arch="tiny_cnn", dataset="digits", augment=True, lr=0.1).lr == 0.1
    cifar = make_spec(arch="tiny_cnn", dataset="cifar10")
    assert (cifar.batch_size, cifar.lr, cifar.augment) == (128, 0.1, True)
    from robust_eval.train.recipes import NO_FLIP_DATASETS

    assert "digits" in NO_FLIP_DATASETS and "cifar10" not in NO_FLIP_DATASETS


def test_random_crop_without_flip_keeps_orientation_and_the_same_crops():
    x = torch.arange(64 * 3 * 8 * 8, dtype=torch.int64).view(64, 3, 8, 8)
    flipped = random_crop_flip(x, torch.Generator().manual_seed(1))
    plain = random_crop_flip(x, torch.Generator().manual_seed(1), flip=False)
    mirrored = [i for i in range(64) if not torch.equal(flipped[i], plain[i])]
    assert 10 < len(mirrored) < 54  # about half were flipped ...
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(64):  # ... and each is the unflipped run's crop, mirrored or not
        assert torch.equal(flipped[i], plain[i].flip(-1) if i in mirrored else plain[i])
        assert any(torch.equal(plain[i], padded[i, :, a:a + 8, b:b + 8])  # never mirrored
                   for a in range(9) for b in range(9))


def test_training_leaves_the_global_rng_alone_and_repeats_exactly(tmp_path):
    data = synthetic(n_per_class=6)
    options = dict(arch="tiny_cnn", norm="bn", train_data=data, epochs=2, batch_size=16,
                   augment=True, seed=7)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = train_model(tmp_path / "a", **options)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)  # another global state: the run must not depend on it
    second = train_model(tmp_path / "b", **options)
    a, b = weights(first.last_checkpoint), weights(second.last_checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
