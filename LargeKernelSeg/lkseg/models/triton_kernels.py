"""Triton kernels of the depthwise 'same' 3D cross-correlation (odd cubic kernel, stride 1).

Only :mod:`lkseg.models.triton_depthwise` imports this module (lazily: Triton is optional). Both
kernels turn the depthwise stencil into tensor-core matrix products by banding the depth axis.

For one channel, a block of ``BD`` output depth slices and one ``BH x BW`` tile of (H, W) positions,
and one in-plane tap ``(b, j)``, the contributions of all ``k`` depth taps ``a`` are one product::

    out[dd, hw] += sum_s band[dd, s] * x[d0 - p + s, h + b - p, w + j - p]     (s < KS)
    band[dd, s]  = weight[s - dd, b, j]  if 0 <= s - dd < k  else 0

``band`` is [BD, KS] (a Toeplitz band, ``KS = next_pow2(BD + k - 1)``) and the shifted input tile is
[KS, BH*BW]: one ``tl.dot`` per in-plane tap does ``BD * KS * BH * BW`` multiply-adds of which
``k / KS`` are useful (band zeros), and each input element loaded serves ``BD`` outputs. The
``k^2`` in-plane taps are one flat loop that Triton software-pipelines (``num_stages``); the input
tile of consecutive taps ``j`` overlaps in all but one column, so those loads hit L1.

Halo handling without masks in the hot loop: H and W are zero-padded on the host (one copy of the
input), out-of-tile positions are clamped into the tile's range and their outputs dropped at the
store, and depth rows outside the volume are clamped to a valid row whose band column is zeroed.
Consequence: a non-finite input value also reaches outputs up to ``BD + k - 1`` slices away (through
a zero band entry: 0 * inf = nan), where F.conv3d would confine it to ``k // 2`` slices; the FFT
path spreads it over the whole volume.

The weight gradient is the same banded product read the other way: for a fixed ``(b, j)``,
``m[dd, s] = sum_hw g[d0 + dd, hw] * x[d0 - p + s, hw shifted by (b, j)]`` ([BD, HW] x [HW, KS],
the reduction over the spatial tile on tensor cores), and ``dW[a, b, j] += sum_dd m[dd, dd + a]``
(a diagonal band read with ``tl.gather``). A program owns one (channel, b) and a strided share of
the (batch, depth block, tile) iterations: per iteration it loads the gradient tile once and
reuses it for all ``k`` taps ``j``; its [k, k] partial sums stay in registers and are written once
(no atomics: the partial sums of the ``SPLIT`` shares are added on the host, deterministically).

Accumulation is fp32. fp32 inputs use ``PREC`` (``"tf32x3"`` on CUDA: three TF32 products, about
fp32 accuracy; ``"ieee"`` would use plain FMAs). Triton 3.9's interpreter multiplies bfloat16 dot
operands as their raw 16-bit patterns (triton-lang/triton#11584: "we just don't support it yet"),
so ``UPCAST`` (set only when interpreting) converts the dot
operands to fp32 first; products of bf16/fp16 values are exact in fp32, so this is the arithmetic
of the tensor-core path except for the order of the fp32 additions.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["conv_kernel", "weight_grad_kernel", "conv_configs", "weight_grad_configs", "band_rows"]


def band_rows(bd: int, k: int) -> int:
    """KS: the power of two that holds the ``bd + k - 1`` input slices a block of ``bd`` outputs reads."""
    return triton.next_power_of_2(bd + k - 1)


@triton.jit
def conv_kernel(x_ptr, w_ptr, b_ptr, y_ptr, C, D, H, W,
                K: tl.constexpr, HAS_BIAS: tl.constexpr, GELU: tl.constexpr, PREC: tl.constexpr,
                UPCAST: tl.constexpr, BC: tl.constexpr, BD: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
                KS: tl.constexpr):
    """y[n, c] = (gelu?)(bias[c] + sum_{a,b,j} w[c, b, j, a] * x[n, c, d+a-p, h+b-p, w+j-p]).

    x: [N, C, D, H + 2p, W + 2p] (H, W zero-padded); w: [C, k(b), k(j), k(a)] in x's dtype;
    bias: [C] fp32; y: [N, C, D, H, W]. Grid: (H/BH * W/BW tiles, D/BD blocks, N * C/BC).
    """
    P: tl.constexpr = K // 2
    pid_hw = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_nc = tl.program_id(2)
    n_cb = tl.cdiv(C, BC)
    n = pid_nc // n_cb
    c0 = (pid_nc % n_cb) * BC
    tiles_w = tl.cdiv(W, BW)
    Hp = H + 2 * P
    Wp = W + 2 * P

    hw = tl.arange(0, BH * BW)
    h = (pid_hw // tiles_w) * BH + hw // BW
    w = (pid_hw % tiles_w) * BW + hw % BW
    hw_ok = (h < H) & (w < W)
    s = tl.arange(0, KS)
    di = pid_d * BD - P + s
    d_ok = (di >= 0) & (di < D)
    di = tl.minimum(tl.maximum(di, 0), D - 1)
    # offsets of tap (b, j) = (0, 0) within one padded channel; tap (b, j) adds b * Wp + j
    x_off = di[:, None] * (Hp * Wp) + (tl.minimum(h, H - 1) * Wp + tl.minimum(w, W - 1))[None, :]
    dd = tl.arange(0, BD)
    a = s[None, :] - dd[:, None]
    band_ok = (a >= 0) & (a < K) & d_ok[None, :]
    d = pid_d * BD + dd
    y_off = d[:, None] * (H * W) + (h * W + w)[None, :]
    y_ok = (d < D)[:, None] & hw_ok[None, :]

    # channel blocking: the offsets and masks above serve BC channels in turn
    for c in range(c0, tl.minimum(c0 + BC, C)):
        x_c = x_ptr + (n * C + c).to(tl.int64) * D * Hp * Wp
        w_c = w_ptr + c * (K * K * K)
        acc = tl.zeros((BD, BH * BW), dtype=tl.float32)
        for t in range(K * K):  # in-plane taps (b, j) = divmod(t, K)
            xt = tl.load(x_c + x_off + ((t // K) * Wp + t % K))
            band = tl.load(w_c + t * K + a, mask=band_ok, other=0.0)
            if UPCAST:
                acc = tl.dot(band.to(tl.float32), xt.to(tl.float32), acc, input_precision="ieee")
            else:
                acc = tl.dot(band, xt, acc, input_precision=PREC)
        if HAS_BIAS:
            acc += tl.load(b_ptr + c)
        if GELU:  # exact (erf) GELU, as nn.GELU()
            acc = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476))
        y_c = y_ptr + (n * C + c).to(tl.int64) * D * H * W
        tl.store(y_c + y_off, acc.to(y_ptr.dtype.element_ty), mask=y_ok)


@triton.jit
def weight_grad_kernel(x_ptr, g_ptr, part_ptr, N, C, D, H, W, SPLIT,
                       K: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr, BD: tl.constexpr,
                       BH: tl.constexpr, BW: tl.constexpr, KS: tl.constexpr, KP: tl.constexpr):
    """part[split, c, b, j, a] = sum over this program's share of g[n, c, d, h, w] * x[n, c, d+a-p, h+b-p, w+j-p].

    x: [N, C, D, H + 2p, W + 2p] (H, W zero-padded); g: [N, C, D, H, W]; part: [SPLIT, C, k, k, k] fp32.
    Grid: (C * k, SPLIT); KP = next_pow2(k).
    """
    P: tl.constexpr = K // 2
    pid_cb = tl.program_id(0)
    pid_s = tl.program_id(1)
    c = pid_cb // K
    b = pid_cb % K
    Hp = H + 2 * P
    Wp = W + 2 * P
    tiles_w = tl.cdiv(W, BW)
    n_hw = tl.cdiv(H, BH) * tiles_w
    n_db = tl.cdiv(D, BD)

    hw = tl.arange(0, BH * BW)
    dd = tl.arange(0, BD)
    s = tl.arange(0, KS)
    ka = tl.arange(0, KP)
    diag = tl.minimum(dd[:, None] + ka[None, :], KS - 1)  # m[dd, dd + a]; a >= K is masked below
    acc = tl.zeros((KP, KP), dtype=tl.float32)  # [j, a]
    for it in range(pid_s, N * n_db * n_hw, SPLIT):
        n = it // (n_db * n_hw)
        db = (it // n_hw) % n_db
        tt = it % n_hw
        h = (tt // tiles_w) * BH + hw // BW
        w = (tt % tiles_w) * BW + hw % BW
        d = db * BD + dd
        g_c = g_ptr + (n * C + c).to(tl.int64) * D * H * W
        g_ok = (d < D)[:, None] & ((h < H) & (w < W))[None, :]
        gt = tl.load(g_c + d[:, None] * (H * W) + (h * W + w)[None, :], mask=g_ok, other=0.0)
        di = db * BD - P + s
        x_off = (tl.minimum(h, H - 1) * Wp + tl.minimum(w, W - 1))[:, None] + \
            (tl.minimum(tl.maximum(di, 0), D - 1) * (Hp * Wp))[None, :]
        src = db * BD - P + dd[:, None] + ka[None, :]  # input slice of tap a for output row dd
        band_ok = (ka < K)[None, :] & (src >= 0) & (src < D)
        x_c = x_ptr + (n * C + c).to(tl.int64) * D * Hp * Wp + b * Wp
        for j in range(K):
            xt = tl.load(x_c + x_off + j)
            if UPCAST:
                m = tl.dot(gt.to(tl.float32), xt.to(tl.float32), input_precision="ieee")
            else:
                m = tl.dot(gt, xt, input_precision=PREC)
            v = tl.sum(tl.where(band_ok, tl.gather(m, diag, axis=1), 0.0), axis=0)
            acc += tl.where(ka[:, None] == j, v[None, :], 0.0)
    out = part_ptr + ((pid_s * C + c) * K + b).to(tl.int64) * K * K
    tl.store(out + ka[:, None] * K + ka[None, :], acc, mask=(ka < K)[:, None] & (ka < K)[None, :])


def conv_configs() -> list[triton.Config]:
    """Autotuning candidates of :func:`conv_kernel`: (BD, BH, BW, BC, warps, stages).

    Compiled for sm_90 (scripts/triton_dwconv_resources.py), each fits in 255 registers without
    spilling for bf16 at k = 7 and 21; fp32 (three TF32 products) spills in the larger ones, which
    the timing then drops. BC = 2 (two channels per program) costs registers: kept where it fits.
    """
    shapes = [(16, 4, 16, 1, 4, 3), (16, 8, 16, 1, 4, 3), (16, 8, 16, 1, 8, 2), (16, 4, 32, 1, 8, 2),
              (32, 4, 16, 1, 8, 2), (32, 4, 32, 1, 8, 3), (16, 8, 16, 2, 8, 2), (32, 8, 16, 2, 8, 2)]
    return [triton.Config({"BD": bd, "BH": bh, "BW": bw, "BC": bc}, num_warps=nw, num_stages=ns)
            for bd, bh, bw, bc, nw, ns in shapes]


def weight_grad_configs() -> list[triton.Config]:
    """Autotuning candidates of :func:`weight_grad_kernel`: (BD, BH, BW, warps, stages); as above."""
    shapes = [(16, 4, 16, 4, 3), (16, 8, 16, 8, 2), (16, 4, 32, 8, 2), (32, 4, 16, 8, 2), (32, 4, 32, 8, 2),
              (16, 8, 32, 8, 3)]
    return [triton.Config({"BD": bd, "BH": bh, "BW": bw}, num_warps=nw, num_stages=ns)
            for bd, bh, bw, nw, ns in shapes]
