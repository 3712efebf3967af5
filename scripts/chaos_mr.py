"""The CHAOS T2-SPIR MR cases as the accuracy scripts use them: the split, the label table, the
recipe's grid and normalisation, a local dataset of the cases, and scoring a checkpoint on them.

Shared by ``benchmark_accuracy.py``, ``benchmark_finetune_loop.py`` and ``train_mr_model.py``
(run as ``python scripts/<name>.py``, which puts this folder on ``sys.path``).

Data: 15 CHAOS MR T2-SPIR training cases with manual liver, kidney and spleen labels, as
preprocessed by Ouyang et al. (1.25 x 1.25 x 7.7 mm, 256 x 256 in-plane); licence CC BY-NC-SA 4.0
(anything trained on them carries it). Not in the repository (except the sample MR): pass
``--data`` or keep ``../shared/data/chaos-t2-mr`` beside the checkout.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "chaos-t2-mr"

#: the 15 cases (CHAOS training-set ids)
CASES = (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33)
#: the fixed split, written down once: the first 12 ids train, the last 3 are never trained on
TRAIN = CASES[:12]
VALIDATION = CASES[12:]
#: CHAOS label value -> our organ name (BTCV table names, so codes and colours are the CT model's)
ORGANS = {1: "liver", 2: "right kidney", 3: "left kidney", 4: "spleen"}

SPACING = (3.0, 3.0, 7.7)      # mm; in-plane 1.25 -> 3 mm, slices kept at the data's 7.7 mm
ROI = (96, 96, 32)             # network tensor order (X, Y, Z) after RAS orientation: 288 x 288 x 246 mm
INTENSITY = {"mode": "zscore"}  # MR signal has no absolute scale: zero mean, unit variance per volume
LICENCE = "CC BY-NC-SA 4.0"
#: every candidate: the registry's small configuration, same crops, augmentation, loss, optimiser, schedule
CANDIDATES = ("uxnet", "mednext", "segresnet")  # registry architectures, each in its small_config
SEED = 20261201
LR = 3e-3


def train_candidate(name: str, ds, train_ids, val_ids, work: Path, minutes: float, threads: int,
                    steps: int | None = None, resume: bool = False) -> tuple[Path, dict]:
    """Train one candidate from scratch on ``train_ids`` (all of ``ds`` but ``val_ids``; with no
    ``val_ids``, on every case); returns its final checkpoint and what the run got. ``resume``: an
    interrupted run in ``work`` continues where its last resume state left it (the trainer's resume
    equals the uninterrupted run); otherwise any earlier run there is deleted first."""
    import torch
    from lkseg.training.config import TrainConfig
    from lkseg.training.train import train

    val = [case_id(n) for n in val_ids]
    job = work / f"job_{name}"
    if job.exists() and not resume:
        shutil.rmtree(job)
    torch.manual_seed(SEED)
    t0 = time.perf_counter()
    config = TrainConfig(
        dataset=ds.root, out=job, architecture=name, model_config="small",
        labels=str(table_json(ds.root)), minutes=None if steps else minutes, steps=steps, device="cpu",
        val_every=10**6, checkpoint_every=50, seed=SEED, batch_size=2, lr=LR, roi=ROI,
        spacing=SPACING, intensity=INTENSITY, val_cases=val or None, val_fraction=0.2 if val else 0.0,
        augment=True, num_threads=threads,
        notes=f"{name} trained by scripts/chaos_mr.py's recipe on CHAOS cases {list(train_ids)}")
    train(config)
    seconds = time.perf_counter() - t0
    last = job / "checkpoints" / "last.safetensors"
    return last, {**trained_facts(last), "train_seconds": round(seconds, 1)}


def trained_facts(checkpoint: Path) -> dict[str, Any]:
    """Steps and parameter count of a trained checkpoint (from its card)."""
    from lkseg.checkpoint.native import read_card
    from lkseg.models.registry import build_model, count_parameters

    card = read_card(checkpoint)
    params = count_parameters(build_model(card.architecture, 1, card.labels.num_classes, **card.hyperparameters))
    from lkseg.training.loop import load_resume

    # the trainer's own clock (resume state), which leaves out the time a stopped run waited to be resumed;
    # else the job's log, first to last record
    resume = load_resume(checkpoint.parent / "resume.pt")
    progress = checkpoint.parent.parent / "progress.jsonl"
    times = [json.loads(line).get("time") for line in progress.read_text().splitlines()] if progress.is_file() else []
    times = [t for t in times if t is not None]
    seconds = round(times[-1] - times[0], 1) if len(times) > 1 else None
    if resume is not None and resume.get("elapsed_s"):
        seconds = round(float(resume["elapsed_s"]), 1)
    return {"steps": card.provenance.training_data.get("steps"), "train_seconds": seconds, "parameters": params}


def case_id(n: int) -> str:
    return f"chaos_{n}"


def mr_table():
    """liver, right kidney, left kidney, spleen with the CHAOS values 1-4, entries from lkseg's BTCV table."""
    from lkseg.checkpoint.labels import LabelTable, get_table

    btcv = get_table("BTCV")
    return LabelTable([replace(btcv.by_name(name), value=v) for v, name in ORGANS.items()],
                      name="lkseg MR (4 abdominal organs)")


