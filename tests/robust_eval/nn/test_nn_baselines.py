"""Baseline layers (SN, ONI, OCNN) and the norm registry."""
import pytest
import torch
from torch import nn

from robust_eval.nn import (ConvNorm2d, ONIConv2d, OCNNConv2d, SNConv2d, get_norm, list_norms,
                            ocnn_penalty, official_resnet18_selection, oni_orthogonalize,
                            orthogonality_distance)


def test_spectral_norm_conv_normalises_flattened_kernel():
    torch.manual_seed(0)
    layer = SNConv2d(8, 16, 3, 1, 1)
    with torch.no_grad():
        layer.conv.weight_orig.mul_(4.0)
    x = torch.randn(2, 8, 6, 6)
    for _ in range(30):  # one power iteration per training forward
        layer(x)
    sigma = torch.linalg.matrix_norm(layer.weight.detach().reshape(16, -1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    raw = torch.linalg.matrix_norm(layer.conv.weight_orig.detach().reshape(16, -1), ord=2)
    assert raw.item() > 2.0  # the normalisation did something
    assert {"conv.weight_orig", "conv.weight_u", "conv.weight_v"} <= set(layer.state_dict())


def test_oni_rows_orthogonal_times_scale():
    torch.manual_seed(0)
    layer = ONIConv2d(8, 16, 3, 1, 1, T=8)  # 16 <= 72: rows orthogonalised (fp32 diverges by T~20)
    assert layer.orthogonalizes_rows
    with torch.no_grad():
        layer.WNScale.fill_(1.414)
    w = layer.normalized_weight().detach().reshape(16, -1)
    torch.testing.assert_close(w @ w.t(), 1.414 ** 2 * torch.eye(16), rtol=0, atol=2e-3)


def test_oni_official_T3_improves_conditioning_and_has_learnable_scale():
    torch.manual_seed(0)
    layer = ONIConv2d(8, 16, 3, 1, 1)
    assert layer.T == 3 and torch.allclose(layer.WNScale, torch.full((16, 1, 1, 1), 1.414))
    raw = layer.weight.detach().reshape(16, -1)
    raw = raw - raw.mean(dim=1, keepdim=True)
    s_raw = torch.linalg.svdvals(raw)
    s_oni = torch.linalg.svdvals(oni_orthogonalize(layer.weight.detach()).reshape(16, -1))
    assert (s_oni.max() / s_oni.min()) < 0.7 * (s_raw.max() / s_raw.min())
    out = layer(torch.randn(2, 8, 5, 5))
    out.sum().backward()
    assert layer.WNScale.grad is not None and layer.weight.grad is not None


def test_oni_columns_when_more_outputs_than_inputs():
    torch.manual_seed(0)
    layer = ONIConv2d(4, 64, 3)  # 64 > 36: columns, as the official ResNet stem and shortcuts
    assert not layer.orthogonalizes_rows
    w = oni_orthogonalize(layer.weight.detach().double(), T=10, rows=False).reshape(64, -1)
    # Official column ONI leaves S unnormalised but divides by sqrt(||S||_F): W^T W is a multiple
    # of the projector off the all-ones direction (rows are centred).
    gram = w.t() @ w
    proj = torch.eye(36, dtype=torch.float64) - 1.0 / 36
    torch.testing.assert_close(gram / (gram.trace() / 35), proj, rtol=0, atol=1e-3)


def test_ocnn_penalty_zero_for_orthogonal_kernels_positive_otherwise():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    delta = torch.zeros(6, 6, 3, 3, dtype=torch.float64)
    delta[:, :, 1, 1] = q  # orthogonal as a convolution: no overlap between shifts
    assert orthogonality_distance(delta, stride=1).item() < 1e-12
    assert orthogonality_distance(delta, stride=2).item() < 1e-12
    assert orthogonality_distance(q.reshape(6, 6, 1, 1)).item() < 1e-12
    rnd = torch.randn(6, 6, 3, 3, dtype=torch.float64)
    assert orthogonality_distance(rnd).item() > 0.1
    # official padding=1 with stride 2 targets the (+1, +1) shift, so it is not zero here
    assert orthogonality_distance(delta, stride=2, variant="official").item() > 1.0


def test_ocnn_penalty_over_model_is_weighted_and_differentiable():
    norm = get_norm("ocnn")
    model = nn.Sequential(norm.make_conv(3, 8, 3, 1, 1), norm.make_norm(8), nn.ReLU(),
                          norm.make_conv(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 1))
    pen = norm.penalty(model)
    manual = 1e-4 * (orthogonality_distance(model[0].weight, 1)
                     + orthogonality_distance(model[3].weight, 2))
    torch.testing.assert_close(pen, manual)  # the plain nn.Conv2d is not an OCNN layer
    pen.backward()
    assert model[0].weight.grad.abs().sum() > 0 and model[4].weight.grad is None
    with pytest.raises(ValueError, match="no OCNNConv2d"):
        ocnn_penalty(nn.Sequential(nn.Conv2d(3, 3, 3)))


def test_official_resnet18_selection_names():
    assert official_resnet18_selection("layer2.0.conv1", None)
    assert official_resnet18_selection("layer3.0.shortcut.0", None)
    assert not official_resnet18_selection("layer2.0.conv2", None)
    assert not official_resnet18_selection("conv1", None)


def test_registry_has_every_norm_and_builds_layers():
    assert {"bn", "convnorm", "sn", "oni", "ocnn"} <= set(list_norms())
    expected_type = {"bn": nn.Conv2d, "convnorm": ConvNorm2d, "sn": SNConv2d, "oni": ONIConv2d,
                     "ocnn": OCNNConv2d}
    x = torch.randn(2, 3, 8, 8)
    for name, kind in expected_type.items():
        norm = get_norm(name)
        conv = norm.make_conv(3, 8, 3, 2, 1)
        assert type(conv) is kind
        out = norm.make_norm(8)(conv(x))
        assert out.shape == (2, 8, 4, 4)
        assert (norm.penalty is not None) == (name == "ocnn")
    assert isinstance(get_norm("convnorm").make_norm(8), nn.Identity)
    with pytest.raises(KeyError, match="did you mean 'convnorm'"):
        get_norm("convnrom")
