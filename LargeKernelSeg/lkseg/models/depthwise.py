"""Large-kernel depthwise 3D convolution on the fastest exact path for the device and shape.

Three paths compute the same 'same'-padded depthwise cross-correlation as ``F.conv3d(x, w, b,
padding=k // 2, groups=C)``:

- ``direct``: ``F.conv3d`` (oneDNN on CPU, cuDNN on CUDA); best for small kernels;
- ``fft``: ``torch.fft`` over the three spatial axes (the kernel flipped, the full linear
  convolution cropped back to the input's size); its cost hardly grows with the kernel, so it
  wins for 21^3 (measured 3.2x on 2 CPU cores for a [1, 48, 48^3] input), loses for 7^3;
- ``triton`` (CUDA only; optional: Triton ships with CUDA builds of torch): banded tensor-core
  kernels for the forward and both gradients, :mod:`lkseg.models.triton_depthwise`.

All are differentiable. ``auto`` (the default) picks per (device, dtype, kernel, input shape,
gradient) and keeps the pick for the rest of the process (:func:`chosen_paths`):

- on the CPU it times direct and FFT once, on the first call of that shape, returns the direct
  result of that call, and keeps the faster; kernels below ``FFT_MIN_KERNEL`` run direct. When a
  gradient will be taken it takes the FFT for every kernel from ``CPU_TRAIN_MIN_KERNEL`` up without
  measuring: the CPU's direct depthwise backward is the slow part of training there (measured on 2
  cores, [1, 48, 48^3], forward + backward: 7^3 7.6 s direct vs 0.34 s FFT, 21^3 224 s vs 0.83 s),
  and measuring it once would cost that much. Triton is never tried on the CPU.
- on CUDA it times every available path once per key (after one untimed warm-up call that lets
  Triton compile and autotune and cuDNN choose its algorithm): the forward alone without a
  gradient, forward + backward with one. Where Triton is missing, or fails on this GPU (with a
  warning), it is skipped.

``LKSEG_DWCONV=direct|fft|triton|auto`` forces a path; ``triton`` without Triton, or on CPU tensors
outside Triton's interpreter, raises. :func:`depthwise_conv_bn_gelu` serves RepUX-Net's
conv -> BatchNorm -> GELU: on the Triton path in eval mode without gradients all three run in
one kernel.
"""

from __future__ import annotations

import os
import time
import warnings
from types import ModuleType

import torch
import torch.nn as nn
import torch.nn.functional as F

#: kernels smaller than this never try the FFT path in inference (it cannot win there)
FFT_MIN_KERNEL = 11
#: from this kernel up, CPU training takes the FFT path (its backward is 20x+ faster than the direct one)
CPU_TRAIN_MIN_KERNEL = 5
PATHS = ("auto", "direct", "fft", "triton")
_chosen: dict[tuple, str] = {}
_triton_module: list[ModuleType | None] = []  # the import attempt, made once


def triton_path() -> ModuleType | None:
    """:mod:`lkseg.models.triton_depthwise`, or None where Triton cannot be imported."""
    if not _triton_module:
        try:
            from lkseg.models import triton_depthwise
        except ImportError:
            triton_depthwise = None
        _triton_module.append(triton_depthwise)
    return _triton_module[0]


def _triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    module = triton_path()
    if module is None:
        raise RuntimeError("LKSEG_DWCONV=triton needs the triton package (CUDA builds of torch ship it; "
                           "`pip install triton` otherwise)")
    if not x.is_cuda and not module.INTERPRETED:
        raise RuntimeError("LKSEG_DWCONV=triton needs CUDA tensors: on the CPU Triton kernels run only in "
                           "Triton's interpreter (TRITON_INTERPRET=1), for tests")
    return module.depthwise_conv3d(x, weight, bias)