def read_case(data: Path, n: int):
    """(image, labels) of case ``n``; labels cast to uint8 (the files store float64 integers)."""
    from lkseg.io.imageio import read_image

    image = read_image(data / f"image_{n}.nii.gz")
    labels = read_image(data / f"label_{n}.nii.gz")
    return image, labels.with_array(np.rint(labels.array).astype(np.uint8))


def build_dataset(data: Path, root: Path, cases=CASES):
    """A local dataset (``lkseg.dataset.LocalDataset``) holding ``cases`` under ids ``chaos_<n>``."""
    from lkseg.dataset.local import LocalDataset

    if not (data / "image_1.nii.gz").is_file():
        raise SystemExit(f"no CHAOS cases in {data}; pass --data FOLDER (image_<n>.nii.gz, label_<n>.nii.gz)")
    table = mr_table()
    ds = LocalDataset.create(root, table, name="CHAOS T2-SPIR MR (manual labels, CC BY-NC-SA 4.0)")
    for n in cases:
        image, labels = read_case(data, n)
        ds.add_case(image, labels, table, case_id=case_id(n))
    (root.parent / "mr_table.json").write_text(json.dumps({"name": table.name, "labels": table.to_list()}))
    return ds


def table_json(root: Path) -> Path:
    return root.parent / "mr_table.json"


def score_checkpoint(checkpoint: Path, data: Path, cases, tolerance_mm: float = 2.0,
                     largest_component: bool | None = None) -> dict[str, Any]:
    """Segment each case's image with the real inference path and score it against its manual labels
    (``largest_component``: keep only the largest piece of each organ; None: as the card says).

    Returns ``{"cases": {id: [OrganScore.as_dict()...]}, "summary": lkseg.evaluation.report.summary,
    "seconds_per_case": ...}``.
    """
    from lkseg.evaluation import report
    from lkseg.evaluation.organ_scores import score_case
    from lkseg.inference.segmenter import Segmenter

    segmenter = Segmenter.from_checkpoint(checkpoint, device="cpu", precision="fp32")  # scores in float32 on any CPU
    labels = [(v, name) for v, name in ORGANS.items()]
    scores, t0 = {}, time.perf_counter()
    for n in cases:
        image, ref = read_case(data, n)
        pred = segmenter.segment(image, largest_component=largest_component).labels
        scores[case_id(n)] = score_case(pred, ref, labels, tolerance_mm)
    seconds = (time.perf_counter() - t0) / max(1, len(cases))
    return {"scores": scores, "summary": report.summary(scores), "seconds_per_case": round(seconds, 2)}


def organ_means(result: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{organ: {"dice": mean, "hd95_mm": mean}} over the scored cases."""
    out = {}
    for name in ORGANS.values():
        rows = [s for case in result["scores"].values() for s in case if s.name == name]
        d = [s.dice for s in rows if s.dice is not None]
        h = [s.hd95_mm for s in rows if s.hd95_mm is not None]
        out[name] = {"dice": float(np.mean(d)) if d else None, "hd95_mm": float(np.mean(h)) if h else None}
    return out


def mean_dice(result: dict[str, Any]) -> float:
    """Mean over the four organs of the per-organ mean Dice (missed organs count as 0)."""
    return float(np.mean([m["dice"] or 0.0 for m in organ_means(result).values()]))
