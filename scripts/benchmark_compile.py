#!/usr/bin/env python
"""Does ``torch.compile`` (or CUDA graphs) pay for the fixed window shape of sliding-window inference?

Times one batch of windows through a network prepared as the Segmenter prepares it (its precision,
channels-last on the CPU): eager, ``torch.compile`` (inductor, default mode) and, on CUDA, ``mode=
"reduce-overhead"`` (CUDA graphs); prints the compile time, the per-batch time after warm-up, the speed-up
over eager and the largest difference of the outputs from eager. The Segmenter runs eager; this decides
whether a compiled path is worth its compile time (it is paid once per process and window shape).

    python scripts/benchmark_compile.py [--network uxnet] [--device cuda] [--batch 4] [--repeat 10]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def timed(fn, x: torch.Tensor, repeat: int, sync) -> float:
    best = float("inf")
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn(x)
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--network", default="uxnet")
    p.add_argument("--small", action="store_true", help="the registry's small configuration (quick on a CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch", type=int, default=None, help="windows per batch (default: the Segmenter's rule)")
    p.add_argument("--roi", type=int, default=96)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    from lkseg.inference.fast_model import prepare_for_inference, uses_channels_last
    from lkseg.models.registry import build_model, get_spec
    from lkseg.utils.devices import autocast, inference_dtype, precision_name, resolve_device

    device = resolve_device(args.device)
    dtype = inference_dtype(device, args.precision)
    spec = get_spec(args.network)
    torch.manual_seed(0)
    model = build_model(args.network, 1, 14, **(spec.small_config if args.small else spec.paper_config))
    model = prepare_for_inference(model, device)
    batch = args.batch or (4 if device.type == "cuda" else 1)
    x = torch.randn(batch, 1, args.roi, args.roi, args.roi, device=device)
    if uses_channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last_3d)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run(net):
        def f(inp):
            with torch.inference_mode(), autocast(device, dtype):
                return net(inp)
        return f

    eager = run(model)
    ref = eager(x).float()
    t_eager = timed(eager, x, args.repeat, sync)
    print(f"{args.network} on {device}, {precision_name(dtype)}, batch {batch} x {args.roi}^3: eager {t_eager:.4f} s")
    modes = ["default"] + (["reduce-overhead"] if device.type == "cuda" else [])
    for mode in modes:
        torch._dynamo.reset()
        compiled = run(torch.compile(model, mode=mode, dynamic=False))
        t0 = time.perf_counter()
        out = compiled(x).float()
        sync()
        t_compile = time.perf_counter() - t0
        t = timed(compiled, x, args.repeat, sync)
        diff = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        print(f"  compile {mode:<16} first call {t_compile:7.1f} s, then {t:.4f} s: {t_eager / t:5.2f}x eager, "
              f"largest difference {diff:.2e} of the output scale; pays after {t_compile / max(t_eager - t, 1e-9):.0f} batches"
              if t < t_eager else f"  compile {mode:<16} first call {t_compile:7.1f} s, then {t:.4f} s: slower than eager")
    return 0


if __name__ == "__main__":
    sys.exit(main())
