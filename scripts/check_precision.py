#!/usr/bin/env python
"""Do a checkpoint's labels survive reduced precision? Segment images in float32 and in bfloat16 (the
precision ``--precision auto`` takes on CUDA and on CPUs with native bfloat16) and compare the labels.

Agreement is the mean Dice over the organs present, between the float32 and the bfloat16 label maps of
each image (not accuracy: neither is ground truth). A checkpoint whose agreement is below
:data:`AGREEMENT` on any image has class margins too thin for bfloat16; ``--write`` then sets its card's
``inference.precision`` to ``fp32`` (every device runs it in float32), else to ``auto``. The tensors are
not touched (the file is rewritten atomically with the same tensors and digest).

    python scripts/check_precision.py CKPT IMAGE [IMAGE ...] [--write]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

#: the lowest mean Dice between float32 and bfloat16 labels at which bfloat16 is allowed (issue 15)
AGREEMENT = 0.999


def precision_agreement(checkpoint: Path, images: list[Path]) -> dict[str, dict]:
    """Per image: Dice per organ between the float32 and bfloat16 labels, their mean, and the voxel agreement."""
    from lkseg.evaluation.metrics import dice_per_label
    from lkseg.inference.segmenter import Segmenter
    from lkseg.io.imageio import read_image

    full = Segmenter.from_checkpoint(checkpoint, "cpu", precision="fp32")
    half = Segmenter.from_checkpoint(checkpoint, "cpu", precision="bf16")
    out = {}
    for path in images:
        image = read_image(path)
        a, b = full.segment(image).labels.array, half.segment(image).labels.array
        dice = dice_per_label(a, b, full.card.labels.values)
        present = [d for d in dice.values() if not np.isnan(d)]
        out[str(path)] = {"dice": {full.card.labels.by_value(v).name: round(float(d), 5)
                                   for v, d in dice.items() if not np.isnan(d)},
                          "mean_dice": round(float(np.mean(present)), 5) if present else None,
                          "voxel_agreement": round(float((a == b).mean()), 6)}
    return out


def card_precision(agreement: dict[str, dict]) -> str:
    """``fp32`` if any image's mean Dice is below :data:`AGREEMENT`, else ``auto``."""
    means = [r["mean_dice"] for r in agreement.values() if r["mean_dice"] is not None]
    return "fp32" if any(m < AGREEMENT for m in means) else "auto"


def write_precision(checkpoint: Path, precision: str, agreement: dict[str, dict]) -> None:
    """Rewrite ``checkpoint`` with ``inference.precision`` set and the measurement in its metrics."""
    from lkseg.checkpoint.native import load_state_dict, save_checkpoint

    state, card = load_state_dict(checkpoint)
    measured = {Path(k).name: v["mean_dice"] for k, v in agreement.items()}
    prov = replace(card.provenance, metrics={**card.provenance.metrics, "bf16_agreement_dice": measured})
    save_checkpoint(checkpoint, state, replace(card, inference=replace(card.inference, precision=precision),
                                               provenance=prov))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("images", type=Path, nargs="+")
    p.add_argument("--write", action="store_true", help="set the card's inference.precision from the result")
    args = p.parse_args(argv)
    agreement = precision_agreement(args.checkpoint, args.images)
    for path, r in agreement.items():
        organs = ", ".join(f"{n} {d:.4f}" for n, d in r["dice"].items())
        print(f"{path}: mean Dice fp32 vs bf16 {r['mean_dice']}  (voxels {r['voxel_agreement']:.5f}; {organs})")
    precision = card_precision(agreement)
    print(f"inference.precision: {precision} (bfloat16 allowed at mean Dice >= {AGREEMENT})")
    if args.write:
        write_precision(args.checkpoint, precision, agreement)
        print(f"wrote {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
