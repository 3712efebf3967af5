"""Large-kernel depthwise 3D convolution on the fastest exact path for the device and shape.

Two paths compute the same 'same'-padded depthwise cross-correlation as ``F.conv3d(x, w, b,
padding=k // 2, groups=C)``:

- ``direct``: ``F.conv3d`` (oneDNN on CPU, cuDNN on CUDA); best for small kernels;
- ``fft``: ``torch.fft`` over the three spatial axes (the kernel flipped, the full linear
  convolution cropped back to the input's size); its cost hardly grows with the kernel, so it
  wins for 21^3 (measured 3.2x on 2 CPU cores for a [1, 48, 48^3] input), loses for 7^3.

Both are differentiable. ``auto`` (the default) times both once per (device, dtype, kernel,
input shape) on the first call of that shape, returns the direct result of that call, and keeps
the faster path for the rest of the process; kernels below ``FFT_MIN_KERNEL`` run direct. When a
gradient will be taken on the CPU, ``auto`` takes the FFT for every kernel from ``CPU_TRAIN_MIN_KERNEL``
up without measuring: the CPU's direct depthwise backward is the slow part of training there
(measured on 2 cores, [1, 48, 48^3], forward + backward: 7^3 7.6 s direct vs 0.34 s FFT, 21^3 224 s
vs 0.83 s), and measuring it once would cost that much. ``LKSEG_DWCONV=direct|fft|auto`` forces a path.
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

#: kernels smaller than this never try the FFT path in inference (it cannot win there)
FFT_MIN_KERNEL = 11
#: from this kernel up, CPU training takes the FFT path (its backward is 20x+ faster than the direct one)
CPU_TRAIN_MIN_KERNEL = 5
PATHS = ("auto", "direct", "fft")
_chosen: dict[tuple, str] = {}


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
    spectrum = torch.fft.rfftn(x.to(compute), s=size, dim=dims) * torch.fft.rfftn(kernel.to(compute), s=size, dim=dims)
    full = torch.fft.irfftn(spectrum, s=size, dim=dims)
    p = k // 2
    out = full[..., p:p + spatial[0], p:p + spatial[1], p:p + spatial[2]]
    if bias is not None:
        out = out + bias.to(compute).view(1, -1, 1, 1, 1)
    return out.to(x.dtype).contiguous()


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv3d(x, weight, bias, padding=weight.shape[-1] // 2, groups=weight.shape[0])


def _timed(fn, *args) -> tuple[torch.Tensor, float]:
    sync = torch.cuda.synchronize if args[0].is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn(*args)
    sync()
    return out, time.perf_counter() - t0


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
    training = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if path == "fft" or (training and x.device.type == "cpu" and k >= CPU_TRAIN_MIN_KERNEL):
        return fft_depthwise_conv3d(x, weight, bias)
    if k < FFT_MIN_KERNEL:
        return _direct(x, weight, bias)
    key = (x.device.type, x.dtype, k, tuple(x.shape), torch.is_grad_enabled())
    choice = _chosen.get(key)
    if choice == "fft":
        return fft_depthwise_conv3d(x, weight, bias)
    if choice == "direct":
        return _direct(x, weight, bias)
    out, t_direct = _timed(_direct, x, weight, bias)
    with torch.no_grad():
        _, t_fft = _timed(fft_depthwise_conv3d, x, weight, bias)
    _chosen[key] = "fft" if t_fft < t_direct else "direct"
    return out


class DepthwiseConv3d(nn.Conv3d):
    """``nn.Conv3d(dim, dim, k, padding=k // 2, groups=dim)`` (same parameters, same state-dict keys) whose
    forward runs :func:`depthwise_conv3d`."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv3d(x, self.weight, self.bias)


def chosen_paths() -> dict[tuple, str]:
    """What ``auto`` picked so far: ``{(device, dtype, kernel, shape, grad): path}`` (for benchmarks)."""
    return dict(_chosen)
