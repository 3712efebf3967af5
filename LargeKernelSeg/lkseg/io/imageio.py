"""Reading and writing 3D images with their full geometry (SimpleITK underneath).

Supported: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``,
``.mhd``), any other format SimpleITK reads, and a folder holding a DICOM series. Conversions
between :class:`lkseg.io.image.Image` and ``SimpleITK.Image`` are lossless (array, spacing,
origin, direction).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lkseg.errors import LkSegError
from lkseg.io.image import Image
from lkseg.io.integrity import check_file_complete, check_slice_spacing, nifti_non_finite
from lkseg.utils.atomic import atomic_path

log = logging.getLogger(__name__)

#: suffixes :func:`read_image` treats as image files when it is given a folder of files
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd")


class ImageReadError(LkSegError):
    """An image file or DICOM folder could not be read as a 3D volume."""


def is_image_file(path: Path) -> bool:
    """True when ``path`` has one of the image suffixes this module reads."""
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def to_sitk(image: Image) -> sitk.Image:
    """A ``SimpleITK.Image`` with the same voxels and geometry."""
    out = sitk.GetImageFromArray(np.ascontiguousarray(image.array), isVector=False)
    out.SetSpacing(tuple(float(s) for s in image.spacing))
    out.SetOrigin(tuple(float(o) for o in image.origin))
    out.SetDirection(tuple(float(d) for d in np.asarray(image.direction).reshape(-1)))
    return out


def from_sitk(img: sitk.Image, source: str | Path = "the image") -> Image:
    """An :class:`Image` from a 3D scalar ``SimpleITK.Image`` (2D/4D/vector images are refused)."""
    dim = img.GetDimension()
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise LkSegError(
            f"{source}: has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
            "LargeKernelSeg needs a single-channel (scalar) 3D volume"
        )
    if dim == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
        dim = 3
    if dim != 3:
        raise LkSegError(
            f"{source}: is a {dim}D image of size {img.GetSize()}; LargeKernelSeg segments 3D "
            "volumes (export a single 3D volume, e.g. one time point or one series)"
        )
    array = sitk.GetArrayFromImage(img)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Image(array, img.GetSpacing(), img.GetOrigin(), direction)


def dicom_series_files(folder: Path) -> list[str]:
    """The files of the largest DICOM series in ``folder`` in GDCM's geometric order (slice k = file k)."""
    reader_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    best: list[str] = []
    counts = {}
    for sid in reader_ids:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid))
        counts[sid] = len(files)
        if len(files) > len(best):
            best, best_id = files, sid
    if len(reader_ids) > 1:
        others = ", ".join(f"{sid} ({n} files)" for sid, n in counts.items() if sid != best_id)
        log.warning("%s holds %d DICOM series; reading the largest, %s (%d files), not %s; put one series per "
                    "folder to choose", folder, len(reader_ids), best_id, len(best), others)
    return best


def read_image(path: str | Path) -> Image:
    """Read a 3D volume from an image file or a DICOM series folder.

    Raises :class:`ImageReadError` (naming the file) for a missing, unreadable or corrupt file,
    and :class:`LkSegError` for an image that is not a scalar 3D volume.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if path.is_dir():
        files = dicom_series_files(path)
        if not files:
            raise ImageReadError(
                f"{path}: is a folder without a readable DICOM series; pass an image file "
                "(NIfTI, NRRD, MHA) or a folder of DICOM files of one series"
            )
        uneven = check_slice_spacing(path, files)
        if uneven:
            log.warning("%s", uneven)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            raise ImageReadError(f"{path}: could not read the DICOM series: {_first_line(exc)}") from exc
        return from_sitk(img, path)
    check_file_complete(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageReadError(
            f"{path}: could not be read as an image ({_first_line(exc)}); check that the file is a "
            "complete NIfTI, NRRD, MHA or DICOM file"
        ) from exc
    image = from_sitk(img, path)
    bad = nifti_non_finite(path)
    if bad is not None and bad.shape == image.array.shape:  # put back what the reader turned into 0
        array = image.array.astype(np.float32, copy=True)
        array[bad] = np.nan
        log.warning("%s: %d voxels are NaN or infinite in the file", path, int(bad.sum()))
        image = image.with_array(array)
    return image


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # SimpleITK messages start with a source location; the useful text is usually last
    return lines[-1] if lines else type(exc).__name__


def write_image(image: Image, path: str | Path, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` (format by suffix) atomically: temp file, fsync, rename."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            sitk.WriteImage(to_sitk(image), str(tmp), useCompression=compress)
    except RuntimeError as exc:
        raise LkSegError(f"{path}: could not write the image: {_first_line(exc)}") from exc
    return path
