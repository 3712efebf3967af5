"""Writing a label map as a DICOM Segmentation (SEG) object over the series it was made on.

The object is built by highdicom: binary segments, one per organ present, frames referencing the
source slices they lie on (the source series' UIDs, frame of reference and per-frame positions
are highdicom's, taken from the source headers), each segment's name, colour (CIELab) and SNOMED
CT category/type/laterality codes from the label table, and who made it: the algorithm
(LargeKernelSeg, its version, the checkpoint's architecture and hash) for segments a network
drew, MANUAL for segments a person corrected.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from lkseg import __version__
from lkseg.dicom.source import DicomSourceError, SourceSeries
from lkseg.io.image import Image
from lkseg.utils.atomic import atomic_path

#: the family code of the algorithm identification (DICOM CID 7162)
_FAMILY = codes.cid7162.ArtificialIntelligence


@dataclass(frozen=True)
class Algorithm:
    """The network that drew the segments: its architecture and its checkpoint's content hash."""

    architecture: str
    checkpoint_sha256: str
    name: str = "LargeKernelSeg"
    version: str = __version__

    def identification(self) -> hd.AlgorithmIdentificationSequence:
        return hd.AlgorithmIdentificationSequence(
            name=self.name, family=_FAMILY, version=self.version,
            parameters={"architecture": self.architecture, "checkpoint_sha256": self.checkpoint_sha256})


def changed_values(before: np.ndarray | None, after: np.ndarray) -> set[int]:
    """Label values whose voxels differ between the model's label map ``before`` and ``after`` (all
    values present in ``after`` when there is no model result)."""
    after = np.asarray(after)
    if before is None:
        return {int(v) for v in np.unique(after) if v}
    differ = np.asarray(before) != after
    return {int(v) for v in np.unique(np.concatenate([np.asarray(before)[differ], after[differ]])) if v}


def algorithm_of(card: Any, checkpoint: str | Path) -> Algorithm:
    """The :class:`Algorithm` for a checkpoint file: the card's architecture, the tensors' digest."""
    from lkseg.checkpoint.native import DIGEST_KEY, file_sha256, read_metadata

    digest = read_metadata(checkpoint).get(DIGEST_KEY) or file_sha256(checkpoint)
    return Algorithm(architecture=str(card.architecture), checkpoint_sha256=digest)


def concept(code: Any) -> hd.sr.CodedConcept:
    """A highdicom coded concept from a :class:`lkseg.checkpoint.labels.Code`."""
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _description(number: int, label: Any, algorithm: Algorithm | None, manual: bool) -> hd.seg.SegmentDescription:
    if label.category is None or label.type is None:
        raise DicomSourceError(f"label {label.value} '{label.name}' has no category/type code; DICOM SEG needs "
                               "both (give the label table SNOMED CT codes)")
    automatic = algorithm is not None and not manual
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=label.name,
        segmented_property_category=concept(label.category), segmented_property_type=concept(label.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automatic
        else hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        algorithm_identification=algorithm.identification() if automatic else None,
        display_color=hd.color.CIELabColor.from_rgb(*label.color))
    if label.modifier is not None:
        # laterality of paired organs: the modifier sequence sits inside the type code's item (PS3.3 C.8.20.2);
        # highdicom has no argument for it
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            concept(label.modifier)]
    return description


def dicom_seg(labels: Image, table: Any, source: SourceSeries, algorithm: Algorithm | None = None,
              manual_values: Collection[int] = (), series_description: str | None = None) -> hd.seg.Segmentation:
    """The DICOM SEG dataset for ``labels`` (on ``source``'s grid) with the organs of ``table`` present.

    Segments whose value is in ``manual_values`` (or all, when ``algorithm`` is None) are MANUAL;
    the others AUTOMATIC with ``algorithm`` identified.
    """
    source.check_grid(labels)
    array = np.asarray(labels.array)
    present = [lab for lab in table.labels if np.any(array == lab.value)]
    unknown = sorted(set(np.unique(array).tolist()) - {0, *table.values})
    if unknown:
        raise DicomSourceError(f"the label map holds values {unknown} that the label table does not name; "
                               "a DICOM SEG segment needs a name and codes")
    if not present:
        raise DicomSourceError("the label map holds no organ; there is nothing to write as DICOM SEG")
    lut = np.zeros(int(array.max()) + 1, dtype=np.uint16)
    for number, lab in enumerate(present, start=1):
        lut[lab.value] = number
    segment_numbers = lut[array]
    manual = {int(v) for v in manual_values}
    descriptions = [_description(n, lab, algorithm, lab.value in manual) for n, lab in enumerate(present, start=1)]
    first = source.datasets[0]
    series_number = int(first.get("SeriesNumber") or 0) + 1000
    return hd.seg.Segmentation(
        source_images=source.datasets, pixel_array=segment_numbers,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="LargeKernelSeg", manufacturer_model_name=algorithm.architecture if algorithm else "manual",
        software_versions=__version__, device_serial_number="none",
        series_description=series_description or _series_description(algorithm, manual, present),
        content_label="LKSEG", content_description="organ segmentation")


def _series_description(algorithm: Algorithm | None, manual: set[int], present: list) -> str:
    if algorithm is None:
        return "Segmentation (manual)"
    edited = " corrected" if manual & {lab.value for lab in present} else ""
    return f"LargeKernelSeg {algorithm.architecture}{edited}"[:64]


def write_dicom_seg(labels: Image, table: Any, source: SourceSeries, path: str | Path,
                    algorithm: Algorithm | None = None, manual_values: Collection[int] = (),
                    series_description: str | None = None) -> Path:
    """Write ``labels`` as a DICOM SEG file at ``path`` (atomically); see :func:`dicom_seg`."""
    path = Path(path)
    seg = dicom_seg(labels, table, source, algorithm, manual_values, series_description)
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path
