"""``lkseg segment INPUT... -m CKPT -o OUT``: segment files, DICOM folders or folders of images.

Each input gets a progress bar on stderr; a file that cannot be read or segmented is reported
and skipped, the others are still done, and the exit code is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lkseg.errors import Cancelled, LkSegError, os_error_message
from lkseg.cli.inference_options import add_speed_arguments, speed_options
from lkseg.utils.argtypes import positive_int

log = logging.getLogger(__name__)

FORMATS = {"nii.gz": ".nii.gz", "nii": ".nii", "seg.nrrd": ".seg.nrrd", "nrrd": ".nrrd", "mha": ".mha",
           "dicom-seg": ".dcm"}
_STRIP = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment organs in CT/MR volumes (files, DICOM folders, folders of images)")
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                   help="image file (NIfTI, NRRD, MHA), DICOM series folder, or folder of image files")
    p.add_argument("-m", "--checkpoint", type=Path, required=True, help="native checkpoint (.safetensors)")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="output folder (or, for a single input, a label file such as labels.seg.nrrd)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (4x slower, smoother)")
    parts = p.add_mutually_exclusive_group()
    parts.add_argument("--largest-component", action="store_true", default=None,
                       help="keep only the largest piece of each organ (default: as the model card says)")
    parts.add_argument("--all-components", dest="largest_component", action="store_false",
                       help="keep every piece of each organ, even when the model card says to keep the largest")
    p.add_argument("--format", choices=sorted(FORMATS), default=None,
                   help="label file format (default nii.gz; dicom-seg writes a DICOM SEG over a DICOM series input)")
    p.add_argument("--volumes", action="store_true", help="also write per-organ volumes (<name>_volumes.csv)")
    p.add_argument("--overlay", action="store_true", help="also write a PNG overlay of a few axial slices")
    p.add_argument("--sw-batch-size", type=positive_int, default=None,
                   help="windows per batch (default: the card's on a GPU, what fits one 96^3 window on the CPU)")
    add_speed_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    web = p.add_argument_group("DICOMweb", "pull a series from a DICOMweb server and store the DICOM SEG back; "
                               "credentials come from LKSEG_DICOMWEB_USER/LKSEG_DICOMWEB_PASSWORD, "
                               "LKSEG_DICOMWEB_TOKEN or ~/.config/lkseg/dicomweb.json, never the command line")
    web.add_argument("--from-dicomweb", metavar="URL", help="DICOMweb root to pull the series from (.../dicom-web)")
    web.add_argument("--study", metavar="UID", help="Study Instance UID of the series to pull")
    web.add_argument("--series", metavar="UID", help="Series Instance UID of the series to pull")
    web.add_argument("--to-dicomweb", metavar="URL", nargs="?", const="", default=None,
                     help="store the DICOM SEG on this DICOMweb server (default: the --from-dicomweb server)")
    p.set_defaults(func=run)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files stay; a DICOM folder is one input; another folder contributes its image files."""
    import SimpleITK as sitk

    from lkseg.io.imageio import is_image_file

    out: list[Path] = []
    for path in inputs:
        if path.is_dir():
            if sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)):
                out.append(path)
                continue
            files = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith("."))
            folders = sorted(p for p in path.iterdir() if p.is_dir() and sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p)))
            if not files and not folders:
                out.append(path)  # read_image will explain what is missing
            out += files + folders
        else:
            out.append(path)
    return out


def case_name(path: Path) -> str:
    name = path.name
    for s in _STRIP:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return name


def output_paths(inputs: list[Path], out: Path, fmt: str) -> list[Path]:
    """Label file per input: ``OUT`` itself for one input named like a label file, else in ``OUT/``."""
    suffix = FORMATS[fmt]
    if len(inputs) == 1 and any(out.name.lower().endswith(s) for s in FORMATS.values()):
        return [out]
    if out.exists() and not out.is_dir():
        raise LkSegError(f"-o {out}: is a file; give a folder for several inputs")
    names: dict[str, int] = {}
    paths = []
    for p in inputs:
        stem = case_name(p)
        n = names.get(stem, 0)
        names[stem] = n + 1
        paths.append(out / f"{stem}{'_' + str(n) if n else ''}_seg{suffix}")
    return paths


