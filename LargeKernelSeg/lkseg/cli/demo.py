"""``lkseg demo``: segment a bundled sample image with its bundled model, offline (the CT model by
default; ``--model mr`` the T2 MR model on the sample MR).

Writes the label map (NIfTI and Slicer ``.seg.nrrd``), a PNG overlay of a few slices and the
per-organ volumes, and prints the volumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lkseg.cli.inference_options import add_speed_arguments, speed_options
from lkseg.errors import LkSegError


def register(sub: argparse._SubParsersAction) -> None:
    from lkseg.app.resources import BUNDLED

    p = sub.add_parser("demo", help="segment the bundled sample CT (or MR) with its bundled model (offline)")
    p.add_argument("-o", "--out", type=Path, default=Path("lkseg-demo-output"), help="output folder")
    p.add_argument("--model", default="ct", choices=[e.key for e in BUNDLED],
                   help="which bundled model and sample: " + "; ".join(f"{e.key}: {e.label}" for e in BUNDLED))
    p.add_argument("--image", type=Path, help="another image instead of the bundled sample")
    p.add_argument("-m", "--checkpoint", type=Path, help="another checkpoint instead of the bundled one")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    add_speed_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lkseg.app import resources
    from lkseg.inference.segmenter import Segmenter
    from lkseg.io import export
    from lkseg.io.imageio import read_image
    from lkseg.utils.progress import TerminalProgress

    entry = resources.bundled_model(args.model)
    image_path = args.image or resources.bundled(entry.sample)
    ckpt_path = args.checkpoint or resources.bundled(entry.model)
    if image_path is None or ckpt_path is None:
        raise LkSegError(
            f"the bundled sample or model of {entry.label} is missing from this installation "
            f"(expected Resources/{entry.sample.as_posix()} and Resources/{entry.model.as_posix()}); "
            "pass --image and --checkpoint, or set LKSEG_RESOURCES to the Resources folder"
        )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    print(f"image:      {image_path}")
    print(f"checkpoint: {ckpt_path}")
    segmenter = Segmenter.from_checkpoint(ckpt_path, device=args.device, **speed_options(args))
    image = read_image(image_path)
    with TerminalProgress(desc="segmenting") as bar:
        result = segmenter.segment(image, progress=bar.update)
    print(f"device:     {result.device} ({result.precision})")
    for note in result.notes:
        print(f"lkseg: warning: {note}", file=sys.stderr)

    stem = f"{image_path.name.split('.')[0]}_labels"
    nifti = out / f"{stem}.nii.gz"
    seg = out / f"{stem}.seg.nrrd"
    png = out / f"{stem}_overlay.png"
    volumes = out / f"{stem}_volumes.csv"
    export.write_labels(result.labels, result.table, nifti)
    export.write_labels(result.labels, result.table, seg)
    export.overlay_png(image, result.labels, result.table, png)
    rows = export.organ_volumes(result.labels, result.table)
    export.write_volumes(rows, volumes)

    print("\norgan volumes:")
    for row in rows:
        print(f"  {row['value']:>3}  {row['name']:<28} {row['volume_ml']:>10.1f} mL")
    print("\nwrote:")
    for p in (nifti, seg, png, volumes):
        print(f"  {p}")
    return 0
