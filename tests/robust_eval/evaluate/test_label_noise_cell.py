"""The label_noise benchmark cell: train-or-reuse, best-val and last-epoch rows, the table."""
import json
from argparse import Namespace

import pytest
import torch

from robust_eval.checkpoints import load_checkpoint
from robust_eval.data import LabeledImages
from robust_eval.evaluate.clean import count_correct
from robust_eval.evaluate.label_noise import label_noise_rows, label_noise_table
from robust_eval.schema import COLUMNS, to_frame

CLASSES = [f"c{i}" for i in range(10)]
RECIPE = {"epochs": 2, "batch_size": 16, "milestones": [1]}


def synthetic(n_per_class, seed, size=12):
    g = torch.Generator().manual_seed(0)  # same palette for train and test
    palette = torch.randint(40, 215, (10, 3, 1, 1), generator=g)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    g.manual_seed(seed)
    noise = torch.randint(-40, 41, (len(labels), 3, size, size), generator=g)
    return LabeledImages((palette[labels] + noise).clamp(0, 255).to(torch.uint8), labels,
                         CLASSES, "synthetic")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return synthetic(12, seed=1), synthetic(5, seed=2)


def test_rows_train_then_reuse_and_match_an_independent_evaluation(tmp_path, data):
    train, test = data
    kwargs = dict(arch="tiny_cnn", norm="bn", noise_type="symmetric", noise_rate=0.4, seed=1,
                  cache_dir=tmp_path, recipe=RECIPE, train_data=train, test_data=test)
    rows = label_noise_rows(**kwargs)
    assert [r["metric"] for r in rows] == ["best_val_epoch", "last_epoch"]
    for row in rows:
        assert set(COLUMNS) <= set(row)
        assert (row["benchmark"], row["noise_type"], row["noise_rate"], row["seed"]) == \
            ("label_noise", "symmetric", 0.4, 1)
        assert row["n"] == 50 and row["ci_low"] <= row["accuracy"] <= row["ci_high"]
        params = json.loads(row["params"])
        assert params["reused"] is False and 0 < params["realised_noise_rate"] < 0.4
        model = load_checkpoint(f"{params['run_dir']}/" + (
            "best.safetensors" if row["metric"] == "best_val_epoch" else "last.safetensors"))
        assert model.robust_eval_meta["checkpoint_sha256"] == row["checkpoint_sha256"]
        assert count_correct(model, test.images, test.labels)[0] == row["correct"]
    assert json.loads(rows[1]["params"])["epoch"] == 2
    again = label_noise_rows(**kwargs)  # same full spec -> same run, no training
    assert json.loads(again[0]["params"])["reused"] is True
    assert [r["correct"] for r in again] == [r["correct"] for r in rows]
    other = label_noise_rows(**dict(kwargs, noise_rate=0.0))
    assert json.loads(other[0]["params"])["run_dir"] != json.loads(rows[0]["params"])["run_dir"]
    assert len(list(tmp_path.iterdir())) == 2

    frame = to_frame(rows + other)
    table = label_noise_table(frame)
    assert list(table.columns) == [0.0, 0.4]
    assert table.loc[("tiny_cnn", "bn", "symmetric"), 0.4] == pytest.approx(
        rows[0]["accuracy"] * 100)
    assert label_noise_table(frame, metric="last_epoch").shape == (1, 2)


def test_checkpoint_mode_reads_noise_from_the_checkpoint(tmp_path, data, measure):
    train, test = data
    rows = label_noise_rows(arch="tiny_cnn", noise_type="asymmetric", noise_rate=0.2, seed=0,
                            cache_dir=tmp_path, recipe=RECIPE, train_data=train, test_data=test)
    run_dir = json.loads(rows[0]["params"])["run_dir"]
    model = load_checkpoint(f"{run_dir}/last.safetensors")
    [row] = measure("label_noise", model, test, batch_size=64)
    assert (row["noise_type"], row["noise_rate"], row["seed"], row["metric"]) == \
        ("asymmetric", 0.2, 0, "last_epoch")
    assert row["correct"] == rows[1]["correct"]

    from robust_eval.train import train_model

    plain = train_model(tmp_path / "standard", arch="tiny_cnn", train_data=train, epochs=1,
                        batch_size=16)
    with pytest.raises(RuntimeError, match="not trained by a robust-eval label-noise recipe"):
        measure("label_noise", load_checkpoint(plain.last_checkpoint), test, batch_size=64)


