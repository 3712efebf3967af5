"""``lkseg dataset add|list|check``: the local dataset of corrected cases (MSD/nnU-Net layout)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lkseg.errors import LkSegError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="add corrected cases to a local dataset, list or check it")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    dsub.required = True

    a = dsub.add_parser("add", help="add an image and its label map as a training case")
    a.add_argument("image", type=Path, help="image file (NIfTI, NRRD, MHA) or DICOM folder")
    a.add_argument("labels", type=Path, help="label map on the image's grid, or a DICOM SEG over the image's "
                   "DICOM series (segments mapped to the label table by SNOMED CT code, else by name)")
    a.add_argument("--dataset", type=Path, required=True, help="dataset folder (created on the first add)")
    a.add_argument("--case-id", help="case id (default: the next case_NNNN); an existing id is re-exported "
                   "and its earlier labels kept in labelsTr/history/")
    src = a.add_mutually_exclusive_group()
    src.add_argument("--labels", dest="table", help="label table: built-in name (BTCV, AMOS, FLARE21) or JSON file")
    src.add_argument("--checkpoint", type=Path, help="take the label table from this checkpoint's card")
    a.add_argument("--map-by-name", action="store_true",
                   help="renumber label values to the dataset's table by label name")
    a.add_argument("--name", help="dataset name when it is created (default: the folder name)")
    a.add_argument("--skip-unmapped", action="store_true",
                   help="DICOM SEG: leave out segments that match no label of the table instead of stopping")
    a.set_defaults(func=run_add)

    lst = dsub.add_parser("list", help="list the cases of a dataset")
    lst.add_argument("dataset", type=Path)
    lst.set_defaults(func=run_list)

    chk = dsub.add_parser("check", help="check a dataset (missing files, geometry, unknown labels); exit 1 on problems")
    chk.add_argument("dataset", type=Path)
    chk.set_defaults(func=run_check)


def run_add(args: argparse.Namespace) -> int:
    from lkseg.dataset.label_tables import load_label_table
    from lkseg.dataset.local import LocalDataset
    from lkseg.io.imageio import read_image

    if args.checkpoint is not None:
        table = load_label_table(args.checkpoint)
    elif args.table:
        table = load_label_table(args.table)
    elif (args.dataset / "dataset.json").is_file():
        table = LocalDataset(args.dataset).table
    else:
        raise LkSegError(f"{args.dataset} is a new dataset: say which labels the label map holds with "
                         "--labels TABLE or --checkpoint CKPT")
    image = read_image(args.image)
    labels = _read_labels(args, image, table)
    ds = LocalDataset.open_or_create(args.dataset, table, name=args.name)
    case_id = ds.add_case(image, labels, table, case_id=args.case_id, map_by_name=args.map_by_name)
    print(f"added case {case_id} to {ds.root} ({len(ds.cases())} cases)")
    return 0


def _read_labels(args: argparse.Namespace, image, table):
    """The label map file, or a DICOM SEG placed on the image's series and mapped to ``table``."""
    from lkseg.dicom.seg_read import is_dicom_seg, labels_from_seg
    from lkseg.io.imageio import read_image

    if not is_dicom_seg(args.labels):
        return read_image(args.labels)
    labels, mapping = labels_from_seg(args.labels, args.image, image, table, skip_unmapped=args.skip_unmapped)
    for line in mapping.unmapped:
        print(f"left out {line}: no label of the table matches it")
    return labels


def run_list(args: argparse.Namespace) -> int:
    from lkseg.dataset.files import read_header
    from lkseg.dataset.local import LocalDataset

    ds = LocalDataset(args.dataset)
    table = ds.table
    cases = ds.cases()
    print(f"dataset {ds.name} at {ds.root}: {len(cases)} cases")
    print("labels: " + ", ".join(f"{lab.value} {lab.name}" for lab in table.labels))
    for cid in cases:
        path = ds.image_path(cid)
        try:
            size, spacing = read_header(path)[:2]
            geo = f"{'x'.join(str(s) for s in size)} voxels, {'x'.join(f'{s:g}' for s in spacing)} mm"
        except (RuntimeError, OSError):
            geo = "image missing or unreadable"
        print(f"  {cid:<24} {geo}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from lkseg.dataset.local import LocalDataset

    ds = LocalDataset(args.dataset)
    problems = ds.check()
    if not problems:
        print(f"{ds.root}: {len(ds.cases())} cases, no problems")
        return 0
    print(f"{ds.root}: {len(problems)} problem(s)")
    for p in problems:
        print(f"  - {p}")
    return 1
