#!/usr/bin/env python3
"""Train the bundled T2 MR model, reproducibly, with this project's own training code.

What it is: a small network (``--architecture``, the registry's small configuration; chosen by
``benchmark_accuracy.py``) trained by the recipe in ``chaos_mr.py`` (3 x 3 x 7.7 mm grid, z-score
per volume, 96 x 96 x 32 crops, rotation/scaling/intensity augmentation, no flips) on ALL 15
CHAOS T2-SPIR cases with their manual labels, for the budget its cross-validation had per fold. Nothing is
selected on any score: the weights are those at the end of the budget.

Its scores come from a cross-validation of the same recipe run before it
(``benchmark_accuracy.py --folds K --candidates ARCH``, whose JSON ``--cv`` points at): each case
scored by a model that never saw it. They are copied into the card; this script does not score
the final model on its own training cases and call that accuracy.

Licence: trained on CHAOS (CC BY-NC-SA 4.0), so the weights carry CC BY-NC-SA 4.0: attribution,
non-commercial, share-alike. The card and ``Resources/Models/mr_t2_model.LICENSE.md`` say so.

Outputs ``Resources/Models/mr_t2_model.safetensors`` and ``Resources/Data/sample_mr_t2.nii.gz``
(a byte copy of CHAOS case ``--sample``, one of the training cases):

    python scripts/train_mr_model.py --cv docs/accuracy/accuracy_cv3.json [--architecture segresnet] [--minutes M | --steps N]

The bundled model: ``--cv docs/accuracy/accuracy_cv3.json`` (2400 steps per fold, so 2400 steps here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import chaos_mr as chaos
import check_precision

MODEL = Path("Models") / "mr_t2_model.safetensors"
SAMPLE = Path("Data") / "sample_mr_t2.nii.gz"
SAMPLE_CASE = 1


def cv_metrics(path: Path, architecture: str) -> dict:
    """The cross-validated scores of ``architecture`` from a ``benchmark_accuracy.py --folds K`` JSON."""
    cv = json.loads(path.read_text())
    rows = [r for r in cv["rows"] if r["network"] == architecture]
    if not rows or not cv["split"].endswith("fold CV"):
        raise SystemExit(f"{path} holds no cross-validation of {architecture}; run benchmark_accuracy.py "
                         f"--folds 3 --candidates {architecture} first")
    row = rows[0]
    lcc = row.get("largest_component")
    # post-processing decided on the cross-validation (nnU-Net's rule): keep only the largest piece of
    # each organ when that raised the cross-validated mean Dice
    if lcc is not None and lcc["mean_dice"] > row["mean_dice"]:
        row = {**row, "organs": lcc["organs"], "mean_dice": lcc["mean_dice"], "per_case": lcc["per_case"],
               "largest_component_chosen": True, "mean_dice_all_components": row["mean_dice"]}
    return {"cv": cv["split"], "cv_budget_per_fold": cv.get("budget") or f"{cv['minutes']:g} min",
            "cv_steps_per_fold": row["steps"],
            "cv_train_cases_per_fold": [len(train) for train, _ in cv["folds"]],
            "cv_dice": {o: round(v["dice"], 4) for o, v in row["organs"].items()},
            "cv_hd95_mm": {o: round(v["hd95_mm"], 2) if v["hd95_mm"] is not None else None
                           for o, v in row["organs"].items()},
            "cv_dice_mean": round(row["mean_dice"], 4),
            "cv_how": "each case segmented by the fold's model that never saw it (lkseg.inference.Segmenter on the "
                      "input grid), scored with lkseg.evaluation (MONAI Dice, HD95) against the manual labels",
            "cv_per_case_dice": {cid: {s["name"]: s["dice"] for s in ss} for cid, ss in row["per_case"].items()},
            "largest_component": bool(row.get("largest_component_chosen")),
            "cv_dice_mean_all_components": round(row.get("mean_dice_all_components", row["mean_dice"]), 4),
            "postprocessing_how": "keep only the largest piece of each organ if that raised the cross-validated "
                                  "mean Dice (decided on the CV scores, as nnU-Net does)"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=chaos.DATA)
    p.add_argument("--cv", type=Path, required=True, help="benchmark_accuracy.py --folds K JSON of this recipe")
    p.add_argument("--architecture", default="segresnet", choices=list(chaos.CANDIDATES))
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="a wall-clock budget (default: the cross-validation's "
                        "budget per fold, in steps or minutes, so the final model trains as the folds did)")
    length.add_argument("--steps", type=int, help="a fixed number of steps instead")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resources", type=Path, default=chaos.REPO / "Resources")
    p.add_argument("--work", type=Path)
    p.add_argument("--weights", type=Path, help="card these trained weights (a last.safetensors of an earlier run "
                   "of this script) instead of training again")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    metrics = cv_metrics(args.cv, args.architecture)
    if args.minutes is None and args.steps is None:  # as the folds were trained
        per_fold = str(metrics["cv_budget_per_fold"])
        if per_fold.endswith(" steps"):
            args.steps = int(per_fold.split()[0])
        else:
            args.minutes = float(per_fold.split()[0])
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"

    from lkseg import __version__
    from lkseg.checkpoint.native import load_state_dict, save_checkpoint

    work = args.work or Path(tempfile.mkdtemp(prefix="lkseg-mr-"))
    if args.weights:
        last, got = args.weights, chaos.trained_facts(args.weights)
        state, card = load_state_dict(last)
        got["train_seconds"] = card.provenance.training_data.get("train_seconds") or got["train_seconds"]
        if card.provenance.training_data.get("cases") != [chaos.case_id(n) for n in chaos.CASES] or \
                card.architecture != args.architecture:
            sys.exit(f"{args.weights} is not a {args.architecture} trained on the 15 CHAOS cases by this script")
    else:
        if (work / "dataset").exists():
            shutil.rmtree(work / "dataset")
        ds = chaos.build_dataset(args.data, work / "dataset")
        last, got = chaos.train_candidate(args.architecture, ds, chaos.CASES, (), work, args.minutes, args.threads,
                                          args.steps)
        state, card = load_state_dict(last)
    sums = {f"image_{n}.nii.gz": hashlib.sha256((args.data / f"image_{n}.nii.gz").read_bytes()).hexdigest()
            for n in chaos.CASES}
    notes = (
        "RESEARCH MODEL, NOT FOR CLINICAL USE. Licence CC BY-NC-SA 4.0 (trained on CHAOS data): attribution, "
        "non-commercial, share-alike. A small " + args.architecture + " trained by scripts/train_mr_model.py on all "
        "15 CHAOS T2-SPIR training cases (Kavur et al., Medical Image Analysis 2021; as preprocessed by Ouyang et "
        "al., ECCV 2020) with their manual liver, kidney and spleen labels. For T2-weighted abdominal MR "
        "(fat-suppressed T2-SPIR); other sequences were not seen. Scores: cross-validation of the same recipe "
        f"({metrics['cv']}, {metrics['cv_budget_per_fold']} per fold on "
        f"{'/'.join(map(str, metrics['cv_train_cases_per_fold']))} cases), each case scored by a "
        "model that never saw it. They are not scores of these weights, which saw all 15 cases and trained for "
        f"{budget}; no unseen case was left to score them on.")
    prov = replace(card.provenance, notes=notes, lkseg_version=__version__, training_data={
        **card.provenance.training_data, "dataset_path": "",
        "source": "CHAOS challenge, MR T2-SPIR training set (DOI 10.5281/zenodo.3431873), preprocessed by "
                  "Ouyang et al. (1.25 x 1.25 x 7.7 mm, 256 x 256), files from github.com/shenqq377/Q-Net",
        "licence": chaos.LICENCE, "labels": "manual (CHAOS experts): liver, right kidney, left kidney, spleen",
        "patients": len(chaos.CASES), "chaos_ids": list(chaos.CASES), "image_sha256": sums,
        "recipe": "scripts/train_mr_model.py (grid, crops, augmentation: scripts/chaos_mr.py)",
        "budget": budget, "train_seconds": got["train_seconds"], "seed": chaos.SEED},
        metrics={**metrics, "step": got["steps"]})
    inference = replace(card.inference, largest_component=metrics["largest_component"])
    card = replace(card, provenance=prov, inference=inference, modality="MR T2-weighted (T2-SPIR)")

    (args.resources / MODEL.parent).mkdir(parents=True, exist_ok=True)
    (args.resources / SAMPLE.parent).mkdir(parents=True, exist_ok=True)
    dst = save_checkpoint(args.resources / MODEL, state, card)
    shutil.copyfile(args.data / f"image_{SAMPLE_CASE}.nii.gz", args.resources / SAMPLE)
    # float32 or bfloat16 at inference: agreement between the two (not accuracy) on four CHAOS images
    agreement = check_precision.precision_agreement(
        dst, [args.resources / SAMPLE, *(args.data / f"image_{n}.nii.gz" for n in chaos.VALIDATION)])
    check_precision.write_precision(dst, check_precision.card_precision(agreement), agreement)
    print(f"trained {got['steps']} steps in {got['train_seconds'] or 0:.0f} s; {dst} ({dst.stat().st_size / 1e6:.2f} MB)")
    print(f"cross-validated ({metrics['cv']}): mean Dice {metrics['cv_dice_mean']:.3f}, per organ {metrics['cv_dice']}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
