"""Clean accuracy: exact counts on a model with known answers, schema rows, real checkpoints."""
import pytest
import torch
from torch import nn

from robust_eval.data import LabeledImages, load_split
from robust_eval.evaluate import cli_names
from robust_eval.evaluate.clean import count_correct, run_clean
from robust_eval.schema import COLUMNS, wilson_interval


class BrightnessClassifier(nn.Module):
    """Class 1 when the mean pixel is above 0.5: the right answer is known for every image."""

    def __init__(self, num_classes=2):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        bright = x.mean(dim=(1, 2, 3))
        logits = torch.zeros(len(x), self.num_classes)
        logits[:, 0], logits[:, 1] = 0.5 - bright, bright - 0.5
        return logits


def _data(n=10, wrong=3):
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    images[n // 2:] = 255
    labels = (torch.arange(n) >= n // 2).long()
    labels[:wrong] = 1 - labels[:wrong]  # the first `wrong` labels disagree with the model
    return LabeledImages(images, labels, ["dark", "bright"], "toy")


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_count_correct_is_exact_for_any_batch_size(batch_size):
    data = _data()
    assert count_correct(BrightnessClassifier(), data.images, data.labels, batch_size) == (7, 10)


def test_run_clean_row_follows_schema():
    base = {"model": "toy", "checkpoint_sha256": "ab" * 32, "arch": "tiny_cnn", "norm": "bn",
            "dataset": "toy", "device": "cpu"}
    (row,) = run_clean(BrightnessClassifier(), _data(), base, batch_size=4)
    assert set(COLUMNS) <= set(row)
    assert row["benchmark"] == "clean" and (row["n"], row["correct"]) == (10, 7)
    assert row["accuracy"] == pytest.approx(0.7)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(7, 10))
    assert row["model"] == "toy" and row["seconds"] >= 0


def test_class_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="model predicts 3 classes but the data has 2"):
        run_clean(BrightnessClassifier(3), _data(), {}, batch_size=4)


def test_clean_is_a_registered_benchmark_type(measure):
    assert cli_names()["clean"].name == "clean"
    (row,) = measure("clean", BrightnessClassifier(), _data(), batch_size=4)
    assert (row["benchmark"], row["n"], row["correct"], row["status"]) == ("clean", 10, 7, "ok")


@pytest.mark.slow
@pytest.mark.parametrize("name,expected", [("resnet20-12fca82f.th", 9173),
                                           ("resnet56-4bfd9763.th", 9339)])
def test_he2016_checkpoints_reproduce_published_accuracy(he2016_checkpoints, cifar10_test_npz,
                                                         name, expected):
    """Acceptance: 91.73 % and 93.39 % top-1 on the 10,000 real CIFAR-10 test images."""
    from robust_eval.checkpoints import load_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = load_checkpoint(he2016_checkpoints / name, mean=(0.485, 0.456, 0.406),
                                std=(0.229, 0.224, 0.225))
        data = load_split("cifar10", cifar10_test_npz.parent)
        assert count_correct(model, data.images, data.labels, batch_size=1000) == (expected, 10000)
    finally:
        torch.set_num_threads(threads)
