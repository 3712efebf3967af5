#!/usr/bin/env python
"""Benchmark lkseg inference against a plain MONAI reference pipeline, in one run.

Three pipelines segment the same volume with the same network weights, each in its own fresh process
(so peak host memory, VmHWM, belongs to it):

* **ours**: ``lkseg.inference.Segmenter`` as a user runs it (``--precision auto``: bfloat16 on CUDA and
  on CPUs with native bfloat16 unless the card keeps fp32; channels-last on the CPU; windows of air
  left out; window batch per device; probabilities resampled back trilinearly, boundary cells only);
* **ours fp32**: the same pipeline in float32 with every depthwise conv on the direct ``F.conv3d`` path,
  no channels-last, every window run: the labels "ours" must agree with (mean Dice over organs);
* **reference**: the network in fp32 on the direct path, MONAI ``LoadImage``/``Orientation``/``Spacing``/
  ``ScaleIntensityRange``, ``sliding_window_inference`` (overlap 0.5, sw_batch_size 4, constant
  blending), argmax, the label map resampled back with SimpleITK nearest-neighbour: what a user writes
  in ten lines. The speed ratios are reference / ours.

Per stage wall times (best of ``--repeat`` after a warm-up), peak host (and GPU) memory, ratios and
Dice agreement are printed. ``--network uxnet|repuxnet|...`` benchmarks a paper-size network with random
weights on a 3 mm grid with 96^3 windows (the speed table of issue 15); ``--large-ct`` uses a
512 x 512 x 300 CT made from the example CT and adds the wall time of ``lkseg segment`` on it, from
process start to labels written.

    python scripts/benchmark_inference.py [--network repuxnet | --checkpoint CKPT] [--image IMG | --large-ct]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_inputs

STAGES = ["load", "preprocess", "model", "resample", "write"]


def _peak_host_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec; ``ru_maxrss`` does
    not (it starts at the parent's resident size when the spawned child was forked)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peaks(device: str) -> dict[str, float]:
    out = {"peak_host_mb": _peak_host_mb()}
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_ours(checkpoint: str, image_path: str, device: str, out: str, repeat: int, plain_fp32: bool) -> dict[str, Any]:
    if plain_fp32:  # the direct depthwise path, before torch is imported
        os.environ["LKSEG_DWCONV"] = "direct"
    from lkseg.inference.segmenter import Segmenter
    from lkseg.io.export import write_labels
    from lkseg.io.imageio import read_image

    options = {"precision": "fp32", "skip_empty_windows": False, "channels_last": False} if plain_fp32 else {}
    seg = Segmenter.from_checkpoint(checkpoint, device=device, **options)
    t0 = time.perf_counter()
    image = read_image(image_path)
    load = time.perf_counter() - t0
    seg.segment(image)  # warm-up (kernels, the depthwise path choice, CUDA context); not timed
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
    return {"times": times, "device": str(seg.device), "precision": result.precision,
            "windows": list(result.windows), **_peaks(str(seg.device))}


def run_reference(checkpoint: str, image_path: str, device: str, out: str, repeat: int,
                  amp: bool = False) -> dict[str, Any]:
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
        img = EnsureChannelFirst()(LoadImage(image_only=True)(image_path))  # nibabel for NIfTI
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
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
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
        back = sitk.Resample(net, sitk.ReadImage(image_path), sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                             sitk.sitkUInt8)
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
    return {"times": times, "device": str(dev), "precision": "fp16" if amp else "fp32", **_peaks(str(dev))}


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


def cli_wall_time(checkpoint: Path, image: Path, device: str, out: Path) -> float:
    """Seconds from starting ``lkseg segment`` to its exit (imports, model load, read, segment, write)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lkseg", "segment", str(image), "-m", str(checkpoint), "-o", str(out),
                    "--device", device, "--overwrite"], check=True, capture_output=True)
    return time.perf_counter() - t0


def agreement(a_path: Path, b_path: Path, card: Any) -> tuple[dict[str, float], float]:
    import numpy as np

    from lkseg.evaluation.metrics import dice_per_label
    from lkseg.io.imageio import read_image

    a, b = read_image(a_path).array, read_image(b_path).array
    dice = {card.labels.by_value(v).name: d for v, d in dice_per_label(a, b, card.labels.values).items()
            if not np.isnan(d)}
    return dice, float(np.mean(list(dice.values()))) if dice else float("nan")


