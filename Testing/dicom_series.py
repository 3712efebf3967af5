"""DICOM series for the tests, made from the bundled TotalSegmentator series (Testing/Data, CC BY 4.0).

The bundled series was anonymised down to empty Study/Series/SOP Instance UIDs, which no DICOM
SEG can refer to (and which :func:`lkseg.dicom.load_source_series` refuses). :func:`valid_series`
writes a copy with UIDs filled in; :func:`oblique_series` and :func:`reversed_series` also change
the geometry tags (pixel data untouched) to make an oblique series and one whose file order runs
against the slice normal. :func:`organ_blocks` is a label map for them; :func:`dcmqi_seg` makes a
DICOM SEG with QIICR's dcmqi, a writer that is not ours.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from lkseg.io.imageio import read_image, write_image
from pydicom.uid import generate_uid
from repo_data import DATA

SERIES = DATA / "totalsegmentator" / "example_ct_dicom"


def _sorted_datasets() -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(f) for f in sorted(SERIES.iterdir())]
    return sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))


def _write(datasets: list[pydicom.Dataset], folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = (generate_uid(entropy_srcs=[tag, what]) for what in ("study", "series", "frame"))
    for index, ds in enumerate(datasets):
        uid = generate_uid(entropy_srcs=[tag, str(index)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.PatientID, ds.PatientName, ds.SeriesNumber, ds.StudyID = "LKSEG-TEST", "Test^Lkseg", 3, "1"
        ds.AccessionNumber = "A1"
        ds.save_as(folder / f"{index:03d}.dcm", enforce_file_format=True)
    return folder


def valid_series(folder: Path) -> Path:
    """The bundled series with UIDs (512x512x20, axial, 2 mm apart)."""
    return _write(_sorted_datasets(), folder, "valid")


def oblique_series(folder: Path, degrees: float = 20.0) -> Path:
    """The bundled pixels on slices tilted by ``degrees`` about the left-right axis (and the origin moved)."""
    a = np.deg2rad(degrees)
    row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(a), np.sin(a)])
    normal = np.cross(row, col)
    datasets = _sorted_datasets()
    origin = np.array([-120.3, -80.7, 40.2])
    for k, ds in enumerate(datasets):
        ds.ImageOrientationPatient = [float(round(v, 6)) for v in (*row, *col)]
        ds.ImagePositionPatient = [float(round(v, 6)) for v in origin + 2.0 * k * normal]
    return _write(datasets, folder, f"oblique{degrees}")


def reversed_series(folder: Path) -> Path:
    """The bundled pixels with the column direction flipped, so the slice normal points to the feet and
    GDCM's geometric order is the reverse of the files' table order."""
    datasets = _sorted_datasets()
    for ds in datasets:
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    return _write(datasets, folder, "reversed")


def organ_blocks(shape: tuple[int, int, int]) -> np.ndarray:
    """A label map in BTCV values: spleen (1) and right kidney (2) blocks, left kidney (3) one voxel in a
    corner, liver (6) touching the last slice; asymmetric in every axis so a flip or shift shows."""
    labels = np.zeros(shape, np.uint8)
    labels[2:10, 100:200, 120:210] = 1
    labels[5:15, 300:400, 250:300] = 2
    labels[0, 0, 0] = 3
    labels[12:, 40:90, 400:480] = 6
    return labels


def tool(name: str) -> str:
    """The path of an external DICOM tool, or a skip that says how to install it (CI forbids such skips)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name} (dciodvfy: apt install dicom3tools; dcmqi: pip install -e '.[dev]')")
    return path


def dcmqi_metadata(segments: list[dict]) -> dict:
    anatomy = {"CodeValue": "123037004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"}
    return {"ContentCreatorName": "Reader^One", "ClinicalTrialSeriesID": "S1", "ClinicalTrialTimePointID": "1",
            "SeriesDescription": "drawn elsewhere", "SeriesNumber": "300", "InstanceNumber": "1",
            "ContentLabel": "SEGMENTATION", "ContentDescription": "test", "ClinicalTrialCoordinatingCenterName": "t",
            "segmentAttributes": [[{"SegmentAlgorithmType": "MANUAL", "SegmentedPropertyCategoryCodeSequence": anatomy,
                                    "recommendedDisplayRGBValue": [128, 128, 128], **s} for s in segments]]}


def sct(value: str, meaning: str) -> dict:
    return {"CodeValue": value, "CodingSchemeDesignator": "SCT", "CodeMeaning": meaning}


def dcmqi_seg(series: Path, labels: np.ndarray, segments: list[dict], tmp_path: Path) -> Path:
    label_file = write_image(read_image(series).with_array(labels), tmp_path / "drawn.nii.gz")
    (tmp_path / "meta.json").write_text(json.dumps(dcmqi_metadata(segments)))
    out = tmp_path / "drawn.dcm"
    subprocess.run([tool("itkimage2segimage"), "--inputImageList", str(label_file), "--inputDICOMDirectory",
                    str(series), "--outputDICOM", str(out), "--inputMetadata", str(tmp_path / "meta.json")],
                   check=True, capture_output=True, timeout=120)
    return out


#: dcmqi's segments for organ_blocks' values: spleen by code, right kidney by code + laterality, left kidney
#: by name only (a local code), liver by code under another name
SEGMENTS = [
    {"labelID": 1, "SegmentLabel": "Milz", "SegmentedPropertyTypeCodeSequence": sct("78961009", "Spleen")},
    {"labelID": 2, "SegmentLabel": "Niere", "SegmentedPropertyTypeCodeSequence": sct("64033007", "Kidney"),
     "SegmentedPropertyTypeModifierCodeSequence": sct("24028007", "Right")},
    {"labelID": 3, "SegmentLabel": "Left Kidney", "SegmentedPropertyTypeCodeSequence":
        {"CodeValue": "K-L", "CodingSchemeDesignator": "99LOCAL", "CodeMeaning": "kidney left"}},
    {"labelID": 6, "SegmentLabel": "Leber", "SegmentedPropertyTypeCodeSequence": sct("10200004", "Liver")},
]
