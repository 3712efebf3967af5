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

- on the CPU, without a gradient, kernels below ``FFT_MIN_KERNEL`` run direct; larger ones are first
  cropped to the taps that can reach the input (:func:`within_reach`), then take the FFT when the
  conv is large (``CPU_MEASURE_MAX_WORK``), else direct and FFT are timed once, on the first call of
  that shape, which returns the direct result, and the faster is kept. When a
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

import math
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
#: CPU inference measures direct against FFT only up to this many voxel-taps per channel; above it the
#: FFT is taken unmeasured (it won every such shape here: 21^3 on 12^3 3.1x, on 24^3 4.1x, on 48^3 7.7x
#: in bfloat16), because oneDNN keeps the scratchpad of a large direct depthwise conv for the rest of the
#: process (340 MB after one 21^3 conv on [1, 48, 48^3]): measuring once would cost that much memory
CPU_MEASURE_MAX_WORK = 10_000_000
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


#: the FFT path transforms this many bytes of spectrum at a time (channels are independent): on a
#: [1, 48, 48^3] input with a 21^3 kernel, all channels at once peaked 285 MB above the input, chunks
#: of 8 channels 147 MB, and ran faster (0.17 s vs 0.27 s on 2 cores)
FFT_CHUNK_BYTES = 16 * 2**20


def fft_depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, padding=k // 2, groups=C)`` for an odd cubic ``weight`` [C, 1, k, k, k], by FFT,
    a few channels at a time (:data:`FFT_CHUNK_BYTES`)."""
    size = [_fast_size(n + k - 1) for n, k in zip(x.shape[-3:], weight.shape[-3:])]
    per_channel = x.shape[0] * size[0] * size[1] * (size[2] // 2 + 1) * 8  # complex64 spectrum bytes
    step = max(1, FFT_CHUNK_BYTES // per_channel)
    # a channels-last input (CPU inference) is transformed channels-first, which pocketfft does faster, and
    # the result goes back channels-last so the layers after it keep their layout
    layout = (torch.channels_last_3d if x.dim() == 5 and not x.is_contiguous()
              and x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format)
    if x.shape[1] <= step:
        out = _fft_depthwise(x, weight, bias)
    else:
        out = torch.cat([_fft_depthwise(x[:, c:c + step], weight[c:c + step], None if bias is None else bias[c:c + step])
                         for c in range(0, x.shape[1], step)], dim=1)
    return out.contiguous(memory_format=layout)


def _fft_depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    spatial, ks = x.shape[-3:], weight.shape[-3:]
    size = [_fast_size(n + k - 1) for n, k in zip(spatial, ks)]
    dims = (-3, -2, -1)
    kernel = torch.flip(weight[:, 0], dims=dims)  # cross-correlation = convolution with the flipped kernel
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    spectrum = torch.fft.rfftn(x.to(compute).contiguous(), s=size, dim=dims) * torch.fft.rfftn(kernel.to(compute), s=size, dim=dims)
    full = torch.fft.irfftn(spectrum, s=size, dim=dims)
    p = [k // 2 for k in ks]
    out = full[..., p[0]:p[0] + spatial[0], p[1]:p[1] + spatial[1], p[2]:p[2] + spatial[2]]
    if bias is not None:
        out = out + bias.to(compute).view(1, -1, 1, 1, 1)
    return out.to(x.dtype).contiguous()


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv3d(x, weight, bias, padding=tuple(k // 2 for k in weight.shape[-3:]), groups=weight.shape[0])


def within_reach(weight: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """``weight`` [C, 1, *k] cropped to the taps a 'same' conv over ``spatial`` can ever reach: along an axis
    of n voxels only the central 2n - 1 taps meet the input, the others only its zero padding (exact; a
    21^3 kernel on RepUX-Net's last 6^3 stage needs 11^3 of its taps)."""
    keep = [min(k, 2 * n - 1) for k, n in zip(weight.shape[-3:], spatial)]
    if keep == list(weight.shape[-3:]):
        return weight
    lo = [(k - c) // 2 for k, c in zip(weight.shape[-3:], keep)]
    return weight[..., lo[0]:lo[0] + keep[0], lo[1]:lo[1] + keep[1], lo[2]:lo[2] + keep[2]]


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
    weight = within_reach(weight, tuple(x.shape[-3:]))
    if max(weight.shape[-3:]) < FFT_MIN_KERNEL:
        return _direct(x, weight, bias)
    if math.prod(x.shape[-3:]) * math.prod(weight.shape[-3:]) > CPU_MEASURE_MAX_WORK:
        return fft_depthwise_conv3d(x, weight, bias)
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
