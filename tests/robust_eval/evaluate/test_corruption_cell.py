"""The `corruption` evaluate plug-in on a tiny CNN and a few real CIFAR-10 test images."""
import argparse

import numpy as np
import pytest
import torch

from corruptions.datasets import write_cifar_c, write_cifar_c_labels
from robust_eval.evaluate import corruption as cell
from robust_eval.evaluate.clean import count_correct
from robust_eval.schema import COLUMNS, to_frame

N = 24
BASE = {"model": "tiny", "checkpoint_sha256": "0" * 64, "arch": "tiny_cnn", "norm": "bn",
        "dataset": "cifar10", "device": "cpu"}


_CACHE = {}  # the shared-data fixture is function-scoped; load and fit once per module


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only adds contention on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data(cifar10_test_npz):
    from robust_eval.data import load_split

    if "data" not in _CACHE:
        _CACHE["data"] = load_split("cifar10", cifar10_test_npz.parent, "test", limit=N)
    return _CACHE["data"]


@pytest.fixture
def model(data):
    if "model" not in _CACHE:
        _CACHE["model"] = _fit_tiny_cnn(data)
    return _CACHE["model"]


def _fit_tiny_cnn(data):
    """tiny_cnn fitted to the N images, so corruptions visibly change its predictions."""
    from robust_eval.models import create_model

    torch.manual_seed(0)
    net = create_model("tiny_cnn", num_classes=10)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    x = data.images.float() / 255
    net.train()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), data.labels).backward()
        opt.step()
    return net.eval()


def test_generated_rows(model, data):
    from corruptions.generate import apply_corruption

    rows = cell.corruption_rows(model, data, corruptions=["gaussian_noise", "contrast"],
                                severities=[1, 5], seed=3, batch_size=10, base=BASE)
    frame = to_frame(rows)
    assert list(frame.columns[:len(COLUMNS)]) == COLUMNS
    assert frame[["corruption", "severity"]].values.tolist() == [
        ["gaussian_noise", 1], ["gaussian_noise", 5], ["contrast", 1], ["contrast", 5]]
    assert (frame.benchmark == "corruption").all() and (frame.n == N).all()
    assert (frame.param_set == "cifar10").all() and (frame.seed == 3).all()
    assert (frame.model == "tiny").all() and (frame.dataset == "cifar10").all()
    # the same number by hand: corrupt everything at once, then count
    x = apply_corruption(data.images, "contrast", 5, params="cifar10", seed=3,
                         indices=torch.arange(N))
    expected, _ = count_correct(model, x, data.labels)
    assert frame.correct.iloc[3] == expected
    clean, _ = count_correct(model, data.images, data.labels)
    assert clean >= 0.9 * N
    assert frame.correct.iloc[3] < clean  # contrast 5 hurts a model fitted to clean images
    # batching does not change the result (per-image seeding)
    again = cell.corruption_rows(model, data, corruptions=["gaussian_noise", "contrast"],
                                 severities=[1, 5], seed=3, batch_size=7, base=BASE)
    assert [r["correct"] for r in again] == frame.correct.tolist()


def test_published_fixture_matches_generated(model, data, tmp_path):
    """Files written by the CIFAR-C writer from the generator give the same counts."""
    from corruptions.generate import apply_corruption

    folder = tmp_path / "CIFAR-10-C"
    write_cifar_c_labels(folder, data.labels)
    for name in ("fog", "pixelate"):
        write_cifar_c(folder, name, [
            apply_corruption(data.images, name, s, params="cifar10", seed=0,
                             indices=torch.arange(N)) for s in range(1, 6)])
    published = cell.corruption_rows(model, data, corruptions=["fog", "pixelate"],
                                     source=tmp_path, batch_size=10, base=BASE)
    generated = cell.corruption_rows(model, data, corruptions=["fog", "pixelate"], seed=0,
                                     batch_size=10, base=BASE)
    assert [r["correct"] for r in published] == [r["correct"] for r in generated]
    assert {r["param_set"] for r in published} == {"published"}
    assert {r["seed"] for r in published} == {None}
    assert len(published) == 10


def test_published_clean_blocks_equal_clean_accuracy(model, data, tmp_path):
    """A fixture whose severity blocks are the clean images scores the clean accuracy."""
    folder = tmp_path / "CIFAR-10-C"
    write_cifar_c_labels(folder, data.labels)
    write_cifar_c(folder, "brightness", [data.images] * 5)
    rows = cell.corruption_rows(model, data, corruptions=["brightness"], source=folder,
                                batch_size=5, base=BASE)
    clean, _ = count_correct(model, data.images, data.labels)
    assert [r["correct"] for r in rows] == [clean] * 5
    # the first 8 of a bigger file: a --limit run
    few = cell.corruption_rows(model, data.subset(8), corruptions=["brightness"],
                               severities=[2], source=folder, base=BASE)
    assert few[0]["n"] == 8


