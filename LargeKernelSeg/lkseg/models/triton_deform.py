"""Fused depthwise deformable 3D convolution in Triton: forward and backward in one kernel each.

The operator of 3D DeformUX-Net (Lee et al., arXiv:2310.00199, 2023; deformable convolution: Dai
et al., ICCV 2017) with exactly the semantics of :func:`lkseg.models.deform_conv.grid_sample_deform_conv3d`
(positions ``o * stride - padding + tap * dilation + offset``, trilinear, corners outside the
volume are zero, one offset group, one kernel per channel). Where the ``grid_sample`` path builds
a ``[N, C, taps, *out]`` sample tensor and reduces it, the forward kernel keeps a
``[BLOCK_C, BLOCK_S]`` tile of output voxels in registers and gathers the eight corners of every
tap straight from the input, so nothing of the size ``taps x output`` is written. The backward
kernel recomputes the samples and produces all four gradients in one pass: the input's by
atomic adds at the corners (as the official ``col2im``), the offsets' as a sum over channels
(atomic over channel blocks), the weight's as per-tile partial sums reduced by PyTorch
(deterministic), the bias's by PyTorch.

Arithmetic is float32 (float64 for float64 inputs); half-precision inputs are read as such and
the output is written in the input's dtype, as the ``grid_sample`` path does. Offsets are read
through a ``[N, 3 * taps, *out]`` tensor, so both offset layouts of :mod:`lkseg.models.deform_conv`
work unchanged (the ``official`` one is a view of the padded offset map).

Triton is optional (CUDA builds of PyTorch bring it; the ``dev`` extra installs it for the tests,
which run the kernels on the CPU under ``TRITON_INTERPRET=1``). Without it, :func:`available`
is false and :mod:`lkseg.models.deform_conv` uses ``grid_sample``. This module imports nothing
else from lkseg, so the dispatcher may import it lazily.
"""

import contextlib

import torch

try:  # optional dependency: the kernels exist only where Triton does
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised by a test that hides Triton
    triton = None
    tl = None

__all__ = ["available", "deform_conv3d_depthwise_triton"]

#: output voxels and channels per program
BLOCK_S = 128
BLOCK_C = 16


