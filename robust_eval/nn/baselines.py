"""Baseline conv layers of the ConvNorm paper: spectral norm, ONI, and the OCNN penalty.

Each layer keeps the attribute names of the official code (github.com/shengliu66/ConvNorm,
base/base_model.py, models/oni.py, utils/util.py) so official checkpoints load by key:
SN: `conv.weight_orig`, `conv.weight_u`, `conv.weight_v`; ONI: `weight`, `WNScale`.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SNConv2d(nn.Module):
    """nn.Conv2d under torch spectral norm of the kernel flattened to (C_out, C_in*k*k).

    As the official `sn_conv2d`: one power iteration per training forward (torch default); the
    largest singular value of the flattened kernel is normalised to 1, not the conv operator's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, padding_mode: str = "zeros",
                 n_power_iterations: int = 1) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode)
        with warnings.catch_warnings():  # the old API is kept on purpose: official state keys
            warnings.simplefilter("ignore", FutureWarning)
            self.conv = nn.utils.spectral_norm(conv, n_power_iterations=n_power_iterations)

    @property
    def weight(self) -> Tensor:
        """The normalised kernel used by the last forward."""
        return self.conv.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def oni_orthogonalize(weight: Tensor, T: int = 3, eps: float = 1e-5, rows: bool = True) -> Tensor:
    """Orthogonalisation by Newton iteration (Huang et al., CVPR 2020; official models/oni.py).

    Z = weight flattened to (C_out, d) and centred per row. Rows (C_out <= d): S = Z Z^T + eps I,
    S <- S/||S||_F, B_0 = I, B_{t+1} = 1.5 B_t - 0.5 B_t^3 S, result B_T Z / sqrt(||S||_F).
    Columns (C_out > d): S = Z^T Z + eps I is NOT normalised (official quirk, kept for fidelity:
    converges only while S's eigenvalues stay below ~3), result Z B_T / sqrt(||S||_F).
    T=3 is only roughly orthogonal (|W W^T - I| ~ 0.2 at init); in fp32 the iteration itself
    becomes unstable beyond T ~ 15.
    """
    z = weight.reshape(weight.shape[0], -1)
    zc = z - z.mean(dim=1, keepdim=True)
    s = zc @ zc.t() if rows else zc.t() @ zc
    eye = torch.eye(s.shape[0], dtype=s.dtype, device=s.device)
    s = s + eps * eye
    norm_s = torch.linalg.matrix_norm(s)  # Frobenius
    if rows:
        s = s / norm_s
    b = eye
    for _ in range(T):
        b = 1.5 * b - 0.5 * (b @ b @ b @ s)
    w = (b @ zc) if rows else (zc @ b)
    return (w / norm_s.sqrt()).view_as(weight)


class ONIConv2d(nn.Conv2d):
    """nn.Conv2d whose kernel is ONI-orthogonalised and scaled by a learnable WNScale (1.414).

    As the official ONI_Conv2d (norm_groups=1, adjustScale=True): rows are orthogonalised when
    C_out <= C_in*k*k, columns otherwise. Bias defaults to False as the official ResNets pass.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, T: int = 3,
                 scale: float = 1.414, eps: float = 1e-5) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.T = T
        self.eps = eps
        self.WNScale = nn.Parameter(torch.full((out_channels, 1, 1, 1), float(scale)))

    @property
    def orthogonalizes_rows(self) -> bool:
        return self.out_channels <= self.weight[0].numel()

    def normalized_weight(self) -> Tensor:
        w = oni_orthogonalize(self.weight, self.T, self.eps, rows=self.orthogonalizes_rows)
        return w * self.WNScale

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", T={self.T}"


class OCNNConv2d(nn.Conv2d):
    """A plain bias-free conv that `ocnn_penalty` regularises towards orthogonality."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = False, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias, **kwargs)


def orthogonality_distance(weight: Tensor, stride: int = 1, variant: str = "paper") -> Tensor:
    """OCNN distance ||Conv(K, K, stride S, padding P) - I_center||_F (Wang et al., CVPR 2020).

    1x1 kernels: ||M^T M - I||_F with M the flattened kernel, transposed so the Gram matrix is
    the smaller one (official `orth_dist`). k x k kernels: the kernel is convolved with itself;
    every shift but the centre must vanish and the centre must be I. `variant="paper"` uses the
    paper's P = floor((k-1)/S)*S, which covers every overlapping shift and keeps the zero shift
    on the strided output grid; `variant="official"` uses the official helper's padding=1 (for
    k=3, S=2 its "centre" is the shift (+1, +1)). Un-squared norm, as both codes use.
    """
    if variant not in ("paper", "official"):
        raise ValueError(f"orthogonality_distance: variant={variant!r}; 'paper' or 'official'")
    o, i, kh, kw = weight.shape
    if kh == 1 and kw == 1:
        m = weight.reshape(o, -1)
        if m.shape[0] < m.shape[1]:
            m = m.t()
        gram = m.t() @ m
        return torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0], dtype=gram.dtype,
                                                         device=gram.device))
    if kh != kw:
        raise ValueError(f"orthogonality_distance: non-square kernel {tuple(weight.shape)}")
    pad = ((kh - 1) // stride) * stride if variant == "paper" else 1
    out = F.conv2d(weight, weight, stride=stride, padding=pad)
    target = torch.zeros_like(out)
    centre = out.shape[-1] // 2
    target[:, :, centre, centre] = torch.eye(o, dtype=out.dtype, device=out.device)
    return torch.linalg.matrix_norm((out - target).reshape(o, -1))


def ocnn_penalty(model: nn.Module, lam: float = 1e-4, variant: str = "paper",
                 select: Optional[Callable[[str, nn.Module], bool]] = None) -> Tensor:
    """lam * sum of `orthogonality_distance` over the model's OCNNConv2d layers (or `select`).

    The official trainer hard-codes ResNet-18's block conv1 and projection shortcuts; here every
    OCNNConv2d counts unless `select(name, module)` says otherwise. Add the result to the loss.
    """
    total: Optional[Tensor] = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if select is None:
            if not isinstance(module, OCNNConv2d):
                continue
        elif not select(name, module):
            continue
        if module.groups != 1 or module.dilation != (1, 1):
            raise ValueError(f"ocnn_penalty: layer {name!r} has groups/dilation; unsupported")
        d = orthogonality_distance(module.weight, module.stride[0], variant)
        total = d if total is None else total + d
    if total is None:
        raise ValueError("ocnn_penalty: the model has no OCNNConv2d layer (built with norm "
                         "'ocnn'?); nothing to regularise")
    return lam * total


def official_resnet18_selection(name: str, module: nn.Module) -> bool:
    """The layers the official trainer penalises: each block's conv1 and projection shortcuts."""
    parts = name.split(".")
    return (len(parts) == 3 and parts[0].startswith("layer") and parts[2] == "conv1") or \
        name.endswith("shortcut.0")