def test_published_guards(model, data, tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    wrong = data.labels.clone()
    wrong[5] = (wrong[5] + 1) % 10
    write_cifar_c_labels(folder, wrong)
    write_cifar_c(folder, "fog", [data.images] * 5)
    with pytest.raises(ValueError, match=r"labels.npy differs from the clean cifar10 test "
                                         r"labels at image 5"):
        cell.corruption_rows(model, data, corruptions=["fog"], source=folder, base=BASE)
    write_cifar_c_labels(folder, data.labels[:10])
    write_cifar_c(folder, "fog", [data.images[:10]] * 5)
    with pytest.raises(ValueError, match="holds 10 images per severity; the clean set has 24"):
        cell.corruption_rows(model, data, corruptions=["fog"], source=folder, base=BASE)
    with pytest.raises(ValueError, match="params apply to generated corruptions only"):
        cell.corruption_rows(model, data.subset(10), corruptions=["fog"], source=folder,
                             params="cifar10", base=BASE)
    with pytest.raises(FileNotFoundError, match=r"corruption file missing: .*frost\.npy"):
        cell.corruption_rows(model, data.subset(10), corruptions=["frost"], source=folder,
                             base=BASE)
    with pytest.raises(FileNotFoundError, match="not 'generate' and not a folder"):
        cell.corruption_rows(model, data, source=tmp_path / "missing", base=BASE)


def test_bad_requests(model, data):
    with pytest.raises(ValueError, match="did you mean 'zoom_blur'"):
        cell.corruption_rows(model, data, corruptions=["zoomblur"], base=BASE)
    with pytest.raises(ValueError, match="severity 0 is outside 1..5"):
        cell.corruption_rows(model, data, corruptions=["fog"], severities=[0, 1], base=BASE)
    with pytest.raises(ValueError, match="expected 'cifar10' or 'imagenet'"):
        cell.corruption_rows(model, data, corruptions=["fog"], params="cifar100", base=BASE)


def test_flags_and_the_benchmark_type(model, data, flags, measure):
    assert cell.parse_severities("1-5") == [1, 2, 3, 4, 5]
    assert cell.parse_severities("1,3-4") == [1, 3, 4]
    with pytest.raises(ValueError, match="expected e.g. 1-5"):
        cell.parse_severities("one")
    assert cell.default_params("imagenet") == "imagenet"
    assert cell.default_params("cifar100") == "cifar10"
    assert len(cell.corruption_group("benchmark")) == 15 and len(cell.corruption_group("all")) == 19
    default = flags("corruption", [])
    assert (default["corruptions"], default["severities"]) == ("benchmark", [1, 2, 3, 4, 5])
    raw = flags("corruption", ["--corruptions", "shot_noise", "--severities", "4",
                               "--corruption-seed", "7"])
    rows = measure("corruption", model, data, raw, batch_size=16)
    assert [(r["corruption"], r["severity"], r["seed"], r["param_set"]) for r in rows] == [
        ("shot_noise", 4, 7, "cifar10")]
    direct = cell.corruption_rows(model, data, corruptions=["shot_noise"], severities=[4],
                                  seed=7, base=BASE)
    assert rows[0]["correct"] == direct[0]["correct"]


def test_imagenet_c_published_source(tmp_path):
    """ImageNet-C folders: RobustBench's id list, labels from sorted wnids."""
    from corruptions.datasets import imagenet_wnids, robustbench_imagenet_subset, \
        write_imagenet_c
    from robust_eval.data import LabeledImages

    ids = robustbench_imagenet_subset()[:6]
    wnids = imagenet_wnids()
    labels = torch.tensor([wnids.index(i.split("/")[0]) for i in ids])
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (6, 3, 16, 16), dtype=np.uint8))
    write_imagenet_c(tmp_path / "ImageNet-C", "snow", 3, images, ids)

    class Oracle(torch.nn.Module):
        """Predicts the true class of image i for the i-th image it sees."""

        def __init__(self):
            super().__init__()
            self.seen = 0

        def forward(self, x):
            out = torch.zeros(len(x), 1000)
            out[torch.arange(len(x)), labels[self.seen:self.seen + len(x)]] = 1
            self.seen += len(x)
            return out

    clean = LabeledImages(images, labels, [str(i) for i in range(1000)], "imagenet")
    rows = cell.corruption_rows(Oracle(), clean, corruptions=["snow"], severities=[3],
                                source=tmp_path, batch_size=4,
                                base=dict(BASE, dataset="imagenet"))
    assert (rows[0]["correct"], rows[0]["n"]) == (6, 6)
    assert rows[0]["param_set"] == "published"


def test_evaluate_command_end_to_end(model, data, cifar10_test_npz, tmp_path, capsys):
    """`robust-eval evaluate --benchmark clean,corruption` on a saved tiny_cnn checkpoint."""
    import pandas as pd

    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.cli import main

    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(model, ckpt, arch="tiny_cnn", norm="bn", num_classes=10,
                    mean=model.mean, std=model.std, input_size=(3, 32, 32))
    folder = tmp_path / "c" / "CIFAR-10-C"
    write_cifar_c_labels(folder, data.labels[:8])
    write_cifar_c(folder, "frost", [data.images[:8]] * 5)
    common = ["evaluate", "--checkpoint", str(ckpt), "--dataset", "cifar10", "--data-root",
              str(cifar10_test_npz.parent), "--limit", "8", "--batch-size", "4"]
    assert main(common + ["--benchmark", "clean,corruption", "--corruptions", "frost",
                          "--severities", "2,4", "--corruption-source", str(folder.parent),
                          "--out", str(tmp_path / "res")]) == 0
    frame = pd.read_csv(tmp_path / "res" / "results.csv")
    clean = frame[frame.benchmark == "clean"].correct.item()
    cor = frame[frame.benchmark == "corruption"]
    assert cor[["corruption", "severity"]].values.tolist() == [["frost", 2], ["frost", 4]]
    assert (cor.correct == clean).all() and (cor.param_set == "published").all()
    capsys.readouterr()
    assert main(common + ["--benchmark", "corruption", "--corruptions", "frots"]) == 2
    assert "did you mean 'frost'" in capsys.readouterr().err
