"""The Triton path of the depthwise 'same' 3D conv: launchers, autotuning, autograd, and the fused
BatchNorm(eval) + GELU epilogue of RepUX-Net blocks.

Importing this module imports Triton (optional: :mod:`lkseg.models.depthwise` imports it lazily
and only for the ``triton`` path). The kernels and their design are in
:mod:`lkseg.models.triton_kernels`.

On CUDA every launch goes through ``triton.autotune`` (a few block shapes, timed once per input
shape, kernel size and dtype). Under ``TRITON_INTERPRET=1`` (the CPU tests) the kernels run in
Triton's interpreter on CPU tensors with one fixed block shape, or the ``config`` a caller passes.

Functions:

- :func:`depthwise_conv3d`: ``F.conv3d(x, w, b, padding=k // 2, groups=C)``, differentiable
  (input, weight and bias gradients by Triton kernels: the input gradient is the same conv with
  the flipped kernel, the weight gradient a banded reduction, the bias gradient a torch sum);
- :func:`conv_bn_gelu`: ``gelu(bn(conv(x)))`` for a BatchNorm in eval mode, inference only: the
  BatchNorm folded into the conv's weight and bias (exact algebra, fp32) and the GELU applied to
  the accumulator before the store, so the conv's output is written once and never re-read.

Not fused: UX-Net's LayerNorm over channels after its 7^3 conv. It needs every channel of a voxel
in one program, while a depthwise conv shares nothing across channels and these kernels keep one
channel's [BD, BH*BW] accumulator at a time; a channel-complete tile (C = 48 to 384 in UX-Net)
would need C such accumulators, or a spatial tile so small that the band's reuse is lost. The
LayerNorm costs one read and one write of the activation, small beside the conv.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
from torch.autograd.function import once_differentiable

from lkseg.models.triton_kernels import (band_rows, conv_configs, conv_kernel, weight_grad_configs,
                                         weight_grad_kernel)

__all__ = ["INTERPRETED", "FP32_PRECISION", "depthwise_conv3d", "conv_bn_gelu", "fold_batchnorm"]

#: the kernels were defined under TRITON_INTERPRET=1: they take CPU tensors and run in Triton's interpreter
INTERPRETED: bool = type(conv_kernel).__name__ == "InterpretedFunction"
#: tl.dot precision for fp32 inputs on CUDA: three TF32 products (about fp32 accuracy), or "ieee" (FMAs)
FP32_PRECISION = "tf32x3"
#: the block shape used when interpreting (and no config is given)
INTERPRETER_CONFIG = {"BD": 16, "BH": 4, "BW": 16, "BC": 2}
_HALF = (torch.float16, torch.bfloat16)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(n)


def _fitting_configs(configs: list[triton.Config], nargs: dict, **kwargs) -> list[triton.Config]:
    """The autotuner's pruning: the configs whose band (KS input slices) stays within 128 for this kernel."""
    k = kwargs.get("K", nargs.get("K"))
    return [c for c in configs if band_rows(c.kwargs["BD"], k) <= 128] or configs[:1]


_conv_tuned = triton.autotune(configs=conv_configs(), key=["C", "D", "H", "W", "K"],
                              prune_configs_by={"early_config_prune": _fitting_configs})(
    triton.heuristics({"KS": lambda a: band_rows(a["BD"], a["K"])})(conv_kernel))

_wgrad_tuned = triton.autotune(configs=weight_grad_configs(), key=["C", "D", "H", "W", "K"])(
    triton.heuristics({"KS": lambda a: band_rows(a["BD"], a["K"]), "KP": lambda a: _pow2(a["K"])})(weight_grad_kernel))


def _check(x: torch.Tensor, weight: torch.Tensor) -> None:
    k = weight.shape[-1]
    if x.dim() != 5 or weight.shape != (x.shape[1], 1, k, k, k) or k % 2 == 0:
        raise ValueError(f"need x [N, C, D, H, W] and an odd cubic depthwise weight [C, 1, k, k, k]; "
                         f"got {tuple(x.shape)} and {tuple(weight.shape)}")
    if x.dtype not in (torch.float32, *_HALF):
        raise TypeError(f"the Triton depthwise conv takes float32, float16 or bfloat16, got {x.dtype}")
    if INTERPRETED == x.is_cuda:
        raise RuntimeError("the Triton depthwise conv needs a CUDA tensor" if not x.is_cuda else
                           "these Triton kernels were defined under TRITON_INTERPRET=1 and take CPU tensors")


def _precision(dtype: torch.dtype) -> dict:
    """The dot's precision (used for fp32 operands only; half operands take Triton's default), and
    whether to upcast half operands (the interpreter's bf16 dot is wrong, see triton_kernels)."""
    fp32 = "ieee" if INTERPRETED else FP32_PRECISION
    return {"PREC": fp32 if dtype == torch.float32 else "tf32", "UPCAST": INTERPRETED and dtype in _HALF}


