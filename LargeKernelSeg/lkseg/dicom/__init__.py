"""DICOM beyond reading pixels: the source series of a volume, DICOM SEG out and in, and DICOMweb.

Stable entry points: ``lkseg.dicom.load_source_series``, ``lkseg.dicom.write_dicom_seg``,
``lkseg.dicom.read_dicom_seg``.
"""

from lkseg.dicom.seg_read import read_dicom_seg
from lkseg.dicom.seg_write import Algorithm, algorithm_of, changed_values, dicom_seg, write_dicom_seg
from lkseg.dicom.source import DicomSourceError, SourceSeries, is_dicom_folder, is_dicom_seg, load_source_series

__all__ = ["Algorithm", "DicomSourceError", "SourceSeries", "algorithm_of", "changed_values", "dicom_seg",
           "is_dicom_folder", "is_dicom_seg", "load_source_series", "read_dicom_seg", "write_dicom_seg"]
