"""Can this Slicer export DICOM SEG? Slicer's DICOM export writes a segmentation through its
``DICOMSegmentationPlugin``: part of Slicer from 5.12, provided by the QuantitativeReporting extension
on Slicer 5.10 and 5.11. Plain decisions; the module asks Slicer for its version and DICOM plugins."""

from __future__ import annotations

from collections.abc import Iterable

PLUGIN = "DICOMSegmentationPlugin"
"""The key under which the plugin registers itself in ``slicer.modules.dicomPlugins``."""
CORE_SINCE = (5, 12)
"""The first Slicer release whose own DICOMPlugins hold the segmentation plugin."""


def dicom_seg_problem(version: tuple[int, int], plugins: Iterable[str]) -> str | None:
    """None when DICOM SEG export can work; else what the user has to do, in plain words."""
    if PLUGIN in set(plugins):
        return None
    name = f"Slicer {version[0]}.{version[1]}"
    if tuple(version[:2]) < CORE_SINCE:
        return (f"Exporting DICOM SEG in {name} needs the QuantitativeReporting extension. Install it from the "
                "Extensions Manager, restart Slicer and export again, or choose NIfTI or .seg.nrrd as the format.")
    return (f"Slicer's DICOM segmentation plugin is not loaded in {name}. Check that the DICOM module is enabled "
            "(Edit > Application Settings > Modules), restart Slicer and export again, or choose NIfTI or .seg.nrrd.")
