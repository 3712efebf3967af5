"""Our DICOM SEG judged by tools we did not write: Debian's dicom3tools validator (dciodvfy) and QIICR's
dcmqi (which reads our SEG into NIfTI and writes SEGs of its own that we must read)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import organ_blocks
from lkseg.checkpoint.labels import get_table
from lkseg.dicom import Algorithm, DicomSourceError, load_source_series, write_dicom_seg
from lkseg.dicom.seg_read import read_dicom_seg
from lkseg.io.imageio import read_image, to_sitk, write_image

BTCV = get_table("BTCV")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name} (dciodvfy: apt install dicom3tools; dcmqi: pip install -e '.[dev]')")
    return path


def our_seg(series: Path, path: Path) -> tuple[Path, np.ndarray]:
    grid = read_image(series)
    labels = organ_blocks(grid.array.shape)
    write_dicom_seg(grid.with_array(labels), BTCV, load_source_series(series), path,
                    algorithm=Algorithm("uxnet", "0123abcd"))
    return path, labels


@pytest.mark.parametrize("kind", ["axial", "oblique", "reversed"])
def test_dciodvfy_finds_no_error(kind: str, series_dirs: dict[str, Path], tmp_path: Path) -> None:
    path, _ = our_seg(series_dirs[kind], tmp_path / "seg.dcm")
    proc = subprocess.run([tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    report = proc.stdout + proc.stderr
    assert report.strip().splitlines()[0] == "Segmentation", report  # validated as the Segmentation IOD
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    ours = [line for line in report.splitlines() if line.startswith("Warning") and "SECTRA" not in line]
    assert not ours, "\n".join(ours)  # the one SECTRA warning is the source study's own procedure code


@pytest.mark.parametrize("kind", ["oblique", "reversed"])
def test_dcmqi_reads_our_seg_onto_the_same_voxels(kind: str, series_dirs: dict[str, Path], tmp_path: Path) -> None:
    series = series_dirs[kind]
    path, labels = our_seg(series, tmp_path / "seg.dcm")
    out = tmp_path / "dcmqi"
    out.mkdir()
    subprocess.run([tool("segimage2itkimage"), "--inputDICOM", str(path), "--outputDirectory", str(out),
                    "--outputType", "nii"], check=True, capture_output=True, timeout=120)
    meta = json.loads((out / "meta.json").read_text())
    segments = [s for group in meta["segmentAttributes"] for s in group]
    assert [s["SegmentLabel"] for s in segments] == ["spleen", "right kidney", "left kidney", "liver"]
    reference = to_sitk(read_image(series))
    for segment, value in zip(segments, (1, 2, 3, 6)):
        mask = sitk.Resample(sitk.ReadImage(str(out / f"{segment['labelID']}.nii.gz")), reference,
                             sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mask) > 0, labels == value, err_msg=segment["SegmentLabel"])
        assert segment["SegmentedPropertyTypeCodeSequence"]["CodeValue"] == BTCV.by_value(value).type.value


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


@pytest.mark.parametrize("kind", ["axial", "reversed"])
def test_a_seg_made_by_dcmqi_reads_back_by_code_and_name(kind: str, series_dirs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    series = series_dirs[kind]
    grid = read_image(series)
    labels = organ_blocks(grid.array.shape)
    path = dcmqi_seg(series, labels, SEGMENTS, tmp_path)
    back, mapping = read_dicom_seg(path, load_source_series(series), grid, BTCV)
    np.testing.assert_array_equal(back.array, labels)
    assert mapping.values == {1: 1, 2: 2, 3: 3, 4: 6} and not mapping.unmapped


def test_a_segment_that_maps_to_nothing_is_named(series_dirs: dict[str, Path], tmp_path: Path) -> None:
    series = series_dirs["axial"]
    grid = read_image(series)
    labels = organ_blocks(grid.array.shape)
    segments = [*SEGMENTS[:3], {"labelID": 6, "SegmentLabel": "tumour",
                                "SegmentedPropertyTypeCodeSequence": sct("108369006", "Neoplasm")}]
    path = dcmqi_seg(series, labels, segments, tmp_path)
    with pytest.raises(DicomSourceError, match=r"segment 4 'tumour' \[SCT 108369006 Neoplasm\]"):
        read_dicom_seg(path, load_source_series(series), grid, BTCV)
    back, mapping = read_dicom_seg(path, load_source_series(series), grid, BTCV, skip_unmapped=True)
    np.testing.assert_array_equal(back.array, np.where(labels == 6, 0, labels))
    assert len(mapping.unmapped) == 1