def available() -> bool:
    """Whether Triton could be imported (the kernels exist)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _tap_position(off_base, t, vol_out, s, s_ok, od, oh, ow, SD, SH, SW, PD, PH, PW, DD, DH, DW,
                      KH: tl.constexpr, KW: tl.constexpr, CDT: tl.constexpr):
        """Sampling position of tap ``t`` at output voxels ``s``: the lower corner (d0, h0, w0) of its
        trilinear cell and the fractions (fd, fh, fw) past it."""
        i = t // (KH * KW)
        j = (t // KW) % KH
        k = t % KW
        off_d = tl.load(off_base + (3 * t) * vol_out + s, mask=s_ok, other=0.0).to(CDT)
        off_h = tl.load(off_base + (3 * t + 1) * vol_out + s, mask=s_ok, other=0.0).to(CDT)
        off_w = tl.load(off_base + (3 * t + 2) * vol_out + s, mask=s_ok, other=0.0).to(CDT)
        pd = (od * SD - PD + i * DD).to(CDT) + off_d
        ph = (oh * SH - PH + j * DH).to(CDT) + off_h
        pw = (ow * SW - PW + k * DW).to(CDT) + off_w
        d0f = tl.floor(pd)
        h0f = tl.floor(ph)
        w0f = tl.floor(pw)
        return d0f.to(tl.int32), h0f.to(tl.int32), w0f.to(tl.int32), pd - d0f, ph - h0f, pw - w0f

    @triton.jit
    def _corner(corner, d0, h0, w0, fd, fh, fw, s_ok, D, H, W):
        """Corner ``corner`` (0-7) of each voxel's trilinear cell: its flat input index (0 outside the
        input), whether it lies inside, its trilinear factors along d, h, w and their derivatives
        along the sampling position."""
        dz = corner // 4
        dy = (corner // 2) % 2
        dx = corner % 2
        z = d0 + dz
        y = h0 + dy
        x = w0 + dx
        ok = s_ok & (z >= 0) & (z < D) & (y >= 0) & (y < H) & (x >= 0) & (x < W)
        idx = tl.where(ok, (z * H + y) * W + x, 0)
        return (idx, ok, fd * dz + (1.0 - fd) * (1 - dz), fh * dy + (1.0 - fh) * (1 - dy),
                fw * dx + (1.0 - fw) * (1 - dx), 2.0 * dz - 1.0, 2.0 * dy - 1.0, 2.0 * dx - 1.0)

    @triton.jit
    def _tile(pid_s, vol_out, OH, OW, C, BC: tl.constexpr, BS: tl.constexpr):
        """This program's output voxels (flat index, in-range mask, d/h/w) and channels (index, mask)."""
        s = pid_s * BS + tl.arange(0, BS)
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        return s, s < vol_out, s // (OW * OH), (s // OW) % OH, s % OW, c, c < C

    @triton.jit
    def _deform_fwd_kernel(x_ptr, off_ptr, w_ptr, b_ptr, out_ptr,
                           C, D, H, W, OD, OH, OW, SD, SH, SW, PD, PH, PW, DD, DH, DW,
                           KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr,
                           CDT: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr):
        TAPS: tl.constexpr = KD * KH * KW
        pid_s = tl.program_id(0)
        n = tl.program_id(2).to(tl.int64)
        vol_out = OD * OH * OW
        vol_in = D * H * W
        s, s_ok, od, oh, ow, c, c_ok = _tile(pid_s, vol_out, OH, OW, C, BC, BS)
        rows = (n * C + c.to(tl.int64)) * vol_in  # [BC] start of each channel's volume
        off_base = off_ptr + n * (3 * TAPS) * vol_out
        acc = tl.zeros((BC, BS), dtype=CDT)
        for t in tl.static_range(TAPS):
            d0, h0, w0, fd, fh, fw = _tap_position(off_base, t, vol_out, s, s_ok, od, oh, ow, SD, SH, SW,
                                                   PD, PH, PW, DD, DH, DW, KH, KW, CDT)
            val = tl.zeros((BC, BS), dtype=CDT)
            for corner in tl.static_range(8):
                idx, ok, a_d, a_h, a_w, _, _, _ = _corner(corner, d0, h0, w0, fd, fh, fw, s_ok, D, H, W)
                v = tl.load(x_ptr + rows[:, None] + idx[None, :], mask=c_ok[:, None] & ok[None, :], other=0.0)
                val += (a_d * a_h * a_w)[None, :] * v.to(CDT)
            wt = tl.load(w_ptr + c * TAPS + t, mask=c_ok, other=0.0).to(CDT)
            acc += wt[:, None] * val
        if HAS_BIAS:
            acc += tl.load(b_ptr + c, mask=c_ok, other=0.0).to(CDT)[:, None]
        out_rows = (n * C + c.to(tl.int64)) * vol_out
        tl.store(out_ptr + out_rows[:, None] + s[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=c_ok[:, None] & s_ok[None, :])

    @triton.jit
    def _deform_bwd_kernel(x_ptr, off_ptr, w_ptr, go_ptr, gx_ptr, goff_ptr, gw_ptr,
                           C, D, H, W, OD, OH, OW, SD, SH, SW, PD, PH, PW, DD, DH, DW,
                           KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                           CDT: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr):
        TAPS: tl.constexpr = KD * KH * KW
        pid_s = tl.program_id(0)
        n = tl.program_id(2).to(tl.int64)
        vol_out = OD * OH * OW
        vol_in = D * H * W
        s, s_ok, od, oh, ow, c, c_ok = _tile(pid_s, vol_out, OH, OW, C, BC, BS)
        tile_ok = c_ok[:, None] & s_ok[None, :]
        rows = (n * C + c.to(tl.int64)) * vol_in
        off_base = off_ptr + n * (3 * TAPS) * vol_out
        goff_base = goff_ptr + n * (3 * TAPS) * vol_out
        go = tl.load(go_ptr + ((n * C + c.to(tl.int64)) * vol_out)[:, None] + s[None, :], mask=tile_ok,
                     other=0.0).to(CDT)
        # this tile's row of the per-tile weight-gradient partials [N * S-blocks, C, TAPS]
        gw_row = gw_ptr + ((n * tl.num_programs(0) + pid_s) * C + c) * TAPS
        for t in tl.static_range(TAPS):
            d0, h0, w0, fd, fh, fw = _tap_position(off_base, t, vol_out, s, s_ok, od, oh, ow, SD, SH, SW,
                                                   PD, PH, PW, DD, DH, DW, KH, KW, CDT)
            wt = tl.load(w_ptr + c * TAPS + t, mask=c_ok, other=0.0).to(CDT)
            g = go * wt[:, None]  # d loss / d sample
            val = tl.zeros((BC, BS), dtype=CDT)
            grad_d = tl.zeros((BC, BS), dtype=CDT)
            grad_h = tl.zeros((BC, BS), dtype=CDT)
            grad_w = tl.zeros((BC, BS), dtype=CDT)
            for corner in tl.static_range(8):
                idx, ok, a_d, a_h, a_w, sd, sh, sw = _corner(corner, d0, h0, w0, fd, fh, fw, s_ok, D, H, W)
                m = c_ok[:, None] & ok[None, :]
                v = tl.load(x_ptr + rows[:, None] + idx[None, :], mask=m, other=0.0).to(CDT)
                val += (a_d * a_h * a_w)[None, :] * v
                grad_d += (sd * a_h * a_w)[None, :] * v
                grad_h += (a_d * sh * a_w)[None, :] * v
                grad_w += (a_d * a_h * sw)[None, :] * v
                tl.atomic_add(gx_ptr + rows[:, None] + idx[None, :], g * (a_d * a_h * a_w)[None, :], mask=m)
            tl.atomic_add(goff_base + (3 * t) * vol_out + s, tl.sum(g * grad_d, axis=0), mask=s_ok)
            tl.atomic_add(goff_base + (3 * t + 1) * vol_out + s, tl.sum(g * grad_h, axis=0), mask=s_ok)
            tl.atomic_add(goff_base + (3 * t + 2) * vol_out + s, tl.sum(g * grad_w, axis=0), mask=s_ok)
            tl.store(gw_row + t, tl.sum(go * val, axis=1), mask=c_ok)


def _launch_geometry(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation):
    n, c, d, h, w = x.shape
    k = tuple(int(v) for v in weight.shape[2:])
    out = tuple((size + 2 * padding[a] - dilation[a] * (k[a] - 1) - 1) // stride[a] + 1
                for a, size in enumerate((d, h, w)))
    vol_out = out[0] * out[1] * out[2]
    block_c = min(BLOCK_C, triton.next_power_of_2(c))
    grid = (triton.cdiv(vol_out, BLOCK_S), triton.cdiv(c, block_c), n)
    scalars = (c, d, h, w, *out, *stride, *padding, *dilation)
    compute = tl.float64 if x.dtype == torch.float64 else tl.float32
    return k, out, grid, scalars, dict(KD=k[0], KH=k[1], KW=k[2], CDT=compute, BC=block_c, BS=BLOCK_S)


class _DeformConvTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, offset, weight, bias, stride, padding, dilation):  # type: ignore[override]
        x, offset = x.contiguous(), offset.contiguous()
        w = weight.reshape(weight.shape[0], -1).contiguous()
        k, out_size, grid, scalars, meta = _launch_geometry(x, weight, stride, padding, dilation)
        out = torch.empty((x.shape[0], x.shape[1], *out_size), device=x.device, dtype=x.dtype)
        with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
            _deform_fwd_kernel[grid](x, offset, w, bias if bias is not None else w, out, *scalars,
                                     HAS_BIAS=bias is not None, **meta)
        ctx.save_for_backward(x, offset, weight)
        ctx.geometry = (stride, padding, dilation)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, offset, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        k, out_size, grid, scalars, meta = _launch_geometry(x, weight, stride, padding, dilation)
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        go = grad_out.contiguous()
        w = weight.reshape(weight.shape[0], -1).contiguous()
        grad_x = torch.zeros(x.shape, device=x.device, dtype=acc)
        grad_off = torch.zeros(offset.shape, device=x.device, dtype=acc)
        partial = torch.empty((x.shape[0] * grid[0], x.shape[1], w.shape[1]), device=x.device, dtype=acc)
        with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
            _deform_bwd_kernel[grid](x, offset, w, go, grad_x, grad_off, partial, *scalars, **meta)
        grad_w = partial.sum(0).view(weight.shape).to(weight.dtype)
        grad_b = None
        if ctx.bias_dtype is not None:
            grad_b = go.sum(dim=(0, 2, 3, 4), dtype=acc).to(ctx.bias_dtype)
        return grad_x.to(x.dtype), grad_off.to(offset.dtype), grad_w, grad_b, None, None, None


def deform_conv3d_depthwise_triton(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                                   bias: torch.Tensor | None, stride: tuple[int, int, int],
                                   padding: tuple[int, int, int], dilation: tuple[int, int, int]) -> torch.Tensor:
    """The fused kernels behind :func:`lkseg.models.deform_conv.deform_conv3d_depthwise` (shapes already
    checked there; ``stride``, ``padding``, ``dilation`` as triples). Differentiable in all four tensors."""
    if triton is None:
        raise RuntimeError("Triton is not installed")
    return _DeformConvTriton.apply(input, offset, weight, bias, tuple(stride), tuple(padding), tuple(dilation))
