#!/usr/bin/env python3
"""Train the bundled default checkpoint, reproducibly, with this project's own training code.

What it is: a small 3D UX-Net (the registry's ``small_config``) trained on ONE real CT, the
30-slice abdominal TotalSegmentator example (``example_ct_sm.nii.gz``), against labels that
TotalSegmentator's model produced (``example_seg.nii.gz``; not manual ground truth). Five
large organs are kept: liver, spleen, right kidney, left kidney, stomach (names, colours and
SNOMED CT codes taken from lkseg's BTCV table).

Held-out evaluation, honestly: the volume is cut along k (axial slices). The 8 most inferior
slices (k 0-7) are held out; slices 8-9 are a gap (adjacent 3 mm slices are nearly identical);
the network trains on slices 10-29.

Against overfitting one patient (the model is meant for other people's CTs): strong augmentation
(``--augment-profile strong``: rotation up to 20 degrees about the body axis, tilts, scaling
+-15 %, elastic deformation, intensity scale/shift, gamma, noise, blur; never a left-right flip,
which would swap the paired organs) and early stopping on the held-out slab (validation every 25
steps, ``--patience`` validations without a better Dice end the run; the best checkpoint is kept).
Because the slab chooses the checkpoint, its held-out Dice is optimistic; the card says so. Scores come from the real inference path
(``lkseg.inference.Segmenter``) against the model-made labels on the input voxels: the whole CT
segmented as the demo does, scored on the held-out slices (primary), and the held-out slab
segmented on its own. One patient and model-made labels cannot measure accuracy in general;
the card says so.

Outputs: ``Resources/Data/sample_ct.nii.gz`` (a byte copy of the example CT, CC BY 4.0) and
``Resources/Models/default_model.safetensors``. Runs in a few minutes on 2 CPU cores:

    python scripts/train_default_model.py [--steps 300] [--source DIR] [--resources DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import check_precision  # scripts/ beside this file

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "totalsegmentator-example"  # or --source

#: our label (BTCV table name) <- TotalSegmentator "total" task name
ORGANS = [("liver", "liver"), ("spleen", "spleen"), ("right kidney", "kidney_right"),
          ("left kidney", "kidney_left"), ("stomach", "stomach")]
HELD_OUT = (0, 8)   # k slices [0, 8): held out
TRAIN = (10, 30)    # k slices [10, 30): training (8-9: gap)
ROI = (64, 64, 16)  # network tensor order (X, Y, Z) after RAS orientation: R, A, S (MONAI layout)
SPACING = (6.0, 6.0, 6.0)  # coarse: one 64x64x16 crop spans the whole slab (better than 3 or 4 mm here)
WINDOW = {"mode": "window", "a_min": -125.0, "a_max": 275.0, "b_min": 0.0, "b_max": 1.0, "clip": True}
SEED = 20240607
LR = 3e-3
STEPS = 1200
PATIENCE = 8


def slab(image, k0: int, k1: int):
    """The axial slab k0 <= k < k1 of ``image`` as its own Image (same physical position)."""
    from lkseg.io.image import Image

    origin = image.index_to_physical(np.array([[0, 0, k0]]))[0]
    return Image(np.ascontiguousarray(image.array[k0:k1]), image.spacing, tuple(origin), image.direction.copy())


def default_table():
    from lkseg.checkpoint.labels import LabelTable, get_table

    btcv = get_table("BTCV")
    return LabelTable([replace(btcv.by_name(name), value=i) for i, (name, _) in enumerate(ORGANS, start=1)],
                      name="lkseg default (5 abdominal organs)")


def map_labels(seg, tsv: Path):
    names = {row[1]: int(row[0]) for row in csv.reader(tsv.open(), delimiter="\t") if row}
    out = np.zeros(seg.array.shape, np.uint8)
    for value, (_, ts_name) in enumerate(ORGANS, start=1):
        out[seg.array == names[ts_name]] = value
    return seg.with_array(out)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=SOURCE, help="TotalSegmentator example folder")
    p.add_argument("--resources", type=Path, default=REPO / "Resources", help="where Data/ and Models/ go")
    p.add_argument("--steps", type=int, default=STEPS, help="most steps (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=PATIENCE,
                   help="validations (every 25 steps) without a better held-out Dice before stopping")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: reproducible, and robust on a busy machine)")
    p.add_argument("--architecture", default="uxnet", help="registry architecture (small_config)")
    p.add_argument("--spacing", type=float, default=SPACING[0], help="isotropic network spacing in mm")
    p.add_argument("--roi", type=int, nargs=3, default=list(ROI), help="crop size (X, Y, Z)")
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--augment-profile", choices=["none", "light", "strong"], default="strong",
                   help="training augmentation (never flips: they swap paired organs)")
    p.add_argument("--work", type=Path, help="keep the dataset and job folder here (default: a temp folder)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from lkseg import __version__
    from lkseg.checkpoint.native import load_state_dict, save_checkpoint
    from lkseg.dataset.local import LocalDataset
    from lkseg.io.imageio import read_image
    from lkseg.inference.segmenter import Segmenter
    from lkseg.evaluation.metrics import dice_per_label
    from lkseg.training.config import TrainConfig
    from lkseg.training.train import train

    torch.set_num_threads(args.threads)
    seed_everything(SEED)
    ct_path, seg_path = args.source / "example_ct_sm.nii.gz", args.source / "example_seg.nii.gz"
    ct, seg = read_image(ct_path), read_image(seg_path)
    table = default_table()
    labels = map_labels(seg, args.source / "example_seg_labels.tsv")

    work = args.work or Path(tempfile.mkdtemp(prefix="lkseg-default-"))
    if (work / "job").exists():
        shutil.rmtree(work / "job")  # always train from the start: the recipe must be reproducible
    if (work / "dataset").exists():
        shutil.rmtree(work / "dataset")
    ds = LocalDataset.create(work / "dataset", table, name="TotalSegmentator example CT (model-made labels)")
    ds.add_case(slab(ct, *TRAIN), slab(labels, *TRAIN), table, case_id=f"ts_example_k{TRAIN[0]}-{TRAIN[1] - 1}")
    held_ct, held_lab = slab(ct, *HELD_OUT), slab(labels, *HELD_OUT)
    held_id = ds.add_case(held_ct, held_lab, table, case_id=f"ts_example_k{HELD_OUT[0]}-{HELD_OUT[1] - 1}")
    (work / "table.json").write_text(json.dumps({"name": table.name, "labels": table.to_list()}))

    t0 = time.perf_counter()
    config = TrainConfig(
        dataset=ds.root, out=work / "job", architecture=args.architecture, model_config="small",
        labels=str(work / "table.json"), steps=args.steps, device="cpu", val_every=25, checkpoint_every=50,
        patience=args.patience, seed=SEED, batch_size=2, lr=args.lr, roi=tuple(args.roi),
        spacing=(args.spacing,) * 3, intensity=WINDOW, val_cases=[held_id], augment=args.augment_profile != "none",
        augment_profile="light" if args.augment_profile == "none" else args.augment_profile,
        deterministic=True, num_threads=args.threads)
    best = train(config)
    train_s = time.perf_counter() - t0
    done = json.loads((work / "job" / "progress.jsonl").read_text().splitlines()[-1])
    ran = done["step"]

    # held-out scores through the real inference path (lkseg.inference.Segmenter), on input voxels:
    # (a) the whole CT segmented as the demo does, Dice on the held-out slices only (their labels
    #     were never seen; their image was not in the training data either);
    # (b) the held-out slab segmented on its own (no context from the training slices).
    state, card = load_state_dict(best)
    segmenter = Segmenter.from_checkpoint(best, device="cpu")
    full = segmenter.segment(ct).labels.array
    alone = segmenter.segment(held_ct).labels.array

    def named(scores: dict) -> dict:
        return {table.by_value(v).name: round(float(s), 4) for v, s in scores.items()}

    heldout = named(dice_per_label(full[slice(*HELD_OUT)], labels.array[slice(*HELD_OUT)], table.values))
    heldout_alone = named(dice_per_label(alone, held_lab.array, table.values))
    train_fit = named(dice_per_label(full[slice(*TRAIN)], labels.array[slice(*TRAIN)], table.values))
    present = {table.by_value(v).name: int((held_lab.array == v).sum()) for v in table.values}
    mean = round(float(np.mean(list(heldout.values()))), 4)
    ct_sha = hashlib.sha256(ct_path.read_bytes()).hexdigest()
    notes = (
        "DEMONSTRATION MODEL, NOT FOR CLINICAL USE. A small 3D UX-Net trained by "
        "scripts/train_default_model.py on ONE CT (the 30-slice abdominal TotalSegmentator example, CC BY 4.0, "
        "Wasserthal et al., Radiology: AI 2023) against labels made by the TotalSegmentator model (not manual "
        f"ground truth). Trained on axial slices k{TRAIN[0]}-{TRAIN[1] - 1} only; slices "
        f"k{HELD_OUT[0]}-{HELD_OUT[1] - 1} were held out (k8-9 unused as a gap). Augmentation "
        f"'{args.augment_profile}' (no flips); the held-out slab chose the checkpoint (early stopping: step "
        f"{done['best_step']} of {ran}), so its scores are optimistic. heldout_dice: the whole CT "
        "segmented with lkseg's inference, Dice on the held-out slices; heldout_dice_slab_alone: the held-out slab "
        "segmented on its own. Held-out Dice on nearby slices of the same patient says little about other CTs.")
    prov = replace(card.provenance, notes=notes, training_data={
        **card.provenance.training_data,
        "source": "TotalSegmentator example CT example_ct_sm.nii.gz (wasserth/TotalSegmentator tests/reference_files)",
        "source_sha256": ct_sha, "labels": "TotalSegmentator v2 'total' output (model-made), 5 organs kept",
        "train_slices_k": list(range(*TRAIN)), "heldout_slices_k": list(range(*HELD_OUT)),
        "patients": 1, "seed": SEED, "recipe": "scripts/train_default_model.py",
        "augmentation": args.augment_profile, "steps_run": ran, "best_step": done["best_step"],
        "stopped_early": done["stopped_early"] is not None, "checkpoint_chosen_by": "held-out slab Dice"},
        metrics={**card.provenance.metrics, "heldout_dice": heldout, "heldout_dice_mean": mean,
                 "heldout_dice_slab_alone": heldout_alone, "train_region_dice": train_fit,
                 "heldout_voxels": present, "heldout_how": "lkseg.inference.Segmenter, Dice against the model-made "
                 "labels on the input grid", "train_seconds": round(train_s, 1)},
        lkseg_version=__version__)
    card = replace(card, provenance=prov, modality="CT")

    models, data = args.resources / "Models", args.resources / "Data"
    models.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    dst = save_checkpoint(models / "default_model.safetensors", state, card)
    sample = data / "sample_ct.nii.gz"
    shutil.copyfile(ct_path, sample)
    assert hashlib.sha256(sample.read_bytes()).hexdigest() == ct_sha
    # float32 or bfloat16 at inference: measured on the sample (this model's margins are thin: fp32)
    agreement = check_precision.precision_agreement(dst, [sample])
    check_precision.write_precision(dst, check_precision.card_precision(agreement), agreement)

    print(f"trained {ran} of {args.steps} steps (best at {done['best_step']}) in {train_s:.0f} s; checkpoint {dst} ({dst.stat().st_size / 1e6:.2f} MB)")
    print(f"held-out Dice (slices k{HELD_OUT[0]}-{HELD_OUT[1] - 1}, whole CT segmented): mean {mean}")
    print(f"  {'organ':<14} {'held-out':>8} {'slab alone':>10} {'train fit':>9}")
    for name, d in heldout.items():
        print(f"  {name:<14} {d:>8.3f} {heldout_alone[name]:>10.3f} {train_fit[name]:>9.3f}"
              f"  ({present[name]} held-out reference voxels)")
    print(f"trainer's validation (slab alone, network grid): {card.provenance.metrics.get('val_dice')}")
    print(f"sample CT: {sample}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
