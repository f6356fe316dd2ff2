"""The FFT singular values against the explicit matrix of small circular convolutions."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_eval.evaluate import spectral


def explicit_matrix(weight, n, stride=1, dilation=1, groups=1, out_scale=None):
    """Columns = the circularly padded conv applied to each basis image (C_in x n x n)."""
    c_in = weight.shape[1] * groups
    k_eff = dilation * (weight.shape[-1] - 1) + 1
    pad_lo, pad_hi = (k_eff - 1) // 2, k_eff - 1 - (k_eff - 1) // 2
    basis = torch.eye(c_in * n * n, dtype=torch.float64).reshape(-1, c_in, n, n)
    padded = F.pad(basis, (pad_lo, pad_hi, pad_lo, pad_hi), mode="circular")
    out = F.conv2d(padded, weight.double(), stride=stride, dilation=dilation, groups=groups)
    if out_scale is not None:
        out = out * out_scale.view(1, -1, 1, 1)
    return out.reshape(out.shape[0], -1).T


@pytest.mark.parametrize("c_out,c_in,k,n,stride", [
    (3, 2, 3, 6, 1), (2, 3, 3, 6, 2), (4, 2, 1, 4, 2), (2, 2, 5, 4, 1), (3, 2, 2, 6, 3)])
def test_fft_singular_values_match_explicit_matrix(c_out, c_in, k, n, stride):
    torch.manual_seed(c_out * 10 + k)
    weight = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    expected = torch.linalg.svdvals(explicit_matrix(weight, n, stride))
    got = spectral.conv_singular_values(weight, n, stride)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("c_out,c_in,k,n,stride", [
    (3, 2, 3, 6, 1), (2, 3, 3, 6, 2), (8, 1, 3, 4, 1), (6, 2, 1, 4, 2)])
def test_top_singular_value_path_matches_explicit_matrix(c_out, c_in, k, n, stride):
    """Half-plane + Gram eigenvalues (both Gram sides) == the explicit matrix's norm."""
    torch.manual_seed(c_out + c_in)
    weight = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    scale = torch.rand(c_out, dtype=torch.float64) + 0.2
    response = spectral.frequency_response(weight, (n, n))
    plain, scaled = spectral.operator_spectral_norms(response, stride, [None, scale])
    expected = torch.linalg.matrix_norm(explicit_matrix(weight, n, stride), 2).item()
    expected_scaled = torch.linalg.matrix_norm(
        explicit_matrix(weight, n, stride, out_scale=scale), 2).item()
    assert plain == pytest.approx(expected, rel=1e-10)
    assert scaled == pytest.approx(expected_scaled, rel=1e-10)


def test_groups_dilation_and_output_scale():
    torch.manual_seed(1)
    weight = torch.randn(4, 1, 3, 3, dtype=torch.float64)  # depthwise, 4 groups
    scale = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    expected = torch.linalg.svdvals(explicit_matrix(weight, 6, 1, dilation=2, groups=4,
                                                    out_scale=scale))
    got = spectral.conv_singular_values(weight, 6, 1, dilation=2, groups=4, output_scale=scale)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_spectral_norm_differs_from_flattened_kernel_norm():
    # The point of the FFT method: the operator norm is not the flattened kernel's norm.
    weight = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    assert spectral.conv_singular_values(weight, 8)[0].item() == pytest.approx(9.0)
    assert torch.linalg.matrix_norm(weight.reshape(1, -1), 2).item() == pytest.approx(3.0)


def test_bad_grid_for_stride_is_an_error():
    response = spectral.frequency_response(torch.randn(2, 2, 3, 3), (5, 5))
    with pytest.raises(ValueError, match="not divisible by stride"):
        spectral.operator_singular_values(response, 2)


def test_convnorm_normalised_operator_rows_are_unit():
    """With one output channel the normalised operator is an exact co-isometry: norm 1."""
    torch.manual_seed(0)
    weight = torch.randn(1, 3, 3, 3, dtype=torch.float64)
    response = spectral.frequency_response(weight, (8, 8))
    v = spectral.convnorm_preconditioner(response)
    values = spectral.operator_singular_values(response * v.unsqueeze(-1))
    torch.testing.assert_close(values, torch.ones_like(values))
    # A zero filter gives V = 0, not inf.
    zero = spectral.convnorm_preconditioner(torch.zeros(4, 4, 1, 2, dtype=torch.complex128))
    assert torch.all(zero == 0)


