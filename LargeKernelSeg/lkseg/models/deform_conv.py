"""Depthwise deformable 3D convolution in pure PyTorch (no compiled extension).

3D DeformUX-Net (Lee et al., "DeformUX-Net: Exploring a 3D Foundation Backbone for Medical Image
Segmentation with Depthwise Deformable Convolution", arXiv:2310.00199, 2023) replaces the depthwise
convolution of 3D UX-Net by a deformable one (deformable convolution: Dai et al., ICCV 2017). The official code
uses a compiled CUDA/C++ operator (``D3D``); this module computes the same thing with
:func:`torch.nn.functional.grid_sample`, so it runs on any device and autograd gives all
gradients (input, weight, bias and offsets).

Semantics (those of the official operator):

* output voxel ``o`` (per axis) and kernel tap ``t`` sample the input at
  ``o * stride - padding + t * dilation + offset`` (voxel coordinates, d/h/w order);
* the offset tensor has ``3 * k_d * k_h * k_w`` channels; channel ``3 * n + a`` is the offset of
  tap ``n = (i * k_h + j) * k_w + l`` along axis ``a`` (0 = depth, 1 = height, 2 = width);
  one offset group is shared by all channels;
* sampling is trilinear, corners outside the volume count as zero (``grid_sample`` with
  ``padding_mode="zeros"`` and voxel-centre coordinates, i.e. ``align_corners=True`` semantics);
* every channel has its own kernel (groups = channels, weight shape ``[C, 1, kd, kh, kw]``).

The voxel coordinates are converted for ``grid_sample(align_corners=False)`` as
``g = (2 x + 1) / size - 1``; this samples exactly the same points as the ``align_corners=True``
mapping ``g = 2 x / (size - 1) - 1`` but stays correct for axes of size 1 (where the latter
divides by zero and would map every coordinate onto voxel 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["deform_conv3d_depthwise", "DeformConvPack3d"]

#: kernel taps sampled per grid_sample call (bounds the temporary buffer)
TAP_CHUNK = 9


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"expected an int or 3 ints, got {v!r}")
    return t  # type: ignore[return-value]


def deform_conv3d_depthwise(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] = 0,
    dilation: int | tuple[int, int, int] = 1,
) -> torch.Tensor:
    """Depthwise deformable 3D convolution.

    Args:
        input: ``[N, C, D, H, W]``.
        offset: ``[N, 3 * kd * kh * kw, D_out, H_out, W_out]`` (see the module docstring).
        weight: ``[C, 1, kd, kh, kw]``.
        bias: ``[C]`` or ``None``.

    Returns:
        ``[N, C, D_out, H_out, W_out]`` with the usual convolution output size.
    """
    if input.dim() != 5:
        raise ValueError(f"input must be [N, C, D, H, W], got shape {tuple(input.shape)}")
    n, c, d, h, w = input.shape
    if weight.shape[0] != c or weight.shape[1] != 1 or weight.dim() != 5:
        raise ValueError(f"weight must be [{c}, 1, kd, kh, kw] for a depthwise conv, got {tuple(weight.shape)}")
    kd, kh, kw = weight.shape[2:]
    taps = kd * kh * kw
    sd, sh, sw = _triple(stride)
    pd, ph, pw = _triple(padding)
    dd, dh, dw = _triple(dilation)
    od = (d + 2 * pd - dd * (kd - 1) - 1) // sd + 1
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    expected = (n, 3 * taps, od, oh, ow)
    if tuple(offset.shape) != expected:
        raise ValueError(f"offset must have shape {expected}, got {tuple(offset.shape)}")

    dev = input.device
    # Sampling positions in at least float32 (half precision cannot address voxels of a 96^3 patch).
    dt = torch.float64 if input.dtype == torch.float64 else torch.float32
    # Regular sampling positions, [taps, od, oh, ow] per axis.
    base_d = (torch.arange(od, device=dev, dtype=dt) * sd - pd).view(1, od, 1, 1)
    base_h = (torch.arange(oh, device=dev, dtype=dt) * sh - ph).view(1, 1, oh, 1)
    base_w = (torch.arange(ow, device=dev, dtype=dt) * sw - pw).view(1, 1, 1, ow)
    ti, tj, tl = torch.meshgrid(
        torch.arange(kd, device=dev, dtype=dt) * dd,
        torch.arange(kh, device=dev, dtype=dt) * dh,
        torch.arange(kw, device=dev, dtype=dt) * dw,
        indexing="ij",
    )
    tap_d = ti.reshape(taps, 1, 1, 1)
    tap_h = tj.reshape(taps, 1, 1, 1)
    tap_w = tl.reshape(taps, 1, 1, 1)

    off = offset.view(n, taps, 3, od, oh, ow).to(dt)
    src = input.to(dt)  # no copy unless the input is half precision
    w_flat = weight.reshape(c, taps).to(dt)
    out: torch.Tensor | None = None
    # Taps are sampled in chunks so that peak memory stays near TAP_CHUNK x the output size.
    for start in range(0, taps, TAP_CHUNK):
        stop = min(start + TAP_CHUNK, taps)
        m = stop - start
        pos_d = base_d + tap_d[start:stop] + off[:, start:stop, 0]  # [N, m, od, oh, ow]
        pos_h = base_h + tap_h[start:stop] + off[:, start:stop, 1]
        pos_w = base_w + tap_w[start:stop] + off[:, start:stop, 2]
        # Voxel coordinate -> grid_sample(align_corners=False) coordinate (exact, see module docstring).
        grid = torch.stack(
            ((2 * pos_w + 1) / w - 1, (2 * pos_h + 1) / h - 1, (2 * pos_d + 1) / d - 1), dim=-1
        )  # [N, m, od, oh, ow, 3], last axis x/y/z = w/h/d
        sampled = F.grid_sample(src, grid.view(n, m * od, oh, ow, 3), mode="bilinear",
                                padding_mode="zeros", align_corners=False)
        part = torch.einsum("nctdhw,ct->ncdhw", sampled.view(n, c, m, od, oh, ow), w_flat[:, start:stop])
        out = part if out is None else out + part
    assert out is not None
    if bias is not None:
        out = out + bias.view(1, c, 1, 1, 1).to(out.dtype)
    return out.to(input.dtype)


class DeformConvPack3d(nn.Module):
    """Depthwise deformable 3D conv whose offsets come from a 1x1x1 conv on its own input.

    State-dict keys equal the official ``DeformConvPack``: ``weight`` ``[C, 1, k, k, k]``,
    ``bias`` ``[C]``, ``conv_offset.weight`` ``[3 k^3, C, 1, 1, 1]``, ``conv_offset.bias``.
    The offset conv starts at zero, so a fresh module is an ordinary depthwise convolution.
    (The official module declares ``lr_mult = 0.1`` on the offset conv, but nothing reads it.)

    Deviation from the official code, on purpose: the official offset conv is built with the
    deformable conv's padding (``k // 2``), so its 1x1x1 output is ``2 * (k // 2)`` voxels larger
    per axis than the deformable conv's output, and the CUDA operator then reads that larger
    buffer as if it were output-sized (flat indexing), pairing output voxels with offsets
    computed at other positions. Here the 1x1x1 offset conv is unpadded, which equals cropping
    the padded map to its centre (the padded border only ever holds the bias), so the offset
    used at an output voxel is predicted from the input voxel at that position. The parameter
    count and state-dict shapes are unchanged, and with zero offsets (the initial state) both
    behave identically.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None,
                 dilation: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.padding = _triple(kernel_size // 2 if padding is None else padding)
        self.dilation = _triple(dilation)
        self.weight = nn.Parameter(torch.empty(channels, 1, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        taps = self.kernel_size[0] * self.kernel_size[1] * self.kernel_size[2]
        self.conv_offset = nn.Conv3d(channels, 3 * taps, kernel_size=1, stride=self.stride, padding=0, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as nn.Conv3d (and the official module).
        if self.weight.is_meta:
            return
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.conv_offset(x)
        return deform_conv3d_depthwise(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}")
