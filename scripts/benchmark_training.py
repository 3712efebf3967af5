#!/usr/bin/env python3
"""Training throughput and peak memory: lkseg's loop against a plain MONAI reference loop.

Both train the same network (registry architecture and configuration), on the same data (the
TotalSegmentator example CT with 5 organs of its model-made labels, preprocessed to the same
spacing and window), with the same crop size, batch, loss (Dice + CE), optimiser (AdamW) and, on
CUDA, the same autocast. Each runs in its own fresh process so that peak memory is its own.

* ours: ``lkseg.training.train`` (in-memory preprocessed cases, per-step crops, progress log,
  resume state every ``checkpoint_every`` steps, DDP-ready), timed from step ``warmup`` to the end
  through its progress callback; the final validation/checkpoint are outside the timed span.
* reference: MONAI dictionary transforms (LoadImaged, EnsureChannelFirstd, Orientationd,
  Spacingd, ScaleIntensityRanged, SpatialPadd, RandCropByPosNegLabeld, flips), ``CacheDataset``
  + ``DataLoader``, and a bare loop.

Prints steps/s, voxels/s (crop voxels processed per second) and peak memory (host max RSS;
CUDA max allocated), plus ratios ours/reference::

    python scripts/benchmark_training.py [--arch uxnet --config small --roi 64 64 32 --batch 2 --steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def make_dataset(root: Path) -> Path:
    from train_default_model import SOURCE, default_table, map_labels

    from lkseg.dataset.local import LocalDataset
    from lkseg.io.imageio import read_image

    table = default_table()
    ct = read_image(SOURCE / "example_ct_sm.nii.gz")
    labels = map_labels(read_image(SOURCE / "example_seg.nii.gz"), SOURCE / "example_seg_labels.tsv")
    ds = LocalDataset.create(root / "dataset", table, name="benchmark")
    ds.add_case(ct, labels, table, case_id="ts_example")
    (root / "table.json").write_text(json.dumps({"name": table.name, "labels": table.to_list()}))
    return root


def peak_host_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(a: argparse.Namespace, work: Path) -> dict:
    import torch

    from lkseg.training.config import TrainConfig
    from lkseg.training.train import train

    times: dict[int, float] = {}

    def progress(rec: dict) -> None:
        if "event" not in rec:
            times[rec["step"]] = time.perf_counter()

    cfg = TrainConfig(dataset=work / "dataset", out=work / "job_ours", architecture=a.arch, model_config=a.config,
                      labels=str(work / "table.json"), steps=a.warmup + a.steps, device=a.device,
                      val_every=10**6, checkpoint_every=10**6, batch_size=a.batch, roi=tuple(a.roi),
                      spacing=(3.0, 3.0, 3.0), seed=0, lr=1e-3)
    train(cfg, progress=progress)
    span = times[a.warmup + a.steps] - times[a.warmup]
    cuda = torch.cuda.is_available() and a.device != "cpu"
    return {"seconds": span, "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}


def run_reference(a: argparse.Namespace, work: Path) -> dict:
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss
    from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, Orientationd, RandCropByPosNegLabeld,
                                  RandFlipd, ScaleIntensityRanged, Spacingd, SpatialPadd)

    from lkseg.dataset.local import LocalDataset
    from lkseg.models.registry import get_spec

    ds = LocalDataset(work / "dataset")
    device = torch.device("cuda" if a.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    keys = ["image", "label"]
    roi = tuple(a.roi)  # both lay the network tensor out as (X, Y, Z) = (R, A, S)
    transforms = Compose([
        LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys), Orientationd(keys=keys, axcodes="RAS"),
        Spacingd(keys=keys, pixdim=(3.0, 3.0, 3.0), mode=("bilinear", "nearest")),
        ScaleIntensityRanged(keys="image", a_min=-125, a_max=275, b_min=0.0, b_max=1.0, clip=True),
        SpatialPadd(keys=keys, spatial_size=roi),
        RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=roi, pos=1, neg=1, num_samples=1),
        RandFlipd(keys=keys, spatial_axis=0, prob=0.1), RandFlipd(keys=keys, spatial_axis=1, prob=0.1),
        RandFlipd(keys=keys, spatial_axis=2, prob=0.1),
    ])
    items = [{"image": d["image"], "label": d["label"]} for d in ds.datalist()] * a.batch
    data = CacheDataset(items, transforms, cache_rate=1.0, num_workers=0, progress=False)
    loader = DataLoader(data, batch_size=a.batch, shuffle=True, num_workers=0)
    spec = get_spec(a.arch)
    hp = {**spec.paper_config, **(spec.small_config if a.config == "small" else {})}
    torch.manual_seed(0)
    model = spec.constructor(in_channels=1, out_channels=ds.table.num_classes, **hp).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    use_amp = device.type == "cuda"
    step, t_start = 0, None
    while step < a.warmup + a.steps:
        for batch in loader:
            x, y = batch["image"].to(device), batch["label"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(x)
            out = out if isinstance(out, torch.Tensor) else out[0]
            loss = loss_fn(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss)  # synchronise, as our loop does when it logs the loss
            step += 1
            if step == a.warmup:
                t_start = time.perf_counter()
            if step >= a.warmup + a.steps:
                break
    span = time.perf_counter() - t_start
    return {"seconds": span, "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if use_amp else None}


def child(a: argparse.Namespace) -> int:
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(a.work)
    res = run_ours(a, work) if a.role == "ours" else run_reference(a, work)
    voxels = a.batch * a.roi[0] * a.roi[1] * a.roi[2]
    res.update({"role": a.role, "steps_per_s": a.steps / res["seconds"],
                "voxels_per_s": a.steps * voxels / res["seconds"], "host_peak_mb": peak_host_mb()})
    print("RESULT " + json.dumps(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="uxnet")
    p.add_argument("--config", choices=["small", "paper"], default="small")
    p.add_argument("--roi", type=int, nargs=3, default=[64, 64, 32])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--role", choices=["ours", "ref"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role:
        return child(a)

    import torch

    with tempfile.TemporaryDirectory(prefix="lkseg-bench-") as tmp:
        work = make_dataset(Path(tmp))
        results = {}
        base = [sys.executable, __file__, "--arch", a.arch, "--config", a.config, "--roi", *map(str, a.roi),
                "--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup), "--device", a.device,
                "--threads", str(a.threads), "--work", str(work)]
        for role in ("ref", "ours"):
            proc = subprocess.run(base + ["--role", role], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            results[role] = json.loads(lines[-1][len("RESULT "):])
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() and a.device != "cpu" else "cpu"
    print(f"training benchmark: {a.arch} ({a.config}), crop {tuple(a.roi)}, batch {a.batch}, {a.steps} timed steps "
          f"after {a.warmup} warm-up, device {device}, torch threads {a.threads or torch.get_num_threads()}")
    print(f"{'':12}{'steps/s':>10}{'Mvoxel/s':>10}{'host peak MB':>14}{'GPU peak MB':>13}")
    for role, name in (("ours", "lkseg"), ("ref", "MONAI ref")):
        r = results[role]
        gpu = f"{r['gpu_peak_mb']:.0f}" if r["gpu_peak_mb"] is not None else "-"
        print(f"{name:<12}{r['steps_per_s']:>10.3f}{r['voxels_per_s'] / 1e6:>10.3f}{r['host_peak_mb']:>14.0f}{gpu:>13}")
    o, r = results["ours"], results["ref"]
    print(f"ratio lkseg/reference: speed x{o['steps_per_s'] / r['steps_per_s']:.2f}, "
          f"host memory x{o['host_peak_mb'] / r['host_peak_mb']:.2f}"
          + (f", GPU memory x{o['gpu_peak_mb'] / r['gpu_peak_mb']:.2f}" if o["gpu_peak_mb"] and r["gpu_peak_mb"] else ""))
    if a.json:
        a.json.write_text(json.dumps({"config": {k: v for k, v in vars(a).items() if k not in ("json",)},
                                      "device": device, "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
