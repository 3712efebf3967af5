#!/usr/bin/env python
"""Depthwise deformable 3D convolution on CUDA: the fused Triton kernel of ``lkseg.models.triton_deform``
against the ``grid_sample`` path of ``lkseg.models.deform_conv``, forward and forward+backward.

Prints per stage shape of 3D DeformUX-Net (96^3 window, batch 2 by default): the times, the ratio
grid_sample / Triton (issue 15's target: >= 5x), the largest relative differences of the output and
of the gradients, and the peak memory of each path. CUDA only (without a GPU it says so and exits 2).

    python scripts/benchmark_deform.py [--batch 2] [--window 96] [--layout native|official] [--repeat 5] [--half]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from lkseg.models import triton_deform
from lkseg.models.deform_conv import deform_conv3d_depthwise, official_offsets


def timed(fn, repeat: int) -> float:
    fn()  # compile / warm up
    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_bytes(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--window", type=int, default=96, help="edge of the network's input window")
    p.add_argument("--layout", choices=("native", "official"), default="official")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--half", action="store_true", help="float16 input and offsets (as under autocast)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("needs CUDA: this benchmark compares two CUDA paths", file=sys.stderr)
        return 2
    if not triton_deform.available():
        print("Triton is not installed (pip install triton)", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    dtype = torch.float16 if args.half else torch.float32
    print(f"{torch.cuda.get_device_name(dev)}, batch {args.batch}, {args.layout} offsets, {dtype}, "
          f"best of {args.repeat}")
    print(f"{'stage':>5} {'shape':>18} {'pass':>8} {'grid s':>9} {'triton s':>9} {'ratio':>6} "
          f"{'max rel. diff':>13} {'grid MiB':>9} {'triton MiB':>10}")
    ratios = []
    for stage, channels in enumerate((48, 96, 192, 384)):
        side = args.window // 2 ** (stage + 1)
        torch.manual_seed(stage)
        x = torch.randn(args.batch, channels, side, side, side, device=dev, dtype=dtype, requires_grad=True)
        pad = 2 if args.layout == "official" else 0
        offset_map = (torch.randn(args.batch, 81, side + pad, side + pad, side + pad, device=dev) * 1.5).to(dtype)
        offset_map.requires_grad_(True)
        w = torch.randn(channels, 1, 3, 3, 3, device=dev, requires_grad=True)
        b = torch.randn(channels, device=dev, requires_grad=True)

        def run(path: str, backward: bool):
            offset = official_offsets(offset_map, (side,) * 3) if args.layout == "official" else offset_map
            y = deform_conv3d_depthwise(x, offset, w, b, 1, 1, 1, path=path)
            if backward:
                grads = torch.autograd.grad(y.float().square().sum(), (x, offset_map, w, b))
                return (y, *grads)
            return (y,)

        for backward in (False, True):
            with torch.set_grad_enabled(backward):
                ref, got = run("grid_sample", backward), run("triton", backward)
                diff = max(float((g - r).detach().float().abs().max() / r.detach().float().abs().max().clamp_min(1e-30))
                           for g, r in zip(got, ref))
                del ref, got
                t_grid = timed(lambda: run("grid_sample", backward), args.repeat)
                t_tri = timed(lambda: run("triton", backward), args.repeat)
                m_grid = peak_bytes(lambda: run("grid_sample", backward)) / 2**20
                m_tri = peak_bytes(lambda: run("triton", backward)) / 2**20
            ratio = t_grid / t_tri
            ratios.append(ratio)
            print(f"{stage + 1:>5} {str(tuple(x.shape)):>18} {'fwd+bwd' if backward else 'forward':>8} "
                  f"{t_grid:>9.4f} {t_tri:>9.4f} {ratio:>6.1f} {diff:>13.2e} {m_grid:>9.0f} {m_tri:>10.0f}")
    print(f"smallest ratio {min(ratios):.1f} (target >= 5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
