#!/usr/bin/env python
"""Depthwise 3D convolution: the direct path (``F.conv3d``: oneDNN / cuDNN) against the FFT path and, on
CUDA, the Triton path of ``lkseg.models.depthwise``, forward and forward+backward, in one run on this
machine's device.

Prints per kernel size and dtype: the times, the ratios direct/FFT and direct/Triton with issue 15's
targets beside them, the relative errors against the direct result, and what ``auto`` picks with and
without a gradient. The targets are ratios, never absolute times: on CUDA (defaults: [4, 48, 48^3],
7^3 and 21^3, float32 and bfloat16) Triton >= 10x cuDNN for 7^3 and >= 20x for 21^3, forward and
forward+backward; on the CPU (no Triton column) FFT >= 3x direct for 21^3. The first Triton call of a
shape autotunes its block shapes (compiles a few kernels): on CUDA one untimed call precedes the timed ones.

    python scripts/benchmark_dwconv.py [--device cpu|cuda] [--batch 4] [--channels 48] [--size 48]
                                       [--kernels 7 21] [--dtypes float32 bfloat16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from lkseg.models import depthwise

#: issue 15: (path compared with direct, device) -> {kernel: smallest speed-up}
TARGETS = {("triton", "cuda"): {7: 10.0, 21: 20.0}, ("fft", "cpu"): {21: 3.0}}


def timed(fn, repeat: int, sync, warm_up: bool) -> float:
    """Best wall time of ``repeat`` calls (after one untimed call when ``warm_up``)."""
    if warm_up:
        fn()
    best = float("inf")
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def ratio(reference: float, t: float | None, target: float | None) -> str:
    if t is None:
        return f"{'-':>15}"
    mark = "" if target is None else f" (>={target:g}x {'ok' if reference / t >= target else 'MISS'})"
    return f"{reference / t:6.2f}x{mark:<14}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="default: 4 on CUDA, 1 on the CPU")
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--size", type=int, default=48, help="edge of the cubic input")
    p.add_argument("--kernels", type=int, nargs="+", default=None, help="default: 7 21 on CUDA, 7 13 21 on the CPU")
    p.add_argument("--dtypes", nargs="+", default=None, help="default: float32 bfloat16 on CUDA, float32 on the CPU")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    batch = args.batch or (4 if cuda else 1)
    kernels = args.kernels or ([7, 21] if cuda else [7, 13, 21])
    dtypes = [getattr(torch, d) for d in (args.dtypes or (["float32", "bfloat16"] if cuda else ["float32"]))]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    triton = depthwise.triton_path() if cuda else None
    if cuda and triton is None:
        print("Triton is not importable here: no Triton column")
    paths = {"direct": lambda x, w, b: F.conv3d(x, w, b, padding=w.shape[-1] // 2, groups=w.shape[0]),
             "fft": depthwise.fft_depthwise_conv3d}
    if triton is not None:
        paths["triton"] = triton.depthwise_conv3d
    torch.manual_seed(0)
    shape = (batch, args.channels, args.size, args.size, args.size)
    print(f"device {dev}{' (' + torch.cuda.get_device_name(dev) + ')' if cuda else ''}, input {shape}, "
          f"best of {args.repeat}{' after a warm-up' if cuda else ''}, threads {torch.get_num_threads()}")
    others = [name for name in paths if name != "direct"]
    print(f"{'kernel':>6} {'dtype':>9} {'pass':>8} " + " ".join(f"{n + ' ms':>10}" for n in paths) + " "
          + " ".join(f"{'direct/' + n:>15}" for n in others) + "  rel. errors vs direct      auto picks")
    for dtype in dtypes:
        x = torch.randn(shape, device=dev).to(dtype).requires_grad_()
        for k in kernels:
            w = (torch.randn(args.channels, 1, k, k, k, device=dev) / k ** 1.5).to(dtype).requires_grad_()
            b = torch.randn(args.channels, device=dev).to(dtype).requires_grad_()
            with torch.no_grad():
                ref = paths["direct"](x, w, b).float()
                errors = {n: ((paths[n](x, w, b).float() - ref).abs().max() / ref.abs().max()).item() for n in others}
                fwd = {n: timed(lambda fn=fn: fn(x, w, b), args.repeat, sync, cuda) for n, fn in paths.items()}
            both = {n: timed(lambda fn=fn: fn(x, w, b).sum().backward(), args.repeat, sync, cuda)
                    for n, fn in paths.items()}
            with torch.no_grad():
                depthwise.depthwise_conv3d(x, w, b, path="auto")
            depthwise.depthwise_conv3d(x, w, b, path="auto").sum().backward()
            picks = depthwise.chosen_paths()
            pick = [picks.get((str(x.device), dtype, k, shape, grad), "by rule") for grad in (False, True)]
            for name, times, extra in (("forward", fwd, "  " + " ".join(f"{n} {e:.1e}" for n, e in errors.items())
                                        + f"   {pick[0]}"), ("fwd+bwd", both, f"{'':>27}{pick[1]}")):
                cells = " ".join(f"{times[n] * 1e3:10.2f}" for n in paths)
                ratios = " ".join(ratio(times["direct"], times[n], TARGETS.get((n, dev.type), {}).get(k))
                                  for n in others)
                print(f"{k:>4}^3 {str(dtype).removeprefix('torch.'):>9} {name:>8} {cells} {ratios}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
