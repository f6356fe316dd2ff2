"""ConvNorm2d against a plain reference written here from convnorm.md (explicit DFT matrices).

The reference never calls torch.fft or robust_eval: full conv by summing shifted copies, DFT as
matrix products, V = (sum_i |w_hat|^2)^(-1/2) on the full (not rfft) spectrum.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from robust_eval.nn import ConvNorm2d, ema_factor

DT = torch.float64


# ---------------------------------------------------------------- the reference
def dft_matrix(n: int) -> torch.Tensor:
    idx = torch.arange(n, dtype=DT)
    return torch.exp(-2j * math.pi * torch.outer(idx, idx) / n)


def ref_V(w: torch.Tensor, grid) -> torch.Tensor:
    """Full-spectrum V (C_out, Gh, Gw); (C_out, 1, 1) for 1x1 kernels."""
    w = w.detach().to(DT)
    o, i, k, _ = w.shape
    if k == 1:
        return (w ** 2).sum(dim=(1, 2, 3)).pow(-0.5).reshape(o, 1, 1)
    gh, gw = grid
    padded = torch.zeros(o, i, gh, gw, dtype=DT)
    padded[..., :k, :k] = w
    w_hat = dft_matrix(gh) @ padded.to(torch.complex128) @ dft_matrix(gw).T
    return (w_hat.abs() ** 2).sum(dim=1).pow(-0.5)


def ref_bare(x, w, stride, padding, V=None, bias=None):
    """Steps 1-5 of convnorm.md written plainly; V (full spectrum) is a constant."""
    n, _, h, wd = x.shape
    k = w.shape[-1]
    gh, gw = h + k - 1, wd + k - 1
    if V is None:
        V = ref_V(w, (gh, gw))
    xp = F.pad(x, (k - 1,) * 4)
    y = sum(torch.einsum("nihw,oi->nohw", xp[..., u:u + gh, v:v + gw], w[:, :, u, v])
            for u in range(k) for v in range(k))
    if k == 1:
        y = y * V
    else:
        fh, fw = dft_matrix(gh), dft_matrix(gw)
        z = (fh @ y.to(torch.complex128) @ fw.T) * V
        y = (fh.conj() @ z @ fw.conj().T).real / (gh * gw)
    c = k - 1 - padding
    y = y[..., c:gh - c, c:gw - c][..., ::stride, ::stride]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def bare_layer(cin, cout, k, s, p, **kw):
    torch.manual_seed(0)
    return ConvNorm2d(cin, cout, k, s, p, affine=False, bn=False, dtype=DT, **kw)


CASES = [(1, 1, 0, 7), (1, 2, 0, 8), (3, 1, 1, 8), (3, 2, 1, 7), (3, 1, 0, 7), (3, 2, 2, 8),
         (5, 1, 2, 7), (5, 2, 1, 8), (5, 1, 4, 6)]


# ---------------------------------------------------------------- equality with the reference
@pytest.mark.parametrize("mode", ["faithful", "fast"])
@pytest.mark.parametrize("k,s,p,size", CASES)
def test_train_and_eval_match_reference(k, s, p, size, mode):
    layer = bare_layer(3, 4, k, s, p, rampdown_steps=4, mode=mode)
    x = torch.randn(2, 3, size, size + 1, dtype=DT)
    grid = (size + k - 1, size + k)
    running = torch.zeros(())
    for step in range(1, 4):
        w_now = layer.weight.detach().clone()
        out = layer(x)
        assert rel_err(out, ref_bare(x, w_now, s, p)) <= 1e-6
        f = max(0.5 * (1 + math.cos(math.pi * min(step, 4) / 4)), 0.01)
        running = f * ref_V(w_now, grid) + (1 - f) * running
        with torch.no_grad():
            layer.weight.add_(0.3 * torch.randn_like(layer.weight))
    assert int(layer.num_batches_tracked) == 3
    layer.eval()
    out = layer(x)
    assert rel_err(out, ref_bare(x, layer.weight.detach(), s, p, V=running)) <= 1e-6
    # eval must not use the current weights' V (they changed after the last step)
    assert rel_err(out, ref_bare(x, layer.weight.detach(), s, p)) > 1e-3


def test_running_V_layout_is_rfft2_of_the_grid():
    layer = bare_layer(3, 4, 3, 1, 1)
    layer(torch.randn(1, 3, 32, 32, dtype=DT))
    assert tuple(layer.running_V.shape) == (4, 34, 18)
    one = bare_layer(3, 4, 1, 2, 0)
    one(torch.randn(1, 3, 32, 32, dtype=DT))
    assert tuple(one.running_V.shape) == (4, 1, 1)


def test_full_layer_with_affine_bn_and_bias_matches_reference():
    torch.manual_seed(1)
    layer = ConvNorm2d(3, 4, 3, 2, 1, bias=True, dtype=DT)
    with torch.no_grad():
        layer.bpconv.weight.normal_()
        layer.bpconv.bias.normal_()
        layer.batch_norm.weight.uniform_(0.5, 2)
        layer.batch_norm.bias.normal_()
    x = torch.randn(3, 3, 9, 9, dtype=DT)
    out = layer(x)
    bare = ref_bare(x, layer.weight.detach(), 2, 1, bias=layer.bias.detach())
    dw = layer.bpconv.weight.detach()  # depthwise 3x3, padding 1, written as shifted sums
    bp = F.pad(bare, (1, 1, 1, 1))
    h, w = bare.shape[-2:]
    aff = sum(bp[..., u:u + h, v:v + w] * dw[:, 0, u, v].view(1, -1, 1, 1)
              for u in range(3) for v in range(3)) + layer.bpconv.bias.detach().view(1, -1, 1, 1)
    mean = aff.mean(dim=(0, 2, 3), keepdim=True)
    var = aff.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    ref = (aff - mean) / torch.sqrt(var + 1e-5) * layer.batch_norm.weight.detach().view(1, -1, 1, 1) \
        + layer.batch_norm.bias.detach().view(1, -1, 1, 1)
    assert rel_err(out, ref) <= 1e-6


# ---------------------------------------------------------------- properties of convnorm.md
def test_spectral_identity():
    layer = bare_layer(5, 6, 3, 1, 1)
    V = layer.compute_V((11, 12))
    w_hat = torch.fft.fft2(layer.weight.detach(), s=(11, 12))  # full spectrum, any padding place
    energy = (w_hat.abs() ** 2).sum(dim=1)[..., :12 // 2 + 1]
    torch.testing.assert_close(energy * V ** 2, torch.ones_like(V), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_pointwise_is_l2_normalised_conv(mode):
    layer = bare_layer(5, 6, 1, 2, 0, mode=mode)
    x = torch.randn(2, 5, 9, 8, dtype=DT)
    w = layer.weight.detach()
    expected = F.conv2d(x, w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1), stride=2)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["faithful", "fast"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_output_invariant_to_rescaling_one_filter(k, mode):
    layer = bare_layer(3, 4, k, 1, (k - 1) // 2, mode=mode)
    x = torch.randn(2, 3, 8, 8, dtype=DT)
    before = layer(x)
    with torch.no_grad():
        layer.weight[2].mul_(7.3)
    torch.testing.assert_close(layer(x), before, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("mode", ["faithful", "fast"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_output_shape_equals_conv2d(k, s, size, mode):
    x = torch.randn(2, 3, size, size + 3)
    for p in range(k):
        expected = torch.nn.Conv2d(3, 4, k, s, p)(x).shape
        for layer in (ConvNorm2d(3, 4, k, s, p, mode=mode),
                      ConvNorm2d(3, 4, k, s, p, affine=False, bn=False, mode=mode)):
            assert layer(x).shape == expected
            assert layer.eval()(x).shape == expected


def test_even_kernel_without_affine_has_conv2d_shape():
    x = torch.randn(1, 3, 8, 7)
    layer = ConvNorm2d(3, 4, 2, 1, 1, affine=False, bn=False)
    assert layer(x).shape == torch.nn.Conv2d(3, 4, 2, 1, 1)(x).shape


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_no_gradient_flows_through_V(mode):
    layer = bare_layer(3, 4, 3, 2, 1, mode=mode)
    x = torch.randn(2, 3, 7, 7, dtype=DT, requires_grad=True)
    g = torch.randn(2, 4, 4, 4, dtype=DT)
    (layer(x) * g).sum().backward()
    w = layer.weight.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    (ref_bare(x2, w, 2, 1) * g).sum().backward()  # V is a constant in the reference
    assert rel_err(layer.weight.grad, w.grad) <= 1e-6
    assert rel_err(x.grad, x2.grad) <= 1e-6
    # ... and differs from the gradient a V(w) with gradient would give
    w3 = layer.weight.detach().clone().requires_grad_(True)
    (ref_bare(x.detach(), w3, 2, 1, V=_ref_V_with_grad(w3, (9, 9))) * g).sum().backward()
    assert rel_err(w3.grad, w.grad) > 1e-3


def _ref_V_with_grad(w, grid):
    gh, gw = grid
    k = w.shape[-1]
    padded = F.pad(w, (0, gw - k, 0, gh - k)).to(torch.complex128)
    w_hat = dft_matrix(gh) @ padded @ dft_matrix(gw).T
    return (w_hat.abs() ** 2).sum(dim=1).pow(-0.5)


def test_ema_schedule_values():
    assert ema_factor(1) == pytest.approx(0.5 * (1 + math.cos(math.pi / 40000)))
    assert ema_factor(20000) == pytest.approx(0.5)
    assert ema_factor(39000) == pytest.approx(max(0.5 * (1 + math.cos(math.pi * 39000 / 40000)),
                                                  0.01))
    assert ema_factor(39000) == 0.01  # the cosine is below the floor there
    assert ema_factor(40000) == 0.01 and ema_factor(10 ** 6) == 0.01
    assert ema_factor(36000) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    # the layer applies it at its counter (36000 -> 36001), starting from a saved counter
    layer = bare_layer(2, 3, 3, 1, 1)
    x = torch.randn(1, 2, 6, 6, dtype=DT)
    layer(x)
    old = layer.running_V.clone()
    layer.num_batches_tracked.fill_(36000)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) + 0.5)
    V = layer.compute_V((8, 8))
    layer(x)
    f = ema_factor(36001)
    torch.testing.assert_close(layer.running_V, f * V + (1 - f) * old)
    # fixed momentum
    fixed = bare_layer(2, 3, 3, 1, 1, momentum=0.25)
    fixed(x)
    fixed(x)
    V = fixed.compute_V((8, 8))
    torch.testing.assert_close(fixed.running_V, 0.25 * V + 0.75 * 0.25 * V)


# ---------------------------------------------------------------- fixed official quirks
def test_state_dict_round_trip_into_fresh_model():
    layer = ConvNorm2d(3, 4, 3, 1, 1)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(3):
        layer(x)
    layer.eval()
    fresh = ConvNorm2d(3, 4, 3, 1, 1).eval()
    fresh.load_state_dict(layer.state_dict())  # official: size mismatch on running_V
    assert int(fresh.num_batches_tracked) == 3
    torch.testing.assert_close(fresh(x), layer(x))


def test_official_checkpoint_without_counter_loads():
    layer = ConvNorm2d(3, 4, 3, 1, 1)
    layer(torch.randn(2, 3, 8, 8))
    state = {k: v for k, v in layer.state_dict().items() if k != "num_batches_tracked"}
    fresh = ConvNorm2d(3, 4, 3, 1, 1)
    fresh.load_state_dict(state)  # strict
    assert int(fresh.num_batches_tracked) == 40000  # end of the cosine schedule
    untrained = ConvNorm2d(3, 4, 3, 1, 1).state_dict()
    untrained.pop("num_batches_tracked")
    fresh.load_state_dict(untrained)
    assert int(fresh.num_batches_tracked) == 0 and fresh.running_V.shape == (1,)


def test_different_input_size_in_eval():
    layer = ConvNorm2d(3, 4, 3, 1, 1)
    layer(torch.randn(2, 3, 8, 8))
    layer.eval()
    with pytest.raises(ValueError, match=r"estimated for 8x8 inputs but got 10x10"):
        layer(torch.randn(1, 3, 10, 10))
    with pytest.raises(ValueError, match=r"estimated for 8x8 inputs but got 8x9"):
        layer(torch.randn(1, 3, 8, 9))  # same rfft shape (10, 6) as 8x8: caught by the grid
    layer.size_mismatch = "weights"
    x = torch.randn(1, 3, 10, 10)
    expected = layer.batch_norm(layer.bpconv(
        ref_bare(x.double(), layer.weight.detach().double(), 1, 1).float()))
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-5)
    layer.train()
    with pytest.raises(ValueError, match="allocate_running_V"):
        layer(torch.randn(2, 3, 10, 10))
    layer.allocate_running_V((10, 10))
    layer(torch.randn(2, 3, 10, 10))
    assert layer.running_V.shape == (4, 12, 7)


def test_pointwise_layer_accepts_any_size_in_eval():
    layer = ConvNorm2d(3, 4, 1, 2, 0)
    layer(torch.randn(2, 3, 8, 8))
    layer.eval()
    assert layer(torch.randn(1, 3, 11, 5)).shape == (1, 4, 6, 3)


def test_untrained_eval_uses_weights_V_not_zero_output():
    layer = bare_layer(3, 4, 3, 1, 1).eval()
    x = torch.randn(1, 3, 6, 6, dtype=DT)
    assert rel_err(layer(x), ref_bare(x, layer.weight.detach(), 1, 1)) <= 1e-6


def test_zero_filter_gives_finite_output():
    layer = bare_layer(3, 4, 3, 1, 1)
    with torch.no_grad():
        layer.weight[1].zero_()
    out = layer(torch.randn(2, 3, 6, 6, dtype=DT))
    assert torch.isfinite(out).all() and out[:, 1].abs().max() == 0
    assert torch.isfinite(layer.running_V).all()
    official = bare_layer(3, 4, 3, 1, 1, eps=0.0)
    with torch.no_grad():
        official.weight[1].zero_()
    assert not torch.isfinite(official.compute_V((8, 8))).all()


@pytest.mark.parametrize("preallocate", [True, False])
def test_in_place_buffer_updates_reach_a_dataparallel_style_replica_parent(preallocate):
    """DataParallel's device-0 replica holds the module's buffer tensors; updates must be in place."""
    layer = ConvNorm2d(3, 4, 3, 1, 1, input_size=(6, 6) if preallocate else None)
    buffer_object = layer.running_V
    replica = layer._replicate_for_data_parallel()
    for name, param in layer._parameters.items():
        setattr(replica, name, param)
    x = torch.randn(2, 3, 6, 6)
    replica(x)
    replica(x)
    assert int(layer.num_batches_tracked) == 2
    V = layer.compute_V((8, 8))
    f1, f2 = ema_factor(1), ema_factor(2)
    torch.testing.assert_close(layer.running_V, f2 * V + (1 - f2) * f1 * V)
    assert layer.running_V is buffer_object  # DDP's buffer list stays valid too


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_size=3, dilation=2), "dilation"),
    (dict(kernel_size=3, padding=3), "padding"),
    (dict(kernel_size=(3, 1)), "not square"),
    (dict(kernel_size=3, groups=2), "groups"),
    (dict(kernel_size=3, padding_mode="reflect"), "padding_mode"),
    (dict(kernel_size=4), "even kernel_size"),
    (dict(kernel_size=3, padding="same"), "padding='same'"),
    (dict(kernel_size=3, mode="quick"), "mode"),
])
def test_unsupported_configurations_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvNorm2d(4, 4, **kwargs)


def test_wrong_input_channels_raise():
    with pytest.raises(ValueError, match="input has 5 channels"):
        ConvNorm2d(3, 4, 3)(torch.randn(1, 5, 8, 8))


def test_bias_is_added_after_preconditioning():
    layer = bare_layer(3, 4, 3, 1, 1, bias=True)
    x = torch.randn(2, 3, 6, 6, dtype=DT)
    out = layer(x)
    expected = ref_bare(x, layer.weight.detach(), 1, 1) + layer.bias.detach().view(1, -1, 1, 1)
    assert rel_err(out, expected) <= 1e-6


def test_official_attribute_names_and_state_keys():
    layer = ConvNorm2d(64, 128, 1, 2, 0)
    layer(torch.randn(1, 64, 8, 8))
    keys = set(layer.state_dict())
    assert {"weight", "running_V", "bpconv.weight", "bpconv.bias", "batch_norm.weight",
            "batch_norm.bias", "batch_norm.running_mean", "batch_norm.running_var",
            "batch_norm.num_batches_tracked", "num_batches_tracked"} == keys
    assert layer.weight.shape == torch.nn.Conv2d(64, 128, 1).weight.shape
    assert layer.running_V.shape == (128, 1, 1)


# ---------------------------------------------------------------- fast mode == faithful mode
@pytest.mark.parametrize("k,s,p,size", [(3, 1, 1, 16), (3, 2, 1, 16), (3, 2, 1, 15), (1, 2, 0, 16),
                                        (5, 2, 2, 11), (3, 1, 0, 4)])
def test_fast_equals_faithful_fp32_train_eval_and_gradients(k, s, p, size):
    torch.manual_seed(3)
    # bn=False: after BN the biases' true gradient is 0 and a relative error is meaningless
    faithful = ConvNorm2d(8, 16, k, s, p, mode="faithful", bias=True, bn=False, rampdown_steps=3)
    fast = ConvNorm2d(8, 16, k, s, p, mode="fast", bias=True, bn=False, rampdown_steps=3)
    fast.load_state_dict(faithful.state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (faithful, fast)]
    x = torch.randn(4, 8, size, size + 1)
    for _ in range(3):
        outs, grads = [], []
        for layer, opt in zip((faithful, fast), opts):
            xi = x.clone().requires_grad_(True)
            opt.zero_grad()
            out = layer(xi)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            outs.append(out.detach())
            grads.append([xi.grad] + [q.grad.clone() for q in layer.parameters()])
            opt.step()
        assert rel_err(outs[1], outs[0]) <= 1e-4
        for g_fast, g_ref in zip(grads[1], grads[0]):
            assert rel_err(g_fast, g_ref) <= 1e-4
    torch.testing.assert_close(fast.running_V, faithful.running_V, rtol=1e-4, atol=1e-6)
    faithful.eval()
    fast.eval()
    xi = [x.clone().requires_grad_(True) for _ in range(2)]
    outs = [m(xx) for m, xx in zip((faithful, fast), xi)]
    assert rel_err(outs[1].detach(), outs[0].detach()) <= 1e-4
    for out in outs:
        out.square().sum().backward()
    assert rel_err(xi[1].grad, xi[0].grad) <= 1e-4


def test_fast_spectral_energy_equals_fft_energy():
    from robust_eval.nn.convnorm_fast import spectral_energy_fast
    from robust_eval.nn import spectral_energy
    w = torch.randn(6, 5, 5, 5, dtype=DT)
    for grid in [(9, 9), (12, 13), (34, 34)]:
        torch.testing.assert_close(spectral_energy_fast(w, grid), spectral_energy(w, grid),
                                   rtol=1e-10, atol=1e-10)


def test_fast_path_backward_after_an_inference_mode_pass():
    """Cached matrices first built under inference_mode must not break a later backward."""
    from robust_eval.nn import convnorm_fast

    convnorm_fast._MATRIX_CACHE.clear()
    layer = ConvNorm2d(3, 4, 3, padding=1, mode="fast").eval()
    x = torch.rand(2, 3, 7, 7)
    with torch.inference_mode():
        layer(x)
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
