"""Architectures: registry, every arch x every norm, official/akamaster/RobustBench/torchvision layouts."""
import pytest
import torch

from robust_eval.models import NormalizedModel, create_model, get_model_spec, list_models
from robust_eval.nn import list_norms
from robust_eval.registry import RegistryError

ALL_ARCHS = ["imagenet_resnet18", "imagenet_resnet50", "resnet110", "resnet18", "resnet20",
             "resnet32", "resnet34", "resnet44", "resnet50", "resnet56", "tiny_cnn", "wrn28_10"]


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_list_models_has_every_contract_arch_and_filters():
    assert set(ALL_ARCHS) <= set(list_models())
    assert list_models("resnet2*") == ["resnet20"]
    assert list_models("imagenet_*") == ["imagenet_resnet18", "imagenet_resnet50"]


def test_unknown_arch_suggests_closest():
    with pytest.raises(RegistryError, match="did you mean 'resnet20'"):
        create_model("resnet_20")


@pytest.mark.parametrize("norm", ["bn", "convnorm", "sn", "oni", "ocnn"])
def test_tiny_cnn_every_norm_any_size_trains_and_evals(norm):
    assert norm in list_norms()
    torch.manual_seed(0)
    for size in (8, 19):  # a fresh model per size: ConvNorm's running_V is tied to one size
        model = create_model("tiny_cnn", norm=norm, num_classes=7).train()
        out = model(torch.rand(2, 3, size, size))
        assert out.shape == (2, 7) and torch.isfinite(out).all()
        out.sum().backward()
        assert model.model.linear.weight.grad is not None
        model.eval()
        assert torch.isfinite(model(torch.rand(2, 3, size, size))).all()
    with pytest.raises(ValueError, match="at least 8x8"):
        model(torch.rand(1, 3, 6, 6))


@pytest.mark.parametrize("norm", ["convnorm", "sn", "oni", "ocnn"])
def test_resnet20_takes_every_norm(norm):
    model = create_model("resnet20", norm=norm).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert model.robust_eval_meta["norm"] == norm


def test_normalisation_is_inside_and_recorded():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0)).eval()
    assert isinstance(model, NormalizedModel)
    assert model.mean == (0.1, 0.2, 0.3) and model.std == (0.5, 0.25, 2.0)
    x = torch.rand(2, 3, 16, 16)
    manual = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.model(manual))
    # mean/std are not state_dict entries: wrapped keys are the bare arch's under `model.`
    assert list(model.state_dict()) == [f"model.{k}" for k in model.model.state_dict()]


def test_default_stats_per_arch_and_bad_stats():
    assert create_model("resnet18").mean == (0.4914, 0.4822, 0.4465)
    assert create_model("resnet20").std == (0.229, 0.224, 0.225)
    assert create_model("wrn28_10", norm="bn").mean == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="3 input channels; mean/std have 2"):
        create_model("tiny_cnn", mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(ValueError, match="std must be positive"):
        create_model("tiny_cnn", mean=(0.5,) * 3, std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="mean has 3 values but std has 1"):
        create_model("tiny_cnn", mean=(0.5,) * 3, std=(0.5,))
    with pytest.raises(ValueError, match="num_classes"):
        create_model("tiny_cnn", num_classes=0)
    with pytest.raises(KeyError, match="unknown norm 'batchnorm'"):
        create_model("tiny_cnn", norm="batchnorm")


def test_official_convnorm_resnet18_layout():
    """182 keys + 20 running_V as in the official checkpoints (ours add 20 EMA counters)."""
    bn = _shapes(create_model("resnet18", norm="bn").model)
    assert {"conv1.weight", "norm1.weight", "layer1.0.conv1.weight", "layer1.0.norm2.running_var",
            "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.weight", "linear.weight"} <= set(bn)
    assert sum(v.numel() for v in create_model("resnet18").parameters()) == 11_173_962
    cn = _shapes(create_model("resnet18", norm="convnorm").model)
    official = [k for k in cn if not (k.endswith("num_batches_tracked") and "batch_norm" not in k)]
    assert len(official) == 182
    assert sum(k.endswith("running_V") for k in cn) == 20
    assert not any(k.startswith("norm1") or ".norm" in k for k in cn)  # norms are Identity
    assert "layer2.0.shortcut.0.running_V" in cn and "layer4.1.conv2.bpconv.bias" in cn
    r50 = _shapes(create_model("resnet50").model)
    assert r50["layer1.0.conv3.weight"] == (256, 64, 1, 1) and r50["linear.weight"] == (10, 2048)
    assert sum(1 for k in _shapes(create_model("resnet34").model) if k.endswith("conv2.weight")) == 16


@pytest.mark.parametrize("depth,params", [(20, 269_722), (32, 464_154), (44, 658_586),
                                          (56, 853_018), (110, 1_727_962)])
def test_he2016_parameter_counts_match_the_paper(depth, params):
    model = create_model(f"resnet{depth}")
    assert sum(p.numel() for p in model.parameters()) == params
    assert "layer3.0.conv1.weight" in model.model.state_dict() and "layer4" not in str(
        list(model.model.state_dict()))


def test_he2016_option_a_shortcut_has_no_weights_and_runs():
    model = create_model("resnet20").eval()
    keys = list(model.model.state_dict())
    assert not any("shortcut" in k for k in keys)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_wrn_matches_robustbench_standard_layout_and_function():
    from robust_eval._compat import install_autoattack_alias

    install_autoattack_alias()  # robustbench imports `autoattack`
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet as RBWide

    from robust_eval.models.wide_resnet import WideResNet

    with torch.device("meta"):
        ours, theirs = create_model("wrn28_10").model, RBWide(depth=28, widen_factor=10)
    assert _shapes(ours) == _shapes(theirs)
    torch.manual_seed(0)
    small_theirs = RBWide(depth=10, widen_factor=2).eval()
    small_ours = WideResNet(depth=10, widen_factor=2).eval()
    small_ours.load_state_dict(small_theirs.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(small_ours(x), small_theirs(x))


@pytest.mark.parametrize("arch,tv", [("imagenet_resnet18", "resnet18"),
                                     ("imagenet_resnet50", "resnet50")])
def test_imagenet_resnets_match_torchvision(arch, tv):
    import torchvision

    with torch.device("meta"):
        assert _shapes(create_model(arch, num_classes=None).model) == _shapes(
            getattr(torchvision.models, tv)())
    assert get_model_spec(arch).input_size == (224, 224)
    if arch == "imagenet_resnet18":
        torch.manual_seed(0)
        reference = torchvision.models.resnet18().eval()
        model = create_model(arch, num_classes=1000, mean=(0.0,) * 3, std=(1.0,) * 3).eval()
        model.model.load_state_dict(reference.state_dict())
        x = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.parametrize("arch", [a for a in ALL_ARCHS if a != "tiny_cnn"])
def test_every_arch_builds_with_convnorm(arch):
    with torch.device("meta"):
        model = create_model(arch, norm="convnorm", num_classes=None)
    keys = list(model.model.state_dict())
    assert any(k.endswith("running_V") for k in keys)
    assert not any(k.endswith("running_mean") and "batch_norm" not in k for k in keys)
