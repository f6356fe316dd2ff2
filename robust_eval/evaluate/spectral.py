"""Spectral cell: exact singular values of every convolution layer as a linear operator.

Method (Sedghi, Gupta & Long, ICLR 2019, "The singular values of convolutional layers"): with
circular padding on an h x w input, a stride-1 conv is block-diagonalised by the 2-D DFT, so
its singular values are the union over the h*w frequencies f of svd(W_hat(f)), W_hat(f) the
C_out x C_in matrix of the kernel's DFT at f. Extensions used here (all exact for circular
padding):
- stride s (h, w divisible by s): subsampling folds the s*s aliases f = k + j*(h/s, w/s) onto
  output frequency k, so the blocks become (1/s) [W_hat(f_1) ... W_hat(f_{s*s})], C_out x s*s*C_in;
- groups: the operator is block-diagonal over groups -> union of the groups' singular values;
- dilation: the kernel is spread onto the dilated grid first; kernels larger than the grid wrap;
- a per-output-channel, per-frequency factor applied after the conv (BatchNorm's eval scale, a
  depthwise conv, ConvNorm's preconditioner) left-multiplies each block by a diagonal.
Caveat: real layers zero-pad. The zero-padded operator is a sub-block of a larger circular one,
so for stride 1 its spectral norm is bounded by the circular value on the (h+k-1) grid and, for
inputs much larger than the kernel, close to the value on the h grid reported here.

ConvNorm2d is analysed as its effective normalised operator: V(o, f) = (sum_i |W_hat(o,i,f)|^2)
^(-1/2) computed from the current weights on the same circular grid (running_V is an EMA of this
quantity on the zero-padded (h+k-1) grid, so it is not reused), times the conv; the "with norm"
value adds its depthwise affine conv (bpconv) and BatchNorm's eval scale. Plain convs report the
conv and, "with norm", the BatchNorm that consumes their output. Biases are offsets, not part of
the linear operator.

Rows: benchmark="spectral", metric="spectral_norm" | "spectral_norm_with_norm", n=0 (no
accuracy), and params = JSON {layer, layer_index, layer_type, value, input_size, stride, ...}.
Plain function for the job runner: `evaluate_spectral(model, input_size, base=..., device=...)`.
"""
from __future__ import annotations

import fnmatch
import json
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from robust_eval.evaluate import Benchmark, CellPlan, register_benchmark

METRICS = ("spectral_norm", "spectral_norm_with_norm")


def _pair(value) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _kernel_on_grid(weight: Tensor, grid: Tuple[int, int], dilation=(1, 1)) -> Tensor:
    """The kernel placed on an h x w torus (dilated, wrapped modulo the grid)."""
    c_out, c_in, kh, kw = weight.shape
    out = torch.zeros(c_out, c_in, grid[0], grid[1], dtype=weight.dtype, device=weight.device)
    for u in range(kh):
        for v in range(kw):
            out[:, :, (u * dilation[0]) % grid[0], (v * dilation[1]) % grid[1]] += weight[:, :, u, v]
    return out


def frequency_response(weight: Tensor, grid: Tuple[int, int], dilation=(1, 1),
                       dtype: torch.dtype = torch.float64) -> Tensor:
    """W_hat as (h, w, C_out, C_in) complex: the 2-D DFT of each kernel slice on the grid."""
    weight = weight.detach().to(dtype)
    return torch.fft.fft2(_kernel_on_grid(weight, grid, _pair(dilation))).permute(2, 3, 0, 1)


def _fold_stride(response: Tensor, stride: Tuple[int, int]) -> Tensor:
    """(h, w, Co, Ci) -> (h/s, w/s, Co, s_h*s_w*Ci) alias blocks of the subsampled operator."""
    h, w, c_out, c_in = response.shape
    sh, sw = stride
    if (sh, sw) == (1, 1):
        return response
    mh, mw = h // sh, w // sw
    blocks = response.reshape(sh, mh, sw, mw, c_out, c_in).permute(1, 3, 4, 0, 2, 5)
    return blocks.reshape(mh, mw, c_out, sh * sw * c_in) / (sh * sw) ** 0.5


