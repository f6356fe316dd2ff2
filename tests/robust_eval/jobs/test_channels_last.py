"""The worker cache builds plain-conv models in channels_last (faster on CPU) with the same fp32
predictions; models with other conv layers (ConvNorm, SN, ...) stay contiguous."""
import pytest
import torch

from robust_eval.jobs.cells import WorkerCache, channels_last_pays
from robust_eval.models import create_model


@pytest.mark.parametrize("arch, norm, expected", [
    ("resnet20", "bn", True), ("tiny_cnn", "bn", True), ("wrn28_10", "bn", True),
    ("tiny_cnn", "convnorm", False), ("tiny_cnn", "oni", False),
])
def test_channels_last_only_for_plain_convolutions(arch, norm, expected):
    with torch.device("meta"):
        model = create_model(arch, norm=norm)
    assert channels_last_pays(model) is expected


def test_real_resnet20_in_channels_last_predicts_as_the_contiguous_model(he2016_checkpoints,
                                                                        cifar10_test_npz):
    import numpy as np

    from robust_eval.checkpoints import load_checkpoint

    spec = {"name": "r20", "checkpoint": str(he2016_checkpoints / "resnet20-12fca82f.th"),
            "arch": "resnet20", "norm": "bn", "num_classes": 10,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    cached = WorkerCache().model(spec, "cpu")
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in cached.modules() if isinstance(m, torch.nn.Conv2d))
    plain = load_checkpoint(spec["checkpoint"], arch="resnet20", norm="bn", num_classes=10,
                            mean=spec["mean"], std=spec["std"]).eval()
    assert next(plain.parameters()).is_contiguous()
    with np.load(cifar10_test_npz) as data:
        x = torch.from_numpy(data["x"][:500]).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ours, theirs = cached(x), plain(x)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
