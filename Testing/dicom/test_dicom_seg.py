"""DICOM SEG written by highdicom over a real series and read back: voxel-exact on axial, oblique and
reversed-slice-order series, with the names, colours, codes and provenance of the label table."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_series import organ_blocks
from lkseg.checkpoint.labels import get_table
from lkseg.dicom import Algorithm, DicomSourceError, load_source_series, write_dicom_seg
from lkseg.dicom.seg_read import read_dicom_seg
from lkseg.io.imageio import read_image, write_image
from repo_data import DATA

BTCV = get_table("BTCV")
ALGORITHM = Algorithm(architecture="uxnet", checkpoint_sha256="0123abcd")


def written(series: Path, tmp_path: Path, manual=()) -> tuple[Path, np.ndarray]:
    grid = read_image(series)
    labels = organ_blocks(grid.array.shape)
    path = write_dicom_seg(grid.with_array(labels), BTCV, load_source_series(series), tmp_path / "seg.dcm",
                           algorithm=ALGORITHM, manual_values=manual)
    return path, labels


@pytest.mark.parametrize("kind", ["axial", "oblique", "reversed"])
def test_round_trip_is_voxel_exact(kind: str, series_dirs: dict[str, Path], tmp_path: Path) -> None:
    series = series_dirs[kind]
    path, labels = written(series, tmp_path)
    grid = read_image(series)
    back, mapping = read_dicom_seg(path, load_source_series(series), grid, BTCV)
    assert back.same_grid(grid)
    np.testing.assert_array_equal(back.array, labels)
    assert sorted(mapping.values.values()) == [1, 2, 3, 6] and not mapping.unmapped


@pytest.mark.parametrize("kind", ["oblique", "reversed"])
def test_frames_lie_on_the_source_slices_they_reference(kind: str, series_dirs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """Each frame's position is the position of the source image it says it was derived from, and that
    image's slice of the label map holds the frame's pixels."""
    series = series_dirs[kind]
    path, labels = written(series, tmp_path)
    source = load_source_series(series)
    index = {uid: k for k, uid in enumerate(source.sop_instance_uids)}
    seg = pydicom.dcmread(path)
    numbers = [lab.value for lab in BTCV.labels if np.any(labels == lab.value)]
    for frame, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = index[uid]
        assert np.allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in source.datasets[k].ImagePositionPatient], atol=1e-4)
        value = numbers[int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) - 1]
        np.testing.assert_array_equal(seg.pixel_array[frame] > 0, labels[k] == value)


def test_segments_carry_names_colours_codes_and_provenance(series_dirs: dict[str, Path], tmp_path: Path) -> None:
    path, _ = written(series_dirs["axial"], tmp_path, manual=[2])
    seg = hd.seg.segread(path)
    source = load_source_series(series_dirs["axial"])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.series_uid
    assert seg.FrameOfReferenceUID == source.datasets[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == source.study_uid and seg.PatientID == "LKSEG-TEST"
    assert [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()] == \
        ["spleen", "right kidney", "left kidney", "liver"]
    for number, value in zip(seg.get_segment_numbers(), (1, 2, 3, 6)):
        label, item = BTCV.by_value(value), seg.SegmentSequence[number - 1]
        description = seg.get_segment_description(number)
        assert description.segmented_property_type.value == label.type.value
        assert description.segmented_property_category.value == label.category.value
        rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
        assert np.max(np.abs(np.asarray(rgb, float) - label.color)) <= 1
        modifier = item.SegmentedPropertyTypeCodeSequence[0].get("SegmentedPropertyTypeModifierCodeSequence")
        assert (modifier[0].CodeValue if modifier else None) == (label.modifier.value if label.modifier else None)
        if value == 2:  # corrected by hand
            assert item.SegmentAlgorithmType == "MANUAL" and "SegmentationAlgorithmIdentificationSequence" not in item
        else:
            assert item.SegmentAlgorithmType == "AUTOMATIC"
            algo = item.SegmentationAlgorithmIdentificationSequence[0]
            assert algo.AlgorithmName == "LargeKernelSeg"
            assert "uxnet" in algo.AlgorithmParameters and "0123abcd" in algo.AlgorithmParameters
    assert "corrected" in seg.SeriesDescription


def test_seg_of_another_series_is_refused(series_dirs: dict[str, Path], tmp_path: Path) -> None:
    path, _ = written(series_dirs["axial"], tmp_path)
    other = series_dirs["oblique"]
    with pytest.raises(DicomSourceError, match="refers to series"):
        read_dicom_seg(path, load_source_series(other), read_image(other), BTCV)


def test_labels_off_the_series_grid_are_refused(series_dirs: dict[str, Path], tmp_path: Path) -> None:
    grid = read_image(series_dirs["axial"])
    shifted = grid.with_array(organ_blocks(grid.array.shape))
    shifted.origin = (grid.origin[0], grid.origin[1], grid.origin[2] + 1.0)
    with pytest.raises(DicomSourceError, match="not on this series' grid"):
        write_dicom_seg(shifted, BTCV, load_source_series(series_dirs["axial"]), tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_inputs_a_seg_cannot_refer_to_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DicomSourceError, match="anonymiser"):  # the bundled series has empty UIDs
        load_source_series(DATA / "totalsegmentator" / "example_ct_dicom")
    nifti = write_image(read_image(DATA / "totalsegmentator" / "example_seg.nii.gz"), tmp_path / "l.nii.gz")
    with pytest.raises(DicomSourceError, match="not a folder holding a DICOM series"):
        load_source_series(nifti)
