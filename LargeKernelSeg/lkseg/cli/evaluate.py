"""``lkseg evaluate``: per-organ Dice of label maps against reference label maps.

``lkseg evaluate PRED... --reference REF...`` compares label files pairwise;
``lkseg evaluate IMAGE... -m CKPT --reference REF...`` segments the images first.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lkseg.errors import LkSegError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-organ Dice of predictions (or of a checkpoint) against references")
    p.add_argument("inputs", nargs="+", type=Path, metavar="PRED",
                   help="predicted label maps, or images when -m is given")
    p.add_argument("--reference", "-r", nargs="+", type=Path, required=True, metavar="REF",
                   help="reference label maps, one per input, same order")
    p.add_argument("-m", "--checkpoint", type=Path, help="segment the inputs with this checkpoint first")
    p.add_argument("--labels", help="label table for names: BTCV, AMOS, FLARE21, a JSON file or a checkpoint")
    p.add_argument("--device", default="auto", help="device when -m is given (auto, cpu, cuda, mps)")
    p.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace a --json file that already exists")
    p.set_defaults(func=run)


def _table(args: argparse.Namespace, segmenter: Any) -> Any:
    if segmenter is not None:
        return segmenter.table
    if args.labels:
        from lkseg.dataset.label_tables import load_label_table

        return load_label_table(args.labels)
    return None


def run(args: argparse.Namespace) -> int:
    from lkseg.evaluation.metrics import dice_per_label, mean_dice
    from lkseg.io.imageio import read_image

    if len(args.inputs) != len(args.reference):
        raise LkSegError(f"{len(args.inputs)} input(s) but {len(args.reference)} reference(s); give one "
                         "reference label map per input, in the same order")
    if args.json:
        from lkseg.utils.overwrite import check_outputs

        protected = [*args.inputs, *args.reference, *([args.checkpoint] if args.checkpoint else [])]
        check_outputs([args.json], protected=protected, overwrite=args.overwrite)
    segmenter = None
    if args.checkpoint:
        from lkseg.inference.segmenter import Segmenter

        segmenter = Segmenter.from_checkpoint(args.checkpoint, device=args.device)
    table = _table(args, segmenter)
    report: list[dict[str, Any]] = []
    per_value: dict[int, list[float]] = {}
    for src, ref_path in zip(args.inputs, args.reference):
        ref = read_image(ref_path)
        if segmenter is not None:
            image = read_image(src)
            pred = segmenter.segment(image).labels
        else:
            pred = read_image(src)
        if not pred.same_grid(ref, atol=1e-3):
            raise LkSegError(f"{src} and {ref_path} are not on the same voxel grid (size, spacing, origin, "
                             "direction); resample the reference onto the image first")
        values = table.values if table is not None else sorted(
            {int(v) for v in np.unique(ref.array)} | {int(v) for v in np.unique(pred.array)})
        values = [v for v in values if v != 0]
        scores = dice_per_label(pred.array.astype(np.int64), ref.array.astype(np.int64), values)
        for v, s in scores.items():
            per_value.setdefault(v, []).append(s)
        report.append({"input": str(src), "reference": str(ref_path),
                       "dice": {str(v): (None if math.isnan(s) else s) for v, s in scores.items()},
                       "mean_dice": _none(mean_dice(scores))})
        print(f"{src}  vs  {ref_path}: mean Dice {mean_dice(scores):.4f}")
    print(f"\n{'value':>5}  {'organ':<32} {'mean Dice':>9}  (cases)")
    summary = {}
    for v in sorted(per_value):
        vals = [s for s in per_value[v] if not math.isnan(s)]
        name = _name(table, v)
        m = float(np.mean(vals)) if vals else float("nan")
        summary[str(v)] = {"name": name, "dice": _none(m), "cases": len(vals)}
        shown = f"{m:9.4f}" if vals else "      n/a"
        print(f"{v:>5}  {name:<32} {shown}  ({len(vals)})")
    overall = [d["dice"] for d in summary.values() if d["dice"] is not None]
    print(f"\nmean over organs: {np.mean(overall):.4f}" if overall else "\nno organ present in any case")
    if args.json:
        from lkseg.utils.atomic import atomic_write_json

        atomic_write_json(args.json, {"cases": report, "organs": summary})
    return 0


def _name(table: Any, value: int) -> str:
    if table is not None and value in table:
        return table.by_value(value).name
    return f"label {value}"


def _none(x: float) -> float | None:
    return None if math.isnan(x) else x


if __name__ == "__main__":  # pragma: no cover
    from lkseg.cli import main

    sys.exit(main(["evaluate", *sys.argv[1:]]))