def side_files(dst: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The volume table and overlay written beside a label file, as asked for."""
    stem = case_name(dst)
    files = {}
    if args.volumes:
        files["volumes"] = dst.with_name(f"{stem}_volumes.csv")
    if args.overlay:
        files["overlay"] = dst.with_name(f"{stem}_overlay.png")
    return files


def run(args: argparse.Namespace) -> int:
    args.format = _format(args)
    with _pulled(args) as pulled:
        return _run(args, pulled)


def _format(args: argparse.Namespace) -> str:
    if args.to_dicomweb is not None and args.format not in (None, "dicom-seg"):
        raise LkSegError(f"--to-dicomweb stores a DICOM SEG; drop --format {args.format} (or use --format dicom-seg)")
    if args.out.name.lower().endswith(".dcm") and args.format not in (None, "dicom-seg"):
        raise LkSegError(f"-o {args.out}: a .dcm output is a DICOM SEG; use --format dicom-seg or another file name")
    wants_seg = args.to_dicomweb is not None or args.from_dicomweb or args.out.name.lower().endswith(".dcm")
    return args.format or ("dicom-seg" if wants_seg else "nii.gz")


@contextmanager
def _pulled(args: argparse.Namespace) -> Iterator[list[Path]]:
    """The inputs: the command line's, or the series pulled from --from-dicomweb into a temporary folder."""
    if not args.from_dicomweb:
        if not args.inputs:
            raise LkSegError("give at least one INPUT, or --from-dicomweb URL --study UID --series UID")
        if args.to_dicomweb == "":
            raise LkSegError("--to-dicomweb needs a URL when the series did not come from --from-dicomweb")
        yield list(args.inputs)
        return
    if args.inputs:
        raise LkSegError("give either INPUT files or --from-dicomweb, not both")
    if not (args.study and args.series):
        raise LkSegError("--from-dicomweb needs --study UID and --series UID")
    from lkseg.dicom.dicomweb import pull_series

    with tempfile.TemporaryDirectory(prefix="lkseg-dicomweb-") as tmp:
        print(f"pulling series {args.series} from {args.from_dicomweb}", file=sys.stderr)
        yield [pull_series(args.from_dicomweb, args.study, args.series, Path(tmp) / args.series)]


def _check_dicom_inputs(inputs: list[Path]) -> None:
    """Before any model is loaded: every input must be a DICOM series a SEG can refer to."""
    from lkseg.dicom.source import is_dicom_folder, load_source_series

    other = [p for p in inputs if not is_dicom_folder(p)]
    if other:
        raise LkSegError(f"--format dicom-seg writes a DICOM SEG over the DICOM series it was made on, but {other[0]} "
                         "is not a DICOM series folder; give DICOM folders, or choose --format nii.gz / seg.nrrd")
    for p in inputs:
        load_source_series(p)


def _run(args: argparse.Namespace, given: list[Path]) -> int:
    from lkseg.inference.segmenter import Segmenter
    from lkseg.io import export
    from lkseg.io.imageio import read_image
    from lkseg.utils.devices import precision_name
    from lkseg.utils.overwrite import check_outputs
    from lkseg.utils.progress import TerminalProgress

    inputs = expand_inputs(given)
    if not inputs:
        raise LkSegError("no input images found")
    if args.format == "dicom-seg":
        _check_dicom_inputs(inputs)
    outputs = output_paths(inputs, args.out, args.format)
    check_outputs([f for dst in outputs for f in (dst, *side_files(dst, args).values())],
                  protected=[*inputs, args.checkpoint], overwrite=args.overwrite)
    segmenter = Segmenter.from_checkpoint(args.checkpoint, device=args.device, **speed_options(args))
    print(f"checkpoint: {args.checkpoint} ({segmenter.card.architecture}, {len(segmenter.table)} labels) "
          f"on {segmenter.device}, {precision_name(segmenter.dtype)}", file=sys.stderr)
    failed = 0
    for src, dst in zip(inputs, outputs):
        try:
            image = read_image(src)
            with TerminalProgress(desc=case_name(src)) as bar:
                result = segmenter.segment(image, progress=bar.update, tta=args.tta,
                                           largest_component=args.largest_component,
                                           sw_batch_size=args.sw_batch_size)
            _write(result, src, dst, segmenter, args)
            rows = export.organ_volumes(result.labels, result.table)
            written = [dst]
            side = side_files(dst, args)
            if "volumes" in side:
                written.append(export.write_volumes(rows, side["volumes"]))
            if "overlay" in side:
                written.append(export.overlay_png(image, result.labels, result.table, side["overlay"]))
        except Cancelled:
            raise
        except LkSegError as exc:
            failed += 1
            print(f"lkseg: error: {src}: skipped: {exc}", file=sys.stderr)
            continue
        except OSError as exc:
            failed += 1
            log.debug("details", exc_info=True)
            print(f"lkseg: error: {src}: skipped: {os_error_message(exc)}", file=sys.stderr)
            continue
        except Exception as exc:
            failed += 1
            log.debug("details", exc_info=True)
            print(f"lkseg: error: {src}: skipped: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(f"{src} -> {', '.join(str(w) for w in written)}  ({result.timings['total']:.1f} s)")
        for note in result.notes:
            print(f"lkseg: warning: {src}: {note}", file=sys.stderr)
        for row in rows:
            if row["voxels"]:
                print(f"  {row['value']:>3}  {row['name']:<32} {row['volume_ml']:>10.1f} mL")
    if failed:
        print(f"lkseg: {failed} of {len(inputs)} input(s) failed", file=sys.stderr)
        return 1
    return 0


def _write(result, src: Path, dst: Path, segmenter, args: argparse.Namespace) -> None:
    """The label file in the chosen format; a DICOM SEG also goes to --to-dicomweb when asked."""
    from lkseg.io import export

    if args.format != "dicom-seg":
        export.write_labels(result.labels, result.table, dst)
        return
    from lkseg.dicom import algorithm_of, load_source_series, write_dicom_seg

    write_dicom_seg(result.labels, result.table, load_source_series(src), dst,
                    algorithm=algorithm_of(segmenter.card, args.checkpoint))
    if args.to_dicomweb is not None:
        from lkseg.dicom.dicomweb import store

        url = args.to_dicomweb or args.from_dicomweb
        store(url, [dst])
        print(f"stored {dst.name} on {url}", file=sys.stderr)
