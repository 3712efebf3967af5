"""Checks of the Triton depthwise conv that run inside a process started for Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before ``@triton.jit`` wraps the kernels (at the import of
:mod:`lkseg.models.triton_kernels`), and it would then hold for every kernel that process defines
later. So test_triton_depthwise.py starts one 'spawn' worker process whose initializer,
:func:`enter_interpreter`, sets it before anything imports Triton; the worker calls these functions
and each raises AssertionError (sent back to the test) when the Triton result is off. The pytest
process itself never sets the variable.

References are ``F.conv3d`` in float64 on the same (rounded) inputs; errors are measured relative
to the reference's largest magnitude.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

#: largest error relative to max|reference|: fp32 (fp32 accumulation of k^3 or N*D*H*W terms);
#: bf16 / fp16: one rounding of the result to 8 / 11 significant bits (2^-8, 2^-11) and a margin of 2x
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -10}


def enter_interpreter() -> None:
    """Worker initializer: interpret Triton kernels on the CPU, one thread (the tests run beside other jobs)."""
    os.environ["TRITON_INTERPRET"] = "1"
    torch.set_num_threads(1)


def _module():
    from lkseg.models import triton_depthwise

    assert triton_depthwise.INTERPRETED, "the worker imported the kernels outside Triton's interpreter"
    return triton_depthwise


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref).abs().max() / ref.abs().max()).item()


def _inputs(shape, k, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g).to(dtype)
    w = (torch.randn(c, 1, k, k, k, generator=g) / k ** 1.5).to(dtype)
    b = torch.randn(c, generator=g).to(dtype)
    probe = torch.randn(shape, generator=g).to(dtype)  # a non-uniform upstream gradient
    return x, w, b, probe


def conv_and_gradients(shape: tuple, k: int, dtype: torch.dtype = torch.float32, config: dict | None = None,
                       seed: int = 0) -> dict[str, float]:
    """Output and input / weight / bias gradients of the Triton conv against F.conv3d; returns the errors."""
    td = _module()
    x, w, b, probe = _inputs(shape, k, dtype, seed)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    out = td.depthwise_conv3d(*leaves, config=config)
    assert out.dtype == dtype and out.shape == x.shape
    grads = torch.autograd.grad((out.float() * probe.float()).sum(), leaves)
    ref_leaves = [t.double().requires_grad_() for t in (x, w, b)]
    ref = F.conv3d(*ref_leaves, padding=k // 2, groups=shape[1])
    ref_grads = torch.autograd.grad((ref * probe.double()).sum(), ref_leaves)
    errors = {"output": _relative_error(out, ref)}
    for name, got, want, leaf in zip(("input", "weight", "bias"), grads, ref_grads, leaves):
        assert got.dtype == leaf.dtype and got.shape == leaf.shape, name
        errors[name] = _relative_error(got, want)
    bad = {name: e for name, e in errors.items() if not e <= TOLERANCE[dtype]}
    assert not bad, f"relative errors above {TOLERANCE[dtype]:.1e}: {bad} (all: {errors})"
    return errors


def every_config(shape: tuple, k: int) -> int:
    """Each autotuning candidate of both kernels computes the same forward and weight gradient."""
    from lkseg.models import triton_kernels

    td = _module()
    x, w, b, probe = _inputs(shape, k, torch.float32, 3)
    ref = F.conv3d(x.double(), w.double(), b.double(), padding=k // 2, groups=shape[1])
    w_leaf = w.double().requires_grad_()
    ref_gw, = torch.autograd.grad((F.conv3d(x.double(), w_leaf, None, padding=k // 2, groups=shape[1])
                                   * probe.double()).sum(), w_leaf)
    configs = triton_kernels.conv_configs()
    for cfg in configs:
        meta = {**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
        err = _relative_error(td._conv(x, w, b, config=meta), ref)
        assert err < TOLERANCE[torch.float32], (meta, err)
    for cfg in triton_kernels.weight_grad_configs():
        meta = {**cfg.kwargs, "num_warps": cfg.num_warps}
        err = _relative_error(td._weight_grad(x, probe, k, config=meta), ref_gw)
        assert err < TOLERANCE[torch.float32], (meta, err)
    for kernel in (3, 7, 21):  # the autotuner keeps, for the models' kernels, configs whose band fits
        kept = td._fitting_configs(configs, {}, K=kernel)
        assert kept and all(triton_kernels.band_rows(c.kwargs["BD"], kernel) <= 128 for c in kept), kernel
    return len(configs)


def fused_bn_gelu(shape: tuple, k: int, dtype: torch.dtype = torch.float32) -> float:
    """conv_bn_gelu equals GELU(BatchNorm3d(eval)(F.conv3d)); it refuses training-mode BatchNorm and gradients."""
    td = _module()
    x, w, b, _ = _inputs(shape, k, dtype, 5)
    bn = nn.BatchNorm3d(shape[1], eps=0.05).eval()  # an eps that matters beside running variances from 0.1
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(shape[1], generator=g))
        bn.running_var.copy_(torch.rand(shape[1], generator=g) + 0.1)
        bn.weight.copy_(torch.randn(shape[1], generator=g))
        bn.bias.copy_(torch.randn(shape[1], generator=g))
        got = td.conv_bn_gelu(x, w, b, bn)
        ref = F.gelu(bn.double()(F.conv3d(x.double(), w.double(), b.double(), padding=k // 2, groups=shape[1])))
    err = _relative_error(got, ref)
    assert got.dtype == dtype and err <= TOLERANCE[dtype], err
    for refused in ("grad", "training"):
        try:
            if refused == "grad":
                td.conv_bn_gelu(x.requires_grad_(), w, b, bn)
            else:
                with torch.no_grad():
                    td.conv_bn_gelu(x, w, b, bn.train())
        except RuntimeError:
            continue
        raise AssertionError(f"conv_bn_gelu accepted {refused}")
    return err


def repux_block_on_the_triton_path() -> dict[str, float]:
    """A RepUX-Net block with LKSEG_DWCONV=triton: in eval mode without gradients it takes the fused
    kernel (counted), in training mode the differentiable conv; both equal the direct path."""
    from lkseg.models.repuxnet import RepUXBlock

    td = _module()
    torch.manual_seed(7)
    block = RepUXBlock(dim=3, kernel_size=5)
    x = torch.randn(2, 3, 7, 6, 9)
    fused_calls = []
    real = td.conv_bn_gelu
    td.conv_bn_gelu = lambda *a, **kw: fused_calls.append(1) or real(*a, **kw)
    try:
        results = {}
        for mode in ("train", "eval"):
            block.train(mode == "train")
            outs = {}
            for path in ("direct", "triton"):
                os.environ["LKSEG_DWCONV"] = path
                with torch.set_grad_enabled(mode == "train"):
                    out = block(x)
                    grads = torch.autograd.grad(out.square().sum(), [block.dwconv.weight]) if mode == "train" else ()
                outs[path] = (out, *grads)
            for got, want in zip(outs["triton"], outs["direct"]):
                results[mode] = max(results.get(mode, 0.0), _relative_error(got, want.double()))
        assert fused_calls == [1], fused_calls  # eval mode only, the triton run only
    finally:
        td.conv_bn_gelu = real
        os.environ.pop("LKSEG_DWCONV", None)
    assert max(results.values()) < 1e-5, results
    return results