def _fast_size(n: int) -> int:
    """The smallest 2-3-5-smooth length >= n (FFT sizes pocketfft and cuFFT handle fastest)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def fft_depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, padding=k // 2, groups=C)`` for an odd cubic ``weight`` [C, 1, k, k, k], by FFT."""
    k = weight.shape[-1]
    spatial = x.shape[-3:]
    size = [_fast_size(n + k - 1) for n in spatial]
    dims = (-3, -2, -1)
    kernel = torch.flip(weight[:, 0], dims=dims)  # cross-correlation = convolution with the flipped kernel
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    # a channels-last input (CPU inference) is transformed channels-first, which pocketfft does faster, and
    # the result goes back channels-last so the layers after it keep their layout
    layout = (torch.channels_last_3d if x.dim() == 5 and not x.is_contiguous()
              and x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format)
    spectrum = torch.fft.rfftn(x.to(compute).contiguous(), s=size, dim=dims) * torch.fft.rfftn(kernel.to(compute), s=size, dim=dims)
    full = torch.fft.irfftn(spectrum, s=size, dim=dims)
    p = k // 2
    out = full[..., p:p + spatial[0], p:p + spatial[1], p:p + spatial[2]]
    if bias is not None:
        out = out + bias.to(compute).view(1, -1, 1, 1, 1)
    return out.to(x.dtype).contiguous(memory_format=layout)


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv3d(x, weight, bias, padding=weight.shape[-1] // 2, groups=weight.shape[0])


def _timed(fn, *args) -> tuple[torch.Tensor, float]:
    sync = torch.cuda.synchronize if args[0].is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn(*args)
    sync()
    return out, time.perf_counter() - t0


def _cost(fn, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, training: bool) -> float:
    """Seconds of one call of ``fn`` (forward, or forward + backward when ``training``) after a warm-up
    call, on detached copies: the caller's autograd graph is left alone."""
    leaves = [t.detach().requires_grad_(t.requires_grad) if t is not None else None for t in (x, weight, bias)]
    probe = torch.randn_like(x) if training else None

    def run(*args):
        if not training:
            with torch.no_grad():
                return fn(*args)
        out = fn(*args)
        out.backward(probe.to(out.dtype))
        return out

    run(*leaves)
    return min(_timed(run, *leaves)[1] for _ in range(2))


def _measure_cuda(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, training: bool) -> str:
    """The fastest of direct, FFT and (where it imports and runs here) Triton for this call's shape."""
    candidates = {"direct": _direct, "fft": fft_depthwise_conv3d}
    if triton_path() is not None:
        candidates["triton"] = triton_path().depthwise_conv3d
    costs = {}
    for name, fn in candidates.items():
        try:
            costs[name] = _cost(fn, x, weight, bias, training)
        except Exception as error:  # Triton on a GPU or driver it does not support: the other paths remain
            if name != "triton":
                raise
            warnings.warn(f"the automatic depthwise conv skips Triton, which failed here: {error}", stacklevel=3)
    return min(costs, key=costs.get)


def _effective_dtype(x: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _key(x: torch.Tensor, k: int, training: bool) -> tuple:
    return (str(x.device), _effective_dtype(x), k, tuple(x.shape), training)


_PATH = {"direct": _direct, "fft": fft_depthwise_conv3d, "triton": _triton}


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     path: str | None = None) -> torch.Tensor:
    """Depthwise 'same' conv of ``x`` [B, C, D, H, W] with ``weight`` [C, 1, k, k, k] on the chosen path."""
    path = path or os.environ.get("LKSEG_DWCONV", "auto")
    if path not in PATHS:
        raise ValueError(f"LKSEG_DWCONV must be one of {', '.join(PATHS)}, got {path!r}")
    k = weight.shape[-1]
    cubic_odd = weight.shape[-3:] == (k, k, k) and k % 2 == 1 and weight.shape[1] == 1 and weight.shape[0] == x.shape[1]
    if path == "direct" or not cubic_odd:
        return _direct(x, weight, bias)
    if path != "auto":
        return _PATH[path](x, weight, bias)
    training = _needs_grad(x, weight, bias)
    key = _key(x, k, training)
    if x.is_cuda:
        if key not in _chosen:
            _chosen[key] = _measure_cuda(x, weight, bias, training)
        return _PATH[_chosen[key]](x, weight, bias)
    if training and k >= CPU_TRAIN_MIN_KERNEL:
        return fft_depthwise_conv3d(x, weight, bias)
    if k < FFT_MIN_KERNEL:
        return _direct(x, weight, bias)
    choice = _chosen.get(key)
    if choice is not None:
        return _PATH[choice](x, weight, bias)
    out, t_direct = _timed(_direct, x, weight, bias)
    with torch.no_grad():
        _, t_fft = _timed(fft_depthwise_conv3d, x, weight, bias)
    _chosen[key] = "fft" if t_fft < t_direct else "direct"
    return out


def depthwise_conv_bn_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm3d,
                           act: nn.Module | None = None, path: str | None = None) -> torch.Tensor:
    """``act(bn(depthwise_conv3d(x, weight, bias)))`` (``act`` defaults to ``nn.GELU()``), RepUX-Net's block.

    In one Triton kernel (the BatchNorm folded into the conv, the GELU in its epilogue) when the
    path is Triton (forced, or what ``auto`` measured for this shape without a gradient), ``bn`` is
    in eval mode, ``act`` is the exact GELU and no gradient is needed; otherwise the three in turn.
    """
    act = act if act is not None else nn.GELU()
    path = path or os.environ.get("LKSEG_DWCONV", "auto")
    k = weight.shape[-1]
    fusable = (not bn.training and bn.track_running_stats and isinstance(act, nn.GELU) and act.approximate == "none"
               and not _needs_grad(x, weight, bias, bn.weight, bn.bias) and k % 2 == 1
               and weight.shape == (x.shape[1], 1, k, k, k))
    if fusable and (path == "triton" or (path == "auto" and x.is_cuda and _chosen.get(_key(x, k, False)) == "triton")):
        module = triton_path()
        if module is not None and (x.is_cuda or module.INTERPRETED):
            return module.conv_bn_gelu(x, weight, bias, bn)
    return act(bn(depthwise_conv3d(x, weight, bias, path)))


class DepthwiseConv3d(nn.Conv3d):
    """``nn.Conv3d(dim, dim, k, padding=k // 2, groups=dim)`` (same parameters, same state-dict keys) whose
    forward runs :func:`depthwise_conv3d`."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv3d(x, self.weight, self.bias)


def chosen_paths() -> dict[tuple, str]:
    """What ``auto`` picked so far: ``{(device, dtype, kernel, shape, gradient): path}`` (for benchmarks);
    ``device`` is ``str(x.device)``, ``dtype`` the one autocast computes in."""
    return dict(_chosen)
