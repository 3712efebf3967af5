"""Depthwise deformable 3D convolution in pure PyTorch, with a fused Triton kernel on CUDA.

3D DeformUX-Net (Lee et al., "DeformUX-Net: Exploring a 3D Foundation Backbone for Medical Image
Segmentation with Depthwise Deformable Convolution", arXiv:2310.00199, 2023) replaces the depthwise
convolution of 3D UX-Net by a deformable one (deformable convolution: Dai et al., ICCV 2017). The
official code uses a compiled CUDA/C++ operator (``D3D``); this module computes the same thing with
:func:`torch.nn.functional.grid_sample`, so it runs on any device and autograd gives all
gradients (input, weight, bias and offsets). On CUDA, when Triton is importable, a fused kernel
(:mod:`lkseg.models.triton_deform`) computes the same outputs and gradients;
``LKSEG_DEFORM=grid_sample|triton|auto`` forces a path (``auto``, the default: Triton for CUDA
tensors when it is installed, ``grid_sample`` otherwise).

Semantics (those of the official operator):

* output voxel ``o`` (per axis) and kernel tap ``t`` sample the input at
  ``o * stride - padding + t * dilation + offset`` (voxel coordinates, d/h/w order);
* the offset tensor has ``3 * k_d * k_h * k_w`` channels; channel ``3 * n + a`` is the offset of
  tap ``n = (i * k_h + j) * k_w + l`` along axis ``a`` (0 = depth, 1 = height, 2 = width);
  one offset group is shared by all channels;
* sampling is trilinear, corners outside the volume count as zero (``grid_sample`` with
  ``padding_mode="zeros"`` and voxel-centre coordinates, i.e. ``align_corners=True`` semantics);
* every channel has its own kernel (groups = channels, weight shape ``[C, 1, kd, kh, kw]``).

Offset layouts (``offset_layout`` of :class:`DeformConvPack3d`), see docs/deformuxnet_offsets.md:

* ``"native"``: the 1x1x1 offset conv is unpadded, so each output voxel uses the offsets
  predicted from the input voxel at its own position (the paper's meaning; lkseg's training);
* ``"official"``: the offset conv is padded by the deformable conv's padding, as in the official
  ``DeformConvPack``, and its larger map is read the way the official CUDA op reads it
  (:func:`official_offsets`), so that weights trained with the official code give its outputs.

The voxel coordinates are converted for ``grid_sample(align_corners=False)`` as
``g = (2 x + 1) / size - 1``; this samples exactly the same points as the ``align_corners=True``
mapping ``g = 2 x / (size - 1) - 1`` but stays correct for axes of size 1 (where the latter
divides by zero and would map every coordinate onto voxel 0).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from lkseg.errors import LkSegError

__all__ = ["deform_conv3d_depthwise", "grid_sample_deform_conv3d", "official_offsets", "DeformConvPack3d",
           "OFFSET_LAYOUTS", "OFFICIAL_IM2COL_STEP", "DEFORM_PATHS", "check_offset_layout"]

#: kernel taps sampled per grid_sample call (bounds the temporary buffer)
TAP_CHUNK = 9
#: ``native``: unpadded offset conv (ours); ``official``: padded conv read as the official op reads it
OFFSET_LAYOUTS = ("native", "official")
#: samples the official op processes per im2col call (``DeformConvPack``'s default ``im2col_step``)
OFFICIAL_IM2COL_STEP = 64
#: values of ``LKSEG_DEFORM``
DEFORM_PATHS = ("auto", "grid_sample", "triton")


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"expected an int or 3 ints, got {v!r}")
    return t  # type: ignore[return-value]


class DeformConfigError(LkSegError, ValueError):
    """A deformable-convolution setting that does not exist (offset layout, LKSEG_DEFORM path)."""


def check_offset_layout(layout: object) -> str:
    """``layout`` if it is one of :data:`OFFSET_LAYOUTS`; otherwise an error saying which to choose."""
    if layout not in OFFSET_LAYOUTS:
        raise DeformConfigError(
            f"offset_layout must be 'native' (weights trained with lkseg) or 'official' (weights imported from "
            f"MASILab/deform-uxnet with `lkseg import`), got {layout!r}")
    return str(layout)


def official_offsets(buffer: torch.Tensor, out_size: tuple[int, int, int],
                     im2col_step: int = OFFICIAL_IM2COL_STEP) -> torch.Tensor:
    """The ``[N, 3T, *out_size]`` offsets the official CUDA op reads from the (larger) map ``buffer``.

    The official op processes the batch in chunks of ``S = min(N, im2col_step)`` samples. Chunk
    ``q`` starts at ``q * S * P`` in the flat buffer (``P`` = values per sample of ``buffer``), but
    within a chunk sample ``r`` starts at ``r * 3T * V`` (``V`` = output voxels): it reads the buffer
    as if it were output-sized. So the offsets of one chunk are simply its first ``S * 3T * V``
    values in row-major order (a view when ``N <= im2col_step``). The official op refuses a batch
    above ``im2col_step`` that is not a multiple of it; here the last chunk is then shorter.
    """
    n, ch = buffer.shape[:2]
    per_sample = math.prod(buffer.shape[1:])
    need = ch * math.prod(out_size)
    if need > per_sample:
        raise ValueError(f"an offset map of shape {tuple(buffer.shape)} is smaller than the output "
                         f"{tuple(out_size)} it has to cover")
    if n == 0:
        return buffer.new_empty((0, ch, *out_size))
    step = max(1, min(n, int(im2col_step)))
    flat = buffer.reshape(-1)
    full = (n // step) * step
    parts = []
    if full:  # whole chunks at once: [chunks, S * P] -> first S * need values of each
        parts.append(flat[:full * per_sample].view(full // step, step * per_sample)[:, :step * need]
                     .reshape(full, ch, *out_size))
    if full < n:
        parts.append(flat[full * per_sample:full * per_sample + (n - full) * need].view(n - full, ch, *out_size))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _geometry(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, stride, padding, dilation):
    """Checked shapes: ``(stride, padding, dilation, (od, oh, ow))`` as triples."""
    if input.dim() != 5:
        raise ValueError(f"input must be [N, C, D, H, W], got shape {tuple(input.shape)}")
    n, c, d, h, w = input.shape
    if weight.dim() != 5 or weight.shape[0] != c or weight.shape[1] != 1:
        raise ValueError(f"weight must be [{c}, 1, kd, kh, kw] for a depthwise conv, got {tuple(weight.shape)}")
    k = tuple(weight.shape[2:])
    s, p, dl = _triple(stride), _triple(padding), _triple(dilation)
    out = tuple((size + 2 * p[a] - dl[a] * (k[a] - 1) - 1) // s[a] + 1 for a, size in enumerate((d, h, w)))
    expected = (n, 3 * math.prod(k), *out)
    if tuple(offset.shape) != expected:
        raise ValueError(f"offset must have shape {expected}, got {tuple(offset.shape)}")
    return s, p, dl, out


def _chosen_path(input: torch.Tensor, path: str | None) -> str:
    path = path or os.environ.get("LKSEG_DEFORM", "auto")
    if path not in DEFORM_PATHS:
        raise DeformConfigError(f"LKSEG_DEFORM must be one of {', '.join(DEFORM_PATHS)}, got {path!r}")
    if path == "grid_sample" or (path == "auto" and not input.is_cuda):
        return "grid_sample"
    from lkseg.models import triton_deform

    if path == "auto":
        return "triton" if triton_deform.available() else "grid_sample"
    if not triton_deform.available():
        raise DeformConfigError("LKSEG_DEFORM=triton needs Triton, which is not installed: install it "
                                "(pip install triton) or set LKSEG_DEFORM=grid_sample")
    if not input.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise DeformConfigError(f"LKSEG_DEFORM=triton runs on CUDA tensors (or on the CPU under Triton's "
                                f"interpreter, TRITON_INTERPRET=1); this input is on {input.device}: set "
                                "LKSEG_DEFORM=auto or grid_sample")
    return "triton"


def deform_conv3d_depthwise(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] = 0,
    dilation: int | tuple[int, int, int] = 1,
    path: str | None = None,
) -> torch.Tensor:
    """Depthwise deformable 3D convolution on the path ``path`` (default: ``LKSEG_DEFORM`` or ``auto``).

    Args:
        input: ``[N, C, D, H, W]``.
        offset: ``[N, 3 * kd * kh * kw, D_out, H_out, W_out]`` (see the module docstring).
        weight: ``[C, 1, kd, kh, kw]``.
        bias: ``[C]`` or ``None``.
        path: ``"grid_sample"``, ``"triton"`` (CUDA, or the CPU under ``TRITON_INTERPRET=1``) or ``"auto"``.

    Returns:
        ``[N, C, D_out, H_out, W_out]`` with the usual convolution output size.
    """
    stride, padding, dilation, _ = _geometry(input, offset, weight, stride, padding, dilation)
    if _chosen_path(input, path) == "triton":
        from lkseg.models import triton_deform

        return triton_deform.deform_conv3d_depthwise_triton(input, offset, weight, bias, stride, padding, dilation)
    return grid_sample_deform_conv3d(input, offset, weight, bias, stride, padding, dilation)


def grid_sample_deform_conv3d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                              bias: torch.Tensor | None = None, stride: int | tuple[int, int, int] = 1,
                              padding: int | tuple[int, int, int] = 0,
                              dilation: int | tuple[int, int, int] = 1) -> torch.Tensor:
    """:func:`deform_conv3d_depthwise` with ``grid_sample`` (any device; autograd gives the gradients)."""
    (sd, sh, sw), (pd, ph, pw), (dd, dh, dw), (od, oh, ow) = _geometry(input, offset, weight, stride, padding,
                                                                       dilation)
    n, c, d, h, w = input.shape
    kd, kh, kw = weight.shape[2:]
    taps = kd * kh * kw
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
    ``bias`` ``[C]``, ``conv_offset.weight`` ``[3 k^3, C, 1, 1, 1]``, ``conv_offset.bias``, in
    both offset layouts (the offset conv is 1x1x1: its padding changes no weight shape).
    The offset conv starts at zero, so a fresh module is an ordinary depthwise convolution.
    (The official module declares ``lr_mult = 0.1`` on the offset conv, but nothing reads it.)

    Args:
        channels: input and output channels (one kernel per channel).
        kernel_size: deformable kernel size.
        stride: stride of the deformable conv (and of the offset conv).
        padding: padding of the deformable conv (default ``kernel_size // 2``).
        dilation: dilation of the deformable conv.
        bias: learn a per-channel bias.
        offset_layout: ``"native"`` (default): unpadded offset conv, the offsets at an output voxel
            are predicted from the input voxel at that position. ``"official"``: the offset conv is
            padded as in the official code (its map is ``2 * padding`` voxels larger per axis) and
            read the way the official CUDA op reads it (:func:`official_offsets`), which pairs
            output voxels with offsets computed elsewhere, in the same or (batch > 1) another sample.
            With zero offsets (the initial state) both layouts give identical outputs.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None,
                 dilation: int = 1, bias: bool = True, offset_layout: str = "native") -> None:
        super().__init__()
        self.offset_layout = check_offset_layout(offset_layout)
        self.channels = channels
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.padding = _triple(kernel_size // 2 if padding is None else padding)
        self.dilation = _triple(dilation)
        self.weight = nn.Parameter(torch.empty(channels, 1, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        taps = self.kernel_size[0] * self.kernel_size[1] * self.kernel_size[2]
        offset_padding = self.padding if self.offset_layout == "official" else 0
        self.conv_offset = nn.Conv3d(channels, 3 * taps, kernel_size=1, stride=self.stride, padding=offset_padding,
                                     bias=True)
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

    def output_size(self, spatial: tuple[int, int, int]) -> tuple[int, int, int]:
        """Spatial output size of the deformable conv for an input of spatial size ``spatial``."""
        return tuple((size + 2 * p - dl * (k - 1) - 1) // s + 1 for size, p, dl, k, s in  # type: ignore[return-value]
                     zip(spatial, self.padding, self.dilation, self.kernel_size, self.stride))

    def offsets(self, x: torch.Tensor) -> torch.Tensor:
        """The ``[N, 3 k^3, *output]`` offsets this module samples ``x`` with (in its layout)."""
        offset = self.conv_offset(x)
        if self.offset_layout == "official":
            offset = official_offsets(offset, self.output_size(tuple(x.shape[2:])))
        return offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return deform_conv3d_depthwise(x, self.offsets(x), self.weight, self.bias, self.stride, self.padding,
                                       self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, offset_layout={self.offset_layout!r}")
