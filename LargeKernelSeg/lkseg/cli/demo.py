"""``lkseg demo``: segment the bundled sample CT with the bundled default checkpoint, offline.

Writes the label map (NIfTI and Slicer ``.seg.nrrd``), a PNG overlay of a few slices and the
per-organ volumes, and prints the volumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lkseg.errors import LkSegError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment the bundled sample CT with the default checkpoint (offline)")
    p.add_argument("-o", "--out", type=Path, default=Path("lkseg-demo-output"), help="output folder")
    p.add_argument("--image", type=Path, help="another image instead of the bundled sample CT")
    p.add_argument("-m", "--checkpoint", type=Path, help="another checkpoint instead of the default")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lkseg.app import resources
    from lkseg.inference.segmenter import Segmenter
    from lkseg.io import export
    from lkseg.io.imageio import read_image
    from lkseg.utils.progress import TerminalProgress

    image_path = args.image or resources.sample_ct()
    ckpt_path = args.checkpoint or resources.default_model()
    if image_path is None or ckpt_path is None:
        raise LkSegError(
            "the bundled sample CT or default checkpoint is missing from this installation "
            "(expected Resources/Data/sample_ct.nii.gz and Resources/Models/default_model.safetensors); "
            "pass --image and --checkpoint, or set LKSEG_RESOURCES to the Resources folder"
        )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    print(f"image:      {image_path}")
    print(f"checkpoint: {ckpt_path}")
    segmenter = Segmenter.from_checkpoint(ckpt_path, device=args.device)
    image = read_image(image_path)
    with TerminalProgress(desc="segmenting") as bar:
        result = segmenter.segment(image, progress=bar.update)
    print(f"device:     {result.device}")

    stem = "sample_ct_labels"
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