def test_pointwise_convnorm_equals_row_normalised_matrix():
    torch.manual_seed(2)
    weight = torch.randn(5, 3, 1, 1, dtype=torch.float64)
    rows = weight[:, :, 0, 0] / weight[:, :, 0, 0].norm(dim=1, keepdim=True)
    response = spectral.frequency_response(weight, (4, 4))
    values = spectral.operator_singular_values(response * spectral.convnorm_preconditioner(
        response).unsqueeze(-1))
    assert values[0].item() == pytest.approx(torch.linalg.matrix_norm(rows, 2).item(), rel=1e-9)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.shortcut = nn.Conv2d(4, 6, 1, stride=2, bias=False)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.head((self.conv2(x) + self.shortcut(x)).mean((2, 3)))


def test_model_rows_use_input_sizes_and_following_batchnorm():
    torch.manual_seed(3)
    model = ConvBN().eval()
    with torch.no_grad():
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
    rows = spectral.evaluate_spectral(model, (8, 8), base={"model": "m", "dataset": "d"})
    assert len(rows) == 6 and {r["benchmark"] for r in rows} == {"spectral"}
    params = {(json.loads(r["params"])["layer"], r["metric"]): json.loads(r["params"])
              for r in rows}
    conv1 = params[("conv1", "spectral_norm")]
    assert conv1["input_size"] == [8, 8] and conv1["layer_index"] == 0
    expected = torch.linalg.svdvals(explicit_matrix(model.conv1.weight.detach(), 8))[0].item()
    assert conv1["value"] == pytest.approx(expected, rel=1e-5)
    scale = model.bn1.weight.detach().double() / torch.sqrt(model.bn1.running_var.double() +
                                                            model.bn1.eps)
    expected_bn = torch.linalg.svdvals(explicit_matrix(model.conv1.weight.detach(), 8,
                                                       out_scale=scale))[0].item()
    assert params[("conv1", "spectral_norm_with_norm")]["value"] == pytest.approx(expected_bn,
                                                                                  rel=1e-5)
    assert params[("conv1", "spectral_norm_with_norm")]["norm_layer"] == "bn1"
    conv2 = params[("conv2", "spectral_norm")]
    assert conv2["input_size"] == [8, 8] and conv2["stride"] == [2, 2]
    expected2 = torch.linalg.svdvals(explicit_matrix(model.conv2.weight.detach(), 8, 2))[0]
    assert conv2["value"] == pytest.approx(expected2.item(), rel=1e-5)
    shortcut = params[("shortcut", "spectral_norm")]  # 1x1 strided: the pointwise shortcut
    expected3 = torch.linalg.svdvals(explicit_matrix(model.shortcut.weight.detach(), 8, 2))[0]
    assert shortcut["value"] == pytest.approx(expected3.item(), rel=1e-5)
    # No BN after conv2: the "with norm" value is the conv's.
    assert params[("conv2", "spectral_norm_with_norm")]["value"] == pytest.approx(conv2["value"])
    assert all(r["n"] == 0 for r in rows)


def test_convnorm_layer_in_a_model():
    ConvNorm2d = pytest.importorskip("robust_eval.nn.convnorm").ConvNorm2d
    torch.manual_seed(4)
    layer = ConvNorm2d(3, 4, 3, padding=1)
    model = nn.Sequential(layer).eval()
    records = spectral.layer_spectral_norms(model, (8, 8))
    assert [r["layer"] for r in records] == ["0"]  # bpconv is part of the unit, not a layer
    record = records[0]
    assert record["layer_type"] == "convnorm"
    response = spectral.frequency_response(layer.weight.detach(), (8, 8))
    energy = response.abs().square().sum(-1)
    normalised = response / energy.sqrt().unsqueeze(-1)
    expected = torch.linalg.svdvals(normalised).max().item()
    assert record["spectral_norm"] == pytest.approx(expected, rel=1e-6)
    # The preconditioner is ConvNorm2d's own V on the same grid (rfft half of the full DFT).
    ours = spectral.convnorm_preconditioner(response).permute(2, 0, 1)[..., : 8 // 2 + 1]
    torch.testing.assert_close(ours, layer.compute_V((8, 8)).double(), rtol=1e-5, atol=1e-6)
    # Every row of a normalised block has unit norm, so the norm lies in [1, sqrt(C_out)].
    assert 1.0 - 1e-9 <= record["spectral_norm"] <= 2.0 + 1e-9


def test_benchmark_reads_the_image_size(measure, flags):
    from robust_eval.data import LabeledImages

    data = LabeledImages(torch.zeros(2, 3, 10, 10, dtype=torch.uint8), torch.zeros(2).long(),
                         ["a", "b"], "toy")
    raw = flags("spectral", ["--spectral-layers", "conv2"])
    rows = measure("spectral", ConvBN().eval(), data, raw)
    assert {json.loads(r["params"])["layer"] for r in rows} == {"conv2"}
    assert json.loads(rows[0]["params"])["input_size"] == [10, 10]
    assert {r["metric"] for r in rows} == {"spectral_norm", "spectral_norm_with_norm"}
    assert all(r["value"] > 0 and r["n"] == 0 for r in rows)