def _pad_hw(x: torch.Tensor, p: int) -> torch.Tensor:
    return F.pad(x, (p, p, p, p)).contiguous()


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False,
          config: dict | None = None) -> torch.Tensor:
    """Launch :func:`conv_kernel`: ``x`` [N, C, D, H, W], ``weight`` [C, 1, k, k, k], ``bias`` [C] or None."""
    n, c, d, h, w = x.shape
    k = weight.shape[-1]
    xp = _pad_hw(x, k // 2)
    wt = weight[:, 0].permute(0, 2, 3, 1).to(x.dtype).contiguous()  # [C, b, j, a]: band loads read a contiguously
    b32 = bias.float().contiguous() if bias is not None else wt
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    meta = {"K": k, "HAS_BIAS": bias is not None, "GELU": gelu, **_precision(x.dtype)}
    args = (xp, wt, b32, y, c, d, h, w)
    def grid(m: dict) -> tuple[int, int, int]:
        return triton.cdiv(h, m["BH"]) * triton.cdiv(w, m["BW"]), triton.cdiv(d, m["BD"]), n * triton.cdiv(c, m["BC"])

    if config is None and not INTERPRETED:
        _conv_tuned[grid](*args, **meta)
        return y
    cfg = {**INTERPRETER_CONFIG, **(config or {})}
    launch = {key: cfg.pop(key) for key in ("num_warps", "num_stages") if key in cfg}
    conv_kernel[grid(cfg)](*args, **meta, **cfg, KS=band_rows(cfg["BD"], k), **launch)
    return y


def _split(x: torch.Tensor, k: int) -> int:
    """How many programs share the reduction of one (channel, b): enough for ~4 programs per multiprocessor."""
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 2
    n, c, d, h, w = x.shape
    fewest_iterations = n * triton.cdiv(d, 32) * triton.cdiv(h, 16) * triton.cdiv(w, 32)
    return max(1, min(fewest_iterations, triton.cdiv(4 * sms, c * k), 64))


def _weight_grad(x: torch.Tensor, g: torch.Tensor, k: int, config: dict | None = None) -> torch.Tensor:
    """dL/dweight [C, 1, k, k, k] (fp32) of the conv of ``x`` whose output gradient is ``g``."""
    n, c, d, h, w = x.shape
    xp = _pad_hw(x, k // 2)
    split = _split(x, k)
    part = torch.empty((split, c, k, k, k), dtype=torch.float32, device=x.device)  # [split, c, b, j, a]
    args = (xp, g, part, n, c, d, h, w, split)
    meta = {"K": k, **_precision(x.dtype)}
    if config is None and not INTERPRETED:
        _wgrad_tuned[(c * k, split)](*args, **meta)
    else:
        cfg = {key: v for key, v in {**INTERPRETER_CONFIG, **(config or {})}.items() if key != "BC"}
        launch = {key: cfg.pop(key) for key in ("num_warps", "num_stages") if key in cfg}
        weight_grad_kernel[(c * k, split)](*args, **meta, **cfg, KS=band_rows(cfg["BD"], k), KP=_pow2(k), **launch)
    return part.sum(0).permute(0, 3, 1, 2).unsqueeze(1)  # [C, 1, a, b, j]


class _DepthwiseConv(torch.autograd.Function):
    """Forward and backward of the depthwise conv, every tensor op but the bias gradient in Triton."""

    @staticmethod
    def forward(ctx, x, weight, bias, config):
        ctx.save_for_backward(x, weight)
        ctx.bias_dtype, ctx.config = None if bias is None else bias.dtype, config
        return _conv(x, weight, bias, config=config)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # correlation of the output gradient with the flipped kernel
            gx = _conv(grad, weight.flip((2, 3, 4)), None, config=ctx.config)
        if ctx.needs_input_grad[1]:
            gw = _weight_grad(x, grad, weight.shape[-1], ctx.config).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3, 4), dtype=torch.float32).to(ctx.bias_dtype)
        return gx, gw, gb, None


def _autocast(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cast as F.conv3d would under autocast; outside it the weight takes the input's dtype."""
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        return x.to(dtype), weight.to(dtype)
    return x, weight.to(x.dtype)


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     config: dict | None = None) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, padding=k // 2, groups=C)`` by Triton, differentiable.

    ``config`` (tests, benchmarks) fixes the block shape {BD, BH, BW, BC, num_warps, num_stages}
    instead of autotuning it.
    """
    _check(x, weight)
    x, weight = _autocast(x, weight)  # the bias stays as it is: the kernel adds it in fp32
    return _DepthwiseConv.apply(x.contiguous(), weight, bias, config)


@torch.no_grad()
def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None,
                   bn: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight', bias') in fp32 such that ``conv(x, weight', bias') == bn(conv(x, weight, bias))`` for
    ``bn`` in eval mode: scale = gamma / sqrt(running_var + eps), weight' = weight * scale,
    bias' = (bias - running_mean) * scale + beta."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("folding needs a BatchNorm with running statistics")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bias is not None:
        shift = shift + bias.double() * scale
    if bn.affine:
        scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
    return (weight.double() * scale.view(-1, 1, 1, 1, 1)).float(), shift.float()


def conv_bn_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm3d,
                 config: dict | None = None) -> torch.Tensor:
    """``gelu(bn(conv(x, weight, bias)))`` in one kernel, for ``bn`` in eval mode and no gradient."""
    _check(x, weight)
    if bn.training:
        raise RuntimeError("conv_bn_gelu folds the BatchNorm's running statistics: put it in eval mode")
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (x, weight, bias, bn.weight, bn.bias)):
        raise RuntimeError("conv_bn_gelu is inference-only (no backward): call it under torch.no_grad()")
    w, b = fold_batchnorm(weight, bias, bn)
    x, w = _autocast(x, w)
    return _conv(x.contiguous(), w, b, gelu=True, config=config)