def print_table(runs: dict[str, dict]) -> None:
    names = list(runs)
    refs = [n for n in names if n.startswith("reference")]
    print(f"\n{'stage':<12}" + "".join(f"{n + ' (s)':>16}" for n in names) + "".join(f"{n + '/ours':>20}" for n in refs))
    for s in STAGES + ["total"]:
        vals = {n: sum(r["times"][k] for k in STAGES) if s == "total" else r["times"][s] for n, r in runs.items()}
        ratios = [vals[n] / vals["ours"] if vals["ours"] > 0 else float("nan") for n in refs]
        print(f"{s:<12}" + "".join(f"{v:>16.3f}" for v in vals.values()) + "".join(f"{q:>20.2f}" for q in ratios))
    for key in ("peak_host_mb", "peak_gpu_mb"):
        if key in runs["ours"]:
            print(f"{key:<12}" + "".join(f"{r[key]:>16.0f}" for r in runs.values()))
    print("precision   " + "".join(f"{r['precision']:>16}" for r in runs.values()))
    if "windows" in runs["ours"]:
        run, skipped = runs["ours"]["windows"]
        print(f"windows: ours ran {run}, left out {skipped} of air")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="default: the bundled default model")
    src.add_argument("--network", help="a paper-size registry network with random weights (3 mm, 96^3 windows)")
    img = p.add_mutually_exclusive_group()
    img.add_argument("--image", type=Path, help=f"default: the bundled sample CT ({bench_inputs.SAMPLE_CT.name})")
    img.add_argument("--large-ct", action="store_true", help="a 512 x 512 x 300 CT made from the example CT")
    img.add_argument("--ct-size", type=int, nargs=3, metavar=("I", "J", "K"),
                     help="a CT of this size made from the example CT, at --ct-spacing")
    p.add_argument("--ct-spacing", type=float, nargs=3, default=(1.5, 1.5, 1.5), help="mm, with --ct-size")
    p.add_argument("--spacing", type=float, default=3.0, help="the --network card's grid in mm (isotropic)")
    p.add_argument("--reference-amp", action="store_true", help="also the reference under float16 autocast (CUDA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per pipeline; the best per stage is kept")
    p.add_argument("--no-fp32", action="store_true", help="leave out the 'ours fp32' pipeline (no agreement)")
    p.add_argument("--json", type=Path, help="also write the measurements here")
    args = p.parse_args(argv)
    from lkseg.app import resources
    from lkseg.checkpoint.native import read_card

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if args.ct_size:
            size = tuple(args.ct_size)
            fov = tuple(n * s for n, s in zip(size, args.ct_spacing))
            image = bench_inputs.large_ct(tmp / f"ct_{'x'.join(map(str, size))}.nii.gz", size, fov)
        else:
            image = args.image or (bench_inputs.large_ct(tmp / "ct_512x512x300.nii.gz") if args.large_ct
                                   else bench_inputs.SAMPLE_CT)
        ckpt = (bench_inputs.paper_checkpoint(args.network, tmp, spacing=args.spacing) if args.network
                else args.checkpoint or resources.default_model())
        card = read_card(ckpt)
        print(f"image {image.name}\ncheckpoint {ckpt.name} ({card.architecture}, roi {card.inference.roi_size}, "
              f"spacing {card.preprocessing.spacing}, precision on the card: {card.inference.precision})")
        runs = {"ours": in_fresh_process("run_ours", str(ckpt), str(image), args.device, str(tmp / "ours.nii.gz"),
                                         args.repeat, False)}
        if not args.no_fp32:
            runs["ours fp32"] = in_fresh_process("run_ours", str(ckpt), str(image), args.device,
                                                 str(tmp / "fp32.nii.gz"), args.repeat, True)
        if args.reference_amp:
            runs["reference fp16"] = in_fresh_process("run_reference", str(ckpt), str(image), args.device,
                                                      str(tmp / "ref16.nii.gz"), args.repeat, True)
        runs["reference"] = in_fresh_process("run_reference", str(ckpt), str(image), args.device,
                                             str(tmp / "ref.nii.gz"), args.repeat)
        result: dict[str, Any] = {"runs": runs, "image": image.name, "checkpoint": ckpt.name}
        print_table(runs)
        if not args.no_fp32:
            dice, mean = agreement(tmp / "ours.nii.gz", tmp / "fp32.nii.gz", card)
            result["dice_ours_vs_fp32"] = dice
            print(f"\nagreement with our fp32 direct path: mean Dice {mean:.5f} over {len(dice)} organs")
        dice, mean = agreement(tmp / "ours.nii.gz", tmp / "ref.nii.gz", card)
        result["dice_ours_vs_reference"] = dice
        print(f"agreement with the reference (nearest-neighbour back, constant blending): mean Dice {mean:.4f}")
        if args.large_ct or args.ct_size:
            result["cli_wall_s"] = cli_wall_time(ckpt, image, args.device, tmp / "cli")
            print(f"lkseg segment, process start to labels written: {result['cli_wall_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