@pytest.mark.parametrize("changes, message", [
    (dict(recipe={"val_fraction": 0.0}), "needs a validation split"),
    (dict(recipe={"noise_rate": 0.2}), "must not set 'noise_rate'"),
    (dict(noise_rate=1.0), r"\[0, 1\)"),
    (dict(noise_type="pairflip"), "unknown label-noise kind 'pairflip'"),
])
def test_bad_cells_fail_clearly(tmp_path, data, changes, message):
    kwargs = dict(arch="tiny_cnn", noise_type="symmetric", noise_rate=0.2, cache_dir=tmp_path,
                  recipe=RECIPE, train_data=data[0], test_data=data[1])
    kwargs.update(changes)
    with pytest.raises(ValueError, match=message):
        label_noise_rows(**kwargs)


def test_real_cifar10_files_end_to_end(tmp_path, cifar10_test_npz):
    root = cifar10_test_npz.parent
    rows = label_noise_rows(arch="tiny_cnn", noise_type="symmetric", noise_rate=0.4, seed=0,
                            dataset="cifar10", data_root=root, cache_dir=tmp_path,
                            recipe={"epochs": 1, "batch_size": 64, "limit": 400},
                            test_limit=200)
    assert all(r["dataset"] == "cifar10" and r["n"] == 200 for r in rows)
    spec = json.loads(next(tmp_path.glob("*/spec.json")).read_text())
    assert spec["train_limit"] == 400 and spec["mean"] == [0.4914, 0.4822, 0.4465]
    assert spec["data_fingerprint"] and spec["val_fraction"] == 0.1


def test_train_then_evaluate_commands_produce_a_label_noise_row(tmp_path):
    import numpy as np
    import pandas as pd

    from robust_eval.cli import main

    train, test = synthetic(10, seed=1, size=32), synthetic(3, seed=2, size=32)  # CIFAR size
    for name, part in (("train", train), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", x=part.images.permute(0, 2, 3, 1).numpy(),
                 y=part.labels.numpy())
    run = tmp_path / "run"
    assert main(["train", "--arch", "tiny_cnn", "--data-root", str(tmp_path), "--out", str(run),
                 "--recipe", "label_noise", "--noise-type", "symmetric_exact", "--noise-rate",
                 "0.2", "--seed", "4", "--epochs", "1", "--batch-size", "16", "--quiet"]) == 0
    assert main(["evaluate", "--checkpoint", str(run / "best.safetensors"), "--dataset",
                 "cifar10", "--data-root", str(tmp_path), "--benchmark", "label_noise",
                 "--out", str(tmp_path / "eval")]) == 0
    [row] = pd.read_csv(tmp_path / "eval" / "results.csv").to_dict("records")
    assert (row["benchmark"], row["noise_type"], row["noise_rate"], row["seed"], row["metric"],
            row["n"]) == ("label_noise", "symmetric_exact", 0.2, 4, "best_val_epoch", 30)



def test_a_bf16_cell_trains_in_fp32_and_tests_in_bf16(tmp_path, data, monkeypatch):
    import robust_eval.evaluate.clean as clean

    train, test = data
    amps, real = [], clean.predict

    def spy(*args, **kwargs):  # the test pass: under bf16 autocast only for a bf16 cell
        amps.append("bf16" if torch.is_autocast_enabled("cpu") else "none")
        return real(*args, **kwargs)

    monkeypatch.setattr(clean, "predict", spy)
    kwargs = dict(arch="tiny_cnn", norm="bn", noise_type="symmetric", noise_rate=0.2, seed=0,
                  recipe=RECIPE, train_data=train, test_data=test)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as execute_cell runs a bf16 cell
        bf16 = label_noise_rows(**kwargs, cache_dir=tmp_path / "a", precision="bf16")
    assert amps == ["bf16", "bf16"]
    fp32 = label_noise_rows(**kwargs, cache_dir=tmp_path / "b")
    assert amps[2:] == ["none", "none"]

    def weights(row):
        return load_checkpoint(json.loads(row["params"])["run_dir"] + "/last.safetensors"
                               ).state_dict()

    trained_under_bf16, trained_plain = weights(bf16[1]), weights(fp32[1])
    assert all(torch.equal(trained_under_bf16[k], trained_plain[k]) for k in trained_plain)
