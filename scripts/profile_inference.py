#!/usr/bin/env python
"""Where inference time goes: per stage of the Segmenter, and per layer type inside the network.

Segments an image with the Segmenter as a user runs it (stage timings: preprocess, model, resample),
then times one window batch of the network layer by layer (forward hooks on every leaf module, the
precision and memory layout the Segmenter uses) and sums the times per layer type: depthwise
convolutions by kernel, dense and pointwise convolutions, transposed convolutions, norms, activations,
deformable sampling; "between layers" is the rest of the forward (residual adds, concatenations,
permutes).

    python scripts/profile_inference.py [--network uxnet | --checkpoint CKPT] [--image IMG] [--precision auto]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import bench_inputs


def layer_type(module) -> str | None:
    """A short name for a leaf module's kind, or None for containers."""
    import torch.nn as nn

    if any(True for _ in module.children()):
        return None
    if isinstance(module, nn.ConvTranspose3d):
        return "transposed conv"
    if isinstance(module, nn.Conv3d):
        k = "x".join(str(s) for s in module.kernel_size)
        if module.groups == module.in_channels and module.groups > 1 and module.kernel_size != (1, 1, 1):
            return f"depthwise conv {k}"
        if module.kernel_size == (1, 1, 1):
            return "pointwise conv (grouped)" if module.groups > 1 else "pointwise conv"
        return f"dense conv {k}"
    name = type(module).__name__
    if "Norm" in name:
        return f"norm ({name}{', ' + module.data_format if hasattr(module, 'data_format') else ''})"
    if name in ("GELU", "LeakyReLU", "ReLU", "PReLU", "SiLU", "Tanh", "Softmax"):
        return "activation"
    return name


def profile_layers(model, x, autocast_ctx) -> tuple[dict[str, float], float]:
    import torch

    spent: dict[str, float] = defaultdict(float)
    started: dict[int, float] = {}
    handles = []
    for m in model.modules():
        kind = layer_type(m)
        if kind is None:
            continue
        handles.append(m.register_forward_pre_hook(lambda mod, _i: started.__setitem__(id(mod), time.perf_counter())))
        handles.append(m.register_forward_hook(
            lambda mod, _i, _o, kind=kind: spent.__setitem__(kind, spent[kind] + time.perf_counter() - started[id(mod)])))
    with torch.inference_mode(), autocast_ctx:
        model(x)  # warm-up
        spent.clear()
        t0 = time.perf_counter()
        model(x)
        total = time.perf_counter() - t0
    for h in handles:
        h.remove()
    return dict(spent), total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path)
    src.add_argument("--network", help="a paper-size registry network with random weights (3 mm, 96^3 windows)")
    p.add_argument("--image", type=Path, default=bench_inputs.SAMPLE_CT)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    args = p.parse_args(argv)
    import torch

    from lkseg.app import resources
    from lkseg.inference.segmenter import Segmenter
    from lkseg.io.imageio import read_image
    from lkseg.utils.devices import autocast, precision_name

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = bench_inputs.paper_checkpoint(args.network, Path(tmp)) if args.network else (
            args.checkpoint or resources.default_model())
        seg = Segmenter.from_checkpoint(ckpt, args.device, precision=args.precision)
    image = read_image(args.image)
    seg.segment(image)  # warm-up
    result = seg.segment(image)
    print(f"{seg.card.architecture} on {seg.device}, {precision_name(seg.dtype)}, "
          f"{'channels-last' if seg.channels_last else 'channels-first'}; windows run {result.windows[0]}, "
          f"left out {result.windows[1]}")
    print("\nper stage (s):")
    for stage in ("preprocess", "model", "resample", "postprocess", "total"):
        print(f"  {stage:<12} {result.timings[stage]:8.3f}")
    batch = seg.window_batch()
    x = torch.randn(batch, 1, *seg.card.inference.roi_size, device=seg.device)
    if seg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    spent, total = profile_layers(seg.model, x, autocast(seg.device, seg.dtype))
    print(f"\none batch of {batch} window(s) {tuple(seg.card.inference.roi_size)}: {total:.3f} s")
    for kind, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<28} {s:8.3f} s  {100 * s / total:5.1f} %")
    rest = total - sum(spent.values())
    print(f"  {'between layers':<28} {rest:8.3f} s  {100 * rest / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
