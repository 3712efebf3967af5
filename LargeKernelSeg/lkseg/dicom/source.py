"""The DICOM series a volume was read from, slice by slice.

:func:`lkseg.io.imageio.read_image` reads a DICOM folder with SimpleITK, whose slice ``k`` is the
``k``-th file of GDCM's geometric sort. :func:`load_source_series` returns the headers of the
same files in the same order, so frame ``k`` of a DICOM SEG is slice ``k`` of the volume, and
:meth:`SourceSeries.check_grid` proves a label map sits on exactly those slices (rows, columns,
positions, orientation, pixel spacing) before anything is written against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from lkseg.errors import LkSegError
from lkseg.io.image import Image
from lkseg.io.imageio import dicom_series_files

#: Segmentation Storage
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: millimetres two positions may differ by and still be the same slice
POSITION_TOLERANCE_MM = 1e-3


class DicomSourceError(LkSegError):
    """The input is not a DICOM series, or a label map is not on its grid."""


@dataclass
class SourceSeries:
    """Headers (no pixel data) of one DICOM series, in the slice order of the volume read from it."""

    folder: Path
    files: list[Path]
    datasets: list[pydicom.Dataset]

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    def check_grid(self, image: Image) -> None:
        """Refuse ``image`` unless its voxel grid is this series' grid, slice for slice."""
        k, rows, cols = image.array.shape
        if k != len(self.datasets):
            raise DicomSourceError(f"the label map has {k} slices but the DICOM series {self.folder} has "
                                   f"{len(self.datasets)}; a DICOM SEG must be written against the series the "
                                   "labels were made on")
        first = self.datasets[0]
        if (int(first.Rows), int(first.Columns)) != (rows, cols):
            raise DicomSourceError(f"the label map's slices are {rows}x{cols} but the series' images are "
                                   f"{first.Rows}x{first.Columns}; use labels made on this series")
        lps = image.ijk_to_lps()
        for index, ds in enumerate(self.datasets):
            expected = lps[:3, :3] @ np.array([0.0, 0.0, index]) + lps[:3, 3]
            found = np.asarray([float(v) for v in ds.ImagePositionPatient])
            if np.max(np.abs(found - expected)) > POSITION_TOLERANCE_MM:
                raise DicomSourceError(f"slice {index} of the label map lies at {np.round(expected, 3).tolist()} mm "
                                       f"but {self.files[index].name} at {np.round(found, 3).tolist()} mm; the "
                                       "labels are not on this series' grid")
            orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            if np.max(np.abs(orientation - image.direction[:, :2].T.reshape(-1))) > 1e-4:
                raise DicomSourceError(f"{self.files[index].name}: its orientation differs from the label map's; "
                                       "the labels are not on this series' grid")
            spacing = [float(v) for v in ds.PixelSpacing]  # row spacing (along j), then column spacing (along i)
            if abs(spacing[0] - image.spacing[1]) > 1e-4 or abs(spacing[1] - image.spacing[0]) > 1e-4:
                raise DicomSourceError(f"{self.files[index].name}: pixel spacing {spacing} differs from the label "
                                       f"map's {image.spacing[1]:g}x{image.spacing[0]:g} mm")


def is_dicom_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding a readable DICOM image series."""
    return Path(path).is_dir() and bool(dicom_series_files(Path(path)))


def load_source_series(folder: str | Path) -> SourceSeries:
    """The headers of the series :func:`~lkseg.io.imageio.read_image` reads from ``folder``, in its slice order."""
    folder = Path(folder)
    files = [Path(f) for f in dicom_series_files(folder)] if folder.is_dir() else []
    if not files:
        raise DicomSourceError(f"{folder}: is not a folder holding a DICOM series; DICOM SEG is written against the "
                               "DICOM images the labels were made on, so segment a DICOM series folder "
                               "(a NIfTI/NRRD input has no DICOM identity to refer to)")
    datasets = []
    for f in files:
        try:
            datasets.append(_with_instance_uids(pydicom.dcmread(f, stop_before_pixels=True)))
        except (pydicom.errors.InvalidDicomError, OSError, ValueError) as exc:
            raise DicomSourceError(f"{f}: could not be read as DICOM: {exc}") from exc
    for f, ds in zip(files, datasets):
        missing = [name for name in _REQUIRED if not str(ds.get(name, "") or "").strip()]
        if missing:
            raise DicomSourceError(
                f"{f}: its {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty or missing (an "
                "anonymiser may have removed them); a DICOM SEG must name the images it belongs to, so export the "
                "series with its UIDs kept, or write the labels as NIfTI/.seg.nrrd instead")
    return SourceSeries(folder, files, datasets)


#: what a DICOM SEG needs from each source image to refer to it
_REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID",
             "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


def _with_instance_uids(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Fill an empty SOP Class/Instance UID from the file meta header, which by the standard holds the same UIDs."""
    meta = getattr(ds, "file_meta", None)
    for own, stored in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not str(ds.get(own, "") or "").strip() and meta is not None and str(meta.get(stored, "") or "").strip():
            setattr(ds, own, meta.get(stored))
    return ds


def is_dicom_seg(path: str | Path) -> bool:
    """True when ``path`` is a file holding a DICOM Segmentation object."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, TypeError):
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS or str(ds.get("Modality", "")) == "SEG"