def _strided_blocks(response: Tensor, stride) -> Tensor:
    """The per-frequency blocks of subsample_s . conv; the grid must hold whole alias groups."""
    stride = _pair(stride)
    h, w = response.shape[:2]
    if h % stride[0] or w % stride[1]:
        raise ValueError(f"grid {h}x{w} is not divisible by stride {stride}; the strided "
                         "operator's DFT blocks need whole alias groups")
    return _fold_stride(response, stride)


def operator_singular_values(response: Tensor, stride=(1, 1),
                             output_scale: Optional[Tensor] = None) -> Tensor:
    """All singular values of diag(output_scale) . subsample_s . conv (circular), descending.

    response: (h, w, Co, Ci) from `frequency_response`; output_scale: (Co,) or (h/s, w/s, Co)
    per-channel (per-frequency) factors applied to the layer output.
    """
    blocks = _strided_blocks(response, stride)
    if output_scale is not None:
        scale = output_scale.to(blocks.dtype)
        if scale.dim() == 1:
            scale = scale.view(1, 1, -1)
        blocks = blocks * scale.unsqueeze(-1)
    values = torch.linalg.svdvals(blocks).flatten()
    return torch.sort(values, descending=True).values


def operator_spectral_norms(response: Tensor, stride=(1, 1),
                            output_scales: Sequence[Optional[Tensor]] = (None,)) -> List[float]:
    """Largest singular value of diag(scale) . subsample_s . conv for each output scale.

    Much cheaper than all singular values (what the layer table needs): real kernels have
    W_hat(-f) = conj(W_hat(f)), so half of the frequency plane carries every distinct block; the
    top singular value of a block is the square root of the largest eigenvalue of its Gram
    matrix on the smaller side (Hermitian: eigvalsh, no SVD); an output-side Gram is computed
    once and rescaled for every output scale.
    """
    blocks = _strided_blocks(response, stride)
    half = blocks.shape[1] // 2 + 1
    blocks = blocks[:, :half]
    rows, cols = blocks.shape[-2:]
    output_gram = blocks @ blocks.mH if rows <= cols else None
    norms = []
    for scale in output_scales:
        if scale is not None:
            scale = scale.to(device=blocks.device, dtype=blocks.dtype)
            scale = scale.view(1, 1, -1) if scale.dim() == 1 else scale[:, :half]
        if output_gram is not None:
            gram = output_gram if scale is None else (
                output_gram * scale.unsqueeze(-1) * scale.conj().unsqueeze(-2))
        else:
            scaled = blocks if scale is None else blocks * scale.unsqueeze(-1)
            gram = scaled.mH @ scaled
        top = torch.linalg.eigvalsh(gram)[..., -1].max()
        norms.append(float(top.clamp_min(0).sqrt()))
    return norms


