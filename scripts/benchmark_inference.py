#!/usr/bin/env python
"""Benchmark lkseg inference against a plain MONAI reference pipeline, in one run.

Both pipelines segment the same volume with the same network weights:

* ours: ``lkseg.inference.Segmenter`` (physical-coordinate resampling on the device, Gaussian
  blending, batched windows, autocast on CUDA, probabilities resampled back trilinearly);
* reference: the same network in fp32, its depthwise layers on the direct ``F.conv3d`` path; MONAI
  ``LoadImage``/``Orientation``/``Spacing``/``ScaleIntensityRange`` transforms; ``sliding_window_inference`` (overlap 0.5, sw_batch_size 4,
  constant blending); argmax; the label map resampled back onto the input with SimpleITK
  nearest-neighbour.

Each pipeline runs in its own fresh process (so peak host memory, ``ru_maxrss``, belongs to it);
per stage wall times (load, preprocess, model, resample back, write), peak host and GPU memory,
per-organ Dice between the two label maps and the ratios are printed.

    python scripts/benchmark_inference.py [--checkpoint CKPT] [--image IMG] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_CT = REPO.parent / "shared" / "data" / "totalsegmentator-example" / "example_ct_sm.nii.gz"


def default_checkpoint(tmp: Path) -> Path:
    """The bundled default model, or a randomly initialised small UX-Net (or first available network)."""
    from lkseg.app import resources

    bundled = resources.default_model()
    if bundled is not None:
        return bundled
    import torch

    from lkseg.checkpoint.card import InferenceSettings, ModelCard, Preprocessing
    from lkseg.checkpoint.native import save_checkpoint
    from lkseg.checkpoint.labels import BTCV
    from lkseg.models.registry import build_model, get_spec, list_models

    names = [s.name for s in list_models()]
    arch = "uxnet" if "uxnet" in names else names[0]
    spec = get_spec(arch)
    torch.manual_seed(0)
    model = build_model(arch, 1, BTCV.num_classes, **spec.small_config)
    card = ModelCard(arch, dict(spec.small_config), 1, BTCV,
                     Preprocessing("RAS", (1.5, 1.5, 2.0)), InferenceSettings((96, 96, 96), 0.5, "gaussian", 4))
    path = tmp / f"random_{arch}.safetensors"
    save_checkpoint(path, model.state_dict(), card)
    print(f"no bundled checkpoint: using a randomly initialised {arch} (small config)")
    return path


def _peaks(device: str) -> dict[str, float]:
    out = {"peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_ours(checkpoint: str, image_path: str, device: str, out: str, repeat: int = 1) -> dict[str, Any]:
    from lkseg.io.export import write_labels
    from lkseg.io.imageio import read_image
    from lkseg.inference.segmenter import Segmenter

    seg = Segmenter.from_checkpoint(checkpoint, device=device)
    t0 = time.perf_counter()
    image = read_image(image_path)
    load = time.perf_counter() - t0
    seg.segment(image)  # warm-up (CUDA context, kernels); not timed
    if seg.device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    times: dict[str, float] = {}
    for _ in range(repeat):  # best of `repeat` per stage (the machine may be shared)
        result = seg.segment(image)
        t0 = time.perf_counter()
        write_labels(result.labels, result.table, out)
        run = {"load": load, **{k: result.timings[k] for k in ("preprocess", "model", "resample")},
               "write": time.perf_counter() - t0}
        times = {k: min(v, times.get(k, v)) for k, v in run.items()}
    return {"times": times, "device": str(seg.device), **_peaks(str(seg.device))}


def run_reference(checkpoint: str, image_path: str, device: str, out: str, repeat: int = 1) -> dict[str, Any]:
    import os

    # the plain pipeline convolves with F.conv3d: our networks' depthwise layers take the direct path here
    os.environ["LKSEG_DWCONV"] = "direct"
    import numpy as np
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import EnsureChannelFirst, LoadImage, Orientation, ScaleIntensityRange, Spacing

    from lkseg.checkpoint.native import load_checkpoint
    from lkseg.utils.devices import resolve_device

    dev = resolve_device(device)
    model, card = load_checkpoint(checkpoint, device="cpu")
    model = model.to(dev).eval().float()
    pre, inf = card.preprocessing, card.inference
    win = pre.intensity

    def segment() -> tuple[Any, dict[str, float]]:
        times = {}
        t0 = time.perf_counter()
        img = LoadImage(image_only=True)(image_path)  # nibabel for NIfTI
        img = EnsureChannelFirst()(img)
        times["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        x = Orientation(axcodes=pre.orientation)(img)
        if pre.spacing is not None:
            x = Spacing(pixdim=pre.spacing, mode="bilinear")(x)
        if win.get("mode") == "window":
            x = ScaleIntensityRange(win["a_min"], win["a_max"], win["b_min"], win["b_max"], clip=win["clip"])(x)
        elif win.get("mode") == "zscore":
            x = (x - x.mean()) / x.std()
        times["preprocess"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = sliding_window_inference(x.unsqueeze(0).to(dev), inf.roi_size, 4, model, overlap=0.5,
                                              mode="constant")
            lab = logits.argmax(1)[0].to(torch.uint8).cpu()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times["model"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # network-grid label map (MONAI array [i, j, k], RAS affine) -> SimpleITK (LPS) -> input grid
        affine = np.asarray(x.affine, dtype=np.float64)
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
        spacing = np.linalg.norm(lps[:3, :3], axis=0)
        net = sitk.GetImageFromArray(lab.numpy().transpose(2, 1, 0).copy())
        net.SetSpacing(tuple(spacing))
        net.SetOrigin(tuple(lps[:3, 3]))
        net.SetDirection(tuple((lps[:3, :3] / spacing).ravel()))
        ref = sitk.ReadImage(image_path)
        back = sitk.Resample(net, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        times["resample"] = time.perf_counter() - t0
        return back, times

    segment()  # warm-up, as for ours
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times: dict[str, float] = {}
    for _ in range(repeat):
        back, run = segment()
        t0 = time.perf_counter()
        sitk.WriteImage(back, out, useCompression=True)
        run["write"] = time.perf_counter() - t0
        times = {k: min(v, times.get(k, v)) for k, v in run.items()}
    return {"times": times, "device": str(dev), **_peaks(str(dev))}


def _child(fn_name: str, args: tuple, queue: Any) -> None:
    try:
        queue.put(globals()[fn_name](*args))
    except BaseException as exc:  # report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def in_fresh_process(fn_name: str, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn_name, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise SystemExit(f"{fn_name} failed: {result['error']}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help="default: Resources default model, else a random small UX-Net")
    p.add_argument("--image", type=Path, help=f"default: {SHARED_CT} or the bundled sample CT")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per pipeline; the best per stage is kept")
    p.add_argument("--json", type=Path, help="also write the measurements here")
    args = p.parse_args(argv)

    import numpy as np

    from lkseg.app import resources
    from lkseg.checkpoint.native import read_card
    from lkseg.io.imageio import read_image
    from lkseg.evaluation.metrics import dice_per_label

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        image = args.image or (SHARED_CT if SHARED_CT.is_file() else resources.sample_ct())
        if image is None:
            raise SystemExit("no image: pass --image")
        ckpt = args.checkpoint or default_checkpoint(tmp)
        card = read_card(ckpt)
        print(f"image {image}\ncheckpoint {ckpt} ({card.architecture}, roi {card.inference.roi_size}, "
              f"spacing {card.preprocessing.spacing})")
        ours = in_fresh_process("run_ours", str(ckpt), str(image), args.device, str(tmp / "ours.nii.gz"),
                                args.repeat)
        ref = in_fresh_process("run_reference", str(ckpt), str(image), args.device, str(tmp / "ref.nii.gz"),
                               args.repeat)
        a, b = read_image(tmp / "ours.nii.gz").array, read_image(tmp / "ref.nii.gz").array
        dice = dice_per_label(a, b, card.labels.values)

    print(f"\ndevice: ours {ours['device']}, reference {ref['device']}")
    print(f"{'stage':<12}{'ours (s)':>10}{'reference (s)':>15}{'ref/ours':>10}")
    stages = ["load", "preprocess", "model", "resample", "write"]
    for s in stages + ["total"]:
        o = sum(ours["times"][k] for k in stages) if s == "total" else ours["times"][s]
        r = sum(ref["times"][k] for k in stages) if s == "total" else ref["times"][s]
        print(f"{s:<12}{o:>10.3f}{r:>15.3f}{(r / o if o > 0 else float('nan')):>10.2f}")
    for key in ("peak_host_mb", "peak_gpu_mb"):
        if key in ours:
            print(f"{key:<12}{ours[key]:>10.0f}{ref[key]:>15.0f}{ref[key] / ours[key]:>10.2f}")
    print("\nDice per organ, ours vs reference (agreement, not accuracy):")
    for v, d in dice.items():
        name = card.labels.by_value(v).name
        print(f"  {v:>3} {name:<32} {'absent in both' if np.isnan(d) else f'{d:.4f}'}")
    present = [d for d in dice.values() if not np.isnan(d)]
    if present:
        print(f"  mean over present organs: {np.mean(present):.4f}  (voxel agreement {float((a == b).mean()):.4f})")
    if args.json:
        args.json.write_text(json.dumps({"ours": ours, "reference": ref, "dice": {str(k): v for k, v in dice.items()},
                                         "image": str(image), "checkpoint": str(ckpt)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
