"""Integrity of what is read: files that end early, voxels that are not numbers, DICOM series with
missing or uneven slices. Checked, not assumed: SimpleITK zero-fills a truncated file and stretches a
series over a missing slice without saying so."""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lkseg.errors import LkSegError
from lkseg.io.image import Image

log = logging.getLogger(__name__)

#: slice spacing may vary this much (relative) before a series counts as uneven
UNEVEN_TOLERANCE = 0.01
#: a gap this many times the usual spacing means a missing slice
GAP_FACTOR = 1.5


class IncompleteFileError(LkSegError):
    """A file holds less data than its header promises, or its compressed stream is damaged."""


def _gzip_length(path: Path) -> int:
    """Uncompressed length of a whole-file gzip stream, reading it to the end (CRC and size checked)."""
    n = 0
    try:
        with gzip.open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                n += len(block)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise IncompleteFileError(f"{path}: the compressed file is damaged or ends early ({exc}); it was not "
                                  "copied or written completely. Use a complete copy of the image") from None
    return n


def _nifti_header(header: bytes) -> tuple[str, tuple[int, ...], int, int, int] | None:
    """(byte order, dim[0..7], datatype, bitpix, data offset) of a NIfTI-1 or NIfTI-2 header; None if not NIfTI."""
    for order in ("<", ">"):
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            return (order, struct.unpack(order + "8h", header[40:56]), struct.unpack(order + "h", header[70:72])[0],
                    struct.unpack(order + "h", header[72:74])[0], max(int(struct.unpack(order + "f", header[108:112])[0]), 352))
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            return (order, struct.unpack(order + "8q", header[16:80]), struct.unpack(order + "h", header[12:14])[0],
                    struct.unpack(order + "h", header[14:16])[0], max(struct.unpack(order + "q", header[168:176])[0], 544))
    return None


def _nifti_needed_bytes(header: bytes) -> int | None:
    """Bytes a NIfTI-1/2 file must hold (data offset + voxel data), from its header; None if not NIfTI."""
    parsed = _nifti_header(header)
    if parsed is None:
        return None
    _, dims, _, bitpix, offset = parsed
    return offset + math.prod(max(1, d) for d in dims[1:1 + max(1, min(dims[0], 7))]) * bitpix // 8


def _open_maybe_gzipped(path: Path):
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def check_file_complete(path: Path) -> None:
    """Refuse a gzip file whose stream ends early or fails its CRC, and a NIfTI file shorter than its header
    says. Other formats are left to their readers (NRRD/MHA compression errors surface there)."""
    with open(path, "rb") as fh:
        head = fh.read(544)
    gzipped = head[:2] == b"\x1f\x8b"
    if gzipped:
        length = _gzip_length(path)
        with gzip.open(path, "rb") as fh:
            head = fh.read(544)
    else:
        length = path.stat().st_size
    needed = _nifti_needed_bytes(head) if path.name.lower().endswith((".nii", ".nii.gz")) else None
    if needed is not None and length < needed:
        raise IncompleteFileError(f"{path}: holds {length:,} bytes of image data where its header needs "
                                  f"{needed:,}; the file is truncated. Use a complete copy of the image")


def nifti_non_finite(path: Path) -> np.ndarray | None:
    """Where a float NIfTI file holds NaN/Inf ([k, j, i] mask), read from the file itself: SimpleITK's
    NIfTI reader turns them into 0 (water, not background) without a word. None when there are none."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    with _open_maybe_gzipped(path) as fh:
        parsed = _nifti_header(fh.read(540))
        if parsed is None:
            return None
        order, dims, datatype, _, offset = parsed
        dtype = {16: "f4", 64: "f8"}.get(datatype)
        if dtype is None or dims[0] < 3 or any(d > 1 for d in dims[4:1 + dims[0]]):
            return None
        fh.seek(offset)
        n = dims[1] * dims[2] * dims[3]
        data = np.frombuffer(fh.read(n * int(dtype[1])), dtype=order + dtype)
    if data.size != n:
        return None
    bad = ~np.isfinite(data)
    return bad.reshape(dims[3], dims[2], dims[1]) if bad.any() else None


def finite_voxels(image: Image) -> tuple[Image, str | None]:
    """Replace NaN/Inf voxels by the smallest finite value (background-like, never an organ's intensity)
    and say so; refuse an image with no finite voxel at all."""
    arr = image.array
    if not np.issubdtype(arr.dtype, np.floating):
        return image, None
    bad = ~np.isfinite(arr)
    n = int(bad.sum())
    if not n:
        return image, None
    if n == arr.size:
        raise LkSegError("every voxel of the image is NaN or infinite; there is nothing to segment")
    fill = float(arr[~bad].min())
    fixed = arr.copy()
    fixed[bad] = fill
    message = (f"{n:,} voxels ({100.0 * n / arr.size:.2f} %) were NaN or infinite; they were set to {fill:g} "
               "(the smallest finite value) before segmenting: check the image")
    return image.with_array(fixed), message


def _slice_positions(files: list[str]) -> tuple[np.ndarray, float | None]:
    """Each file's position along the slice normal (mm) and the header's slice thickness."""
    reader = sitk.ImageFileReader()
    normal, positions, thickness = None, [], None
    for f in files:
        reader.SetFileName(f)
        reader.ReadImageInformation()
        if not reader.HasMetaDataKey("0020|0032"):
            return np.array([]), None
        pos = np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
        if normal is None:
            d = np.array(reader.GetDirection(), float).reshape(3, 3)
            normal = d[:, 2]
            if reader.HasMetaDataKey("0018|0050"):
                try:
                    thickness = float(reader.GetMetaData("0018|0050"))
                except ValueError:
                    thickness = None
        positions.append(float(pos @ normal))
    return np.sort(np.array(positions)), thickness


def check_slice_spacing(folder: Path, files: list[str]) -> str | None:
    """Refuse a series with a missing slice (the volume would be stretched); warn about uneven spacing.
    Returns the warning, if any."""
    if len(files) < 3:
        return None
    positions, _ = _slice_positions(files)
    if positions.size < 3:
        return None
    steps = np.diff(positions)
    if np.any(steps < 1e-3):
        raise LkSegError(f"{folder}: {int(np.sum(steps < 1e-3)) + 1} DICOM files share a slice position; the folder "
                         "mixes images of one position (several echoes, phases or duplicates). Put one series "
                         "with one image per position in the folder")
    usual = float(np.median(steps))
    gaps = np.nonzero(steps > GAP_FACTOR * usual)[0]
    if gaps.size:
        where = ", ".join(f"{positions[i]:.1f}->{positions[i + 1]:.1f} mm" for i in gaps[:3])
        missing = int(round(float(np.sum(steps[gaps] / usual - 1))))
        raise LkSegError(f"{folder}: the DICOM series has a gap ({where}, where slices are {usual:.2f} mm apart "
                         f"elsewhere): about {missing} slice(s) are missing, and reading it would distort the "
                         "volume. Export the complete series")
    spread = float(steps.max() - steps.min())
    if spread > UNEVEN_TOLERANCE * usual:
        return (f"{folder}: slice spacing varies from {steps.min():.3f} to {steps.max():.3f} mm; the volume "
                f"uses {usual:.3f} mm, so positions may be off by up to {spread:.3f} mm")
    return None
