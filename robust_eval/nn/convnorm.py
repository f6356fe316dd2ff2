"""Convolutional Normalization (Liu et al., NeurIPS 2021) as a drop-in conv layer.

`mode="faithful"` runs exactly the steps of docs/convnorm.md (the official algorithm): full
stride-1 conv, rfft2, multiply by the preconditioner V, irfft2, crop, stride, bias, depthwise
affine conv, BatchNorm. `mode="fast"` computes the same function by exact rewrites (see
docs/performance.md); tests hold it to the faithful mode in train and eval, values and gradients.

State dict keys match the official checkpoints (`weight`, `running_V`, `bpconv.*`,
`batch_norm.*`) plus `num_batches_tracked` (the EMA step counter the official code kept as a
plain int). Official quirks and how they are fixed are listed in docs/convnorm.md.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robust_eval.nn import convnorm_fast

MODES = ("faithful", "fast")
SIZE_MISMATCH = ("error", "weights")


def ema_factor(step: int, rampdown_steps: int = 40000, min_factor: float = 0.01) -> float:
    """Weight of the current V in the running estimate at training step `step` (1-based)."""
    t = min(max(step, 0), rampdown_steps)
    return max(0.5 * (1.0 + math.cos(math.pi * t / rampdown_steps)), min_factor)


def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, str):
        raise ValueError(f"ConvNorm2d: {name}={value!r} is not supported; give integers")
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"ConvNorm2d: {name}={value!r} must be an int or a pair of ints")
    return value  # type: ignore[return-value]


def spectral_energy(weight: Tensor, grid: Tuple[int, int]) -> Tensor:
    """sum_i |FFT2(w[o, i] zero-padded to grid)|^2, rfft2 layout (C_out, Gh, Gw//2+1)."""
    w_hat = torch.fft.rfft2(weight, s=grid)
    return (w_hat.real.square() + w_hat.imag.square()).sum(dim=1)


class ConvNorm2d(nn.Module):
    """Conv layer normalised by the per-channel spectral preconditioner of ConvNorm.

    Args beyond nn.Conv2d's: `affine` (depthwise k x k conv with bias after the normalised
    conv), `bn` (BatchNorm2d after that), `momentum` (None: the official cosine schedule for the
    running V; a float: fixed EMA factor), `eps` (floor on the spectral energy so a zero filter
    gives a finite V; 0 reproduces the official inf), `mode` ("fast" or "faithful"),
    `size_mismatch` ("error", or "weights": compute V from the current weights when an eval
    input's size differs from the one running_V was estimated on), `input_size` (allocate
    running_V for this (H, W) now instead of at the first training step; needed before wrapping
    in DDP), `rampdown_steps`, `min_factor` (the cosine schedule).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, padding_mode: str = "zeros",
                 affine: bool = True, bn: bool = True, momentum: Optional[float] = None,
                 eps: float = 1e-8, mode: str = "fast", size_mismatch: str = "error",
                 input_size: Optional[Tuple[int, int]] = None, rampdown_steps: int = 40000,
                 min_factor: float = 0.01, device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        kh, kw = _pair(kernel_size, "kernel_size")
        if kh != kw:
            raise ValueError(f"ConvNorm2d: kernel_size={kernel_size!r} is not square; ConvNorm "
                             "is defined for k x k kernels (the official code takes the 1x1 branch "
                             "for k x 1 kernels, which is wrong)")
        if kh < 1:
            raise ValueError(f"ConvNorm2d: kernel_size={kernel_size!r} must be >= 1")
        k = kh
        self.stride = _pair(stride, "stride")
        if min(self.stride) < 1:
            raise ValueError(f"ConvNorm2d: stride={stride!r} must be >= 1")
        self.padding = _pair(padding, "padding")
        for p in self.padding:
            if p < 0 or p > k - 1:
                raise ValueError(f"ConvNorm2d: padding={padding!r} must lie in [0, kernel_size-1]"
                                 f"=[0, {k - 1}] (the official code crops to nothing beyond k-1)")
        if _pair(dilation, "dilation") != (1, 1):
            raise ValueError(f"ConvNorm2d: dilation={dilation!r} is not supported (the official "
                             "code silently computes a wrong V for dilated kernels)")
        if groups != 1:
            raise ValueError(f"ConvNorm2d: groups={groups} is not supported (V is defined for "
                             "dense convolutions)")
        if padding_mode != "zeros":
            raise ValueError(f"ConvNorm2d: padding_mode={padding_mode!r} is not supported; the "
                             "preconditioner assumes zero padding (the official code ignores it)")
        if mode not in MODES:
            raise ValueError(f"ConvNorm2d: mode={mode!r}; expected one of {MODES}")
        if size_mismatch not in SIZE_MISMATCH:
            raise ValueError(f"ConvNorm2d: size_mismatch={size_mismatch!r}; expected one of "
                             f"{SIZE_MISMATCH}")
        if affine and k % 2 == 0:
            raise ValueError(f"ConvNorm2d: even kernel_size={k} with affine=True: the official "
                             "depthwise affine conv (padding (k-1)//2) would shrink the output; "
                             "use an odd kernel or affine=False")
        if eps < 0:
            raise ValueError(f"ConvNorm2d: eps={eps} must be >= 0")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (k, k)
        self.affine = affine
        self.bn = bn
        self.momentum = momentum
        self.eps = float(eps)
        self.mode = mode
        self.size_mismatch = size_mismatch
        self.rampdown_steps = int(rampdown_steps)
        self.min_factor = float(min_factor)

        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        # Official initial value (zeros(1)): "no estimate yet"; the real shape comes with the
        # first training input, input_size, or load_state_dict.
        self.register_buffer("running_V", torch.zeros(1, **factory))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long,
                                                                device=device))
        self._grid: Optional[Tuple[int, int]] = None  # grid running_V was estimated on
        self.bpconv: nn.Module = (
            nn.Conv2d(out_channels, out_channels, k, padding=(k - 1) // 2, groups=out_channels,
                      bias=True, **factory) if affine else nn.Identity())
        self.batch_norm: nn.Module = (nn.BatchNorm2d(out_channels, affine=affine, **factory)
                                      if bn else nn.Identity())
        self._estimate_key: Optional[tuple] = None
        self._estimate = False
        self.reset_parameters()
        if input_size is not None:
            self.allocate_running_V(input_size)

    # ------------------------------------------------------------------ set-up and state
    def reset_parameters(self) -> None:
        # Same init as nn.Conv2d (the official layer subclasses _ConvNd).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def is_pointwise(self) -> bool:
        return self.kernel_size[0] == 1

    def grid_for(self, height: int, width: int) -> Tuple[int, int]:
        k = self.kernel_size[0]
        return (height + k - 1, width + k - 1)

    def running_V_shape(self, grid: Tuple[int, int]) -> Tuple[int, int, int]:
        if self.is_pointwise:
            return (self.out_channels, 1, 1)
        return (self.out_channels, grid[0], grid[1] // 2 + 1)

    def has_running_V(self) -> bool:
        """True once running_V is allocated (right rank) and has seen a training step."""
        return self._has_estimate()

    def allocate_running_V(self, input_size: Tuple[int, int]) -> None:
        """Give running_V its shape for (H, W) inputs now, zero-filled, counter reset to 0."""
        height, width = _pair(tuple(input_size), "input_size")
        grid = self.grid_for(height, width)
        shape = self.running_V_shape(grid)
        self._resize_running_V(shape)
        self.running_V.zero_()
        self.num_batches_tracked.zero_()
        self._grid = None if self.is_pointwise else grid

    def _resize_running_V(self, shape: Tuple[int, ...]) -> None:
        """Resize in place when possible: DataParallel's device-0 replica and DDP's buffer list
        keep pointing at the same tensor object; fall back to a new tensor otherwise."""
        if tuple(self.running_V.shape) == tuple(shape):
            return
        try:
            with torch.no_grad():
                self.running_V.resize_(shape)
        except RuntimeError:
            self.running_V = torch.zeros(shape, dtype=self.running_V.dtype,
                                         device=self.running_V.device)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        v_key, t_key = prefix + "running_V", prefix + "num_batches_tracked"
        incoming = state_dict.get(v_key)
        if isinstance(incoming, Tensor):
            if incoming.shape != self.running_V.shape:
                # Official quirk: running_V's shape is only known after the first input.
                self._resize_running_V(tuple(incoming.shape))
            self._grid = self._infer_grid(tuple(incoming.shape))
            if t_key not in state_dict:
                # Official checkpoints do not save the counter. A trained running_V continues at
                # the end of the cosine schedule (official runs train ~47k > 40k steps).
                trained = incoming.dim() == 3
                state_dict[t_key] = torch.tensor(self.rampdown_steps if trained else 0,
                                                 dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _infer_grid(self, shape) -> Optional[Tuple[int, int]]:
        """Grid of a loaded running_V; the width is ambiguous (2F-2 or 2F-1): assume square."""
        if self.is_pointwise or len(shape) != 3:
            return None
        gh, fw = shape[1], shape[2]
        if gh in (2 * fw - 2, 2 * fw - 1):
            return (gh, gh)
        return None  # pinned at the first forward whose rfft width matches

    # ------------------------------------------------------------------ V
    def compute_V(self, grid: Tuple[int, int]) -> Tensor:
        """Preconditioner of the current (detached) weights on `grid`; no gradient."""
        if self.mode == "fast":
            return convnorm_fast.compute_V_fast(self, grid)
        with torch.no_grad():
            w = self.weight.detach()
            if w.dtype in (torch.float16, torch.bfloat16):
                w = w.float()
            if self.is_pointwise:
                energy = w.square().sum(dim=(1, 2, 3)).reshape(-1, 1, 1)
            else:
                energy = spectral_energy(w, grid)
            if self.eps > 0:
                energy = energy.clamp_min(self.eps)
            return energy.rsqrt()

    def _has_estimate(self) -> bool:
        """running_V allocated and updated at least once; host sync only when the counter changed."""
        if self.running_V.dim() != 3:
            return False
        counter = self.num_batches_tracked
        key = (counter.data_ptr(), counter._version)
        if self._estimate_key != key:
            self._estimate = bool(counter.item() > 0)
            self._estimate_key = key
        return self._estimate

    def _check_grid(self, grid: Tuple[int, int]) -> bool:
        """Whether running_V was estimated on this grid (always True for 1x1 kernels)."""
        if self.is_pointwise:
            return True
        if tuple(self.running_V.shape) != self.running_V_shape(grid):
            return False
        if self._grid is None:
            self._grid = grid
        return self._grid == grid

    def _grid_error(self, grid: Tuple[int, int], what: str) -> ValueError:
        k = self.kernel_size[0]
        if self._grid is not None:
            known = f"{self._grid[0] - k + 1}x{self._grid[1] - k + 1}"
        else:
            known = f"a grid of rfft shape {tuple(self.running_V.shape[1:])}"
        return ValueError(
            f"ConvNorm2d({self.in_channels}, {self.out_channels}, k={k}): running_V was estimated "
            f"for {known} inputs but got {grid[0] - k + 1}x{grid[1] - k + 1} in {what}; ConvNorm's "
            "preconditioner depends on the input size. In eval, size_mismatch='weights' computes V "
            "from the current weights for the new size; for training at a new size call "
            "allocate_running_V((H, W)) first.")

    def _update_running_V(self, V: Tensor, grid: Tuple[int, int]) -> None:
        """EMA step, in place so DataParallel's device-0 replica writes the real buffers."""
        with torch.no_grad():
            if self.running_V.dim() != 3 or not self._check_grid(grid):
                if bool(self.num_batches_tracked.item() > 0) and self.running_V.dim() == 3:
                    raise self._grid_error(grid, "training")
                self.allocate_running_V((grid[0] - self.kernel_size[0] + 1,
                                         grid[1] - self.kernel_size[0] + 1))
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                t = self.num_batches_tracked.to(torch.float64).clamp(max=self.rampdown_steps)
                f = (0.5 * (1.0 + torch.cos(math.pi * t / self.rampdown_steps))).clamp(
                    min=self.min_factor)
            else:
                f = torch.tensor(float(self.momentum), dtype=torch.float64,
                                 device=self.running_V.device)
            f = f.to(self.running_V.dtype)
            self.running_V.mul_(1 - f).add_(V.to(self.running_V.dtype) * f)

    def current_V(self, grid: Tuple[int, int]) -> Tensor:
        """V used by this forward: batch V (train, updates the EMA) or the running estimate."""
        if self.training:
            V = self.compute_V(grid)
            self._update_running_V(V, grid)
            return V
        if not self._has_estimate():
            # Never trained: official gives an all-zero output; we use the weights' V instead.
            return self.compute_V(grid)
        if not self._check_grid(grid):
            if self.size_mismatch == "weights":
                return self.compute_V(grid)
            raise self._grid_error(grid, "eval")
        return self.running_V

    # ------------------------------------------------------------------ forward
    def _crop(self) -> Tuple[int, int]:
        k = self.kernel_size[0]
        return (k - 1 - self.padding[0], k - 1 - self.padding[1])

    def forward_faithful(self, x: Tensor) -> Tensor:
        """Steps 1-5 of convnorm.md literally (bias added after, the official adds it before)."""
        k = self.kernel_size[0]
        height, width = x.shape[-2:]
        grid = self.grid_for(height, width)
        V = self.current_V(grid)
        y = F.conv2d(x, self.weight, None, 1, k - 1)
        if self.is_pointwise:
            y = y * V.to(y.dtype)
        else:
            out_dtype = y.dtype
            if y.dtype in (torch.float16, torch.bfloat16):
                y = y.float()
            y_hat = torch.fft.rfft2(y) * V.to(y.dtype)
            y = torch.fft.irfft2(y_hat, s=grid).to(out_dtype)
        ch, cw = self._crop()
        y = y[..., ch:grid[0] - ch, cw:grid[1] - cw]
        return y[..., ::self.stride[0], ::self.stride[1]]

    def normalized_conv(self, x: Tensor) -> Tensor:
        """Steps 1-5 plus bias: the bare normalised convolution in the selected mode."""
        if x.dim() != 4:
            raise ValueError(f"ConvNorm2d expects NCHW input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ConvNorm2d({self.in_channels}, {self.out_channels}): input has "
                             f"{x.shape[1]} channels")
        if self.mode == "fast":
            y = convnorm_fast.forward_fast(self, x)
        else:
            y = self.forward_faithful(x)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype).view(1, -1, 1, 1)
        return y

    def forward(self, x: Tensor) -> Tensor:
        return self.batch_norm(self.bpconv(self.normalized_conv(x)))

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}, mode={self.mode!r}")
        if self.bias is not None:
            s += ", bias=True"
        if not self.affine:
            s += ", affine=False"
        if not self.bn:
            s += ", bn=False"
        return s