def conv_singular_values(weight: Tensor, input_size, stride=1, dilation=1, groups: int = 1,
                         output_scale: Optional[Tensor] = None) -> Tensor:
    """Exact singular values of a (circularly padded) conv layer on an input_size input."""
    grid = _pair(input_size)
    stride = _pair(stride)
    grid = (-(-grid[0] // stride[0]) * stride[0], -(-grid[1] // stride[1]) * stride[1])
    chunks = weight.chunk(groups, dim=0)
    out_per_group = weight.shape[0] // groups
    values = []
    for g, chunk in enumerate(chunks):
        scale = output_scale
        if scale is not None:
            scale = scale[..., g * out_per_group:(g + 1) * out_per_group]
        values.append(operator_singular_values(frequency_response(chunk, grid, dilation),
                                               stride, scale))
    return torch.sort(torch.cat(values), descending=True).values


def convnorm_preconditioner(response: Tensor, eps: float = 0.0) -> Tensor:
    """V(f, o) = (sum_i |W_hat(f, o, i)|^2)^(-1/2) on the response's grid; 0 for a zero filter."""
    energy = response.abs().square().sum(dim=-1)
    if eps > 0:
        energy = energy.clamp_min(eps)
    v = energy.rsqrt()
    return torch.where(torch.isfinite(v), v, torch.zeros_like(v))


def _batchnorm_scale(bn: nn.Module, channels: int, like: Tensor) -> Tensor:
    """Eval-mode per-channel gain gamma / sqrt(running_var + eps) (1 where it has no such part)."""
    scale = torch.ones(channels, dtype=like.dtype, device=like.device)
    if isinstance(bn, nn.modules.batchnorm._BatchNorm):
        if bn.running_var is not None:
            scale = scale / torch.sqrt(bn.running_var.detach().to(scale) + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach().to(scale)
    return scale


def _depthwise_response(conv: nn.Module, grid: Tuple[int, int], channels: int,
                        like: Tensor) -> Tensor:
    """|DFT| of a depthwise conv's kernels as (h, w, C) (ones for Identity)."""
    if not isinstance(conv, nn.Conv2d):
        return torch.ones(grid[0], grid[1], channels, dtype=like.dtype, device=like.device)
    kernel = conv.weight.detach().to(like)[:, 0]  # (C, k, k)
    placed = _kernel_on_grid(kernel.unsqueeze(1), grid, _pair(conv.dilation))[:, 0]
    return torch.fft.fft2(placed).abs().permute(1, 2, 0)


def is_convnorm(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("weight", "running_V", "bpconv", "batch_norm"))


def effective_weight(module: nn.Module) -> Tensor:
    """The kernel a conv applies (ONI-style layers expose `normalized_weight()`)."""
    if callable(getattr(module, "normalized_weight", None)):
        with torch.no_grad():
            return module.normalized_weight().detach()
    return module.weight.detach()


def find_conv_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """ConvNorm2d layers (as units) and dense nn.Conv2d layers not inside one, in model order."""
    layers, inside = [], []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        if is_convnorm(module):
            layers.append((name, module))
            inside.append(name)
        elif isinstance(module, nn.Conv2d):
            layers.append((name, module))
    return layers


def _trace(model: nn.Module, layers, input_size: Tuple[int, int], in_channels: int, device):
    """One eval forward: each layer's input size, and the BatchNorm consuming each conv output."""
    sizes: Dict[str, Tuple[int, int]] = {}
    outputs: Dict[int, str] = {}
    keep: List[Tensor] = []  # holds outputs alive so ids stay unique during the forward
    followers: Dict[str, nn.Module] = {}
    handles = []

    def conv_hook(name):
        def hook(module, inputs, output):
            sizes[name] = tuple(inputs[0].shape[-2:])
            outputs[id(output)] = name
            keep.append(output)
        return hook

    def bn_hook(module, inputs):
        source = outputs.get(id(inputs[0]))
        if source is not None and source not in followers:
            followers[source] = module

    for name, module in layers:
        handles.append(module.register_forward_hook(conv_hook(name)))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_pre_hook(bn_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.full((1, in_channels, *input_size), 0.5, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return sizes, followers


def _is_pointwise(module: nn.Module, weight: Tensor) -> bool:
    """1x1 kernel (and 1x1 affine part): the response is the same at every frequency."""
    if tuple(weight.shape[-2:]) != (1, 1):
        return False
    bpconv = getattr(module, "bpconv", None)
    return not isinstance(bpconv, nn.Conv2d) or tuple(bpconv.weight.shape[-2:]) == (1, 1)


def layer_spectral_norms(model: nn.Module, input_size, in_channels: int = 3, device="cpu",
                         layers: Optional[Sequence[str]] = None,
                         dtype: torch.dtype = torch.float32) -> List[Dict[str, Any]]:
    """Per conv layer: spectral norm of the conv operator and of conv + its norm layer.

    Computed on the weights' device in `dtype` (float32: ~1e-6 relative, plenty for a report).
    """
    input_size = _pair(input_size)
    found = find_conv_layers(model)
    if layers:
        found = [(n, m) for n, m in found if any(fnmatch.fnmatchcase(n, p) for p in layers)]
        if not found:
            raise ValueError(f"no conv layer matches {list(layers)}")
    sizes, followers = _trace(model, found, input_size, in_channels, device)
    names = {id(m): n for n, m in model.named_modules()}
    records = []
    for index, (name, module) in enumerate(found):
        if name not in sizes:
            continue  # not on the forward path
        weight = effective_weight(module).to(dtype)
        stride = _pair(module.stride)
        grid = sizes[name]
        grid = (-(-grid[0] // stride[0]) * stride[0], -(-grid[1] // stride[1]) * stride[1])
        record = {"layer": name, "layer_index": index, "input_size": list(sizes[name]),
                  "grid": list(grid), "stride": list(stride),
                  "kernel_size": list(weight.shape[-2:]), "in_channels": int(weight.shape[1]),
                  "out_channels": int(weight.shape[0])}
        if _is_pointwise(module, weight):
            # Every frequency (and, strided, every alias) carries the same C_out x C_in matrix.
            grid, stride = (1, 1), (1, 1)
        out_grid = (grid[0] // stride[0], grid[1] // stride[1])
        channels = weight.shape[0]
        if is_convnorm(module):
            response = frequency_response(weight, grid, dtype=dtype)
            v = convnorm_preconditioner(response, float(getattr(module, "eps", 0.0)))
            after = _depthwise_response(module.bpconv, out_grid, channels, weight) * \
                _batchnorm_scale(module.batch_norm, channels, weight)
            conv_norm, with_norm = operator_spectral_norms(response * v.unsqueeze(-1), stride,
                                                           [None, after])
            record.update(layer_type="convnorm", norm_layer=f"{name}.bpconv+batch_norm")
        else:
            groups, dilation = int(module.groups), _pair(module.dilation)
            follower = followers.get(name)
            scale = (_batchnorm_scale(follower, channels, weight) if follower is not None
                     else None)
            conv_norm, with_norm = 0.0, 0.0
            per_group = channels // groups
            for g, chunk in enumerate(weight.chunk(groups, dim=0)):
                part = None if scale is None else scale[g * per_group:(g + 1) * per_group]
                a, b = operator_spectral_norms(frequency_response(chunk, grid, dilation, dtype),
                                               stride, [None, part])
                conv_norm, with_norm = max(conv_norm, a), max(with_norm, b)
            record.update(layer_type=type(module).__name__,
                          norm_layer=names.get(id(follower)) if follower is not None else None)
        record["spectral_norm"] = conv_norm
        record["spectral_norm_with_norm"] = with_norm
        records.append(record)
    return records


def evaluate_spectral(model: nn.Module, input_size, *, base: Optional[Dict[str, Any]] = None,
                      in_channels: int = 3, device="cpu",
                      layers: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Schema rows (two metrics per layer) for the job runner; no argparse involved."""
    from robust_eval.schema import make_row

    start = time.time()
    records = layer_spectral_norms(model, input_size, in_channels, device, layers)
    seconds = (time.time() - start) / max(len(records), 1)
    rows = []
    for record in records:
        for metric in METRICS:
            params = {k: v for k, v in record.items() if k not in METRICS}
            params.update(value=record[metric], method="fft_circular")
            rows.append(make_row(correct=0, n=0, **(base or {}), benchmark="spectral",
                                 metric=metric, value=float(record[metric]), seconds=seconds,
                                 params=json.dumps(params, sort_keys=True)))
    if not rows:
        raise ValueError("the model has no convolution layer on its forward path")
    return rows


@register_benchmark
class Spectral(Benchmark):
    name = "spectral"
    fields = ("layers",)
    help = "spectral norm of every conv layer (with and without its norm), no accuracy"

    def precisions(self, options):
        return ("fp32",)  # reads the weights; no prediction to make faster

    def add_arguments(self, parser) -> None:
        parser.add_argument("--spectral-layers", nargs="+", default=None, metavar="PATTERN",
                            help="spectral: only conv layers whose names match these wildcards")

    def options_from_args(self, args, cli_name):
        raw = {"type": self.name}
        if args.spectral_layers:
            raw["layers"] = list(args.spectral_layers)
        return raw

    def parse(self, raw, check, path, job_seed):
        if "layers" not in raw:
            return {"layers": None}
        layers = check.sequence(raw["layers"], f"{path}.layers", allow_scalar=True)
        return {"layers": [check.string(v, f"{path}.layers[{i}]") for i, v in enumerate(layers)]}

    def expand(self, options, seed, dataset_kind=None):
        yield CellPlan({"layers": options["layers"]}, seed)

    def run(self, cell, ctx):
        """At the size and channels of the evaluation images (the size the model runs at)."""
        _, channels, height, width = ctx.data().images.shape
        records = layer_spectral_norms(ctx.model(guarded=False), (height, width), channels, ctx.device,
                                       cell["params"]["layers"])
        if not records:
            raise ValueError("the model has no convolution layer on its forward path")
        measurements = []
        for record in records:
            for metric in METRICS:
                details = {k: v for k, v in record.items() if k not in METRICS}
                details["method"] = "fft_circular"
                measurements.append({"correct": 0, "n": 0, "metric": metric,
                                     "value": float(record[metric]), "details": details})
        return measurements
