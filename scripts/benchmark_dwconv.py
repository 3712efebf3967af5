#!/usr/bin/env python
"""Depthwise 3D convolution: the direct path (``F.conv3d``: oneDNN / cuDNN) against the FFT path of
``lkseg.models.depthwise``, forward and forward+backward, in one run on this machine's device.

Prints per kernel size and shape: the times, the ratio direct/FFT, the relative error, and what
``auto`` picks. The targets of issue 15 are ratios of this kind (21^3 >= 3x on CPU), never absolute times.

    python scripts/benchmark_dwconv.py [--device cpu|cuda] [--channels 48] [--size 48] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from lkseg.models import depthwise


def timed(fn, repeat: int, sync) -> float:
    best = float("inf")
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--size", type=int, default=48, help="edge of the cubic input")
    p.add_argument("--kernels", type=int, nargs="+", default=[7, 13, 21])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x = torch.randn(1, args.channels, args.size, args.size, args.size, device=dev, requires_grad=True)
    print(f"device {dev}, input {tuple(x.shape)}, best of {args.repeat}, threads {torch.get_num_threads()}")
    print(f"{'kernel':>6} {'pass':>9} {'direct s':>9} {'fft s':>8} {'ratio':>6} {'rel. error':>10}  auto picks")
    for k in args.kernels:
        w = (torch.randn(args.channels, 1, k, k, k, device=dev) * 0.01).requires_grad_()
        b = torch.randn(args.channels, device=dev)

        def direct():
            return F.conv3d(x, w, b, padding=k // 2, groups=args.channels)

        def fft():
            return depthwise.fft_depthwise_conv3d(x, w, b)

        with torch.no_grad():
            ref, out = direct(), fft()
            err = ((out - ref).abs().max() / ref.abs().max()).item()
            t_d, t_f = timed(direct, args.repeat, sync), timed(fft, args.repeat, sync)
            depthwise.depthwise_conv3d(x, w, b, path="auto")
        pick = depthwise.chosen_paths().get((dev.type, x.dtype, k, tuple(x.shape), False), "direct (small kernel)")
        print(f"{k:>4}^3 {'forward':>9} {t_d:9.3f} {t_f:8.3f} {t_d / t_f:5.2f}x {err:10.1e}  {pick}")
        t_db = timed(lambda: direct().sum().backward(), args.repeat, sync)
        t_fb = timed(lambda: fft().sum().backward(), args.repeat, sync)
        print(f"{k:>4}^3 {'fwd+bwd':>9} {t_db:9.3f} {t_fb:8.3f} {t_db / t_fb:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
