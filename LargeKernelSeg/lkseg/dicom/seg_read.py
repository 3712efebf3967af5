"""Reading a DICOM SEG back as a label map on the grid of the series it references.

Segments are mapped to a label table by their SNOMED CT type code (with its laterality
modifier), else by name; a SEG that references another series is refused, and segments that
cannot be mapped are named in the error. Frames are placed by the source images they reference
(highdicom), so the result lies on exactly the series' voxels whatever its orientation or slice
order; a SEG without such references is placed by its frames' positions on the series' grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np

from lkseg.checkpoint.labels import LabelError
from lkseg.dicom.source import (
    DicomSourceError,
    SourceSeries,
    is_dicom_folder,
    is_dicom_seg,
    load_source_series,
)
from lkseg.io.image import Image

log = logging.getLogger(__name__)

@dataclass
class SegMapping:
    """How the segments of a SEG were mapped: ``{segment number: label value}`` and what was left out."""

    values: dict[int, int] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)


def _key(code: Any) -> tuple[str, str] | None:
    if code is None:
        return None
    scheme = getattr(code, "scheme_designator", None) or getattr(code, "scheme", "")
    return (str(scheme).upper(), str(code.value))


def _modifier(description: Any) -> tuple[str, str] | None:
    items = description.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence") \
        or description.get("SegmentedPropertyTypeModifierCodeSequence")  # older SEGs put it beside the type
    if not items:
        return None
    return (str(items[0].CodingSchemeDesignator).upper(), str(items[0].CodeValue))


def map_segments(seg: hd.seg.Segmentation, table: Any) -> SegMapping:
    """Map each segment to a label of ``table`` by type code + modifier, then by name."""
    by_code = {(_key(lab.type), _key(lab.modifier)): lab.value for lab in table.labels if lab.type is not None}
    mapping = SegMapping()
    for number in seg.get_segment_numbers():
        description = seg.get_segment_description(number)
        code = (_key(description.segmented_property_type), _modifier(description))
        value = by_code.get(code)
        if value is None:
            try:
                value = table.by_name(description.segment_label).value
            except LabelError:
                value = None
        if value is None:
            typ = description.segmented_property_type
            modifier = f" ({code[1][0]} {code[1][1]})" if code[1] else ""
            mapping.unmapped.append(f"segment {number} '{description.segment_label}' "
                                    f"[{typ.scheme_designator} {typ.value} {typ.meaning}{modifier}]")
        else:
            mapping.values[number] = value
    return mapping


def read_dicom_seg(path: str | Path, source: SourceSeries, grid: Image, table: Any,
                   skip_unmapped: bool = False) -> tuple[Image, SegMapping]:
    """The label map (values of ``table``) of the DICOM SEG at ``path`` on ``grid``, the volume read from ``source``."""
    path = Path(path)
    if not is_dicom_seg(path):
        raise DicomSourceError(f"{path}: is not a DICOM SEG file (its SOP class is not Segmentation Storage)")
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise DicomSourceError(f"{path}: could not be read as a DICOM SEG: {exc}") from exc
    referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
    if referenced and source.series_uid not in referenced:
        raise DicomSourceError(f"{path}: refers to series {', '.join(referenced)}, not to {source.folder} (series "
                               f"{source.series_uid}); open the SEG with the series it was drawn on")
    if str(seg.get("FrameOfReferenceUID", source.datasets[0].FrameOfReferenceUID)) != \
            str(source.datasets[0].FrameOfReferenceUID):
        raise DicomSourceError(f"{path}: its frame of reference differs from the series'; its segments cannot be "
                               "placed on these images")
    mapping = map_segments(seg, table)
    if mapping.unmapped and not skip_unmapped:
        raise DicomSourceError(
            f"{path}: {len(mapping.unmapped)} segment(s) match no label of the table ({', '.join(table.names)}) by "
            f"code or name: {'; '.join(mapping.unmapped)}; rename them, use a label table that has them, or skip them "
            "(--skip-unmapped)")
    if not mapping.values:
        raise DicomSourceError(f"{path}: none of its segments maps to the label table")
    labels = np.zeros(grid.array.shape, dtype=np.uint16 if table.num_classes > 256 else np.uint8)
    overlap = np.zeros(grid.array.shape, dtype=bool)
    for number in sorted(mapping.values):  # one segment at a time: memory of one mask, not of all
        mask = _masks(seg, source, [number])[..., 0] > 0.5
        overlap |= mask & (labels > 0)
        labels[mask] = mapping.values[number]
    if overlap.any():
        log.warning("%s: segments overlap in %d voxels; the later segment was kept there", path, int(overlap.sum()))
    return grid.with_array(labels), mapping


def labels_from_seg(path: str | Path, series_folder: str | Path, grid: Image, table: Any,
                    skip_unmapped: bool = False) -> tuple[Image, SegMapping]:
    """:func:`read_dicom_seg` over the DICOM series in ``series_folder`` (refused when it is not one)."""
    if not is_dicom_folder(Path(series_folder)):
        raise DicomSourceError(f"{path} is a DICOM SEG: it is read over the DICOM series it was drawn on, and "
                               f"{series_folder} is not a DICOM series folder; open or give that series")
    return read_dicom_seg(path, load_source_series(series_folder), grid, table, skip_unmapped=skip_unmapped)


def _masks(seg: hd.seg.Segmentation, source: SourceSeries, numbers: list[int]) -> np.ndarray:
    """(slices, rows, columns, segments) on the source grid, by source references, else by frame positions."""
    try:
        return seg.get_pixels_by_source_instance(
            source_sop_instance_uids=source.sop_instance_uids, segment_numbers=numbers,
            assert_missing_frames_are_empty=True, skip_overlap_checks=True, dtype=np.float32)
    except (KeyError, ValueError, RuntimeError, AttributeError) as exc:
        log.info("placing the SEG's frames by position (no usable source references: %s)", exc)
    return _masks_by_position(seg, source, numbers)


def _masks_by_position(seg: hd.seg.Segmentation, source: SourceSeries, numbers: list[int]) -> np.ndarray:
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in source.datasets])
    first = source.datasets[0]
    out = np.zeros((len(positions), int(first.Rows), int(first.Columns), len(numbers)), dtype=np.float32)
    pixels = seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None]
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if number not in numbers:
            continue
        position = np.asarray([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        distance = np.linalg.norm(positions - position, axis=1)
        k = int(np.argmin(distance))
        if distance[k] > 1e-2 or pixels.shape[1:] != out.shape[1:3]:
            raise DicomSourceError("a frame of the DICOM SEG lies on no slice of the series (a SEG on another grid "
                                   "cannot be read into this dataset)")
        out[k, ..., numbers.index(number)] = np.maximum(out[k, ..., numbers.index(number)], pixels[frame])
    return out
