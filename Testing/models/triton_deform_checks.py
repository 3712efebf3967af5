"""Checks of the fused Triton deformable conv against the ``grid_sample`` path, run by
``test_triton_deform.py`` in a child process: ``python triton_deform_checks.py CHECK``.

Without a GPU the kernels run under Triton's interpreter, which must be switched on
(``TRITON_INTERPRET=1``) before Triton is imported; a child process keeps that setting out of every
other test. Each check raises ``AssertionError`` on a mismatch and prints ``ok CHECK`` when it passes."""

from __future__ import annotations

import os
import sys

import torch


def _offsets(n: int, taps: int, out: tuple[int, int, int], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Offsets of -1.8..2.8 voxels whose fractional parts stay in [0.2, 0.8]: every sample is far from
    the trilinear kinks at integers, where the two paths may pick different sides; some fall outside."""
    g = torch.Generator().manual_seed(seed)
    whole = torch.randint(-2, 3, (n, 3 * taps, *out), generator=g).to(dtype)
    return whole + 0.2 + 0.6 * torch.rand((n, 3 * taps, *out), generator=g, dtype=dtype)


def _both_paths(x, offset, weight, bias, stride, padding, dilation):
    """Output and the four gradients (of a non-uniform loss) on each path."""
    from lkseg.models.deform_conv import deform_conv3d_depthwise

    results = {}
    for path in ("grid_sample", "triton"):
        leaves = [t.detach().clone().requires_grad_(True) for t in (x, offset, weight, bias)]
        y = deform_conv3d_depthwise(*leaves, stride, padding, dilation, path=path)
        weights = torch.linspace(-1, 2, y.numel(), dtype=torch.float64).view(y.shape).to(y.dtype)
        grads = torch.autograd.grad((y * weights).sum(), leaves)
        results[path] = (y, *grads, type(y.grad_fn).__name__)
    return results["grid_sample"], results["triton"]


def _close(name: str, got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    scale = float(want.detach().abs().max().double())
    err = float((got.detach().double() - want.detach().double()).abs().max())
    assert got.shape == want.shape and got.dtype == want.dtype, (name, got.shape, want.shape, got.dtype, want.dtype)
    assert err <= rel * max(scale, 1e-30), f"{name}: max error {err:.3g} is above {rel:g} x {scale:.3g}"


def _compare(tag: str, x, offset, weight, bias, stride, padding, dilation, rel: float) -> None:
    ref, tri = _both_paths(x, offset, weight, bias, stride, padding, dilation)
    assert tri[-1] == "_DeformConvTritonBackward" and ref[-1] != tri[-1], (ref[-1], tri[-1])
    for name, a, b in zip(("output", "grad input", "grad offset", "grad weight", "grad bias"), tri[:-1], ref[:-1]):
        _close(f"{tag} {name}", a, b, rel)


def _k3(dtype: torch.dtype, rel: float) -> None:
    """The paper's 3^3 kernel, padding 1, batch 2."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, 3, dtype=dtype)
    w = torch.randn(3, 1, 3, 3, 3, dtype=dtype)
    b = torch.randn(3, dtype=dtype)
    _compare(f"k3 {dtype}", x, _offsets(2, 27, (4, 5, 3), dtype, 1), w, b, (1, 1, 1), (1, 1, 1), (1, 1, 1), rel)


def check_k3_float32() -> None:
    _k3(torch.float32, 2e-5)


def check_k3_float64() -> None:
    """float64 arithmetic in the kernel: the two paths agree to rounding."""
    _k3(torch.float64, 1e-12)


def check_blocks_and_geometry() -> None:
    """Several channel blocks (20 > 16) and voxel blocks (324 > 128): the atomic adds and the weight
    partials across programs; a non-cubic kernel with stride, padding and dilation per axis."""
    torch.manual_seed(2)
    x = torch.randn(1, 20, 6, 11, 9, dtype=torch.float64)
    w = torch.randn(20, 1, 1, 3, 2, dtype=torch.float64)
    b = torch.randn(20, dtype=torch.float64)
    stride, padding, dilation = (1, 2, 1), (0, 1, 1), (1, 1, 2)
    out = (6, 6, 9)  # (6 - 1) + 1, (11 + 2 - 2 - 1) // 2 + 1, (9 + 2 - 2 - 1) + 1
    _compare("blocks", x, _offsets(1, 6, out, torch.float64, 3), w, b, stride, padding, dilation, 1e-12)


def _layout(layout: str) -> None:
    """``DeformConvPack3d`` in ``layout``, batch 2 (the official layout reads across samples), with the
    path chosen by ``LKSEG_DEFORM``: the module's output and the gradients of its input and parameters."""
    from lkseg.models.deform_conv import DeformConvPack3d

    torch.manual_seed(4)
    m = DeformConvPack3d(3, 3, offset_layout=layout)
    with torch.no_grad():  # trained-like offset conv: offsets of about a voxel
        m.conv_offset.weight.normal_(std=0.6)
        m.conv_offset.bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 3, 3, 4, 3)
    results = {}
    for path in ("grid_sample", "triton"):
        os.environ["LKSEG_DEFORM"] = path
        m.zero_grad()
        xx = x.clone().requires_grad_(True)
        y = m(xx)
        (y * torch.linspace(-1, 2, y.numel()).view(y.shape)).sum().backward()
        results[path] = (y, xx.grad, *(p.grad.clone() for p in m.parameters()), type(y.grad_fn).__name__)
    del os.environ["LKSEG_DEFORM"]
    ref, tri = results["grid_sample"], results["triton"]
    assert tri[-1] == "_DeformConvTritonBackward" and ref[-1] != tri[-1], (ref[-1], tri[-1])
    names = ["output", "grad input", *(f"grad {n}" for n, _ in m.named_parameters())]
    for name, a, b in zip(names, tri[:-1], ref[:-1]):
        _close(f"{layout} {name}", a, b, 1e-4)


def check_official_layout() -> None:
    _layout("official")


def check_native_layout() -> None:
    _layout("native")


def check_half_precision_inputs() -> None:
    """float16 and bfloat16 inputs and offsets: same dtypes out, values within half precision of the
    ``grid_sample`` path given the same half-precision tensors (both compute in float32)."""
    for dtype, rel in ((torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)):
        torch.manual_seed(5)
        x = torch.randn(1, 2, 3, 4, 4).to(dtype)
        w = torch.randn(2, 1, 2, 2, 2)
        b = torch.randn(2)
        _compare(f"{dtype}", x, _offsets(1, 8, (2, 3, 3), torch.float32, 6).to(dtype), w, b,
                 (1, 1, 1), (0, 0, 0), (1, 1, 1), rel)


def check_auto_stays_on_grid_sample_for_cpu_tensors() -> None:
    """``auto`` picks Triton for CUDA tensors only; a CPU tensor takes ``grid_sample`` even here."""
    from lkseg.models.deform_conv import deform_conv3d_depthwise

    x = torch.randn(1, 2, 3, 3, 3, requires_grad=True)
    y = deform_conv3d_depthwise(x, torch.zeros(1, 81, 3, 3, 3), torch.randn(2, 1, 3, 3, 3), None, 1, 1, 1)
    assert type(y.grad_fn).__name__ != "_DeformConvTritonBackward"


CHECKS = {name[len("check_"):]: fn for name, fn in dict(globals()).items() if name.startswith("check_")}

if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET") == "1", "run under TRITON_INTERPRET=1 (Triton's CPU interpreter)"
    for name in sys.argv[1:]:
        CHECKS[name]()
        print(f"ok {name}", flush=True)
