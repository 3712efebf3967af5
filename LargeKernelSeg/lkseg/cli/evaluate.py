"""``lkseg evaluate``: per case and organ Dice, HD95, ASSD, normalised surface Dice and volume difference
of label maps against reference label maps (MONAI's metrics, distances in mm).

``lkseg evaluate PRED... --reference REF...`` compares label files pairwise;
``lkseg evaluate IMAGE... -m CKPT --reference REF...`` segments the images first. An organ absent
from both is skipped; one predicted but absent from the reference is a false positive, reported
and kept out of the Dice mean; one in the reference but not predicted is missed (Dice 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lkseg.cli.inference_options import add_speed_arguments, speed_options
from lkseg.errors import LkSegError
from lkseg.utils.argtypes import positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, HD95, ASSD, NSD and volume error of predictions (or of a "
                       "checkpoint) against reference labels")
    p.add_argument("inputs", nargs="+", type=Path, metavar="PRED",
                   help="predicted label maps, or images when -m is given")
    p.add_argument("--reference", "-r", nargs="+", type=Path, required=True, metavar="REF",
                   help="reference label maps, one per input, same order")
    p.add_argument("-m", "--checkpoint", type=Path, help="segment the inputs with this checkpoint first")
    p.add_argument("--labels", help="label table for names: BTCV, AMOS, FLARE21, a JSON file or a checkpoint")
    p.add_argument("--device", default="auto", help="device when -m is given (auto, cpu, cuda, mps)")
    add_speed_arguments(p)
    p.add_argument("--tolerance", type=positive_float, default=None, metavar="MM",
                   help="normalised surface Dice tolerance in mm (default 2)")
    p.add_argument("--json", type=Path, help="also write every score and the summary to this JSON file")
    p.add_argument("--csv", type=Path, help="also write one row per case and organ to this CSV file")
    p.add_argument("--plot", type=Path, help="also write a box plot of Dice and HD95 per organ (PNG)")
    p.add_argument("--overwrite", action="store_true", help="replace report files that already exist")
    p.set_defaults(func=run)


def _table(args: argparse.Namespace, segmenter: Any) -> Any:
    if segmenter is not None:
        return segmenter.table
    if args.labels:
        from lkseg.dataset.label_tables import load_label_table

        return load_label_table(args.labels)
    return None


def _labels(table: Any, pred: Any, ref: Any) -> list[tuple[int, str]]:
    if table is not None:
        return [(lab.value, lab.name) for lab in table.labels]
    values = sorted({int(v) for v in np.unique(ref.array)} | {int(v) for v in np.unique(pred.array)})
    return [(v, f"label {v}") for v in values if v]


def run(args: argparse.Namespace) -> int:
    from lkseg.evaluation import report
    from lkseg.evaluation.organ_scores import DEFAULT_TOLERANCE_MM, dice_mean, score_case
    from lkseg.io.imageio import read_image

    if len(args.inputs) != len(args.reference):
        raise LkSegError(f"{len(args.inputs)} input(s) but {len(args.reference)} reference(s); give one "
                         "reference label map per input, in the same order")
    outputs = [p for p in (args.json, args.csv, args.plot) if p]
    if outputs:
        from lkseg.utils.overwrite import check_outputs

        protected = [*args.inputs, *args.reference, *([args.checkpoint] if args.checkpoint else [])]
        check_outputs(outputs, protected=protected, overwrite=args.overwrite)
    tolerance = args.tolerance or DEFAULT_TOLERANCE_MM
    segmenter = None
    if args.checkpoint:
        from lkseg.inference.segmenter import Segmenter

        segmenter = Segmenter.from_checkpoint(args.checkpoint, device=args.device, **speed_options(args))
    table = _table(args, segmenter)
    cases: dict[str, list] = {}
    for src, ref_path in zip(args.inputs, args.reference):
        ref = read_image(ref_path)
        pred = segmenter.segment(read_image(src)).labels if segmenter is not None else read_image(src)
        if not pred.same_grid(ref, atol=1e-3):
            raise LkSegError(f"{src} and {ref_path} are not on the same voxel grid (size, spacing, origin, "
                             "direction); resample the reference onto the image first")
        name = str(src) if str(src) not in cases else f"{src} ({len(cases)})"
        cases[name] = score_case(pred, ref, _labels(table, pred, ref), tolerance)
        mean = dice_mean(cases[name])
        print(f"{src}  vs  {ref_path}: mean Dice {mean:.4f}" if mean is not None
              else f"{src}  vs  {ref_path}: no organ of the table in the reference")
    result = report.summary(cases)
    print()
    print(report.table_text(result, tolerance))
    if args.json:
        report.write_json(cases, result, tolerance, args.json)
    if args.csv:
        report.write_csv(cases, args.csv)
    if args.plot:
        report.write_boxplot(cases, args.plot)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from lkseg.cli import main

    sys.exit(main(["evaluate", *sys.argv[1:]]))
