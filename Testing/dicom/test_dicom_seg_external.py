"""Our DICOM SEG judged by tools we did not write: Debian's dicom3tools validator (dciodvfy) and QIICR's
dcmqi (which reads our SEG into NIfTI and writes SEGs of its own that we must read)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_series import SEGMENTS, dcmqi_seg, organ_blocks, sct, tool
from lkseg.checkpoint.labels import get_table
from lkseg.dicom import Algorithm, DicomSourceError, load_source_series, write_dicom_seg
from lkseg.dicom.seg_read import read_dicom_seg
from lkseg.io.imageio import read_image, to_sitk

BTCV = get_table("BTCV")


def our_seg(series: Path, path: Path) -> tuple[Path, np.ndarray]:
    grid = read_image(series)
    labels = organ_blocks(grid.array.shape)
    write_dicom_seg(grid.with_array(labels), BTCV, load_source_series(series), path,
                    algorithm=Algorithm("uxnet", "0123abcd"))
    return path, labels


@pytest.mark.parametrize("kind", ["axial", "oblique", "reversed"])
def test_dciodvfy_finds_no_error(kind: str, series_dirs: dict[str, Path], tmp_path: Path) -> None:
    path, _ = our_seg(series_dirs[kind], tmp_path / "seg.dcm")
    proc = subprocess.run([tool("dciodvfy"), str(path)], check=False, capture_output=True, text=True, timeout=120)
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
